"""The demo's broker side: ``reflow serve`` in this process against the private nats-server,
publishing each stage as a producer would (JSON, ``Nats-Msg-Id``), waiting until serve applied
it and published what it caused, and reading ``REFLOW_OUT`` and ``REFLOW_DLQ`` as a supplier
or an operator would."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from datetime import datetime
from typing import Any

from adapters.demo.day import DemoDay
from adapters.demo.report import Report
from adapters.demo.wire import Applied, Message, encode
from adapters.partitions import SHOP_SCOPED, shop_subject


class DemoError(ValueError):
    """The demo cannot run as asked (one line)."""


async def run_stages(plan: DemoDay, settings: Any, app: Any, report: Report, console: Any, batch: int,
                     routers: Any = None) -> None:
    """The stages through ``reflow serve`` in this process, or through ``routers``
    (adapters/routerprocs.py: ``reflow demo --routers N``), each a process of its own."""
    if routers is not None:
        await _through_routers(plan, settings, app, report, console, routers)
        return
    from adapters.serve import serve

    stop = asyncio.Event()
    ready: asyncio.Future = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(settings, batch=batch, stop=stop, handle_signals=False, clock="messages",
                                     on_ready=lambda s: ready.done() or ready.set_result(s)))
    done, _ = await asyncio.wait({task, ready}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()
        raise DemoError("reflow serve stopped before it was ready")
    if ready not in done:
        task.cancel()
        raise DemoError("reflow serve did not start within 60 s")
    try:
        async with _Producer(settings.nats_url, app, task) as producer, _Steps(console) as steps:
            await _play(plan, producer, steps, report)
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=120)


async def _play(plan: DemoDay, producer: _Producer, steps: _Steps, report: Report) -> None:
    """Every stage of the day, each waited for; then the dead letters."""

    async def stage(title: str, messages: list[Message]) -> Applied:
        return await producer.stage(steps, title, messages, report)

    await plan.play(stage)
    steps.done()
    report.dead_letters = await producer.dead_letters()


async def _through_routers(plan: DemoDay, settings: Any, app: Any, report: Report, console: Any,
                           routers: Any) -> None:
    routers.start()
    try:
        async with _Producer(settings.nats_url, app, None, routers) as producer, _Steps(console) as steps:
            try:
                await routers.ready(producer.js, timeout=120)
            except Exception as exc:  # noqa: BLE001 - a router that cannot start says why in its log
                raise DemoError(f"the routers did not start: {exc}") from None
            console.print(f"{routers.count} routers on {routers.partitions} partitions, leases held: "
                          f"logs in {routers.log_dir}", highlight=False, soft_wrap=True)
            await _play(plan, producer, steps, report)
    finally:
        codes = await asyncio.to_thread(routers.stop)
        if any(c not in (0, None) for c in codes):
            console.print(f"[yellow]routers exited {codes}; logs in {routers.log_dir}[/]", highlight=False)


class _Producer:
    """Publishes like a producer (JSON, Nats-Msg-Id) and watches serve's progress through NATS."""

    def __init__(self, url: str, app: Any, serving: asyncio.Task | None, routers: Any = None) -> None:
        self.url, self.app, self.serving, self.routers = url, app, serving, routers
        self.out_seq = 0  # last REFLOW_OUT message read
        self.scanned = 0  # event-store position scanned for outbound events

    async def __aenter__(self) -> _Producer:
        import nats

        from adapters.broker import servers
        from adapters.outbound import Publisher

        self.nc = await nats.connect(servers(self.url), max_reconnect_attempts=-1, reconnect_time_wait=0.2)
        self.js = self.nc.jetstream()
        self.publisher = Publisher(self.app, self.js)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        with contextlib.suppress(Exception):
            await self.nc.close()

    async def stage(self, steps: _Steps, title: str, messages: list[Message], report: Report) -> Applied:
        """Publish a stage in order; return once serve applied it and published what it caused."""
        from adapters.serve import CONSUMER, IN_STREAM

        started = time.monotonic()
        base = (await _again(self.js.stream_info, IN_STREAM)).state.last_seq
        step = steps.start(title, len(messages))
        deadline = time.monotonic() + 120 + len(messages) / 50
        if self.routers is None:
            await self._publish(messages)
        done = 0
        for run in self._runs(messages):
            if self.routers is not None:  # one run of one side at a time (see _runs)
                await self._publish(run)
            done += len(run)
            while True:
                self._check_serving()
                if self.routers is not None:  # every lane's consumer has applied all it holds
                    pending = await _again(self.routers.pending, self.js)
                    steps.update(step, max(0, done - pending))
                    if not pending:
                        break
                else:
                    info = await self.js.consumer_info(IN_STREAM, CONSUMER)
                    steps.update(step, max(0, info.ack_floor.stream_seq - base))
                    if info.ack_floor.stream_seq >= base + len(messages) and not info.num_ack_pending:
                        break
                if time.monotonic() > deadline:
                    raise DemoError(f"reflow serve did not apply the stage '{title}' in time")
                await asyncio.sleep(0.02)
        report.published += len(messages)
        applied = Applied(out=await self.outbound(), last_at=await self.last_stored_at())
        elapsed = time.monotonic() - started
        steps.finish(step, title, len(messages), elapsed)
        if report.stages and report.stages[-1][0] == title:  # one more step of the same stage
            _, n, before = report.stages.pop()
            report.stages.append((title, n + len(messages), before + elapsed))
        else:
            report.stages.append((title, len(messages), elapsed))
        return applied

    async def _publish(self, messages: list[Message]) -> None:
        for chunk in range(0, len(messages), 1000):
            await _again(self._publish_chunk, messages[chunk:chunk + 1000])

    async def _publish_chunk(self, chunk: list[Message]) -> None:
        futures = [await self.js.publish_async(self._subject(x), encode(x.body), headers={"Nats-Msg-Id": x.msg_id})
                   for x in chunk]
        await asyncio.gather(*futures)

    def _runs(self, messages: list[Message]) -> list[list[Message]]:
        """One serve applies a stage in its order: one run. Routers apply the shops' lanes and the
        general lane side by side, so a stage goes as runs of consecutive messages of one side,
        each applied before the next is published: a link after the offer it names, as a
        merchant links only what a supplier has published (README "Scaling out")."""
        if self.routers is None:
            return [messages]
        runs: list[list[Message]] = []
        for x in messages:
            scoped = f"reflow.in.{x.subject}" in SHOP_SCOPED
            if not runs or (f"reflow.in.{runs[-1][0].subject}" in SHOP_SCOPED) != scoped:
                runs.append([])
            runs[-1].append(x)
        return runs

    def _subject(self, x: Message) -> str:
        """The contract's subject; to routers, a shop's message in the shop form (its shop's lane)."""
        subject = f"reflow.in.{x.subject}"
        if self.routers is not None and subject in SHOP_SCOPED:
            return shop_subject(subject, x.body["platform"], x.body["shop_id"])
        return subject

    def _check_serving(self) -> None:
        if self.routers is not None:
            try:
                self.routers.check()
            except Exception as exc:  # noqa: BLE001 - one line: which router, and its log
                raise DemoError(str(exc)) from None
            return
        if self.serving is not None and self.serving.done():
            self.serving.result()
            raise DemoError("reflow serve stopped unexpectedly")

    async def outbound(self) -> list[tuple[str, dict[str, Any]]]:
        """Wait until serve published everything the store holds so far; the new REFLOW_OUT messages."""
        target = await asyncio.to_thread(self._last_outbound_event)
        deadline = time.monotonic() + 120
        while await _again(self.publisher.resume_position) < target:
            self._check_serving()
            if time.monotonic() > deadline:
                raise DemoError("reflow serve did not publish its outbound messages in time")
            await asyncio.sleep(0.02)
        msgs = await _again(_read, self.js, "REFLOW_OUT", self.out_seq + 1)
        if msgs:
            self.out_seq = msgs[-1].metadata.sequence.stream
        return [(m.subject, json.loads(m.data)) for m in msgs]

    async def last_stored_at(self) -> datetime:
        """The time the broker stored the last message of REFLOW_IN, read as serve reads it (the
        time of the messages that carry none of their own)."""
        from adapters.serve import IN_STREAM, received_at

        last = (await _again(self.js.stream_info, IN_STREAM)).state.last_seq
        return received_at((await _again(_read, self.js, IN_STREAM, last))[-1])

    def _last_outbound_event(self) -> int:
        from adapters.outbound import TOPICS

        last = self.scanned
        while True:
            notes = self.app.recorder.select_notifications(last, 5000, topics=TOPICS, inclusive_of_start=False)
            if not notes:
                break
            last = notes[-1].id
        self.scanned = last
        return last

    async def dead_letters(self) -> list[tuple[str, str]]:
        return [((m.headers or {}).get("Reflow-Subject", m.subject), (m.headers or {}).get("Reflow-Error", ""))
                for m in await _again(_read, self.js, "REFLOW_DLQ", 1)]


