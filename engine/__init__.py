"""reflow's domain: aggregates, the routing policy, domain errors and the application service.

Nothing here imports NATS, DuckDB, SQL or asyncio. Read the business here.
"""
