"""Rule A2 (tamper evidence) and RT6 (decisions reproducible): `replay.verify` over stored history."""

from __future__ import annotations

import msgspec
import pytest

from engine.app import Reflow
from engine.base import chain_digest, decode_event, encode_event
from engine.order_events import OrderRouted
from replay.verify import Anchor, parse_head, verify
from tests.world import BUYER, SHOP, T0, line

LATER = T0.replace(hour=20)


def fresh(app) -> Reflow:
    """Another application on the same store (no cached aggregates), as a second process would be."""
    return Reflow({**dict(app.env), "REFLOW_CIPHER_KEY": app._cipher_key})


def last_of_its_aggregate(log, topic_suffix: str):
    notes = log.notifications()
    last = {}
    for n in notes:
        last[n.originator_id] = n
    return [n for n in last.values() if n.topic.endswith(topic_suffix)]


def test_A2_reencoding_every_stored_event_gives_its_stored_bytes_and_chain(history, log):
    """The chain digest computed when an event is written equals the one computed from the stored
    bytes: msgspec re-encoding of a decoded event is byte-identical for every event type we store."""
    previous = {}
    topics = set()
    for n in log.notifications():
        event = decode_event(n.topic, n.state)
        assert encode_event(event) == n.state, n.topic
        assert event.prev == (chain_digest(previous[n.originator_id]) if n.originator_id in previous else None)
        previous[n.originator_id] = event
        topics.add(n.topic.rsplit(":", 1)[1])
    assert {"OrderPlaced", "OrderRouted", "Allocated", "StockReserved", "TrackingUploaded", "OrderShipped",
            "InterceptRequested", "AllocationCancelled", "InterceptAnswered", "LossRiskRecorded",
            "AftersaleOpened", "AftersaleClosed", "LinesParked", "LinkSet", "PriceSet"} <= topics


def test_A2_RT6_verify_passes_on_intact_history_and_records_an_anchor(history):
    result = verify(history)
    assert result.ok, result.problem.line()
    assert result.events == history.recorder.max_notification_id() - 1  # the anchor came after
    assert result.chained == result.events and result.legacy == 0
    assert result.decisions >= 14
    assert result.anchored
    again = verify(fresh(history))
    assert again.ok and again.anchors == 1 and again.anchored


@pytest.mark.parametrize("what", ["value", "tolerated"])
def test_A2_a_flipped_byte_is_named(history, log, what):
    [victim] = [n for n in log.notifications("OrderRouted")][:1]
    state = victim.state
    # a changed digit is another value; a changed key is ignored by the decoder (default used):
    # both must be caught
    # a changed year is another valid value (caught by the next event's link); a changed key is
    # ignored by the decoder, which then misses a required field: both are named at the victim
    offset = state.index(b'"at":"') + 9 if what == "value" else state.index(b'"trigger"') + 2
    log.flip_byte(victim.id, offset)
    result = verify(history)
    assert not result.ok
    p = result.problem
    assert (p.notification_id, p.topic, p.originator_id, p.version) == (
        victim.id, victim.topic, victim.originator_id, victim.originator_version)
    assert "altered" in p.what
    assert not result.anchored


def test_A2_a_deleted_event_is_named(history, log):
    order_events = [n for n in log.notifications() if n.originator_id == history.order(*SHOP, "INTERCEPT").id]
    victim = order_events[1]  # its first routing decision; later events of the order follow
    log.delete(victim.id)
    p = verify(history).problem
    assert p is not None
    if log.sqlite:  # ids are contiguous: the hole itself is named
        assert f"notification {victim.id} is missing" in p.what
    else:  # the order's next event no longer follows v2
        nxt = order_events[2]
        assert (p.notification_id, p.originator_id, p.version) == (nxt.id, nxt.originator_id, 3)
        assert "v2..v2 are missing" in p.what


