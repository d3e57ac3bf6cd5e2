"""Returns to the supplier (RC6): requested for a post-shipment return (I2), answered by the supplier."""

from __future__ import annotations

from engine import ids
from engine.commands import AnswerReturn, RequestReturn
from engine.errors import InvalidCommand, NotFound
from engine.handlers.registry import handles
from engine.returns import ReturnLine, SupplierReturn
from engine.uow import UnitOfWork


@handles(RequestReturn)
def request_return(c: RequestReturn, uow: UnitOfWork) -> list[str]:
    """Rule RC6: one return per shipped allocation carrying the after-sale's lines; the return ids
    (those requested before are requested once only)."""
    order = uow.order(c.platform, c.shop_id, c.order_id)
    aftersale = order.aftersales.get(c.aftersale_id)
    if aftersale is None:
        raise NotFound(f"aftersale_id: {c.aftersale_id!r} was never opened on order {c.order_id}")
    if aftersale.outcome in ("rejected", "withdrawn"):
        raise InvalidCommand(f"aftersale_id: {c.aftersale_id} was closed {aftersale.outcome}; nothing comes back", "RC6")
    if aftersale.kind != "return" or not aftersale.post_shipment:
        raise InvalidCommand(f"aftersale_id: {c.aftersale_id} is a {aftersale.kind} opened "
                             f"{'after' if aftersale.post_shipment else 'before'} shipment; only a return after "
                             "shipment (I2) goes back to the supplier", "RC6")
    shipped = [a for a in uow.live(order) if a.tracking_no is not None
               and (aftersale.line_id is None or aftersale.line_id in a.line_ids)]
    if not shipped:
        raise InvalidCommand(f"aftersale_id: no shipped allocation of order {c.order_id} carries "
                             f"{'line ' + aftersale.line_id if aftersale.line_id else 'its lines'}", "RC6")
    out = []
    for alloc in shipped:
        return_id = ids.return_id(alloc.allocation_id, c.aftersale_id)
        if uow.get(SupplierReturn, ids.return_uuid(return_id)) is not None:
            out.append(return_id)  # asked already
            continue
        taken = _returned(uow, order, alloc.allocation_id, c.aftersale_id)
        lines = tuple(ReturnLine(line_id=al.line_id, offer_id=al.offer_id, supplier_sku_id=al.supplier_sku_id, qty=al.qty)
                      for al in alloc.lines if aftersale.line_id in (None, al.line_id) and al.line_id not in taken)
        if not lines:
            continue  # these goods are on another return already: never credited twice
        uow.get_or_new(SupplierReturn, ids.return_uuid(return_id)).request(
            c.at, return_id=return_id, allocation_id=alloc.allocation_id, supplier_id=alloc.supplier_id,
            platform=c.platform, shop_id=c.shop_id, order_id=c.order_id, aftersale_id=c.aftersale_id,
            lines=lines, reason=f"consumer return, after-sale {c.aftersale_id}")
        out.append(return_id)
    if not out:
        raise InvalidCommand(f"aftersale_id: the lines of {c.aftersale_id} are on another return of order "
                             f"{c.order_id} already", "RC6")
    return out


def _returned(uow: UnitOfWork, order, allocation_id: str, aftersale_id: str) -> set[str]:
    """Rule RC6: lines of this allocation already on a return for another after-sale, not refused."""
    taken: set[str] = set()
    for other in order.aftersales:
        if other == aftersale_id:
            continue
        ret = uow.get(SupplierReturn, ids.return_uuid(ids.return_id(allocation_id, other)))
        if ret is not None and ret.status != "refused":
            taken |= {x.line_id for x in ret.lines}
    return taken


@handles(AnswerReturn)
def answer_return(c: AnswerReturn, uow: UnitOfWork) -> str:
    """Rule RC6: `accepted`, `refused`, or `duplicate` for a return answered already."""
    ret = uow.get(SupplierReturn, ids.return_uuid(c.return_id))
    if ret is None:
        raise NotFound(f"return_id: unknown return {c.return_id!r}", "RC6")
    return c.outcome if ret.answer(c.supplier_id, c.outcome, c.reason, c.at) else "duplicate"
