"""DuckDB read models for analysts, and supplier statements (CONTRACT section 4, rules RC1-RC5).

`ProjectionRunner` (runner.py) feeds the fact tables of its working file and publishes the
analysts' file (publish.py: Parquet segments of what changed, a small DuckDB file of views);
`schema.py` holds the tables and views; `statements.py` issues statements; `export.py` writes
them out; `rebuild.py` recreates everything from the event store.
"""
