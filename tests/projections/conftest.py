"""Fixtures for projection tests: a seeded engine app (SQLite and PostgreSQL), DuckDB helpers."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from eventsourcing.cipher import AESCipher

from adapters.store import ensure_store, store_env
from engine.app import Reflow


def make_app(store_url: str, tmp_path: Path, key: str | None = None) -> Reflow:
    env = store_env(store_url, tmp_path)
    ensure_store(env)
    env["REFLOW_CIPHER_KEY"] = key or AESCipher.create_key(32)
    return Reflow(env)


@pytest.fixture
def sqlite_app(sqlite_store: str, tmp_path: Path):
    application = make_app(sqlite_store, tmp_path)
    yield application
    application.close()


def rows(path: Path, sql: str) -> list[tuple]:
    """Query the analysts' file the way an analyst does: read-only."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


VIEWS = ["orders", "order_lines", "allocations", "allocation_lines", "supplier_performance",
         "supplier_performance_by_channel", "statements", "statement_lines", "statement_apart", "margins",
         "loss_risks", "post_shipment_aftersales", "settlement_lines"]


def snapshot(path: Path) -> dict[str, list[tuple]]:
    return {v: rows(path, f"SELECT * FROM {v} ORDER BY ALL") for v in VIEWS}
