"""Links between a shop product and supplier sources (rules L1-L8), and its stock rules (S2, S3)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from engine.base import Aggregate, Event, Value
from engine.errors import InvalidCommand, LinkRefused
from engine.values import Missing, SkuLink

MAX_OFFERS = 10  # rule L1


class StockRule(Value, frozen=True):
    ratio: Decimal = Decimal("1")
    min_stock: int = 0


class Link(Aggregate):
    """One shop product's link. `link_version` counts link changes only (rule L8)."""

    def __init__(self, id):  # noqa: A002
        super().__init__(id)
        self.platform = self.shop_id = self.product_id = ""
        self.linked = False
        self.mode = "multi"
        self.skus: tuple[SkuLink, ...] = ()
        self.link_version = 0
        self.linked_since: datetime | None = None
        self.rules: dict[str, StockRule] = {}
        self.published: dict[str, int] = {}
        self.health: dict[str, tuple[Missing, ...]] = {}  # shop SKU -> what is missing (L11)

    # -- commands ---------------------------------------------------------------------------

    def set(self, platform: str, shop_id: str, product_id: str, mode: str, skus: tuple[SkuLink, ...],
            at: datetime) -> bool:
        """Rules L1-L8: the whole desired link; False when it is the link already."""
        check_link(mode, skus)
        if self.linked and self.mode == mode and self.skus == skus:
            return False
        self.trigger(LinkSet, at, platform=platform, shop_id=shop_id, product_id=product_id, mode=mode,
                     skus=skus, link_version=self.link_version + 1,
                     changes=describe_changes(self.skus, skus, self.linked))
        return True

    def unlink(self, at: datetime) -> bool:
        """Rule L8: unlinking is a link change too."""
        if not self.linked:
            return False
        self.trigger(Unlinked, at, link_version=self.link_version + 1)
        return True

    def set_rule(self, platform: str, shop_id: str, product_id: str, sku_id: str, rule: StockRule,
                 at: datetime) -> bool:
        """Rule S2, per shop SKU."""
        if self.rules.get(sku_id) == rule:
            return False
        self.trigger(StockRuleSet, at, platform=platform, shop_id=shop_id, product_id=product_id,
                     sku_id=sku_id, rule=rule)
        return True

    def publish_stock(self, entry: SkuLink, sellable: int, at: datetime) -> None:
        """Rules S2, S3: publish a shop SKU's stock only when the number changes."""
        key = sku_key(entry)
        stock = published_stock(sellable, self.rules.get(key, StockRule()))
        if self.published.get(key) != stock:
            self.trigger(StockPublished, at, platform=self.platform, shop_id=self.shop_id,
                         product_id=self.product_id, sku_id=key, stock=stock, sellable=sellable)

    def report_health(self, missing: dict[str, tuple[Missing, ...]], at: datetime) -> None:
        """Rule L11: a shop SKU whose link uses a supplier SKU that cannot serve it is broken, once
        per break (a different set of missing SKUs is another break); healthy again when mended."""
        for sku_id in sorted(set(self.health) | set(missing)):
            now = missing.get(sku_id, ())
            if self.health.get(sku_id, ()) != now:
                self.trigger(LinkHealthChanged, at, platform=self.platform, shop_id=self.shop_id,
                             product_id=self.product_id, sku_id=sku_id,
                             status="broken" if now else "healthy", missing=now)

    # -- queries ----------------------------------------------------------------------------

    def entry_for(self, sku_id: str | None, merchant_code: str | None) -> tuple[SkuLink, str] | None:
        """Rules L2, L7: the SKU entry matching a line by its SKU id, else by its merchant code."""
        if not self.linked:
            return None
        for entry in self.skus:
            if sku_id is not None and entry.sku_id == sku_id:
                return entry, "sku"
        for entry in self.skus:
            if merchant_code is not None and entry.sku_id is None and entry.merchant_code == merchant_code:
                return entry, "merchant_code"
        return None

    def product_entry(self) -> SkuLink | None:
        """Rule L6: the product-level entry, for lines nothing else matched."""
        if not self.linked:
            return None
        return next((e for e in self.skus if e.sku_id is None and e.merchant_code is None), None)

    def suppliers(self) -> set[str]:
        return {c.supplier_id for e in self.skus for a in e.alternatives for c in a.components}


def sku_key(entry: SkuLink) -> str:
    """The shop SKU an entry publishes stock for ("" is the product itself)."""
    return entry.sku_id or entry.merchant_code or ""


def offers_of(skus: tuple[SkuLink, ...]) -> set[tuple[str, str]]:
    return {
        (c.supplier_id, c.offer_id) for e in skus for a in e.alternatives for c in a.components
    }


