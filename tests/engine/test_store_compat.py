"""A store written before the issue-13 redesign still loads, verifies, projects, audits and takes
new commands (issue 13: "a store written by the current main must still load, verify and replay").

tests/fixtures/store_v1 was written by reflow at commit 63c52ed (the main before the redesign) with
every kind of event the redesign moved to another module: allocations, backlog entries, order
events, prices, shops, merchant settings, codes, the supplier index, a statement and a log anchor.
The test works on a copy; the fixture is never changed."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest

from adapters.outbound import TOPICS
from adapters.store import store_env
from engine.app import Reflow
from projections.rebuild import rebuild
from replay.audit import audit
from replay.verify import verify
from tests.world import SHOP, T0, line, place

FIXTURE = Path(__file__).parent.parent / "fixtures" / "store_v1"


@pytest.fixture
def old(tmp_path):
    shutil.copytree(FIXTURE, tmp_path / "data")
    env = store_env(f"sqlite:///{tmp_path}/data/events.db", tmp_path / "data")
    env["REFLOW_CIPHER_KEY"] = (tmp_path / "data" / "cipher.key").read_text().strip()
    app = Reflow(env)
    yield app, tmp_path / "data"
    app.close()


def test_a2_a_store_written_before_the_redesign_verifies_with_its_stored_topics(old):
    app, _ = old
    result = verify(app)
    assert result.ok and result.problem is None
    assert (result.events, result.chained, result.decisions) == (69, 69, 5)


def test_a_store_written_before_the_redesign_loads_every_aggregate(old):
    app, _ = old
    assert app.order(*SHOP, "V1").status == "shipped"
    assert app.order(*SHOP, "V2").status == "cancelled"
    assert app.order(*SHOP, "V3").status == "allocated"  # pulled after its link (L10)
    statuses = sorted(a.status for a in app.allocations_of(*SHOP, "V2"))
    assert statuses == ["intercepted", "intercepted"]
    assert sum(a.loss_risks for a in app.allocations_of(*SHOP, "V2")) == 1
    assert app.offer("S2", "O2").stock["a"] == 50
    # the bundle line of V1 knows its parts from the recorded decision (L4)
    v1 = app.order(*SHOP, "V1")
    assert v1.covered("L1") and v1.covered("L2")


def test_a_store_written_before_the_redesign_projects_and_audits(old):
    app, data = old
    rebuild(app, data / "reflow.duckdb", progress=False)
    with duckdb.connect(str(data / "reflow.duckdb"), read_only=True) as db:
        assert db.execute("SELECT count(*) FROM orders").fetchone() == (3,)
        assert db.execute("SELECT count(*) FROM allocations").fetchone()[0] >= 5
        assert db.execute("SELECT count(*) FROM statements").fetchone() == (1,)
    story = audit(app, *SHOP, "V2")
    assert story.decisions and story.entries


def test_a_store_written_before_the_redesign_takes_new_commands_and_publishes_old_events(old):
    app, _ = old
    assert place(app, "V9", line("L1", "SET"), at=T0 + timedelta(days=1)) == "allocated"
    assert verify(app).ok
    old_allocated = app.recorder.select_notifications(start=1, limit=1000, topics=TOPICS)
    assert {n.topic for n in old_allocated} >= {"engine.orders:Allocated", "engine.allocations:Allocated"}
