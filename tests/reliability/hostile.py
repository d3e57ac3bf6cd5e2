"""Hostile inbound messages for every subject: malformed, oversized, wrongly encoded, ill-typed,
constraint-breaking, deeply nested, and (``decodable``) well-formed but extreme or unknown.

``hostile(rng, subject)`` gives ``(data, kind, must_be_dead)``: for every kind but ``decodable``
the message cannot be accepted (the generator checks that with ``decode``), so it must end in the
dead letters with a reason. Order bodies carry canary consumer data (``Zq`` tokens), so a leak of
a dead letter's reason or a log line is found by the same scan as the order flow's.
"""

from __future__ import annotations

import copy
import json
import random
from typing import Any

import msgspec

from adapters.examples import EXAMPLES
from adapters.messages import MAX_MESSAGE_BYTES, SUBJECTS, BadMessage, decode

KINDS = ("not_json", "bad_utf8", "oversized", "not_an_object", "missing", "wrong_type", "constraint",
         "deep", "decodable")
HOSTILE_STRINGS = [
    "", " ", "a b", "dy.880123", "*", ">", "reflow.in.>", "\x00", "\u202e\u202d", "\u2028\n\r",
    "'; DROP TABLE stored_events; --", "../../etc/passwd", "%s%n%x", "{{7*7}}", "🦄" * 70, "x" * 600,
    "NaN", "-1", "1e309", "\ud800",
]
BAD_TIMES = ["yesterday", "2024-05-01T10:15:00", "2024-13-01T00:00:00+08:00", "9999-12-31T23:59:59+00:00",
             "0001-01-01T00:00:00+00:00", "2024-05-01T10:15:00+25:00", 1714529700]
EXTREME = [0, -1, 2**63, -(2**63) - 1, 10**30, 1.5, 1e308, True, None, "1", [], {}]


def canary_buyer(rng: random.Random) -> dict[str, str]:
    return {"name": f"顾Zq{rng.getrandbits(32):08x}", "phone": f"19{rng.randrange(10**9):09d}",
            "province": "浙江省", "city": "杭州市", "district": "西湖区",
            "address": f"幸福路 Zq{rng.getrandbits(32):08x} 号"}


def base(rng: random.Random, subject: str) -> dict[str, Any]:
    body = copy.deepcopy(EXAMPLES[subject])
    if "buyer" in body:
        body["buyer"] = canary_buyer(rng)
    if "remark" in body:
        body["remark"] = f"请放门口 Zq{rng.getrandbits(32):08x}"
    if "order_id" in body:
        body["order_id"] = f"FZ-{rng.getrandbits(40):010x}"
    return body


def _fields(subject: str) -> list[msgspec.inspect.Field]:
    return list(msgspec.inspect.type_info(SUBJECTS[subject]).fields)


def _dead(subject: str, data: bytes) -> bool:
    try:
        decode(subject, data)
    except BadMessage:
        return True
    return False


def enc(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass")


def hostile(rng: random.Random, subject: str, kind: str | None = None,
            limit: int = MAX_MESSAGE_BYTES + 4096) -> tuple[bytes, str, bool]:
    """One hostile body for ``subject``. ``limit`` caps the size (NATS refuses more than its
    max_payload, so the over-NATS corpus keeps below it)."""
    for _ in range(50):
        k = kind or rng.choice(KINDS)
        data = _make(rng, subject, k, limit)
        if data is None:
            continue
        dead = _dead(subject, data)
        if k == "decodable" or dead:
            return data, k, dead
    raise AssertionError(f"no {kind} body for {subject}")


def _make(rng: random.Random, subject: str, kind: str, limit: int) -> bytes | None:
    body = base(rng, subject)
    fields = _fields(subject)
    required = [f for f in fields if f.required] or fields
    if kind == "not_json":
        data = enc(body)
        return data[: rng.randrange(1, len(data) - 1)] if rng.random() < 0.7 else rng.randbytes(rng.randint(1, 64))
    if kind == "bad_utf8":
        data = enc(body)
        at = rng.randrange(1, len(data) - 1)
        return data[:at] + rng.choice([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"]) + data[at:]
    if kind == "oversized":
        size = rng.choice([MAX_MESSAGE_BYTES + 1, 200_000, 600_000]) if limit > MAX_MESSAGE_BYTES else \
            rng.choice([100_000, 400_000, min(900_000, limit - 2000)])
        f = rng.choice(fields)
        body[f.name] = "x" * size
        data = enc(body)
        return data if len(data) <= limit else None
    if kind == "not_an_object":
        return enc(rng.choice([[body], "order", 42, None, True, [], 1.5]))
    if kind == "missing":
        body.pop(rng.choice(required).name, None)
        return enc(body)
    if kind == "wrong_type":
        f = rng.choice(required)
        body[f.name] = rng.choice([{"hostile": [1, 2]}, "not-a-thing", 12345, [1, 2], 1.25, False])
        return enc(body)
    if kind == "constraint":
        f = rng.choice(fields)
        name = f.name
        if name.endswith("_at") or name in ("effective_from", "at", "expires_at"):
            body[name] = rng.choice(BAD_TIMES)
        elif name in ("lines", "skus", "components"):
            body[name] = [] if rng.random() < 0.5 else (body.get(name) or [{}]) * 1001
        elif name in ("price", "ratio", "split_tolerance", "hold_amount_over"):
            body[name] = rng.choice([19.9, "-1.00", "1e3", "NaN", "", "0.123456789", "abc"])
        else:
            body[name] = rng.choice(HOSTILE_STRINGS + EXTREME)
        if name == "buyer":
            body["buyer"] = {**canary_buyer(rng), rng.choice(["name", "phone", "address"]): rng.choice(["", "x" * 600, 7])}
        return enc(body)
    if kind == "deep":
        depth = rng.choice([100, 1000, 50_000])
        value = "[" * depth + "]" * depth
        f = rng.choice(fields)
        data = enc(body)
        marker = f'"{f.name}": '
        at = data.find(marker.encode())
        if at < 0:
            return data[:-1] + f', "{f.name}": {value}}}'.encode()
        return data[: at + len(marker)] + value.encode() + b', "_was": ' + data[at + len(marker):]
    if kind == "decodable":  # well-formed, values at the edges, references to nothing
        for f in fields:
            if f.name in ("order_id", "allocation_id", "aftersale_id", "offer_id", "product_id",
                          "supplier_sku_id", "merchant_id", "code"):
                body[f.name] = rng.choice(["'; DROP TABLE x; --", "ünïcødé-" + "漢" * 100, "A" * 128,
                                           f"id-{rng.getrandbits(64):x}", "../x", "%00"])
            elif f.name.endswith("_at") or f.name in ("effective_from", "at"):
                body[f.name] = rng.choice(["2000-01-01T00:00:00+14:00", "2099-12-31T23:59:59-12:00",
                                           "2024-02-29T23:59:60+08:00", "2024-05-01T10:15:00.123456789+08:00"])
            elif f.name in ("qty", "stock", "min_stock"):
                body[f.name] = rng.choice([1, 1_000_000, 1_000_000_000])
        if "lines" in body:
            for line in body["lines"]:
                line["qty"] = rng.choice([1, 1_000_000])
                line["unit_price"] = rng.choice(["0", "999999999999.99999999", "0.00000001"])
                line["title"] = rng.choice(HOSTILE_STRINGS[:12]) or "t"
        return enc(body)
    raise ValueError(kind)