def check_link(mode: str, skus: tuple[SkuLink, ...]) -> None:
    """Rules L1-L5 on the shape of a desired link; raises naming the field."""
    if mode not in ("single", "multi"):
        raise InvalidCommand(f"mode: must be single or multi, got {mode!r}", "L5")
    if not skus:
        raise InvalidCommand("skus: at least one SKU entry is needed", "L2")
    seen: set[tuple[str | None, str | None]] = set()
    for i, entry in enumerate(skus):
        key = (entry.sku_id, entry.merchant_code)
        if key == (None, None) and len(skus) > 1:
            raise InvalidCommand(f"skus[{i}]: a product-level entry (no sku_id, no merchant_code) must be "
                                 "the only entry", "L6")
        if key in seen:
            raise InvalidCommand(f"skus[{i}]: SKU {entry.sku_id or entry.merchant_code!r} twice")
        seen.add(key)
        if not entry.alternatives:
            raise InvalidCommand(f"skus[{i}].alternatives: at least one is needed", "L2")
        for j, alt in enumerate(entry.alternatives):
            if not alt.components:
                raise InvalidCommand(f"skus[{i}].alternatives[{j}].components: empty", "L2")
            for k, comp in enumerate(alt.components):
                if not isinstance(comp.qty, int) or comp.qty < 1:
                    raise InvalidCommand(
                        f"skus[{i}].alternatives[{j}].components[{k}].qty: reflow quantity "
                        f"must be an integer >= 1, got {comp.qty!r}",
                        "L3",
                    )
    offers = offers_of(skus)
    if len(offers) > MAX_OFFERS:
        raise LinkRefused(
            f"a product links to at most {MAX_OFFERS} supplier offers, this link has "
            f"{len(offers)}",
            "L1",
        )
    if mode == "single" and len(offers) != 1:
        raise LinkRefused(
            f"a single-mode link has exactly one offer, this one has {len(offers)}", "L5"
        )


def describe_changes(old: tuple[SkuLink, ...], new: tuple[SkuLink, ...], linked: bool) -> tuple[str, ...]:
    """What a link change did, for the audit trail (rule L8)."""
    if not linked:
        return ("created",)
    changes: list[str] = []
    old_offers, new_offers = offers_of(old), offers_of(new)
    changes += [f"offer added {s}/{o}" for s, o in sorted(new_offers - old_offers)]
    changes += [f"offer removed {s}/{o}" for s, o in sorted(old_offers - new_offers)]
    old_by = {(e.sku_id, e.merchant_code): e for e in old}
    new_by = {(e.sku_id, e.merchant_code): e for e in new}
    for key in sorted(new_by.keys() - old_by.keys(), key=str):
        changes.append(f"sku mapped {key[0] or key[1] or '(product)'}")
    for key in sorted(old_by.keys() - new_by.keys(), key=str):
        changes.append(f"sku unmapped {key[0] or key[1] or '(product)'}")
    for key in sorted(new_by.keys() & old_by.keys(), key=str):
        before, after = old_by[key], new_by[key]
        if before == after:
            continue
        name = key[0] or key[1] or "(product)"
        if _shape(before) == _shape(after):
            changes.append(f"qty changed {name}")
        elif {c.supplier_id for a in before.alternatives for c in a.components} != {
            c.supplier_id for a in after.alternatives for c in a.components
        }:
            changes.append(f"source switched {name}")
        else:
            changes.append(f"sku remapped {name}")
    return tuple(changes) or ("unchanged",)


def _shape(entry: SkuLink) -> tuple:
    return tuple(
        (a.priority, a.provinces, tuple((c.supplier_id, c.offer_id, c.supplier_sku_id) for c in a.components))
        for a in entry.alternatives
    )


class LinkSet(Event, frozen=True):
    platform: str
    shop_id: str
    product_id: str
    mode: str
    skus: tuple[SkuLink, ...]
    link_version: int
    changes: tuple[str, ...]

    def apply(self, link: Link) -> None:
        link.platform, link.shop_id, link.product_id = self.platform, self.shop_id, self.product_id
        if not link.linked:
            link.linked_since = self.at
        link.linked, link.mode, link.skus = True, self.mode, self.skus
        link.link_version = self.link_version


class Unlinked(Event, frozen=True):
    link_version: int

    def apply(self, link: Link) -> None:
        link.linked, link.skus, link.link_version = False, (), self.link_version
        link.linked_since = None


class StockRuleSet(Event, frozen=True):
    platform: str
    shop_id: str
    product_id: str
    sku_id: str
    rule: StockRule

    def apply(self, link: Link) -> None:
        link.platform, link.shop_id, link.product_id = self.platform, self.shop_id, self.product_id
        link.rules[self.sku_id] = self.rule


class StockPublished(Event, frozen=True):
    """The stock to show on the shop for one shop SKU (rules S1-S3)."""

    platform: str
    shop_id: str
    product_id: str
    sku_id: str
    stock: int
    sellable: int

    def apply(self, link: Link) -> None:
        link.published[self.sku_id] = self.stock


class LinkHealthChanged(Event, frozen=True):
    """Rule L11: a shop SKU's link broke (naming what is missing) or was mended."""

    platform: str
    shop_id: str
    product_id: str
    sku_id: str
    status: str
    missing: tuple[Missing, ...] = ()

    def apply(self, link: Link) -> None:
        if self.missing:
            link.health[self.sku_id] = self.missing
        else:
            link.health.pop(self.sku_id, None)


def published_stock(sellable: int, rule: StockRule) -> int:
    """Rule S2: floor(sellable x ratio), and 0 below the minimum (protects against overselling)."""
    if sellable < rule.min_stock:
        return 0
    return int((Decimal(sellable) * rule.ratio).to_integral_value(rounding="ROUND_FLOOR"))


def check_stock_rule(ratio: Decimal, min_stock: int) -> StockRule:
    if not (Decimal(0) <= ratio <= Decimal(1)):
        raise InvalidCommand(f"ratio: must be between 0 and 1, got {ratio}", "S2")
    if min_stock < 0:
        raise InvalidCommand(f"min_stock: must be >= 0, got {min_stock}", "S2")
    return StockRule(ratio=ratio, min_stock=min_stock)

