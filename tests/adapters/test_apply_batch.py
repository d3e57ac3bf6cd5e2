"""serve's batch path in process: many messages, one write; repeats and bad messages inside a
batch behave exactly as they do one by one."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from adapters.serve import apply_batch, apply_each
from adapters.store import stored_ids
from engine import ids
from tests.adapters.natsworld import catalog, order_body
from tests.world import stored

NOW = datetime(2024, 5, 1, 3, 0, tzinfo=timezone.utc)


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
