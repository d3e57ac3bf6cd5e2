"""Business rules are checked once, in the engine; a message that breaks one is dead-lettered with
one line naming the field and the rule, and changes nothing (CONTRACT sections 1 and 3)."""

from __future__ import annotations

import copy
import json
from datetime import timedelta

import pytest

from adapters.examples import EXAMPLES
from adapters.inbound import handle
from tests.world import EARLIER, OTHER_BUYER, SHOP, T0, allocations, alt, comp, line, link, offer, place, sku, stored
from tests.world import supplier as a_supplier


@pytest.fixture
def app(memory_app):
    return memory_app


def refused(app, subject: str, body: dict) -> str:
    before = stored(app)
    outcome = handle(app, subject, json.dumps(body, ensure_ascii=False).encode(), T0)
    assert outcome.dead and stored(app) == before
    assert "\n" not in outcome.error
    return outcome.error


def example(subject: str) -> dict:
    return copy.deepcopy(EXAMPLES[subject])


def test_l9_duplicate_line_ids_are_dead_lettered_naming_the_line(app):
    b = example("reflow.in.order.placed")
    b["lines"][1]["line_id"] = b["lines"][0]["line_id"]
    reason = refused(app, "reflow.in.order.placed", b)
    assert reason.startswith("reflow.in.order.placed: lines[1].line_id:") and "twice" in reason


def test_l6_product_level_link_entry_must_be_alone(app):
    b = example("reflow.in.link.set")
    b["skus"].append({"alternatives": b["skus"][0]["alternatives"]})
    assert "rule L6: skus[1]" in refused(app, "reflow.in.link.set", b)


def test_l7_item_code_has_one_component(app):
    b = example("reflow.in.code.registered")
    b["kind"], b["components"] = "item", b["components"] * 2
    assert "rule L7: components: an item code maps exactly one component" in refused(
        app, "reflow.in.code.registered", b)


def test_i8_too_late_needs_its_tracking(app):
    a_supplier(app, "S1")
    offer(app, "S1", "O1", {"a": 10})
    link(app, "P1", sku("K1", alt(comp("S1", "O1", "a"))), at=EARLIER)
    place(app, "X1", line("L1", "P1"))
    app.change_address(*SHOP, "X1", OTHER_BUYER, at=T0 + timedelta(minutes=5))
    [stopped] = [a for a in allocations(app, "X1") if a.status == "intercepted"]
    body = {"supplier_id": "S1", "allocation_id": stopped.allocation_id, "outcome": "too_late", "carrier": "SF",
            "answered_at": (T0 + timedelta(minutes=9)).isoformat()}
    assert "rule I8: outcome too_late requires tracking_no" in refused(app, "reflow.in.intercept.answered", body)