def test_A2_deleting_an_aggregates_last_event_is_caught_by_the_anchor(history, log):
    assert verify(history).anchored
    [*_, victim] = [n for n in last_of_its_aggregate(log, "") if not n.topic.endswith("LogAnchored")]
    log.delete(victim.id)
    p = verify(history).problem
    assert p is not None
    if log.sqlite:  # the hole in the ids shows first
        assert f"notification {victim.id} is missing" in p.what
    else:  # the anchor names the stretch of the log it covers
        assert "no longer matches the anchor" in p.what and p.notification_id >= victim.id


def test_A2_removing_the_newest_events_before_an_anchor_is_caught(history, log):
    """The last events of their aggregates, and of the log up to the newest anchor."""
    assert verify(history).anchored
    history.place_order(*SHOP, "LATER", LATER, BUYER, [line("L1", "P1")])
    assert verify(history).anchored
    *_, before, anchor = log.notifications()
    later = history.order(*SHOP, "LATER").id
    for n in log.notifications():
        if n.originator_id == later or n.id == before.id:
            log.delete(n.id)
    p = verify(history).problem
    assert p is not None
    assert ("is missing" if log.sqlite else "no longer matches the anchor") in p.what


def test_A2_an_event_moved_within_its_aggregate_is_named(history, log):
    order_events = [n for n in log.notifications() if n.originator_id == history.order(*SHOP, "INTERCEPT").id]
    a, b = order_events[2], order_events[3]
    log.swap_positions(a.id, b.id)
    p = verify(history).problem
    assert p is not None
    assert (p.notification_id, p.originator_id) == (a.id, a.originator_id)
    assert p.version == b.originator_version and "reordered" in p.what


def test_A2_events_of_different_aggregates_swapped_are_caught_by_the_anchor(history, log):
    assert verify(history).anchored
    notes = log.notifications()
    # two neighbours from different aggregates whose own orders survive the swap
    a, b = next((x, y) for x, y in zip(notes, notes[1:])
                if x.originator_id != y.originator_id and x.originator_version > 1 and y.originator_version > 1)
    log.swap_positions(a.id, b.id)
    p = verify(history).problem
    assert p is not None and "no longer matches the anchor" in p.what


def test_A2_a_removed_chain_digest_is_named(history, log):
    victim = next(n for n in log.notifications("OrderRouted") if n.originator_version > 1)
    event = decode_event(victim.topic, victim.state)
    legacy = encode_event(event).replace(f',"prev":"{event.prev}"'.encode(), b"")
    log.set_state(victim.id, legacy)
    p = verify(history).problem
    assert p is not None and p.notification_id == victim.id


def test_A2_history_stored_before_the_chain_still_verifies_and_continues_the_chain(history, log):
    """Events without `prev` (written before the chain existed) are accepted; new events chain on."""
    for n in log.notifications():
        event = decode_event(n.topic, n.state)
        legacy = encode_event(msgspec.structs.replace(event, prev=None)).replace(b',"prev":null', b"", 1)
        log.set_state(n.id, legacy)
    old = fresh(history)
    result = verify(old, anchor=False)
    assert result.ok, result.problem.line()
    assert result.legacy == result.events and result.chained == 0
    old.cancel_order(*SHOP, "TWO", at=LATER)
    result = verify(old)
    assert result.ok, result.problem.line()
    assert result.chained > 0
    assert decode_event(*last_state(log, "OrderCancelled")).prev is not None


def test_RT6_verify_names_a_decision_the_policy_would_not_make(history, log):
    """A recorded decision rewritten consistently (valid bytes, the order's last event) is still
    caught: re-running the policy on its recorded input disagrees."""
    victim = next(n for n in last_of_its_aggregate(log, "OrderRouted")
                  if any(len(line.candidates) > 0 for line in decode_event(n.topic, n.state).decision.lines))
    event: OrderRouted = decode_event(victim.topic, victim.state)
    lines = tuple(msgspec.structs.replace(d, chosen=None, unroutable="out_of_stock") for d in event.decision.lines)
    forged = msgspec.structs.replace(event, decision=msgspec.structs.replace(event.decision, lines=lines))
    log.set_state(victim.id, encode_event(forged))
    p = verify(history, anchor=False).problem
    assert p is not None and p.notification_id == victim.id
    assert p.what.startswith("rule RT6") and "recorded unroutable (out_of_stock)" in p.what


