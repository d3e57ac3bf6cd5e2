"""The operator's write commands (CONTRACT section 6; registered in ``adapters.cli``): ``reflow
release``, ``reflow cancel``, ``reflow link set`` / ``link show`` and ``reflow publish``.

Safe beside a running ``reflow serve``: a write command checks what it is asked against the store
(read-only) and refuses in one line, publishing nothing; otherwise it publishes the inbound message
(``adapters.operator_publish``), so serve, the one writer, applies it in stream order with everything
else, waits until serve stored it (``--wait``, 10 s) and prints what changed. A dead letter for
it is reported (exit 1); a serve that does not apply it in time leaves it queued (exit 3). A command
printed to run next carries the global options in effect (``Settings.as_options``), to copy whole.
"""

from __future__ import annotations

import sys
from typing import Any

import typer

from adapters.cli_common import check_platform, fail

WAIT = typer.Option(10.0, "--wait", min=0.0, metavar="SECONDS",
                    help="How long to wait for reflow serve to apply it (0: publish and return).")

link_app = typer.Typer(name="link", no_args_is_help=False, help="A shop product's link: set it, show it.")


def release(
    ctx: typer.Context,
    platform: str = typer.Option(..., "--platform", help="Shop platform (douyin, kuaishou, ...)."),
    shop: str = typer.Option(..., "--shop", help="Shop id."),
    order: str = typer.Option(..., "--order", help="Shop order id."),
    wait: float = WAIT,
) -> None:
    """Release a held order (rule I6) and route its withheld lines again (I5)."""
    check_platform(platform)
    with _app(ctx) as app:
        o, key = _order(app, platform, shop, order)
        withheld = [lid for lid, state in o.route.items() if state == "withheld"]
        if o.cancelled or o.shipped:
            raise ValueError(f"--order: {key} is {o.status}; nothing to release")
        if not o.held and not withheld:
            why = ("it is under platform review (RT4) and routes once the review is cleared (reflow.in.order.review)"
                   if o.under_review else f"it is {o.status}")
            raise ValueError(f"--order: {key} is not held and has no withheld lines; {why}")
        before, routes = set(o.allocations), dict(o.route)
        if not _publish(ctx, app, [("reflow.in.order.released", _order_body(platform, shop, order))], wait):
            return
        after = app.order(platform, shop, order)
        routed = [lid for lid, state in after.route.items() if state == "allocated" and routes.get(lid) != "allocated"]
        made = [app.allocation(a) for a in after.allocations if a not in before]
        said = [f"{_n(len(routed), 'line')} routed"]
        if made:
            said.append(f"{'allocation' if len(made) == 1 else 'allocations'} "
                        + ", ".join(f"{a.allocation_id} ({a.supplier_id})" for a in made))
        if after.unroutable:
            reasons = sorted(set(after.unroutable.values()))
            said.append(f"{_n(len(after.unroutable), 'line')} unroutable ({', '.join(reasons)}), routed again "
                        "when supply changes")
        if after.under_review:
            said.append("still under platform review (RT4): routed once it is cleared")
        typer.echo(f"released {key}: " + "; ".join(said) + f"; status {after.status}")


