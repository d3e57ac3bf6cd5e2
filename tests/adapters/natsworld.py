"""Helpers for the NATS adapter tests: publish contract messages, read streams, run serve."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import nats
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from adapters.bootstrap import Settings
from adapters.examples import BUYER, EXAMPLES
from adapters.serve import CONSUMER, IN_STREAM, Server, serve

SUPPLIER, OFFER, SSKU = "yiwu-case-01", "6541236987", "4987001"
SHOP = ("douyin", "dy-880123")
PRODUCT, SKU = "3581204467", "1780001"


def example(subject: str, **changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(EXAMPLES[f"reflow.in.{subject}"])
    body.update(changes)
    return body


def order_body(order_id: str, qty: int = 1, placed_at: str = "2024-05-01T10:15:00+08:00",
               lines: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "platform": SHOP[0], "shop_id": SHOP[1], "order_id": order_id, "placed_at": placed_at,
        "buyer": BUYER,
        "lines": lines or [{"line_id": f"{order_id}-1", "product_id": PRODUCT, "sku_id": SKU,
                            "title": "磨砂防摔手机壳", "spec": "黑色", "qty": qty, "unit_price": "19.90"}],
    }


def single_link(product: str = PRODUCT, sku: str | None = SKU) -> dict[str, Any]:
    return {"platform": SHOP[0], "shop_id": SHOP[1], "product_id": product, "mode": "single",
            "skus": [{"sku_id": sku, "alternatives": [{"components": [
                {"supplier_id": SUPPLIER, "offer_id": OFFER, "supplier_sku_id": SSKU, "qty": 1}]}]}]}


def catalog(stock: int = 1200) -> list[tuple[str, dict[str, Any]]]:
    """A supplier with one offer, priced, and the example product linked to it."""
    offer = example("supplier.offer", expires_at=None)
    offer["skus"][0]["stock"] = stock
    return [
        ("supplier.upserted", example("supplier.upserted")),
        ("supplier.offer", offer),
        ("supplier.price", example("supplier.price", tier=None)),
        ("link.set", single_link()),
    ]


class Client:
    """A producer and observer beside serve."""

    def __init__(self, nc: nats.NATS) -> None:
        self.nc, self.js = nc, nc.jetstream()
        self.n = 0

    async def send(self, subject: str, body: Any, msg_id: str | None = None) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
        self.n += 1
        headers = {"Nats-Msg-Id": msg_id or f"test-{self.n}-{time.monotonic_ns()}"}
        for attempt in range(50):  # JetStream needs a moment after a server restart
            try:
                await self.js.publish(f"reflow.in.{subject}", data, headers=headers, timeout=1)
                return
            except (nats.errors.TimeoutError, nats.js.errors.NoStreamResponseError):
                if attempt == 49:
                    raise
                await asyncio.sleep(0.2)

    async def send_many(self, items: list[tuple[str, Any]]) -> None:
        futures = []
        for subject, body in items:
            self.n += 1
            data = json.dumps(body, ensure_ascii=False).encode()
            futures.append(await self.js.publish_async(
                f"reflow.in.{subject}", data, headers={"Nats-Msg-Id": f"bulk-{self.n}-{time.monotonic_ns()}"}))
        await asyncio.gather(*futures)

    async def settled(self, timeout: float = 20.0) -> None:
        """Wait until serve acknowledged everything in REFLOW_IN."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(Exception):
                stream = await self.js.stream_info(IN_STREAM)
                info = await self.js.consumer_info(IN_STREAM, CONSUMER)
                if info.ack_floor.stream_seq >= stream.state.last_seq and not info.num_ack_pending:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError("serve did not consume REFLOW_IN in time")
            await asyncio.sleep(0.05)

    async def messages(self, stream: str, subject: str = ">", *, at_least: int = 0,
                       timeout: float = 10.0) -> list[nats.aio.msg.Msg]:
        """Every message of a stream on a subject (waiting until there are ``at_least``)."""
        deadline = time.monotonic() + timeout
        while True:
            got = await self._read(stream, subject)
            if len(got) >= at_least or time.monotonic() > deadline:
                return got
            await asyncio.sleep(0.1)

    async def _read(self, stream: str, subject: str) -> list[Any]:
        info = await self.js.stream_info(stream)
        if not info.state.messages:
            return []
        config = ConsumerConfig(ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL,
                                filter_subject=subject, inactive_threshold=5.0)
        sub = await self.js.pull_subscribe(subject, durable=None, stream=stream, config=config)
        out: list[Any] = []
        try:
            while True:
                try:
                    batch = await sub.fetch(1000, timeout=0.3)
                except (TimeoutError, nats.errors.TimeoutError):
                    return out
                out.extend(batch)
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def bodies(self, stream: str, subject: str, at_least: int = 0, timeout: float = 10.0) -> list[dict]:
        return [json.loads(m.data) for m in await self.messages(stream, subject, at_least=at_least,
                                                                timeout=timeout)]


@contextlib.asynccontextmanager
async def running(settings: Settings, **kw: Any) -> AsyncIterator[Server]:
    """serve in this event loop, ready on entry, drained on exit."""
    stop = asyncio.Event()
    ready: asyncio.Future[Server] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(settings, stop=stop, handle_signals=False,
                                     on_ready=lambda s: ready.set_result(s), **kw))
    done, _ = await asyncio.wait({task, ready}, timeout=20, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()  # raises what stopped it
    if ready not in done:
        task.cancel()
        raise TimeoutError("serve did not start")
    try:
        yield ready.result()
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)


@contextlib.asynccontextmanager
async def client(url: str) -> AsyncIterator[Client]:
    nc = await nats.connect(url, max_reconnect_attempts=-1, reconnect_time_wait=0.2,
                            error_cb=_quiet)
    try:
        yield Client(nc)
    finally:
        await nc.close()


async def _quiet(exc: Exception) -> None:
    pass


def run(coro_fn: Callable[[], Awaitable[Any]], timeout: float = 90) -> Any:
    return asyncio.run(asyncio.wait_for(coro_fn(), timeout))
