"""Property-based fuzzing of every inbound subject (CONTRACT sections 1 and 3): malformed, oversized,
wrongly encoded and hostile messages never crash reflow nor stop REFLOW_IN; every one that cannot
be accepted is in the dead letters with a one-line reason that echoes no consumer data (P2)."""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.inbound import handle
from adapters.messages import SUBJECTS
from tests.adapters.natsworld import SHOP, catalog, order_body
from tests.reliability.harness import Broker, Serve, Verdict, nats_server, open_store, run
from tests.reliability.hostile import KINDS, hostile
from tests.reliability.workload import PHONE, TOKEN

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
SUBJECT_NAMES = sorted(SUBJECTS)
NATS_LIMIT = 1024 * 1024 - 4096  # nats-server's max_payload (1 MiB) less headers: bigger is refused on publish


def check_reason(subject: str, error: str) -> None:
    assert error and "\n" not in error and len(error) <= 400, error
    assert error.startswith(subject.split(":")[0]) or error.startswith("unknown subject"), error
    assert not TOKEN.search(error.encode()) and not PHONE.search(error.encode()), f"P2: {error}"


@pytest.mark.timeout(3600)
def test_fuzz_every_subject_in_process_never_crashes_and_dead_letters_with_a_reason(app, scale, figures):
    for subject, body in catalog():
        assert not handle(app, f"reflow.in.{subject}", json.dumps(body).encode(), NOW).dead
    counts: Counter = Counter()

    @settings(max_examples=scale.fuzz_in_process, deadline=None, database=None,
              derandomize=scale.name == "quick", suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(SUBJECT_NAMES), st.sampled_from(KINDS), st.integers(0, 2**64 - 1))
    def one(subject: str, kind: str, seed: int) -> None:
        data, kind, must_be_dead = hostile(random.Random(seed), subject, kind)
        outcome = handle(app, subject, data, NOW)  # raising here = a poison message for serve
        counts["messages"] += 1
        counts[f"{kind}:{'dead' if outcome.dead else 'applied'}"] += 1
        if must_be_dead:
            assert outcome.dead, (subject, kind, data[:300])
        if outcome.dead:
            counts["dead"] += 1
            check_reason(subject, outcome.error)

    one()
    figures(scenario="fuzz in process", messages=counts["messages"], dead_letters=counts["dead"],
            crashes=0, kinds={k: n for k, n in sorted(counts.items()) if ":" in k})
    assert counts["dead"] > counts["messages"] * 0.8


@pytest.mark.nats
@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_fuzz_over_nats_every_bad_message_is_a_dead_letter_and_serve_goes_on(tmp_path, sqlite_store, scale,
                                                                             figures):
    rng = random.Random(int(os.environ.get("REFLOW_FUZZ_SEED", "7")))
    corpus: list[tuple[str, bytes, str, bool]] = []
    for n in range(scale.fuzz_over_nats):
        if n % 97 == 0:  # a subject nobody knows
            corpus.append((f"unknown.thing{n}", b'{"a": 1}', f"fz-{n}", True))
            continue
        subject = SUBJECT_NAMES[n % len(SUBJECT_NAMES)]
        data, _, dead = hostile(rng, subject, limit=NATS_LIMIT)
        corpus.append((subject.removeprefix("reflow.in."), data, f"fz-{n}", dead))
    server = nats_server(tmp_path).start()
    serve = Serve(server.url, sqlite_store, tmp_path / "data", batch=256)
    v = Verdict(inbound=len(corpus))

    async def story() -> None:
        async with Broker.connect(server.url) as b:
            serve.start()
            await b.wait_for_streams(serve.proc)
            await b.publish([(s, json.dumps(body).encode(), f"cat-{s}") for s, body in catalog()])
            await b.publish([(s, d, i) for s, d, i, _ in corpus], window=200, timeout=1200)
            await b.publish([("order.placed", json.dumps(order_body("AFTER-FUZZ")).encode(), "after-fuzz")])
            await b.settled(timeout=120 + len(corpus) / 20, proc=serve.proc)
            dead = {m.headers["Nats-Msg-Id"]: m for m in await b.read("REFLOW_DLQ")}
            v.dead_letters = len(dead)
            for subject, data, msg_id, must_be_dead in corpus:
                letter = dead.get(f"dlq-{msg_id}")
                if letter is None:
                    if must_be_dead:
                        v.losses += 1
                        v.problem(f"{msg_id} on {subject}: no dead letter")
                    continue
                if letter.data != data or letter.headers["Reflow-Subject"] != f"reflow.in.{subject}":
                    v.problem(f"{msg_id}: dead letter is not the original message")
                try:
                    check_reason(f"reflow.in.{subject}", letter.headers["Reflow-Error"])
                except AssertionError as e:
                    v.leaks += "P2" in str(e)
                    v.problem(f"{msg_id}: {e}")
            log = serve.log_text()
            v.leaks += len(TOKEN.findall(log)) + len(PHONE.findall(log))
            assert b"Traceback" not in log, "serve logged a traceback"
            app = open_store(serve.settings)
            try:
                assert app.order(*SHOP, "AFTER-FUZZ").status == "allocated", "serve did not go on"
            finally:
                app.close()
            assert serve.stop() == 0

    try:
        run(story(), timeout=3000)
    finally:
        serve.close()
        server.close()
    must = sum(1 for c in corpus if c[3])
    figures(scenario="fuzz over NATS", messages=len(corpus), must_be_dead=must, dead_letters=v.dead_letters,
            losses=v.losses, leaks=v.leaks, crashes=0)
    v.check()
    assert v.dead_letters >= must
