"""`reflow audit`: an order's history with every decision explained, and time travel (as of)."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from rich.console import Console

from engine.errors import NotFound
from replay.audit import audit, render
from replay.prelink import pull
from tests.world import BUYER, SHOP, T0, allocations, alt, comp, line, link, offer, place, sku, supplier

H = timedelta(hours=1)
M = timedelta(minutes=1)
PLACED = T0 - timedelta(days=1)
LINKED = T0
PULLED = T0 + H
TRACKED = T0 + 3 * H


@pytest.fixture
def story(app):
    """An order placed before its product was linked, pulled, then shipped (seed 000, scenario 2)."""
    supplier(app, "S1", score=70)
    supplier(app, "S2", score=95)
    supplier(app, "S3", active=False)
    offer(app, "S1", "O1", {"a": 50}, price="6.80")
    offer(app, "S2", "O2", {"b": 50}, price="7.20")
    offer(app, "S3", "O3", {"c": 50}, price="5.00")
    place(app, "A1", line("L1", "P1", qty=2), at=PLACED)
    link(app, "P1", sku("K1", alt(comp("S2", "O2", "b")), alt(comp("S1", "O1", "a")), alt(comp("S3", "O3", "c"))),
         at=LINKED)
    pull(app, *SHOP, "P1", at=PULLED)
    [a] = allocations(app, "A1")
    app.upload_tracking("S1", a.allocation_id, "ZTO", "ZT1234567890", at=TRACKED)
    return app


def text(a) -> str:
    console = Console(file=io.StringIO(), width=200, color_system=None)
    render(a, console)
    return console.file.getvalue()


def test_audit_shows_every_event_and_each_decision_with_why_each_candidate_lost(story):
    a = audit(story, *SHOP, "A1")
    names = [type(e.event).__name__ for e in a.entries]
    assert names == ["OrderPlaced", "OrderRouted", "OrderRouted", "Allocated", "TrackingUploaded",
                     "OrderShipped", "AllocationShipped"]
    first, pulled = a.decisions
    assert (first.trigger, first.lines[0].outcome) == ("placed", "unroutable: no_link")
    assert pulled.trigger == "prelink" and pulled.reproduced
    [l1] = pulled.lines
    assert l1.link_version == 1 and l1.outcome == "alternative 1"
    assert [c.verdict for c in l1.candidates] == ["lost: cost", "chosen", "ineligible: supplier_inactive"]
    assert [str(c.cost) for c in l1.candidates] == ["14.40", "13.60", "10.00"]
    out = text(a)
    for needle in ("lost: cost", "ineligible: supplier_inactive", "tracking uploaded: ZTO ZT1234567890",
                   "shipment confirmed to the shop", "status shipped", "reproduced by the policy: yes"):
        assert needle in out, needle


def test_audit_as_of_shows_the_state_at_each_time(story):
    before = audit(story, *SHOP, "A1", as_of=PLACED - M)
    assert before.order is None and before.entries == [] and before.hidden == 4
    assert "no event of this order had happened by then" in text(before)
    waiting = audit(story, *SHOP, "A1", as_of=LINKED + M)  # linked, not pulled yet
    assert waiting.order.status == "unrouted" and waiting.order.unroutable == {"L1": "no_link"}
    assert [d.trigger for d in waiting.decisions] == ["placed"] and waiting.allocations == []
    pulled = audit(story, *SHOP, "A1", as_of=PULLED)
    assert pulled.order.status == "allocated"
    assert [(x.supplier_id, x.status) for x in pulled.allocations] == [("S1", "active")]
    shipped = audit(story, *SHOP, "A1", as_of=TRACKED + M)
    assert shipped.order.status == "shipped" and shipped.hidden == 0
    assert [(x.status, x.tracking_no) for x in shipped.allocations] == [("shipped", "ZT1234567890")]


def test_P1_audit_shows_the_consumer_masked_only(story):
    out = text(audit(story, *SHOP, "A1"))
    assert "张**" in out and "138****5678" in out and "西湖区" in out
    for clear in (BUYER.name, BUYER.phone, BUYER.address, "文三路"):
        assert clear not in out


def test_audit_of_an_unknown_order_names_the_field(story):
    with pytest.raises(NotFound, match="--order"):
        audit(story, *SHOP, "NOPE")


def test_rt11_rt12_rt13_audit_explains_a_rejection_a_split_line_and_capacity(memory_app):
    app = memory_app
    supplier(app, "S1")
    supplier(app, "S2", daily_capacity=10)
    supplier(app, "S3")
    offer(app, "S1", "O1", {"a": 2}, price="5.00")
    offer(app, "S2", "O2", {"b": 2}, price="6.00")
    offer(app, "S3", "O3", {"c": 1}, price="7.00")
    link(app, "P1", sku("K1", alt(comp("S1", "O1", "a")), alt(comp("S2", "O2", "b")), alt(comp("S3", "O3", "c"))))
    app.set_merchant_settings("default", split_lines=True, at=T0 - H)
    place(app, "X1", line("L1", "P1", qty=3))
    s1 = next(a for a in allocations(app, "X1") if a.supplier_id == "S1")
    app.reject_allocation("S1", s1.allocation_id, "price_changed", note="new price list", at=T0 + M)
    shown = text(audit(app, *SHOP, "X1"))
    assert "split (RT12): alternative 0 x2 + alternative 1 x1" in shown
    assert "part: 2 units (RT12)" in shown and "capacity left today 10 (RT13)" in shown
    assert "rejected by the supplier (RT11): price_changed; new price list" in shown
    assert "excluded for this order: rejected it (RT11)" in shown and "ineligible: rejected" in shown


def test_t4_rc6_audit_shows_the_overdue_reminder_and_the_return_to_the_supplier(memory_app):
    app = memory_app
    supplier(app, "S1")
    offer(app, "S1", "O1", {"a": 5}, price="5.00")
    link(app, "P1", sku("K1", alt(comp("S1", "O1", "a"))))
    place(app, "Y1", line("L1", "P1", qty=2))
    [a] = allocations(app, "Y1")
    app.pass_time(a.ship_by + 2 * H)
    app.upload_tracking("S1", a.allocation_id, "ZTO", "ZT5555555555", at=a.ship_by + 3 * H)
    app.open_aftersale(*SHOP, "Y1", "AS-R", "return", at=a.ship_by + 30 * H)
    [rid] = app.request_return(*SHOP, "Y1", "AS-R", at=a.ship_by + 31 * H)
    app.answer_return("S1", rid, "accepted", at=a.ship_by + 40 * H)
    shown = text(audit(app, *SHOP, "Y1"))
    assert "overdue (T4): no tracking by" in shown and "(2.0 h late)" in shown
    assert f"return {rid} sent to S1 (RC6): O1/a x2" in shown
    assert "return accepted: a credit on the next statement" in shown