async def _again(fn: Any, *args: Any) -> Any:
    """``fn(*args)``, again for up to 30 s while NATS answers "no responders" or times out: a NATS
    cluster moving a stream's leader (a node lost) answers so for a moment. A publish repeated
    is the same message (its Nats-Msg-Id)."""
    import nats

    deadline = time.monotonic() + 30
    while True:
        try:
            return await fn(*args)
        except (nats.errors.TimeoutError, nats.js.errors.ServiceUnavailableError, nats.errors.NoRespondersError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


async def _read(js: Any, stream: str, start_seq: int) -> list[Any]:
    """Every message of a stream from ``start_seq`` to its end, in order."""
    import nats
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    last = (await js.stream_info(stream)).state.last_seq
    if last < start_seq:
        return []
    config = ConsumerConfig(ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                            opt_start_seq=start_seq, inactive_threshold=10.0)
    subject = {"REFLOW_IN": "reflow.in.>", "REFLOW_OUT": "reflow.out.>", "REFLOW_DLQ": "reflow.dlq.>"}[stream]
    sub = await js.pull_subscribe(subject, durable=None, stream=stream, config=config)
    out: list[Any] = []
    try:
        while not out or out[-1].metadata.sequence.stream < last:
            try:
                out.extend(await sub.fetch(1000, timeout=5))
            except (TimeoutError, nats.errors.TimeoutError):
                raise DemoError(f"could not read {stream} to its end") from None
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
    return out


class _Steps:
    """Progress of the stages: rich bars on a terminal, and one line per stage (the steps of one
    stage, published one after the other under the same title, summed up)."""

    def __init__(self, console: Any) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = console
        self.live = console.is_terminal
        self.current: list[Any] = []  # [title, messages, steps, seconds] of the stage under way
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=console, transient=True, disable=not self.live)

    async def __aenter__(self) -> _Steps:
        self.progress.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.progress.stop()

    def start(self, title: str, total: int) -> Any:
        return self.progress.add_task(title, total=total)

    def update(self, task: Any, done: int) -> None:
        self.progress.update(task, completed=done)

    def finish(self, task: Any, title: str, messages: int, elapsed: float) -> None:
        self.progress.remove_task(task)
        if self.current and self.current[0] != title:
            self.done()
        if not self.current:
            self.current = [title, 0, 0, 0.0]
        self.current[1:] = [self.current[1] + messages, self.current[2] + 1, self.current[3] + elapsed]

    def done(self) -> None:
        """The stage under way is over: its line."""
        if self.current:
            title, messages, steps, elapsed = self.current
            during = f" in {steps} steps" if steps > 1 else ""
            self.console.print(f"[green]✓[/] {title}: {messages:,} messages{during}, {elapsed:.1f} s", highlight=False)
            self.current = []
