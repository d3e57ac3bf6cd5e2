"""Many commands in one unit of work (``Reflow.run_batch``): one atomic write for a whole batch,
a refused command taken back on its own, and the batch re-run on a concurrent write (RT7)."""

from __future__ import annotations

import pytest

from engine import ids
from engine.app import Reflow
from engine.catalog import Offer, StockReserved
from engine.commands import Command, PlaceOrder
from engine.errors import DomainError, InvalidCommand
from engine.values import SkuQty
from tests.engine.test_routing import race
from tests.world import BUYER, SHOP, T0, allocations, alt, comp, line, link, offer, order, sku, stored, supplier


class ReserveThenRefuse(Command, frozen=True):
    """A test command: changes an offer (or makes one), then is refused, or is a dry run."""

    supplier_id: str
    offer_id: str
    allocation_id: str
    refuse: bool = True
    qty: int = 0
    crash: bool = False


def reserve_then_refuse(c: ReserveThenRefuse, uow) -> None:  # noqa: ANN001
    items = (SkuQty(supplier_sku_id="a", qty=c.qty),) if c.qty else ()
    uow.get_or_new(Offer, ids.offer_id(c.supplier_id, c.offer_id)).reserve(c.allocation_id, items, c.at)
    if c.crash:
        raise RuntimeError("the store went away")
    if c.refuse:
        raise InvalidCommand("field: refused after a change")


@pytest.fixture
def world(app):
    supplier(app, "S1")
    offer(app, "S1", "O1", {"a": 10})
    link(app, "P1", sku("K1", alt(comp("S1", "O1", "a"))))
    app.handlers[ReserveThenRefuse] = reserve_then_refuse
    return app


def placing(order_id: str, qty: int = 1) -> PlaceOrder:
    return PlaceOrder(at=T0, platform=SHOP[0], shop_id=SHOP[1], order_id=order_id, buyer=BUYER,
                      lines=(line("L1", "P1", qty=qty),))


def test_batch_stores_every_command_in_one_write(world):
    before = stored(world)
    writes = []
    original = world.events.put
    world.events.put = lambda events, **kw: writes.append(len(events)) or original(events, **kw)  # type: ignore[method-assign]
    statuses = world.run_batch([placing(f"X{n}") for n in range(4)])
    assert statuses == ["allocated"] * 4
    assert len(writes) == 1 and writes[0] >= 4 * 4  # placed, routed, allocated, reserved
    assert stored(world) > before
    assert world.offer("S1", "O1").reserved["a"] == 4


def test_batch_later_command_sees_earlier_commands_of_the_same_batch(world):
    """RT7 inside one batch: the reservation of the first order counts for the second."""
    world.report_stock("S1", "O1", "a", 1, at=T0)
    statuses = world.run_batch([placing(f"X{n}") for n in range(2)])
    assert statuses == ["allocated", "unrouted"]
    assert order(world, "X1").route["L1"] == "unroutable"


def test_batch_refused_command_is_taken_back_and_the_rest_kept(world):
    """A command that changed aggregates and then was refused leaves no trace in the batch."""
    results = world.run_batch([
        placing("X1"),
        ReserveThenRefuse(at=T0, supplier_id="S1", offer_id="O1", allocation_id="A-phantom"),
        placing("X2", qty=2),
    ])
    assert results[0] == "allocated" and results[2] == "allocated"
    assert isinstance(results[1], DomainError) and "field: refused" in str(results[1])
    events = list(world.events.get(ids.offer_id("S1", "O1")))
    reserved = [e.allocation_id for e in events if isinstance(e, StockReserved)]
    assert "A-phantom" not in reserved and len(reserved) == 2
    assert [e.originator_version for e in events] == list(range(1, len(events) + 1))
    assert world.offer("S1", "O1").reserved["a"] == 3