# -- helpers ------------------------------------------------------------------------------------


def last_state(log, suffix):
    n = log.notifications(suffix)[-1]
    return n.topic, n.state


def test_A2_chain_stays_whole_when_a_batched_command_is_taken_back(app):
    """A refused command in a batch is undone after it touched an aggregate an earlier command of the
    batch changed; the next event of that aggregate links to the kept one, not to the stored one."""
    from tests.world import alt, comp, link, offer, place, sku, supplier

    supplier(app, "S1")
    offer(app, "S1", "O1", {"a": 10})
    link(app, "P1", sku("K1", alt(comp("S1", "O1", "a"))))
    results = app.run_batch([
        lambda: place(app, "X1", line("L1", "P1")),
        lambda: app.cancel_allocations(*SHOP, ["X1", "NOPE"], at=LATER),  # X1 stopped, then refused
        lambda: place(app, "X2", line("L1", "P1")),
    ])
    assert results[0] == "allocated" and isinstance(results[1], Exception) and results[2] == "allocated"
    result = verify(app, anchor=False)
    assert result.ok, result.problem.line()


def test_A2_a_head_kept_outside_catches_a_rewritten_chain(history, log):
    """Whoever can write the store can rewrite an event, every digest after it and the anchors;
    the head printed by an earlier run and kept elsewhere still tells."""
    first = verify(history, anchor=False)
    kept = parse_head(f"{first.up_to}:{first.head}")
    assert verify(history, anchor=False, expect=kept).ok
    victim = log.notifications("OrderPlaced")[0]
    event = decode_event(victim.topic, victim.state)
    forged = msgspec.structs.replace(event, channel="forged")
    log.set_state(victim.id, encode_event(forged))
    # a thorough forger also rewrites every later link of that aggregate
    previous = forged
    for n in log.notifications():
        if n.originator_id == victim.originator_id and n.originator_version > victim.originator_version:
            previous = msgspec.structs.replace(decode_event(n.topic, n.state), prev=chain_digest(previous))
            log.set_state(n.id, encode_event(previous))
    assert verify(history, anchor=False).ok  # the chain alone cannot tell
    p = verify(history, anchor=False, expect=kept).problem
    assert p is not None and "an anchor you kept" in p.what and p.notification_id == first.up_to
    with pytest.raises(ValueError, match="--expect-head"):
        parse_head("12:abc")
    assert Anchor(1, "0" * 64).events is None


def test_A2_an_event_stored_before_a_field_was_added_still_links(history, log):
    """An event stored by an older version of its type (without a field added since with a default)
    is not what encoding it again gives; the chain is over stored bytes, so it stays whole, and the
    next event written after loading it links to its stored bytes."""
    [alloc] = [a for a in history.allocations_of(*SHOP, "TWO") if a.supplier_id == "S2"]
    [victim] = [n for n in log.notifications("Allocated") if n.originator_id == alloc.id]
    assert victim.originator_version == alloc.version  # the allocation's last event
    older = victim.state.replace(b',"trigger":"placed"', b"")
    assert older != victim.state
    log.set_state(victim.id, older)
    result = verify(history, anchor=False)
    assert result.ok and result.noncanonical == 1
    later = fresh(history)  # loads the allocation from the store
    assert later.upload_tracking("S2", alloc.allocation_id, "YTO", "YT7777777777", at=LATER) == "tracked"
    result = verify(later, anchor=False)
    assert result.ok, result.problem.line()
