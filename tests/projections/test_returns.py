"""Returns to the supplier (RC6): requested for a post-shipment return (I2), answered once, and an
accepted one credited on the supplier's next statement at the price its lines were settled at,
listed apart from the lines, never twice."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from engine.errors import DomainError, NotFound
from projections.runner import ProjectionRunner
from projections.statements import issue_statement
from tests.projections.conftest import rows as query
from tests.projections.seed import SHOP, H, track
from tests.world import T0, allocations, alt, comp, line, link, offer, place, sku, stored, supplier

DAY = T0.date()


@pytest.fixture
def shipped(app, tmp_path: Path):
    supplier(app, "S1")
    supplier(app, "S2")
    offer(app, "S1", "O1", {"a": 100}, price="10.00")
    offer(app, "S2", "O2", {"b": 100}, price="4.00")
    link(app, "P1", sku("K1", alt(comp("S1", "O1", "a"))))
    link(app, "P2", sku("K1", alt(comp("S2", "O2", "b"))))
    place(app, "R1", line("L1", "P1", qty=2), line("L2", "P2"), at=T0)
    track(app, "R1", T0 + H)
    app.open_aftersale(*SHOP, "R1", "AS-1", "return", line_id="L1", at=T0 + 5 * H)  # after shipment (I2)
    app.open_aftersale(*SHOP, "R1", "AS-2", "refund", line_id="L2", at=T0 + 5 * H)
    return app, tmp_path / "reflow.duckdb"


def statement(app, db, at):
    return issue_statement(app, db, "S1", DAY, DAY, at=at, allow_empty=False)


def test_rc6_a_return_goes_to_the_supplier_of_the_shipped_lines_once(shipped):
    app, _ = shipped
    [rid] = app.request_return(*SHOP, "R1", "AS-1", at=T0 + 6 * H)
    assert app.request_return(*SHOP, "R1", "AS-1", at=T0 + 7 * H) == [rid]  # asked again: the same return
    s1 = next(a for a in allocations(app, "R1") if a.supplier_id == "S1")
    before = stored(app)
    with pytest.raises(DomainError, match="rule RC6: aftersale_id: AS-2 is a refund"):
        app.request_return(*SHOP, "R1", "AS-2", at=T0 + 7 * H)
    with pytest.raises(NotFound, match="aftersale_id"):
        app.request_return(*SHOP, "R1", "AS-9", at=T0 + 7 * H)
    with pytest.raises(DomainError, match="rule RC6: supplier_id"):
        app.answer_return("S2", rid, "accepted", at=T0 + 8 * H)
    with pytest.raises(DomainError, match="rule RC6: reason"):
        app.answer_return("S1", rid, "refused", at=T0 + 8 * H)
    assert stored(app) == before
    assert rid.startswith("R") and s1.allocation_id


def test_rc6_an_accepted_return_is_credited_once_on_the_next_statement_at_the_settled_price(shipped):
    app, db = shipped
    [rid] = app.request_return(*SHOP, "R1", "AS-1", at=T0 + 6 * H)
    app.set_price("S1", "a", Decimal("11.00"), effective_from=T0 + 2 * H, at=T0 + 2 * H)  # later: not settled at
    assert app.answer_return("S1", rid, "accepted", at=T0 + 9 * H) == "accepted"
    assert app.answer_return("S1", rid, "refused", reason="changed mind", at=T0 + 10 * H) == "duplicate"
    first = statement(app, db, T0 + 30 * H)
    assert [(c.return_id, c.qty, c.amount) for c in first.credits] == [(rid, 2, Decimal("20.00"))]
    assert (first.total, first.credits_total, first.net_total) == (Decimal("20.00"), Decimal("20.00"), Decimal("0.00"))
    second = statement(app, db, T0 + 31 * H)  # the same period again: the lines again, the credit not
    assert second.credits == () and second.total == Decimal("20.00") and second.net_total is None
    with ProjectionRunner(app, db) as runner:
        runner.catch_up()
    assert query(db, "SELECT statement_id, credits, net_total FROM statements ORDER BY issued_at") == [
        (first.statement_id, Decimal("20.0000"), Decimal("0.0000")), (second.statement_id, Decimal("0"), Decimal("20.0000"))]
    assert query(db, "SELECT return_id, status, credit, credited_on FROM returns") == [
        (rid, "accepted", Decimal("20.00"), first.statement_id)]


def test_rc6_a_refused_return_is_recorded_with_its_reason_and_credits_nothing(shipped):
    app, db = shipped
    [rid] = app.request_return(*SHOP, "R1", "AS-1", at=T0 + 6 * H)
    app.answer_return("S1", rid, "refused", reason="parcel opened", at=T0 + 9 * H)
    first = statement(app, db, T0 + 30 * H)
    assert first.credits == ()
    with ProjectionRunner(app, db) as runner:
        runner.catch_up()
    assert query(db, "SELECT status, reason, credit FROM returns") == [("refused", "parcel opened", None)]


def test_rc6_a_statement_of_credits_alone_is_not_empty(shipped):
    app, db = shipped
    [rid] = app.request_return(*SHOP, "R1", "AS-1", at=T0 + 6 * H)
    app.answer_return("S1", rid, "accepted", at=T0 + 9 * H)
    later = T0 + timedelta(days=5)
    only = issue_statement(app, db, "S1", later.date(), later.date(), at=later, allow_empty=False)
    assert only.lines == () and only.credits_total == Decimal("20.00") and only.net_total == Decimal("-20.00")


def test_rc6_the_same_goods_are_never_on_two_returns(shipped):
    app, _ = shipped
    [rid] = app.request_return(*SHOP, "R1", "AS-1", at=T0 + 6 * H)  # line L1 (the only line shipped)
    app.open_aftersale(*SHOP, "R1", "AS-3", "return", at=T0 + 7 * H)  # the whole order: L1 again
    before = stored(app)
    with pytest.raises(DomainError, match="rule RC6: aftersale_id: the lines of AS-3 are on another return"):
        app.request_return(*SHOP, "R1", "AS-3", at=T0 + 8 * H)
    assert stored(app) == before
    app.answer_return("S1", rid, "refused", reason="not received", at=T0 + 9 * H)
    [again] = app.request_return(*SHOP, "R1", "AS-3", at=T0 + 10 * H)  # a refused return frees them
    assert again != rid
    app.open_aftersale(*SHOP, "R1", "AS-4", "return", line_id="L1", at=T0 + 11 * H)
    app.close_aftersale(*SHOP, "R1", "AS-4", "withdrawn", at=T0 + 12 * H)
    with pytest.raises(DomainError, match="rule RC6: aftersale_id: AS-4 was closed withdrawn"):
        app.request_return(*SHOP, "R1", "AS-4", at=T0 + 13 * H)