def cancel(
    ctx: typer.Context,
    allocation: list[str] = typer.Option([], "--allocation", metavar="A", help="Allocation id (repeatable)."),
    platform: str | None = typer.Option(None, "--platform", help="Shop platform, with --order."),
    shop: str | None = typer.Option(None, "--shop", help="Shop id, with --order."),
    order: list[str] = typer.Option([], "--order", metavar="O",
                                    help="Cancel every allocation without tracking of this order (repeatable)."),
    reason: str | None = typer.Option(None, "--reason", metavar="TEXT", help="Why (the supplier's intercept says it)."),
    wait: float = WAIT,
) -> None:
    """Cancel allocations by hand (rule I5): the suppliers are told to stop, the lines wait for
    `reflow release`."""
    from adapters.messages import BadMessage, decode

    if allocation and (order or platform or shop):
        raise ValueError("--allocation/--order: give allocations or orders, not both")
    if not allocation and not order:
        raise ValueError("--allocation/--order: say what to cancel")
    if order and (platform is None or shop is None):
        raise ValueError("--platform/--shop: needed with --order")
    if platform is not None:
        check_platform(platform)
    subject = "reflow.in.allocation.cancel"
    with _app(ctx) as app:
        targets, messages = [], []
        for aid in dict.fromkeys(allocation):
            a = app.allocation(aid)
            if a is None:
                raise ValueError(f"--allocation: unknown allocation {aid}")
            if a.stopped:
                raise ValueError(f"--allocation: {aid} is {a.status} already ({a.intercept_reason})")
            if a.status != "active":
                raise ValueError(f"--allocation: {aid} already has tracking ({a.status}); open an after-sale "
                                 "instead (rule I5)")
            targets.append(a)
            messages.append((subject, _body(allocation_id=aid, reason=reason)))
        for oid in dict.fromkeys(order):
            _, key = _order(app, platform, shop, oid)
            every = app.allocations_of(platform, shop, oid)
            active = [a for a in every if a.status == "active"]
            if not active:
                have = ", ".join(f"{a.allocation_id} {a.status}" for a in every) or "none"
                raise ValueError(f"--order: {key} has no allocation without tracking to cancel (allocations: {have})")
            targets += active
            messages.append((subject, _body(platform=platform, shop_id=shop, order_id=oid, reason=reason)))
        for subject, data in messages:
            try:
                decode(subject, data)
            except BadMessage as bad:
                raise ValueError(f"--reason: {bad.reason}") from None
        if not _publish(ctx, app, messages, wait):
            return
        missed = []
        for a in targets:
            now = app.allocation(a.allocation_id)
            key = f"{now.platform}/{now.shop_id}/{now.order_id}"
            if now.status == "cancelled":
                lines = ", ".join(now.line_ids)
                typer.echo(f"cancelled {now.allocation_id} ({now.supplier_id}) of {key}: "
                           f"{'line' if len(now.line_ids) == 1 else 'lines'} {lines} withheld")
            else:
                missed.append(f"{now.allocation_id} is {now.status}")
        orders = dict.fromkeys((a.platform, a.shop_id, a.order_id) for a in targets)
        _follow_up(ctx, "route them again:",
                   [["release", "--platform", p, "--shop", s, "--order", o] for p, s, o in orders])
        if missed:
            fail(f"not cancelled: {'; '.join(missed)} (it changed before the cancel was applied)")


@link_app.command("set")
def link_set(
    ctx: typer.Context,
    file: str = typer.Option(..., "--file", metavar="LINK.json|-",
                             help="A reflow.in.link.set body: the product's whole link ('-' reads stdin)."),
    wait: float = WAIT,
) -> None:
    """Set a product's whole link (rules L1-L8) and say which pre-link orders wait for a pull (L10)."""
    from adapters.inbound import command
    from adapters.messages import BadMessage, decode
    from engine.app import utcnow
    from engine.errors import DomainError

    subject, data = "reflow.in.link.set", _read(file, "--file")
    try:
        message = decode(subject, data)
    except BadMessage as bad:
        raise ValueError(f"--file: {bad.reason}") from None
    p, s, x = message.platform, message.shop_id, message.product_id
    key = f"{p}/{s}/{x}"
    with _app(ctx) as app:
        link = app.link(p, s, x)
        try:
            version = app.execute(command(message, utcnow()), dry_run=True)
        except DomainError as refused:
            raise ValueError(f"--file: {subject}: {refused}") from None
        if link is not None and link.linked and version == link.link_version:
            typer.echo(f"unchanged: {key} has this link already (version {version}); nothing published")
            return
        seen = link.version if link is not None else 0
        if not _publish(ctx, app, [(subject, data)], wait):
            return
        from engine.linking import LinkSet

        now = app.link(p, s, x)
        changes = [e for e in app.events.get(now.id, gt=seen) if isinstance(e, LinkSet)]
        said = ", ".join(changes[-1].changes) if changes else "changed"
        typer.echo(f"linked {key}: version {now.link_version} ({said})")
        waiting = _prelink_waiting(app, p, s, x)
        if waiting:
            _follow_up(ctx, f"{_n(waiting, 'order')} placed before the link wait for a pull:",
                       [["prelink", "--platform", p, "--shop", s, "--product", x]])


@link_app.command("show")
def link_show(
    ctx: typer.Context,
    platform: str = typer.Option(..., "--platform", help="Shop platform."),
    shop: str = typer.Option(..., "--shop", help="Shop id."),
    product: str = typer.Option(..., "--product", help="Shop product id."),
) -> None:
    """Show a product's link: version, SKUs, alternatives, and whether each source can route now."""
    from adapters.cli_show import render_link

    check_platform(platform)
    with _app(ctx) as app:
        link = app.link(platform, shop, product)
        if link is None or not link.linked:
            was = f" (unlinked at version {link.link_version})" if link is not None and link.link_version else ""
            raise ValueError(f"--product: {platform}/{shop}/{product} has no link{was}")
        render_link(app, link, _prelink_waiting(app, platform, shop, product), ctx.obj.as_options())


