"""The composition root: settings from the command line or the environment, and the app built on them.

Every entry point (``reflow serve`` and the commands to come) builds what it needs here, so the
store, the cipher key and the file locations are chosen in one place.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from adapters.store import DEFAULT_DATA_DIR, default_store_url, ensure_store, store_env
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
    create_store: bool = True
    """May :func:`open_app` create the store, its key and its directory? The command line says no
    (``adapters.cli``) except for ``reflow serve`` and ``reflow demo``."""

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

    def as_options(self) -> list[str]:
        """The global options that give these settings from any directory, for a command to copy:
        paths made absolute, a password in a URL as ``***``. ``--data-dir`` always, the default one
        too (it is relative to the current directory), unless a SQLite ``--store`` and a ``--duckdb``
        are given (the key is beside the store); a ``--store`` or ``--duckdb`` that is the data
        directory's default is left out, as is the default ``--nats``."""
        from adapters.storekey import shown

        home = self.data_dir.expanduser().absolute()
        words = []
        store = _absolute_store(self.store) if self.store else None
        if store and store != _absolute_store(default_store_url(home)):
            words += ["--store", shown(store)]
        duckdb = self.duckdb.expanduser().absolute() if self.duckdb is not None else None
        if duckdb and duckdb != home / "reflow.duckdb":
            words += ["--duckdb", str(duckdb)]
        if self.nats_url != DEFAULT_NATS_URL:
            words += ["--nats", shown(self.nats_url)]
        if not ("--store" in words and store.lower().startswith("sqlite:") and "--duckdb" in words):
            words += ["--data-dir", str(home)]
        return words


def nats_label(url: str) -> str:
    """``--nats URL`` for a one-line message, a password in the URL as ``***``."""
    from adapters.storekey import shown

    try:
        return f"--nats {shown(url)}"
    except ValueError:  # not a URL urllib can read: say so without it
        return "--nats (a URL that cannot be read)"


def nats_refusal(url: str, exc: BaseException, doing: str = "cannot connect to NATS") -> str:
    """The one line for a NATS failure, leading with the option: ``--nats URL: cannot connect to
    NATS (no servers available)``; nats-py's ``nats: `` and `` for connection`` left out."""
    from adapters.messages import one_line

    why = (one_line(str(exc)) or type(exc).__name__).removeprefix("nats: ").removesuffix(" for connection")
    return f"{nats_label(url)}: {doing} ({why})"


def _absolute_store(url: str) -> str:
    """A SQLite URL with its path made absolute (``sqlite:////abs``); any other as it is."""
    from urllib.parse import unquote

    scheme, _, rest = url.partition("://")
    if scheme.lower() == "sqlite" and rest.startswith("/") and rest[1:] != ":memory:":
        path = Path(unquote(rest[1:])).expanduser().absolute()
        return f"{scheme}:///{str(path).replace('%', '%25')}"
    return url


def open_app(settings: Settings) -> Reflow:
    """The application service on the configured store, with the consumer-data key (P2).

    An existing store only, unless ``settings.create_store``; the key must be the store's own
    (``adapters.storekey``: where the key is found, the fingerprint the store keeps). Refusals are
    one line (``StoreError``), having changed nothing. The key goes in as ``REFLOW_CIPHER_KEY``,
    never as ``CIPHER_KEY``: the latter would make eventsourcing encrypt every stored event whole."""
    from adapters.store import WriteLock, creating
    from adapters.storekey import encrypted_whole, find_key, fingerprint, label, mismatch, probe, record

    where = label(settings.store, settings.data_dir)
    env = store_env(settings.store, settings.data_dir, create=False)
    state = probe(env, where, settings.store)
    if not state.exists and not settings.create_store:
        raise _no_store(where, state)
    new = not state.has_events and state.fingerprint is None
    key, source = find_key(env, settings.data_dir, where, create=settings.create_store and new)
    fp = fingerprint(key)
    if state.fingerprint is not None and state.fingerprint != fp:
        raise mismatch(source, where)
    env["REFLOW_CIPHER_KEY"] = key
    whole = encrypted_whole(state, key)
    if whole:  # a store written (before) with every event encrypted whole: read and write it so
        env["CIPHER_KEY"] = key
    with creating(env):  # several routers starting at once on one PostgreSQL store
        if settings.create_store:
            ensure_store(env)
        app = Reflow(env)
        if env["PERSISTENCE_MODULE"] == "eventsourcing.postgres":
            app.exclusive = lock = WriteLock(env)
            app.sharing = lock.shared
        if settings.create_store and state.fingerprint is None:  # a new store, or one from before fingerprints
            try:
                if record(env, where, settings.store, fp, whole) != fp:
                    raise mismatch(source, where)
            except BaseException:
                app.close()
                raise
    return app


def check_store(settings: Settings, *, required: bool = True) -> None:
    """For a command that reads or writes elsewhere (``reflow show`` reads the DuckDB file, ``reflow
    publish`` writes to NATS): refuse, as :func:`open_app` does, a cipher key that is not the store's,
    naming where the key came from. It only reads (the key table, the first event): nothing is created.
    ``required``: the store and its key must be there too (``show``); else a store or a key that is
    not there (or out of reach) passes (``publish`` needs neither; serve has them)."""
    from adapters.storekey import StoreError, find_key, fingerprint, label, mismatch, probe

    where = label(settings.store, settings.data_dir)
    env = store_env(settings.store, settings.data_dir, create=False)
    try:
        state = probe(env, where, settings.store)
    except StoreError:  # not a store, PostgreSQL out of reach: nothing to check the key against
        if required:
            raise
        return
    if not state.exists:
        if required:
            raise _no_store(where, state)
        return
    try:
        key, source = find_key(env, settings.data_dir, where, create=False)
    except StoreError:  # no key at all (a malformed REFLOW_CIPHER_KEY is refused: a ValueError)
        if required:
            raise
        return
    if state.fingerprint is not None and state.fingerprint != fingerprint(key):
        raise mismatch(source, where)


def _no_store(where: str, state) -> Exception:
    from adapters.storekey import StoreError

    return StoreError(f"{where}: no reflow store there ({state.why}; only `reflow serve` and `reflow demo` create one)")
