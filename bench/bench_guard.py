"""The SQL guard's cost per query (p50, µs), compiled sqlglot vs pure Python is not compared
here; the goal is an absolute one: p50 under 1 ms on the demo schema. Beside it, what refusing
the statements of issue 11 costs: the 1.5 MB 45,000-``UNION ALL`` statement (3.5 s and 371 MB
in the guard before the size bounds) and 3,000 nested parentheses (RecursionError before)."""

from __future__ import annotations

import contextlib
import time

from bench import Row, p50, percentile
from tablechat import TableChatError
from tablechat.sql.guard import SQLGuard

QUERIES = [
    "SELECT c.name, SUM(oi.quantity * oi.unit_price) AS revenue FROM customers c "
    "JOIN orders o ON o.customer_id = c.id JOIN order_items oi ON oi.order_id = o.id "
    "WHERE o.order_date >= DATE '2024-01-01' GROUP BY c.name ORDER BY revenue DESC LIMIT 5",
    "SELECT count(*) FROM orders WHERE status = 'completed'",
    "SELECT r.name, count(*) FROM stores s JOIN regions r ON r.id = s.region_id GROUP BY r.name",
]
HOSTILE = {
    "45,000 UNION ALL": "SELECT id FROM regions" + " UNION ALL SELECT id FROM regions" * 45_000,
    "3,000 parentheses": "SELECT " + "(" * 3000 + "1" + ")" * 3000,
    "LATERAL meta function": "SELECT * FROM LATERAL json_execute_serialized_sql("
    "json_serialize_sql('SELECT name, value FROM duckdb_settings()'))",
}


def _refusal_us(guard: SQLGuard, sql: str) -> float:
    samples = []
    for _ in range(20):
        start = time.perf_counter()
        with contextlib.suppress(TableChatError):
            guard.check(sql)
        samples.append((time.perf_counter() - start) * 1e6)
    return p50(samples)


def run() -> list[Row]:
    import tablechat

    tc = tablechat.connect()
    guard = tc.guard()
    for q in QUERIES:  # warm up
        guard.check(q)
    samples: list[float] = []
    for _ in range(300):
        for q in QUERIES:
            start = time.perf_counter()
            guard.check(q)
            samples.append((time.perf_counter() - start) * 1e6)
    refused = {name: _refusal_us(guard, sql) for name, sql in HOSTILE.items()}
    # a refusal tokenizes at most TABLECHAT_MAX_SQL_CHARS characters: a few ms at worst
    refusals = [Row(f"guard: refuse {name}, p50", us, "µs", goal="< 10000 µs", ok=us < 10_000)
                for name, us in refused.items()]
    tc.close()
    median = p50(samples)
    return [
        Row("guard: check one query, p50", median, "µs", goal="< 1000 µs", ok=median < 1000),
        Row("guard: check one query, p95", percentile(samples, 95), "µs"),
        *refusals,
    ]
