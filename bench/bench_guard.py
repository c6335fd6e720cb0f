"""The SQL guard's cost per query (p50, µs), compiled sqlglot vs pure Python is not compared
here; the goal is an absolute one: p50 under 1 ms on the demo schema."""

from __future__ import annotations

import time

from bench import Row, p50, percentile

QUERIES = [
    "SELECT c.name, SUM(oi.quantity * oi.unit_price) AS revenue FROM customers c "
    "JOIN orders o ON o.customer_id = c.id JOIN order_items oi ON oi.order_id = o.id "
    "WHERE o.order_date >= DATE '2024-01-01' GROUP BY c.name ORDER BY revenue DESC LIMIT 5",
    "SELECT count(*) FROM orders WHERE status = 'completed'",
    "SELECT r.name, count(*) FROM stores s JOIN regions r ON r.id = s.region_id GROUP BY r.name",
]


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
    tc.close()
    median = p50(samples)
    return [
        Row("guard: check one query, p50", median, "µs", goal="< 1000 µs", ok=median < 1000),
        Row("guard: check one query, p95", percentile(samples, 95), "µs"),
    ]
