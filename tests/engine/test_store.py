"""The event store: msgspec events round-trip exactly; consumer data is sealed at rest (P2)."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from uuid import uuid4

import psycopg
from eventsourcing.persistence import JSONTranscoder

from engine.allocations import Allocated, AllocLine
from engine.base import MsgspecMapper, decode_event
from engine.order_events import OrderRouted
from engine.policy import CandidateFacts, ComponentFacts, LineFacts, RoutingInput, decide
from engine.privacy import Recipient, mask
from engine.values import Buyer
from tests.world import BUYER, SHOP, alt, comp, line, link, offer, place, sku, supplier


def test_mapper_round_trips_decimal_datetime_and_nested_structs_exactly():
    at = datetime(2026, 11, 2, 9, 30, 15, 123456, tzinfo=timezone(timedelta(hours=8)))
    facts = ComponentFacts(supplier_id="S1", offer_id="O1", supplier_sku_id="a", qty=2, need=4,
                           supplier_active=True, on_shelf=True, available=7,
                           unit_cost=Decimal("19.90"), score=88)
    inp = RoutingInput(at=at, province="浙江省", split_tolerance=Decimal("0.050"), lines=(
        LineFacts(line_id="L1", qty=2, link_version=3, matched_by="sku",
                  candidates=(CandidateFacts(index=0, components=(facts,), priority=None),)),))
    event = OrderRouted(originator_id=uuid4(), originator_version=7, at=at, input=inp,
                        decision=decide(inp), allocations=(), trigger="placed")
    mapper = MsgspecMapper(transcoder=JSONTranscoder())
    back = mapper.to_domain_event(mapper.to_stored_event(event))
    assert back == event
    cost = back.input.lines[0].candidates[0].components[0].unit_cost
    assert isinstance(cost, Decimal) and str(cost) == "19.90"  # not "19.9", not a str
    assert back.at == at and back.at.utcoffset() == timedelta(hours=8)
    assert isinstance(back.decision.lines[0].candidates[0].cost, Decimal)


def test_stored_events_decode_with_their_own_type(app):
    supplier(app, "S1")
    offer(app, "S1", "O1", {"a": 5}, price="7.35")
    link(app, "P1", sku("K1", alt(comp("S1", "O1", "a"))))
    place(app, "X1", line("L1", "P1", price="29.90"))
    notes = app.recorder.select_notifications(start=1, limit=1000)
    events = [decode_event(n.topic, n.state) for n in notes]
    [allocated] = [e for e in events if isinstance(e, Allocated)]
    assert allocated.lines[0] == AllocLine(line_id="L1", offer_id="O1", supplier_sku_id="a", title="Offer O1",
                                           spec="spec a", qty=1, unit_cost=Decimal("7.35"),
                                           amount=Decimal("7.35"), product_id="P1", link_version=1)


def test_p1_supplier_sees_masked_recipient_only():
    r = mask(BUYER)
    assert r == Recipient(name="张**", phone="138****5678", province="浙江省", city="杭州市",
                          district="西湖区", address="****")
    assert mask(Buyer(name="王五", phone="+86 139-0000-2222", province="p", city="c", district="d",
                      address="x")).phone == "861****2222"


def test_p1_allocation_carries_masked_recipient_and_a_token(app):
    supplier(app, "S1")
    offer(app, "S1", "O1", {"a": 5})
    link(app, "P1", sku("K1", alt(comp("S1", "O1", "a"))))
    place(app, "X1", line("L1", "P1"))
    [alloc] = app.allocations_of(*SHOP, "X1")
    [created] = [e for e in app.events.get(alloc.id) if isinstance(e, Allocated)]
    assert created.recipient.name == "张**" and created.recipient.phone == "138****5678"
    assert created.recipient_token.startswith("rt_") and len(created.recipient_token) == 35


def _raw_store_bytes(app, store_url: str) -> bytes:
    if store_url.startswith("sqlite"):
        path = store_url.removeprefix("sqlite:///")
        with sqlite3.connect(path) as db:
            rows = db.execute("SELECT topic, state FROM stored_events").fetchall()
    else:
        env = app.env
        with psycopg.connect(host=env.get("POSTGRES_HOST"), port=env.get("POSTGRES_PORT"),
                             dbname=env.get("POSTGRES_DBNAME"), user=env.get("POSTGRES_USER")) as db:
            schema = env.get("POSTGRES_SCHEMA") or "public"
            rows = db.execute(f'SELECT topic, state FROM "{schema}".reflow_events').fetchall()
    return b"\n".join(bytes(t.encode() if isinstance(t, str) else t) + bytes(s) for t, s in rows)


def test_p2_consumer_data_is_encrypted_at_rest(app, store_url):
    supplier(app, "S1")
    offer(app, "S1", "O1", {"a": 5})
    link(app, "P1", sku("K1", alt(comp("S1", "O1", "a"))))
    place(app, "X1", line("L1", "P1"), remark="放门口 文三路100号")
    raw = _raw_store_bytes(app, store_url)
    assert b"Offer O1" in raw  # we are reading the right bytes
    for secret in (BUYER.name, BUYER.phone, BUYER.address, "文三路"):
        assert secret.encode() not in raw, secret
        assert secret.encode("unicode_escape") not in raw, secret
    assert app.buyer(*SHOP, "X1") == BUYER  # and the engine can still read it


def test_cached_aggregate_copies_do_not_share_mutable_state(app):
    """The engine keeps aggregates in the library's cache; a command's copy must not leak back."""
    import copy

    from engine.ids import pricebook_id
    from engine.merchants import PriceBook

    supplier(app, "S1")
    offer(app, "S1", "O1", {"a": 5}, price="7.00")
    original = app.offer("S1", "O1")
    clone = copy.deepcopy(original)
    clone.stock["a"] = 0
    clone.reserved["a"] = 3
    assert (original.stock["a"], original.reserved.get("a", 0)) == (5, 0)
    book = app.load(PriceBook, pricebook_id("S1"))
    twin = copy.deepcopy(book)
    when = book.prices[("a", "")][0][0]
    twin.set_price(when, "S1", "a", Decimal("1.00"), when, None)
    assert len(book.prices[("a", "")]) == 1 and len(twin.prices[("a", "")]) == 2
