"""Fixtures for replay tests: a realistic history, and a way to tamper with the stored log."""

from __future__ import annotations

from typing import Any

import pytest

from tests.projections.seed import seed_lifecycle


@pytest.fixture
def history(app):
    """Seed-like history with every kind of event the engine writes (routing, re-routing, holds,
    interceptions, tracking, shipping, too-late answers, loss risks, after-sales, stock)."""
    seed_lifecycle(app)
    return app


class Log:
    """Direct SQL on the stored events, as an intruder (or a disk fault) would change them."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.recorder = app.recorder
        self.sqlite = "sqlite" in type(self.recorder).__module__
        table = self.recorder.events_table_name
        self.table = table if self.sqlite else f'"{self.recorder.datastore.schema}"."{table}"'
        self.id = "rowid" if self.sqlite else "notification_id"

    def execute(self, sql: str, params: tuple = ()) -> None:
        sql = sql.format(table=self.table, id=self.id)
        if self.sqlite:
            with self.recorder.datastore.transaction(commit=True) as c:
                c.execute(sql, params)
            return
        with self.recorder.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(sql.replace("?", "%s"), params)
            conn.commit()

    def notifications(self, topic_suffix: str = "") -> list:
        notes = self.recorder.select_notifications(start=1, limit=10**6)
        return [n for n in notes if n.topic.endswith(topic_suffix)]

    def set_state(self, notification_id: int, state: bytes) -> None:
        self.execute("UPDATE {table} SET state = ? WHERE {id} = ?", (state, notification_id))

    def flip_byte(self, notification_id: int, offset: int) -> None:
        [n] = [n for n in self.notifications() if n.id == notification_id]
        state = bytearray(n.state)
        state[offset] ^= 0x01
        self.set_state(notification_id, bytes(state))

    def delete(self, notification_id: int) -> None:
        self.execute("DELETE FROM {table} WHERE {id} = ?", (notification_id,))

    def swap_positions(self, a: int, b: int) -> None:
        """Swap two events' places in the log (their notification ids), keeping their bodies."""
        self.execute("UPDATE {table} SET {id} = ? WHERE {id} = ?", (-1, a))
        self.execute("UPDATE {table} SET {id} = ? WHERE {id} = ?", (a, b))
        self.execute("UPDATE {table} SET {id} = ? WHERE {id} = ?", (b, -1))


@pytest.fixture
def log(app) -> Log:
    return Log(app)
