"""``reflow demo``: a day of a dropshipping merchant, end to end, in one command.

1. A private ``nats-server`` (JetStream) starts on a free port, and ``reflow serve`` in this
   process, with the SQLite event store and the analysts' DuckDB file in a fresh data directory.
2. The demo publishes what the shops, the suppliers and the merchant's back office would: JSON
   bodies on the contract's ``reflow.in.*`` subjects, each with its own ``Nats-Msg-Id``, in steps,
   waiting after each until serve has applied everything and published what it caused:

   - **opening**: six shops on six platforms, the merchant's settings (hold rules, split
     tolerance, split lines, re-route after 12 h overdue), thirteen suppliers with offers, stock
     and prices (one price rises at noon; a toy factory declares its daily capacity), merchant
     codes, links (reflow quantities, a two-supplier bundle, a warehouse serving only southern
     provinces, a micro-supply offer, two sources of a custom cup), stock rules;
   - **the day** (four days ago, China time) **and the days after**, in the order of time:
     orders over the day's hours, address changes, cancellations, after-sales before tracking, a
     platform review, orders held by the hold rules, orders for a product not linked yet, a
     company's bulk order split between two sources (RT12), the factory's evening live-stream
     sale whose last order finds it at capacity and waits for the next day (RT13), one message
     with a producer's bug (a supplier price as a JSON number) that goes to the dead letters; and
     the counterparts' answers as ``REFLOW_OUT`` calls for them. The suppliers read their
     allocations and intercepts (as a supplier would: never an order id) and answer: tracking on
     time, late or slow (after the reminder); intercepts stopped, too late (with a tracking
     number), or ignored (a loss risk); one allocation rejected as out of stock, its lines
     re-routed to the other source (RT11); one parcel never shipped, reminded at its ship-by and
     re-routed to the other source 12 h later (T4). The shops report after-sales once parcels are
     out; one parcel comes back, the merchant sends it back to its supplier, who accepts it (RC6);
   - **this morning**: the clock catches up, a sold-out SKU restocked, an offer republished
     without a SKU a link uses (the link broken) and the link pointed at the new SKU (mended,
     L11), the late product linked and its pre-link orders pulled, reviews cleared and held orders
     released, a released order's allocations cancelled by hand.
3. serve stops (draining), the projections catch up, the statement of the supplier that took the
   parcel back is issued (with its credit), and the report is read from the DuckDB views, with one
   line per issue-15 and issue-16 rule the day showed.

Deterministic for a seed and a day (``DemoDay.play`` is the timeline): the messages depend only
on the seed, the size and the day, and the counterparts' answers only on what ``REFLOW_OUT`` says;
each step is published whole and applied before the next is made. Messages that carry no
business time of their own (offers, links, reviews, releases, the pull) take the time the broker
stored them, which is why the day lies in the past and the morning is now. The one time the
demo puts on a message that is not in the plan, the restock's ``at`` (and the morning's clock
tick's), is the broker's time of the last message before the morning (never the demo's own
clock), so it comes after the offer's publication whatever the speed of the run.

The clock: the demo drives time itself. Its serve runs with ``clock="messages"`` (no ticks of its
own to the wall clock, which lies days after the demo's day), and the demo sends ``clock.tick``
along its timeline: a tick at ``T`` goes out only once every message dated at or before ``T`` is
out, the answers to them included. It ticks at each midnight, at the half hour after the ship-by
of each parcel tracked late or never (and when the merchant's re-route falls due), and at the
morning. So the deadlines of the past days (the factory's next day, RT13; ship-by times, T4) pass
when the timeline reaches them, as they would have, and only parcels really untracked at their
ship-by are reminded.

The parts, each readable alone:

- ``scenario``: the merchant's world as data (suppliers, offers, shops, products, links, codes);
- ``buyers``: the consumers (names, phones, regions, remarks, hours);
- ``wire``: a message, its times and encoding, what a stage gives back;
- ``generator``: the day's orders and stock from a seed (``DayPlan``);
- ``day``: ``DemoDay``, the timeline: the opening, the days in steps along the clock;
- ``reactions``: the suppliers' and the shops' answers, and this morning;
- ``harness``: serve in this process, publishing stages, reading what serve published;
- ``report``: the DuckDB tables printed at 80 columns;
- ``stories``: the report's line for each issue-15 and issue-16 rule, read from the views;
- ``run``: ``run_demo``, all of it in order.
"""

from __future__ import annotations

from adapters.demo.day import DemoDay
from adapters.demo.generator import DayPlan, Line, PlannedOrder
from adapters.demo.harness import DemoError
from adapters.demo.reactions import SupplierWork
from adapters.demo.report import EXAMPLE_QUERIES, Report, render, report_tables
from adapters.demo.run import run_demo
from adapters.demo.scenario import (
                                    CODE_ONLY,
                                    DAYS_AGO,
                                    DEFAULT_ORDERS,
                                    DEFAULT_SEED,
                                    LATE_LINK,
                                    MERCHANT,
                                    MERCHANT_NAME,
                                    QUICK_ORDERS,
                                    SCARCE,
                                    SHOPS,
                                    SUPPLIERS,
                                    link_body,
                                    product_id,
                                    sku_id,
)
from adapters.demo.wire import Applied, Message, Stage, encode, iso

__all__ = [
    "CODE_ONLY", "DAYS_AGO", "DEFAULT_ORDERS", "DEFAULT_SEED", "EXAMPLE_QUERIES", "LATE_LINK", "MERCHANT",
    "MERCHANT_NAME", "QUICK_ORDERS", "SCARCE", "SHOPS", "SUPPLIERS", "Applied", "DayPlan", "DemoDay", "DemoError",
    "Line", "Message", "PlannedOrder", "Report", "Stage", "SupplierWork", "encode", "iso", "link_body",
    "product_id", "render", "report_tables", "run_demo", "sku_id",
]
