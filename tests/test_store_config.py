"""Unit tests for adapters.store: --store URL → eventsourcing env, cipher key."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from adapters.store import cipher_env, load_cipher_key, store_env


def test_sqlite_absolute_url(tmp_path: Path) -> None:
    db = tmp_path / "sub" / "dir" / "events.db"
    env = store_env(f"sqlite:///{db}")  # tmp_path is absolute → sqlite:////...
    assert env["PERSISTENCE_MODULE"] == "eventsourcing.sqlite"
    assert env["SQLITE_DBNAME"] == str(db)
    assert env["SQLITE_LOCK_TIMEOUT"] == "10"
    assert db.parent.is_dir()


def test_sqlite_relative_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    env = store_env("sqlite:///rel/x.db")
    assert env["SQLITE_DBNAME"] == str(tmp_path / "rel" / "x.db")
    assert (tmp_path / "rel").is_dir()


def test_sqlite_default_url(tmp_path: Path) -> None:
    env = store_env(None, data_dir=tmp_path / "data")
    assert env["PERSISTENCE_MODULE"] == "eventsourcing.sqlite"
    assert env["SQLITE_DBNAME"] == str(tmp_path / "data" / "events.db")
    assert (tmp_path / "data").is_dir()


def test_sqlite_default_relative_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    env = store_env(None)
    assert env["SQLITE_DBNAME"] == str(tmp_path / "reflow-data" / "events.db")


def test_sqlite_env_opens_an_application(tmp_path: Path) -> None:
    from eventsourcing.application import Application
    from eventsourcing.domain import Aggregate

    env = store_env(f"sqlite:///{tmp_path}/es.db")
    app = Application(env=env)
    agg = Aggregate()
    app.save(agg)
    app.close()
    app = Application(env=env)
    assert app.repository.get(agg.id).id == agg.id
    app.close()


def test_postgres_url_full() -> None:
    env = store_env("postgresql://alice:s%40cret@db.example:6543/orders?schema=xyz")
    assert env["PERSISTENCE_MODULE"] == "eventsourcing.postgres"
    assert env["POSTGRES_DBNAME"] == "orders"
    assert env["POSTGRES_HOST"] == "db.example"
    assert env["POSTGRES_PORT"] == "6543"
    assert env["POSTGRES_USER"] == "alice"
    assert env["POSTGRES_PASSWORD"] == "s@cret"
    assert env["POSTGRES_SCHEMA"] == "xyz"
    assert env["CREATE_TABLE"] == "y"


def test_postgres_url_empty_password_default_port_no_schema() -> None:
    env = store_env("postgres://postgres@127.0.0.1/test")
    assert env["PERSISTENCE_MODULE"] == "eventsourcing.postgres"
    assert env["POSTGRES_USER"] == "postgres"
    assert env["POSTGRES_PASSWORD"] == ""
    assert env["POSTGRES_PORT"] == "5432"
    assert env["POSTGRES_DBNAME"] == "test"
    assert "POSTGRES_SCHEMA" not in env


def test_postgres_url_needs_dbname() -> None:
    with pytest.raises(ValueError, match="--store"):
        store_env("postgresql://u@h:5432/")


def test_postgres_url_unknown_param() -> None:
    with pytest.raises(ValueError, match="--store.*sslfoo"):
        store_env("postgresql://u@h/db?sslfoo=1")


@pytest.mark.parametrize("url", ["mysql://u@h/db", "file:///tmp/x", "events.db"])
def test_bad_scheme_names_store_option(url: str) -> None:
    with pytest.raises(ValueError, match=r"^--store: unsupported URL"):
        store_env(url)


def test_bad_scheme_message() -> None:
    with pytest.raises(ValueError) as ei:
        store_env("mysql://u@h/db")
    assert str(ei.value) == (
        "--store: unsupported URL scheme 'mysql' (use sqlite:///path or postgresql://...)"
    )


def test_cipher_key_file_created_once_and_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REFLOW_CIPHER_KEY", raising=False)
    data = tmp_path / "data"
    env1 = cipher_env(data)
    key_file = data / "cipher.key"
    assert key_file.is_file()
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert set(env1) == {"CIPHER_KEY"}
    assert len(base64.b64decode(env1["CIPHER_KEY"])) == 32
    mtime = key_file.stat().st_mtime_ns
    env2 = cipher_env(data)
    assert env2 == env1
    assert key_file.stat().st_mtime_ns == mtime
    assert [p.name for p in data.iterdir()] == ["cipher.key"]  # no temp leftovers


def test_cipher_env_var_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from eventsourcing.cipher import AESCipher

    key = AESCipher.create_key(num_bytes=32)
    monkeypatch.setenv("REFLOW_CIPHER_KEY", key)
    assert cipher_env(tmp_path / "d") == {"CIPHER_KEY": key}
    assert not (tmp_path / "d" / "cipher.key").exists()
    assert load_cipher_key(tmp_path / "d") == key


def test_cipher_key_invalid_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFLOW_CIPHER_KEY", "not-a-key")
    with pytest.raises(ValueError, match="REFLOW_CIPHER_KEY"):
        cipher_env(tmp_path)


def test_cipher_key_works_with_aes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from eventsourcing.cipher import AESCipher
    from eventsourcing.utils import Environment

    monkeypatch.delenv("REFLOW_CIPHER_KEY", raising=False)
    cipher = AESCipher(Environment(env=cipher_env(tmp_path)))
    assert cipher.decrypt(cipher.encrypt(b"jane@example.com")) == b"jane@example.com"
