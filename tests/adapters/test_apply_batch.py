"""serve's batch path in process: many messages, one write; repeats and bad messages inside a
batch behave exactly as they do one by one."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from adapters.inbound import ALREADY_APPLIED, APPLIED, handle
from adapters.serve import apply_batch, apply_each
from adapters.store import stored_ids
from engine import ids
from tests.adapters.natsworld import catalog, order_body
from tests.world import stored

NOW = datetime(2024, 5, 1, 3, 0, tzinfo=UTC)


def _msg(subject: str, body) -> tuple[str, bytes, datetime]:
    data = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
    return f"reflow.in.{subject}", data, NOW


def _world(app, stock: int = 100) -> None:
    outcomes, failure = apply_each(app, [_msg(s, b) for s, b in catalog(stock=stock)])
    assert failure is None and not any(o.dead for o in outcomes), outcomes


def test_stored_ids_finds_exactly_the_stored_aggregates(app):
    _world(app)
    apply_batch(app, [_msg("order.placed", order_body("A-1"))])
    known = ids.order_id("douyin", "dy-880123", "A-1")
    unknown = {ids.order_id("douyin", "dy-880123", f"none-{n}") for n in range(700)}  # > one chunk
    assert stored_ids(app, unknown | {known}) == {known}
    assert stored_ids(app, set()) == set()


def test_batch_with_repeats_and_bad_messages_equals_one_by_one(app, tmp_path):
    """The same order twice in one batch, an order stored by an earlier batch, a malformed and a
    refused message among good ones: the outcome list and the stored orders match one-by-one."""
    _world(app, stock=3)
    first, failure = apply_batch(app, [_msg("order.placed", order_body("B-0"))])
    assert failure is None and not first[0].dead
    before = stored(app)
    items = [
        _msg("order.placed", order_body("B-1")),
        _msg("order.placed", order_body("B-1")),        # repeat inside the batch
        _msg("order.placed", order_body("B-0")),        # repeat of an earlier batch
        _msg("order.placed", b"{not json"),             # malformed: dead letter
        _msg("order.placed", order_body("B-2", qty=0)),  # refused by the wire types
        _msg("order.cancelled", {"platform": "douyin", "shop_id": "dy-880123", "order_id": "B-9",
                                 "cancelled_at": "2024-05-01T11:00:00+08:00"}),
        _msg("order.placed", order_body("B-3")),
        _msg("order.placed", order_body("B-4")),        # out of stock after B-0, B-1, B-3
    ]
    outcomes, failure = apply_batch(app, items)
    assert failure is None
    assert [o.dead for o in outcomes] == [False, False, False, True, True, False, False, False]
    assert "lines[0].qty" in outcomes[4].error
    statuses = {o: app.order("douyin", "dy-880123", o).status for o in ("B-0", "B-1", "B-3", "B-4")}
    assert statuses == {"B-0": "allocated", "B-1": "allocated", "B-3": "allocated", "B-4": "unrouted"}
    assert app.order("douyin", "dy-880123", "B-9").status == "cancelled"
    assert len(app.allocations_of("douyin", "dy-880123", "B-1")) == 1
    assert stored(app) > before


def _seq(items, start: int):
    return [(s, d, at, start + i) for i, (s, d, at) in enumerate(items)]


def test_i3_a_redelivered_batch_is_acknowledged_not_applied_again(app):
    """The REFLOW_IN sequence is stored with the batch: an old review delivered again after
    newer messages (a lost ack, a crash before the ack) changes nothing."""
    _world(app)
    key = {"platform": "douyin", "shop_id": "dy-880123", "order_id": "RV-1"}
    review = _msg("order.review", {**key, "under_review": True, "reason": "risk"})
    clear = _msg("order.review", {**key, "under_review": False})
    first, failure = apply_batch(app, _seq([_msg("order.placed", order_body("RV-1")), review, clear], 10))
    assert failure is None and not any(o.dead for o in first)
    assert app.position("REFLOW_IN") == 12
    allocations = len(app.allocations_of(*key.values()))
    again, failure = apply_batch(app, _seq([review], 11))  # seq 11 comes back after 12
    assert failure is None and again == [ALREADY_APPLIED] and again[0] is ALREADY_APPLIED
    assert app.order(*key.values()).status == "allocated"
    assert len(app.allocations_of(*key.values())) == allocations
    later, _ = apply_batch(app, _seq([review, clear], 11) + _seq([_msg("order.placed", order_body("RV-2"))], 13))
    assert [o is ALREADY_APPLIED for o in later] == [True, True, False]
    assert app.order("douyin", "dy-880123", "RV-2").status == "allocated"
    assert app.position("REFLOW_IN") == 13


def test_a_batch_whose_position_was_stored_meanwhile_is_not_written_twice(app):
    """Two writers with the same batch (a second serve by mistake): the store refuses the second
    (its position is not past the stored one), so nothing is applied twice."""
    from engine.errors import Conflict

    _world(app)
    items = _seq([_msg("order.placed", order_body("DUP-1"))], 5)
    apply_batch(app, items)
    with pytest.raises(Conflict):
        app.run_batch([lambda: handle(app, *_msg("order.placed", order_body("DUP-2")))],
                      position=("REFLOW_IN", 5))
    assert app.order("douyin", "dy-880123", "DUP-2") is None


def test_dead_letters_are_handed_over_before_the_batch_is_written(app):
    """A crash between the write and the dead letters' publication must not lose them: serve
    gets them first, and a failure to store them stops the write."""
    _world(app)
    calls = []

    def fail(dead):
        calls.append(dead)
        raise ConnectionError("NATS away")

    items = _seq([_msg("order.placed", order_body("G-1")), _msg("order.placed", b"{bad")], 20)
    outcomes, failure = apply_batch(app, items, fail)
    assert isinstance(failure, ConnectionError) and outcomes[:1] == [APPLIED]
    assert app.position("REFLOW_IN") == 20  # the good message alone was written, one by one
    assert [i for i, _ in calls[0]] == [1]


def test_two_streams_on_one_store_keep_positions_of_their_own(app):
    """Two serves share a PostgreSQL store, each with its own REFLOW_IN: stream B's sequence 5
    after stream A's 100 is new, not 'applied before'."""
    _world(app)
    a, _ = apply_batch(app, _seq([_msg("order.placed", order_body("SA-1"))], 100), source="REFLOW_IN@a")
    b, _ = apply_batch(app, _seq([_msg("order.placed", order_body("SB-1"))], 5), source="REFLOW_IN@b")
    assert a[0] is not ALREADY_APPLIED and b[0] is not ALREADY_APPLIED
    assert app.order("douyin", "dy-880123", "SB-1").status == "allocated"
    assert (app.position("REFLOW_IN@a"), app.position("REFLOW_IN@b")) == (100, 5)
