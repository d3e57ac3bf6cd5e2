"""Inbound wire messages (CONTRACT 1 and 3): decode, one-line dead-letter reasons, schemas."""

from __future__ import annotations

import copy
import json
from datetime import datetime
from decimal import Decimal

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.examples import BUYER, EXAMPLES
from adapters.messages import (
    MAX_MESSAGE_BYTES,
    SUBJECTS,
    AllocationCancel,
    BadMessage,
    OrderPlaced,
    decode,
    json_schemas,
    subject_of,
)

PLACED = "reflow.in.order.placed"


def body(subject: str, **changes: object) -> dict:
    b = copy.deepcopy(EXAMPLES[subject])
    b.update(changes)
    return b


def enc(obj: object) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode()


def bad(subject: str, data: bytes) -> str:
    with pytest.raises(BadMessage) as info:
        decode(subject, data)
    reason = info.value.reason
    assert "\n" not in reason and "\r" not in reason
    assert len(reason) <= 300
    assert str(info.value) == reason
    return reason


# --- valid messages ---------------------------------------------------------------------------


def test_every_subject_has_an_example():
    assert set(EXAMPLES) == set(SUBJECTS)


@pytest.mark.parametrize("subject", sorted(SUBJECTS))
def test_every_subject_decodes_its_example(subject):
    msg = decode(subject, enc(EXAMPLES[subject]))
    assert type(msg) is SUBJECTS[subject]
    assert subject_of(msg) == subject


def test_order_placed_is_typed():
    msg = decode(PLACED, enc(EXAMPLES[PLACED]))
    assert isinstance(msg, OrderPlaced)
    assert msg.placed_at == datetime.fromisoformat("2024-05-01T10:15:00+08:00")
    assert msg.placed_at.tzinfo is not None
    assert msg.buyer.name == BUYER["name"]
    assert msg.lines[0].qty == 2
    assert msg.lines[1].sku_id is None and msg.lines[1].merchant_code is None


def test_money_round_trip_is_exact():
    msg = decode(PLACED, enc(EXAMPLES[PLACED]))
    price = msg.lines[0].unit_price
    assert type(price) is Decimal
    assert str(price) == "19.90" and price == Decimal("19.90")
    assert msgspec.json.decode(msgspec.json.encode(msg))["lines"][0]["unit_price"] == "19.90"


def test_ratio_and_settings_decimals_are_decimal():
    rule = decode("reflow.in.stock.rule", enc(EXAMPLES["reflow.in.stock.rule"]))
    assert rule.ratio == Decimal("0.8") and type(rule.ratio) is Decimal
    s = decode("reflow.in.merchant.settings", enc(EXAMPLES["reflow.in.merchant.settings"]))
    assert s.split_tolerance == Decimal("0.05") and s.hold_amount_over == Decimal("2000.00")
    offer = decode("reflow.in.supplier.offer", enc(EXAMPLES["reflow.in.supplier.offer"]))
    assert offer.skus[1].channel_price == Decimal("6.50") and offer.skus[0].channel_price is None


def test_unknown_extra_fields_are_ignored():
    b = body(PLACED, future_field={"x": [1, 2]}, another="y")
    b["lines"][0]["colour_code"] = 7
    b["buyer"]["wechat"] = "abc"
    msg = decode(PLACED, enc(b))
    assert msg.order_id == EXAMPLES[PLACED]["order_id"]


def test_optional_fields_default_to_none():
    b = body(PLACED)
    del b["channel"], b["remark"]
    msg = decode(PLACED, enc(b))
    assert msg.channel is None and msg.remark is None


def test_allocation_cancel_by_id_alone():
    msg = decode("reflow.in.allocation.cancel", enc({"allocation_id": "al-1"}))
    assert isinstance(msg, AllocationCancel) and msg.order_id is None


def test_l6_product_level_link_has_no_sku_keys():
    b = body("reflow.in.link.set", mode="single")
    b["skus"] = [{"alternatives": b["skus"][0]["alternatives"][:1]}]
    msg = decode("reflow.in.link.set", enc(b))
    assert msg.skus[0].sku_id is None and msg.skus[0].merchant_code is None


def test_ratio_bounds_accepted():
    for ratio in ("0", "1", "1.00", "0.333"):
        decode("reflow.in.stock.rule", enc(body("reflow.in.stock.rule", ratio=ratio)))


# --- refused messages: one line, names the field ----------------------------------------------


def test_float_money_is_refused_naming_the_field():
    b = body(PLACED)
    b["lines"][0]["unit_price"] = 19.9
    reason = bad(PLACED, enc(b))
    assert reason.startswith(PLACED + ": ")
    assert "$.lines[0].unit_price" in reason


def test_int_money_and_negative_money_are_refused():
    b = body("reflow.in.supplier.price", price=7)
    assert "$.price" in bad("reflow.in.supplier.price", enc(b))
    b = body("reflow.in.supplier.price", price="-1.00")
    assert "$.price" in bad("reflow.in.supplier.price", enc(b))
    b = body("reflow.in.supplier.price", price="NaN")
    assert "$.price" in bad("reflow.in.supplier.price", enc(b))