def test_batch_refused_command_that_created_an_aggregate_leaves_none(world):
    bad = PlaceOrder(at=T0, platform=SHOP[0], shop_id=SHOP[1], order_id="BAD", buyer=BUYER,
                     lines=(line("L1", "P1", qty=0),))  # refused before anything
    results = world.run_batch([bad, ReserveThenRefuse(at=T0, supplier_id="S9", offer_id="O9", allocation_id="A-x"),
                               placing("X1")])
    assert isinstance(results[0], DomainError) and isinstance(results[1], DomainError)
    assert results[2] == "allocated"
    assert world.offer("S9", "O9") is None and order(world, "BAD") is None


def test_batch_unexpected_error_writes_nothing(world):
    before = stored(world)

    def broken(c, uow) -> None:  # noqa: ANN001
        raise RuntimeError("store went away")

    world.handlers[ReserveThenRefuse] = broken
    with pytest.raises(RuntimeError):
        world.run_batch([placing("X1"), ReserveThenRefuse(at=T0, supplier_id="S1", offer_id="O1", allocation_id="A")])
    assert stored(world) == before and order(world, "X1") is None


def test_batch_dry_run_inside_a_batch_keeps_nothing(world):
    """A dry-run command (A1) inside a batch is taken back even though it succeeded."""
    link(world, "P2", sku("K1", alt(comp("S1", "O1", "a"))))
    dry = ReserveThenRefuse(at=T0, supplier_id="S1", offer_id="O1", allocation_id="A-dry", refuse=False)
    world.run_batch([lambda: world.execute(dry, dry_run=True), placing("X1")])
    events = list(world.events.get(ids.offer_id("S1", "O1")))
    assert "A-dry" not in [getattr(e, "allocation_id", None) for e in events]


def test_rt7_two_routers_batching_orders_never_oversell(app, store_url):
    """Two routers on one store, each committing batches of orders, race for 5 units."""
    supplier(app, "S2")
    offer(app, "S2", "O2", {"a": 5})
    link(app, "P1", sku("K1", alt(comp("S2", "O2", "a"))))

    def route(r: Reflow, prefix: str) -> None:
        for b in range(3):
            r.run_batch([placing(f"{prefix}{b}-{n}") for n in range(4)])

    assert race(app, route) == []
    every = [f"{p}{b}-{n}" for p in "AB" for b in range(3) for n in range(4)]
    statuses = [order(app, o).status for o in every]
    assert statuses.count("allocated") == 5 and statuses.count("unrouted") == 19
    state = app.offer("S2", "O2")
    assert (state.reserved["a"], state.available("a")) == (5, 0)


# -- the cache: units of work change the cached aggregates in place (no copy per batch), so
# -- whatever is not stored must not stay in the cache (issue 17)


def last_unit(world, phantom: ReserveThenRefuse | None = None) -> ReserveThenRefuse:
    world.report_stock("S1", "O1", "a", 1, at=T0)
    return phantom or ReserveThenRefuse(at=T0, supplier_id="S1", offer_id="O1", allocation_id="A-phantom", qty=1)


def test_RT7_a_refused_command_leaves_no_phantom_reservation_in_the_cache(world):
    """The refused command reserved the last unit on the cached offer; the next order gets it."""
    [refused] = world.run_batch([last_unit(world)])
    assert isinstance(refused, DomainError)
    assert world.run_batch([placing("X1")]) == ["allocated"]
    assert world.offer("S1", "O1").reserved["a"] == 1


def test_RT7_a_refused_command_after_a_kept_one_keeps_only_the_kept_one(world):
    phantom = last_unit(world)
    world.report_stock("S1", "O1", "a", 2, at=T0)
    assert world.run_batch([placing("X1"), phantom])[0] == "allocated"
    assert world.run_batch([placing("X2"), placing("X3")]) == ["allocated", "unrouted"]


def test_RT7_a_write_that_fails_leaves_no_phantom_reservation_in_the_cache(world):
    last_unit(world)
    original = world.events.put

    def fails(events, **kw):  # noqa: ANN001, ANN003
        world.events.put = original
        raise OSError("disk full")

    world.events.put = fails  # type: ignore[method-assign]
    with pytest.raises(OSError, match="disk full"):
        world.run_batch([placing("X1")])
    assert order(world, "X1") is None
    assert world.run_batch([placing("X2")]) == ["allocated"]
    assert world.offer("S1", "O1").reserved["a"] == 1