def publish(
    ctx: typer.Context,
    subject: str = typer.Argument(..., metavar="SUBJECT", help="reflow.in.<name> or <name> (reflow schema)."),
    file: str = typer.Argument("-", metavar="[FILE|-]", help="The JSON body (default: stdin)."),
    wait: float = WAIT,
) -> None:
    """Publish any inbound message, validated against `reflow schema` first, with a fresh Nats-Msg-Id."""
    from adapters.messages import SUBJECTS, BadMessage, decode
    from adapters.operator_publish import NotApplied, send
    from adapters.partitions import NotThisShop, check_shop, plain_subject

    full = subject if subject.startswith("reflow.in.") else f"reflow.in.{subject}"
    plain, shop = plain_subject(full)  # the shop form, reflow.in.<name>.<platform>.<shop_id>, too
    if plain not in SUBJECTS or full.count(".") == 6:
        raise ValueError(f"SUBJECT: unknown subject {subject!r} (reflow schema lists every one; a shop's "
                         "subject may add .<platform>.<shop_id>)")
    data = _read(file, "FILE")
    try:
        check_shop(plain, shop, decode(plain, data))
    except (BadMessage, NotThisShop) as bad:
        raise ValueError(f"{getattr(bad, 'reason', None) or bad}; nothing published") from None
    from adapters.bootstrap import check_store
    from adapters.cli_common import given

    # Needs no store, but never goes ahead with another store's key, nor with a store named on
    # purpose (--store, --data-dir or REFLOW_STORE) that is not a reflow store.
    check_store(ctx.obj, required=given(ctx, "store") or given(ctx, "data_dir"))
    try:
        [sent] = send(ctx.obj.nats_url, [(full, data)], wait=wait)
    except NotApplied as late:
        fail(str(late), code=3)
    _report(sent, wait)


# -- shared -------------------------------------------------------------------------------------


class _app:  # noqa: N801 - used as `with _app(ctx) as app`
    """The application on the configured store, for reading; closed on exit."""

    def __init__(self, ctx: typer.Context) -> None:
        from adapters.bootstrap import open_app

        self.app = open_app(ctx.obj)

    def __enter__(self) -> Any:
        return self.app

    def __exit__(self, *exc: object) -> None:
        self.app.close()


def _order(app: Any, platform: str, shop: str, order: str) -> tuple[Any, str]:
    key = f"{platform}/{shop}/{order}"
    o = app.order(platform, shop, order)
    if o is None or not o.placed:
        raise ValueError(f"--order: unknown order {key}")
    return o, key


def _publish(ctx: typer.Context, app: Any, messages: list[tuple[str, bytes]], wait: float) -> bool:
    """Publish, wait until serve stored them (the store's REFLOW_IN position); True once applied."""
    from adapters.batches import applied_through
    from adapters.operator_publish import NotApplied, send

    try:
        sent = send(ctx.obj.nats_url, messages, wait=wait, applied=lambda source, seq: applied_through(app, source) >= seq)
    except NotApplied as late:
        fail(str(late), code=3)
    for s in sent:
        _report(s, wait, quiet=True)
    return wait > 0


def _follow_up(ctx: typer.Context, intro: str, commands: list[list[str]]) -> None:
    """`intro`, then each command to copy, with the global options in effect (so it runs from any
    directory), in lines that fit the terminal (80 columns when not one)."""
    from adapters.cli_common import console, shell_command

    typer.echo(intro)
    width = console().width
    for words in commands:
        typer.echo(shell_command(["reflow", *words, *ctx.obj.as_options()], width))


def _report(sent: Any, wait: float, quiet: bool = False) -> None:
    if sent.error is not None:
        fail(f"refused by reflow serve (dead letter for {sent.msg_id}): {sent.error}")
    if wait <= 0:
        typer.echo(f"published {sent.line()}; not waiting for reflow serve")
    elif not quiet:
        typer.echo(f"published {sent.line()}; applied by reflow serve")


def _read(file: str, option: str) -> bytes:
    from pathlib import Path

    if file == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(file).read_bytes()
    except OSError as exc:
        raise ValueError(f"{option}: cannot read {file}: {exc.strerror or exc}") from None


def _prelink_waiting(app: Any, platform: str, shop: str, product: str) -> int:
    """Orders of the product that wait for a pull pre-link (L10)."""
    from engine import ids
    from engine.backlog import Backlog

    backlog = app.load(Backlog, ids.backlog_id(platform, shop, product))
    return 0 if backlog is None else sum(1 for e in backlog.waiting.values() if e.reason == "no_link")


def _order_body(platform: str, shop: str, order: str) -> bytes:
    return _body(platform=platform, shop_id=shop, order_id=order)


def _body(**fields: Any) -> bytes:
    from adapters.operator_publish import body

    return body(fields)


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"