def test_naive_datetime_is_refused():
    reason = bad(PLACED, enc(body(PLACED, placed_at="2024-05-01T10:15:00")))
    assert "$.placed_at" in reason


def test_missing_required_field_is_refused():
    b = body(PLACED)
    del b["lines"][1]["title"]
    reason = bad(PLACED, enc(b))
    assert "title" in reason and "$.lines[1]" in reason


def test_qty_zero_is_refused():
    b = body(PLACED)
    b["lines"][0]["qty"] = 0
    assert "$.lines[0].qty" in bad(PLACED, enc(b))


def test_component_qty_zero_is_refused():
    b = body("reflow.in.link.set")
    b["skus"][0]["alternatives"][0]["components"][0]["qty"] = 0
    assert "$.skus[0].alternatives[0].components[0].qty" in bad("reflow.in.link.set", enc(b))


def test_bad_platform_is_refused():
    assert "$.platform" in bad(PLACED, enc(body(PLACED, platform="amazon")))


def test_empty_lines_and_empty_ids_are_refused():
    assert "$.lines" in bad(PLACED, enc(body(PLACED, lines=[])))
    assert "$.order_id" in bad(PLACED, enc(body(PLACED, order_id="")))


def test_shop_id_must_be_a_subject_token():
    assert "$.shop_id" in bad(PLACED, enc(body(PLACED, shop_id="a.b")))


def test_ratio_above_one_is_refused():
    reason = bad("reflow.in.stock.rule", enc(body("reflow.in.stock.rule", ratio="1.5")))
    assert "$.ratio" in reason


def test_allocation_cancel_with_neither_form_is_refused():
    reason = bad(
        "reflow.in.allocation.cancel",
        enc({"platform": "douyin", "shop_id": "dy-1", "reason": "x"}),
    )
    assert "allocation_id" in reason and "order_id" in reason
    assert "shop_id" not in reason.split("missing", 1)[1]


def test_not_json_is_refused():
    reason = bad(PLACED, b"{not json")
    assert reason.startswith(PLACED + ": ")


def test_not_an_object_is_refused():
    assert "object" in bad(PLACED, b"[1, 2, 3]")
    assert "object" in bad(PLACED, b'"hello"')


def test_invalid_utf8_is_refused():
    reason = bad(PLACED, b'{"platform": "douyin", "x": "\xff\xfe"}')
    assert "UTF-8" in reason


def test_unknown_subject_is_refused():
    assert bad("reflow.in.x", b"{}") == "unknown subject reflow.in.x"
    assert len(bad("reflow.in.\n" + "y" * 5000, b"{}")) <= 300


def test_too_large_is_refused():
    data = b'{"pad": "' + b"x" * MAX_MESSAGE_BYTES + b'"}'
    assert "message too large" in bad(PLACED, data)


def test_multiline_huge_input_gives_one_short_line():
    data = b"{\n" + b"\n".join(b'"k%d": [' % i for i in range(5000))
    bad(PLACED, data)
    b = body(PLACED, platform="x\n" * 2000)
    assert bad(PLACED, enc(b)).endswith("- at `$.platform`")


def test_p2_reason_never_echoes_buyer_data():
    secret = "李秘密13900001111"
    cases = []
    for field in ("name", "phone", "address", "district"):
        b = body(PLACED)
        b["buyer"] = {**BUYER, field: secret * 100}  # too long
        cases.append(b)
        b = body(PLACED)
        b["buyer"] = {**BUYER, field: [secret]}  # wrong type
        cases.append(b)
    b = body(PLACED, remark=secret * 200)
    cases.append(b)
    b = body(PLACED)
    b["lines"][0]["unit_price"] = secret
    cases.append(b)
    for b in cases:
        reason = bad(PLACED, enc(b))
        assert "李" not in reason and "13900001111" not in reason


# --- schemas ----------------------------------------------------------------------------------


def test_schema_for_every_subject_is_json():
    schemas = json_schemas()
    assert set(schemas) == set(SUBJECTS)
    for subject, schema in schemas.items():
        text = json.dumps(schema)
        assert json.loads(text)["title"] == subject
        assert "$defs" in schema


def test_schema_says_money_is_a_string():
    placed = json_schemas()[PLACED]["$defs"]["OrderLine"]["properties"]["unit_price"]
    assert placed["type"] == "string" and "pattern" in placed


# --- nothing but BadMessage -------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
subjects = st.sampled_from(sorted(SUBJECTS))
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _only_bad_message(subject: str, data: bytes) -> None:
    try:
        decode(subject, data)
    except BadMessage as exc:
        assert "\n" not in exc.reason and len(exc.reason) <= 300


@FAST
@given(subjects, st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_bad_message(subject, data):
    _only_bad_message(subject, data)


@FAST
@given(subjects, json_values)
def test_arbitrary_json_raises_only_bad_message(subject, value):
    _only_bad_message(subject, enc(value))


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, prefix + (i,))


@FAST
@given(subjects, st.data(), json_values)
def test_example_with_one_field_replaced_raises_only_bad_message(subject, data, value):
    b = copy.deepcopy(EXAMPLES[subject])
    paths = [p for p in _paths(b) if p]
    path = data.draw(st.sampled_from(paths))
    target = b
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    _only_bad_message(subject, enc(b))
