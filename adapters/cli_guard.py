"""A refused command changes nothing (issue 14): the checks that run before anything is made, and the
clean-up of what a refused ``serve`` or ``demo`` made before it was refused.

- ``may_issue``: a statement's own refusals (the period, an unknown supplier, RC4) before the
  analysts' file is opened, so a refused statement makes no DuckDB file;
- ``removed_if_refused``: the DuckDB files a statement made for a new ``--duckdb`` path, removed
  when it is refused after all (nothing to state: RC3, an empty period);
- ``check_serve``: ``serve``'s ``--duckdb``, store and NATS (reachable, ``REFLOW_OUT`` not filled from
  another store) before the store is created;
- ``check_demo``: ``demo``'s ``--data-dir``, ``--store`` and ``--duckdb``, each refusal naming its option;
- ``Debris``: what a run that may create a store made (the store's files, its key, the directories
  it made, the DuckDB files), removed when the run fails with the store still empty. A store that
  was there before, or that holds an event, is never touched.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

from adapters.bootstrap import Settings


class _Checked(Exception):
    """The statement book's checks passed (raised where the lines would be read)."""


class _Probe:
    def catch_up(self) -> int:
        raise _Checked


def may_issue(app: Any, supplier: str, first: date, last: date) -> None:
    """The statement book's refusals (the period, an unknown supplier, RC4), as issuing would meet
    them, without reading a line: the engine's own checks, stopped before the projection is opened."""
    from engine.statements import issue_statement

    with contextlib.suppress(_Checked):
        issue_statement(app, _Probe(), supplier, first, last)


def _made_with(path: Path) -> set[str]:
    """The DuckDB file at `path` and its companions there (`.work`, `.lock`, `.wal`, ...)."""
    folder = path.parent
    if not folder.is_dir():
        return set()
    return {p.name for p in folder.iterdir() if p.name == path.name or p.name.startswith(path.name + ".")}


@contextlib.contextmanager
def removed_if_refused(path: Path) -> Iterator[None]:
    """A new analysts' file made for a statement that is then refused is removed again, with its
    working and lock files and its segments directory; a file that was there before is kept."""
    before = _made_with(path)
    try:
        yield
    except BaseException:
        if path.name not in before:
            for name in _made_with(path) - before:
                made = path.parent / name
                if made.is_dir():
                    shutil.rmtree(made, ignore_errors=True)
                else:
                    made.unlink(missing_ok=True)
        raise


def _store_state(settings: Settings) -> tuple[dict[str, str], Any]:
    """The store's environment and what is there, changing nothing (a refusal names --store)."""
    from adapters.store import store_env
    from adapters.storekey import label, probe

    env = store_env(settings.store, settings.data_dir, create=False)
    return env, probe(env, label(settings.store, settings.data_dir), settings.store)


class Debris:
    """The paths a run that may create a store is about to make, each as the topmost of it (or of
    its directories) that is not there yet; ``made`` ones already are, by this run."""

    def __init__(self, settings: Settings, *extra: Path, made: tuple[Path, ...] = ()) -> None:
        from adapters.storekey import key_path

        self.settings = settings
        env, state = _store_state(settings)
        self.new_store = not state.exists
        paths = [Path(settings.data_dir), key_path(env, settings.data_dir), *extra]
        name = env.get("SQLITE_DBNAME", ":memory:")
        if env["PERSISTENCE_MODULE"] == "eventsourcing.sqlite" and name != ":memory:":
            paths += [Path(name + suffix) for suffix in ("", "-wal", "-shm", "-journal")]
        duckdb = settings.duckdb_path
        paths += [duckdb.with_name(duckdb.name + suffix) for suffix in ("", ".work", ".work.wal", ".wal", ".lock")]
        self.paths = list(dict.fromkeys([*made, *(top for p in paths if (top := _topmost_missing(p)))]))

    def remove_if_empty(self) -> None:
        """After a failure: if this run created the store and it holds no event, remove what the
        run made (a store that cannot be read now is left as it is)."""
        if not self.new_store:
            return
        try:
            _, state = _store_state(self.settings)
        except Exception:  # noqa: BLE001 - cannot tell: leave everything
            return
        if state.has_events:
            return
        for path in self.paths:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

    @contextlib.contextmanager
    def removed_if_refused(self) -> Iterator[None]:
        try:
            yield
        except BaseException:
            self.remove_if_empty()
            raise


