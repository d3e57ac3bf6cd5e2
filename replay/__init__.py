"""Answers from the order history (the event store): pull pre-link orders (`prelink`, rule L10),
what-if replays (`whatif`, A1), an order's audit with time travel (`audit`), and the check that the
stored history is intact and every decision reproducible (`verify`, A2 and RT6)."""
