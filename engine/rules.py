"""The rule index: for each rule of the domain (shared/DOMAIN.md), where it is enforced.

Dotted paths (module, then attribute), so this file imports nothing; tests/test_rules.py checks
that every rule of DOMAIN.md is here (or planned, with its issue), that every path resolves, and
that every rule here is named by a test.
"""

from __future__ import annotations

RULES: dict[str, tuple[str, ...]] = {
    # linking
    "L1": ("engine.linking.check_link",),
    "L2": ("engine.linking.check_link", "engine.handlers.supply.check_component"),
    "L3": ("engine.routing.candidate",),
    "L4": ("engine.orders.Order.missing", "engine.routing.line_facts", "engine.lifecycle.maybe_ship"),
    "L5": ("engine.linking.check_link",),
    "L6": ("engine.linking.Link.product_entry",),
    "L7": ("engine.routing.resolve", "engine.merchants.CodeBook.register", "engine.handlers.supply.register_code"),
    "L8": ("engine.linking.Link.set", "engine.linking.Link.unlink", "engine.linking.describe_changes"),
    "L9": ("engine.handlers.orders.place_order",),
    "L10": ("engine.handlers.linking.pull_prelink",),
    "L11": ("engine.stocksync.missing_of", "engine.linking.Link.report_health", "engine.stocksync.offer_expired"),
    # routing
    "RT1": ("engine.policy._ineligible", "engine.routing.candidate"),
    "RT2": ("engine.policy.rank",),
    "RT3": ("engine.policy._decide_line", "engine.routing.park", "engine.routing.reroute_backlog"),
    "RT4": ("engine.orders.Order.routable_lines",),
    "RT5": ("engine.routing.allocate",),
    "RT6": ("engine.orders.Order.record_route", "engine.policy.decide"),
    "RT7": ("engine.catalog.Offer.reserve", "engine.catalog.Offer.available", "engine.policy._per_sku"),
    "RT8": ("engine.routing.in_pool",),
    "RT9": ("engine.policy._ineligible",),
    "RT10": ("engine.policy._fewer_splits",),
    "RT11": ("engine.allocations.Allocation.reject", "engine.handlers.fulfilment.reject_allocation",
             "engine.catalog.Offer.reject_sku", "engine.policy._ineligible"),
    "RT12": ("engine.policy._split", "engine.policy.picked", "engine.routing.sellable"),
    "RT13": ("engine.catalog.Supplier.capacity_left", "engine.catalog.Supplier.use_capacity",
             "engine.routing.at_capacity", "engine.stocksync.capacity_day", "engine.clock.pass_time"),
    # interception
    "I1": ("engine.handlers.orders.open_aftersale", "engine.lifecycle.stop_active"),
    "I2": ("engine.handlers.orders.open_aftersale",),
    "I3": ("engine.handlers.orders.set_review",),
    "I4": ("engine.handlers.orders.change_address", "engine.orders.Order.change_address"),
    "I5": ("engine.handlers.fulfilment.cancel_allocation", "engine.allocations.Allocation.check_cancellable"),
    "I6": ("engine.handlers.orders.hold_reason", "engine.orders.Order.release"),
    "I7": ("engine.allocations.Allocation.upload_tracking",),
    "I8": ("engine.allocations.Allocation.answer_intercept", "engine.lifecycle.shipped_despite_intercept"),
    # tracking and shipping
    "T1": ("engine.allocations.check_tracking", "engine.allocations.Allocation.check_owner"),
    "T2": ("engine.lifecycle.maybe_ship", "engine.orders.Order.set_aside"),
    "T3": ("engine.servicelevel.ship_by",),
    "T4": ("engine.overdue.ship_by_passed", "engine.overdue.reroute_overdue", "engine.allocations.Allocation.remind_overdue",
           "engine.clock.pass_time"),
    # reconciliation
    "RC1": ("engine.merchants.PriceBook.price_at", "engine.merchants.PriceBook.set_price"),
    "RC2": ("projections.statements.compute", "engine.statements.period"),
    "RC3": ("engine.statements.issue_statement",),
    "RC4": ("engine.statements.SupplierStatements.check_may_issue",),
    "RC5": ("engine.statements.SupplierStatements.issue", "engine.statements.content_hash"),
    "RC6": ("engine.handlers.returns.request_return", "engine.returns.SupplierReturn.answer",
            "engine.statements.SupplierStatements.issue", "projections.statements.credits"),
    # privacy
    "P1": ("engine.privacy.mask", "engine.privacy.recipient_token"),
    "P2": ("engine.privacy.seal",),
    # inventory sync
    "S1": ("engine.routing.sellable",),
    "S2": ("engine.linking.published_stock", "engine.linking.check_stock_rule"),
    "S3": ("engine.linking.Link.publish_stock", "engine.stocksync.supply_changed"),
    # micro-supply
    "M1": ("engine.catalog.Offer.open_to", "engine.handlers.supply.check_component"),
    "M2": ("engine.catalog.Offer.expired", "engine.catalog.Offer.renew"),
    "M3": ("engine.handlers.orders.channel_of",),
    # beyond the seeds
    "A1": ("replay.whatif.replay",),
    "A2": ("engine.base.chain_digest", "engine.anchor.LogAnchor.anchor", "replay.verify.verify"),
}

PLANNED: dict[str, str] = {}
"""Rules of DOMAIN.md not enforced yet, and the issue that brings them."""