def _topmost_missing(path: Path) -> Path | None:
    path = Path(os.path.abspath(path))
    if path.exists() or path.is_symlink():
        return None
    while not path.parent.exists() and path.parent != path:
        path = path.parent
    return path


def check_serve(settings: Settings) -> None:
    """``serve``'s refusals before it creates a store, in the order it would meet them: a store it
    cannot read or whose key is not there or not its own; a ``--duckdb`` that is not reflow's file
    or lies in a directory that does not exist (other than the data directory serve makes); NATS
    out of reach or refusing JetStream; for a store not made yet, a ``REFLOW_OUT`` filled from
    another store."""
    import asyncio

    from adapters.bootstrap import check_store
    from adapters.cli_common import check_duckdb_dir
    from projections.target import check_target

    _, state = _store_state(settings)  # not a store (a file of something else), PostgreSQL out of reach
    if state.has_events or state.fingerprint is not None:
        check_store(settings)  # its key, as open_app would refuse it
    path = settings.duckdb_path
    if Path(os.path.abspath(path.parent)) != Path(os.path.abspath(settings.data_dir)):
        check_duckdb_dir(path)
    check_target(path)
    asyncio.run(_check_broker(settings.nats_url, new_store=not state.exists))


async def _check_broker(url: str, *, new_store: bool) -> None:
    import asyncio
    import contextlib as _contextlib
    import time
    from types import SimpleNamespace

    import nats
    from nats.js.errors import NotFoundError

    from adapters.bootstrap import nats_refusal
    from adapters.outbound import STREAM, Publisher
    from adapters.serve import ServeError, connect

    nc = await connect(url)  # ServeError, naming --nats, when it cannot
    try:
        if not new_store:
            return
        deadline = time.monotonic() + 30
        while True:
            try:
                published = await Publisher.resume_position(SimpleNamespace(js=nc.jetstream(timeout=5)))
                break
            except NotFoundError:
                return
            except nats.errors.TimeoutError:  # a cluster still electing, or creating the streams of other routers
                if time.monotonic() > deadline:
                    raise ServeError(nats_refusal(url, TimeoutError("no JetStream answer in 30 s"),
                                                  "NATS refused reflow serve")) from None
                await asyncio.sleep(1)
            except nats.errors.Error as exc:  # e.g. JetStream not enabled
                raise ServeError(nats_refusal(url, exc, "NATS refused reflow serve")) from None
        if published:
            raise ServeError(
                f"{STREAM} already holds messages up to store position {published}, but this store is new: "
                f"the stream was filled from another store. Run this store against its own NATS server or "
                f"account, or delete {STREAM} if that store is gone; nothing created")
    finally:
        with _contextlib.suppress(Exception):
            await nc.close()


def check_demo(data_dir: Path | None, store: str | None, duckdb: Path | None) -> None:
    """``demo``'s refusals before it makes anything, each naming the option to change."""
    from adapters.cli_common import check_duckdb_dir

    if data_dir is not None and data_dir.exists() and not data_dir.is_dir():
        raise ValueError(f"--data-dir {data_dir}: is not a directory (give the demo a new or empty directory)")
    if store is not None:
        _, state = _store_state(Settings(store=store, data_dir=data_dir or Path(".")))
        if state.has_events:
            raise ValueError(f"--store {_shown(store)}: holds events already; the demo needs an empty store "
                             "(a new SQLite file, or an empty PostgreSQL schema)")
    elif data_dir is not None and data_dir.is_dir():
        _, state = _store_state(Settings(data_dir=data_dir))
        if state.has_events:
            raise ValueError(f"--data-dir {data_dir}: holds an event store with events already; "
                             "give the demo a new or empty directory")
    if duckdb is not None:
        if duckdb.exists():
            raise ValueError(f"--duckdb {duckdb}: exists already; the demo writes a new file (give --duckdb a new path)")
        check_duckdb_dir(duckdb)
    elif data_dir is not None and (data_dir / "reflow.duckdb").exists():
        raise ValueError(f"--data-dir {data_dir}: holds reflow.duckdb already; give the demo a new or empty "
                         "directory")


def _shown(url: str) -> str:
    from adapters.storekey import shown

    return shown(url)
