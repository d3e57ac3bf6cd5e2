"""The composition root: settings from the command line or the environment, and the app built on them.

Every entry point (``reflow serve`` and the commands to come) builds what it needs here, so the
store, the cipher key and the file locations are chosen in one place.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from adapters.store import DEFAULT_DATA_DIR, ensure_store, load_cipher_key, store_env
from engine.app import Reflow

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"


@dataclass(frozen=True)
class Settings:
    """Where reflow keeps and finds things (CONTRACT section 5)."""

    store: str | None = None
    """``sqlite:///path`` or ``postgresql://...``; None = ``sqlite:///<data_dir>/events.db``."""
    duckdb: Path | None = None
    """The analysts' DuckDB file; None = ``<data_dir>/reflow.duckdb``."""
    nats_url: str = DEFAULT_NATS_URL
    data_dir: Path = Path(DEFAULT_DATA_DIR)

    @classmethod
    def from_env(cls, **given: object) -> Settings:
        """Options given on the command line win over ``REFLOW_*`` environment variables."""
        env = os.environ
        store = given.get("store") or env.get("REFLOW_STORE") or None
        duckdb = given.get("duckdb") or env.get("REFLOW_DUCKDB") or None
        nats_url = given.get("nats_url") or env.get("REFLOW_NATS_URL") or DEFAULT_NATS_URL
        data_dir = given.get("data_dir") or DEFAULT_DATA_DIR
        return cls(store=str(store) if store else None, duckdb=Path(str(duckdb)) if duckdb else None,
                   nats_url=str(nats_url), data_dir=Path(str(data_dir)))

    @property
    def duckdb_path(self) -> Path:
        return self.duckdb or self.data_dir / "reflow.duckdb"


def open_app(settings: Settings) -> Reflow:
    """The application service on the configured store, with the consumer-data key (P2).

    The key goes in as ``REFLOW_CIPHER_KEY``, never as ``CIPHER_KEY``: the latter would make
    eventsourcing encrypt every stored event whole."""
    env = store_env(settings.store, settings.data_dir)
    ensure_store(env)
    env["REFLOW_CIPHER_KEY"] = load_cipher_key(settings.data_dir)
    return Reflow(env)