def test_RT7_an_unexpected_error_leaves_no_phantom_reservation_in_the_cache(world):
    crash = ReserveThenRefuse(at=T0, supplier_id="S1", offer_id="O1", allocation_id="A-crash", qty=1, crash=True)
    last_unit(world)
    with pytest.raises(RuntimeError):
        world.run_batch([crash])
    assert world.run_batch([placing("X1")]) == ["allocated"]


def test_A1_a_dry_run_leaves_no_phantom_reservation_in_the_cache(world):
    dry = ReserveThenRefuse(at=T0, supplier_id="S1", offer_id="O1", allocation_id="A-dry", qty=1, refuse=False)
    last_unit(world)
    world.execute(dry, dry_run=True)
    assert world.run_batch([placing("X1")]) == ["allocated"]


def test_RT7_a_batch_beaten_by_another_router_is_run_again_on_what_that_router_stored(app, store_url):
    """The first router's cached offer is stale once the second took the last unit: its write
    collides, the changed aggregates leave its cache, and the retry sees the unit gone."""
    from tests.engine.test_routing import _same_env

    supplier(app, "S1")
    offer(app, "S1", "O1", {"a": 1})
    link(app, "P1", sku("K1", alt(comp("S1", "O1", "a"))))
    app.run_batch([lambda: app.run(lambda uow: uow.offer("S1", "O1"))])  # read: now in its cache
    second = Reflow(_same_env(app))
    try:
        assert second.run_batch([placing("B1")]) == ["allocated"]
        # the first router's cache still holds the offer as it was before B1: the write collides
        assert app.run_batch([placing("A1")]) == ["unrouted"]
    finally:
        second.close()
    assert app.offer("S1", "O1").reserved["a"] == 1


def test_A2_an_event_taken_back_never_lends_its_bytes_to_the_event_stored_in_its_place(world):
    """The mapper reuses the encoding made for the chain digest (one encoding per event); a command
    taken back after making two events on the offer leaves that encoding behind for the version the
    next order's reservation then takes: the store must hold the reservation, not the phantom."""
    def twice_then_refuse(c, uow) -> None:  # noqa: ANN001
        o = uow.offer("S1", "O1")
        o.reserve("A-phantom-1", (), c.at)
        o.reserve("A-phantom-2", (), c.at)  # computes the digest (and encoding) of the first
        raise InvalidCommand("field: refused after two changes")

    world.handlers[ReserveThenRefuse] = twice_then_refuse
    phantom = ReserveThenRefuse(at=T0, supplier_id="S1", offer_id="O1", allocation_id="A")
    results = world.run_batch([phantom, placing("X1")])
    assert isinstance(results[0], DomainError) and results[1] == "allocated"
    stored_offer = [e for e in world.events.get(ids.offer_id("S1", "O1")) if isinstance(e, StockReserved)]
    assert [e.allocation_id for e in stored_offer] == [a.allocation_id for a in allocations(world, "X1")]


def test_a_refused_command_that_only_read_an_aggregate_keeps_it_loaded(world):
    """Issue 17: a refusal must not cost the next command a load of what it only read (a hot
    offer's replay), nor leave behind an aggregate it made and never wrote."""
    def read_then_refuse(c, uow) -> None:  # noqa: ANN001
        uow.offer("S1", "O1")
        uow.get_or_new(Offer, ids.offer_id("S9", "O9"))
        raise InvalidCommand("field: refused after reading")

    world.handlers[ReserveThenRefuse] = read_then_refuse
    loads = []
    owned = world._owned
    world._owned = lambda cls, id_: loads.append(cls.__name__) or owned(cls, id_)  # type: ignore[method-assign]
    results = world.run_batch([ReserveThenRefuse(at=T0, supplier_id="S1", offer_id="O1", allocation_id="A"),
                               placing("X1")])
    assert isinstance(results[0], DomainError) and results[1] == "allocated"
    assert loads.count("Offer") == 2  # O1 once, O9 once (absent): O1 not loaded again for X1
    assert world.offer("S9", "O9") is None
