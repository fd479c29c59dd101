"""Sinks: where Forewarn's results are stored. ClickHouse is the one sink, through clickhouse-connect."""
