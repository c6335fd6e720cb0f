"""Token budgets: counting (server /tokenize, cached tiktoken, approximation), relevance, and a
500-table schema trimmed to fit the model's context window."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import duckdb
import httpx
import pytest

import tablechat
from tablechat import events as ev
from tablechat.agent import budget
from tablechat.agent.budget import TokenCounter, approx_tokens, fit_schema, input_budget
from tablechat.agent.relevance import rank_tables, scores, words
from tablechat.sql.schema import SchemaSnapshot
from tests.support.fake_vllm import prompt_pieces
from tests.support.fake_vllm_client import FakeVLLM

DOMAINS = [
    "acme", "boreal", "cobalt", "delta", "ember", "fjord", "garnet", "harbor", "indigo",
    "juniper", "krypton", "lumen", "magma", "nimbus", "onyx", "pylon", "quartz", "raven",
    "sierra", "tundra", "umbra", "vertex", "willow", "xenon", "zephyr",
]
ENTITIES = [
    ("partners", None), ("payouts", "partners"), ("invoices", "partners"),
    ("invoice_lines", "invoices"), ("shipments", "invoices"), ("employees", None),
    ("timesheets", "employees"), ("projects", None), ("tasks", "projects"),
    ("assets", None), ("repairs", "assets"), ("vendors", None), ("contracts", "vendors"),
    ("tickets", "partners"), ("surveys", None), ("answers", "surveys"), ("warehouses", None),
    ("bins", "warehouses"), ("audits", "warehouses"), ("budgets", "projects"),
]
QUESTION = "total payout amount per zephyr partner"


@pytest.fixture(scope="module")
def wide_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DuckDB file with 500 tables (25 domains x 20 entities), foreign keys within a domain."""
    path = tmp_path_factory.mktemp("wide") / "wide.duckdb"
    con = duckdb.connect(str(path))
    for domain in DOMAINS:
        for entity, parent in ENTITIES:
            singular = entity[:-1]
            cols = [
                "id INTEGER PRIMARY KEY",
                f"{singular}_name VARCHAR",
                f"{singular.split('_')[-1]}_amount DOUBLE",
                "created_on DATE",
                "status VARCHAR",
                "region_code VARCHAR",
                "notes VARCHAR",
            ]
            if parent:
                cols.append(f"{parent[:-1]}_id INTEGER REFERENCES {domain}_{parent}(id)")
            con.execute(f"CREATE TABLE {domain}_{entity} ({', '.join(cols)})")
    con.execute("INSERT INTO zephyr_partners VALUES (1, 'Ada', 0, DATE '2024-01-01', 'active', "
                "'EU', ''), (2, 'Bo', 0, DATE '2024-02-01', 'active', 'US', '')")
    con.execute("INSERT INTO zephyr_payouts VALUES (1, 'p1', 10.5, DATE '2024-03-01', 'paid', "
                "'EU', '', 1), (2, 'p2', 4.5, DATE '2024-03-02', 'paid', 'EU', '', 1), "
                "(3, 'p3', 7, DATE '2024-03-03', 'paid', 'US', '', 2)")
    con.close()
    return path


@pytest.fixture(scope="module")
def wide(wide_db: Path) -> tablechat.TableChat:
    tc = tablechat.connect(wide_db, sample_values=2)
    yield tc
    tc.close()


# -- counting -----------------------------------------------------------------------------------
def test_approximation_is_deterministic_and_errs_high() -> None:
    text = "CREATE TABLE order_items (\n  id INTEGER PRIMARY KEY, -- Order line 12345\n);"
    assert approx_tokens(text) == approx_tokens(text) > 0
    assert approx_tokens("") == 0
    # at least one token per digit and per punctuation mark, never fewer than chars / 3.5
    assert approx_tokens("12345") == 5
    assert approx_tokens("a" * 35) >= 10


def test_approximation_over_counts_the_fake_tokenizer(wide: tablechat.TableChat) -> None:
    schema = wide.snapshot().to_prompt()
    assert approx_tokens(schema) >= len(prompt_pieces(schema))


def test_tiktoken_never_downloads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tiktoken.load

    def no_network(*args: object, **kwargs: object) -> bytes:
        raise AssertionError("tiktoken tried to download its BPE file")

    monkeypatch.setattr(tiktoken.load, "read_file", no_network)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    assert budget.tiktoken_counter() is None  # no cached file: the approximation is used
    counter = TokenCounter()
    assert counter.local_method == "approx"
    assert counter.estimate("SELECT 1") == approx_tokens("SELECT 1")


def test_server_tokenize_is_used_and_cached(fake_vllm: FakeVLLM) -> None:
    counter = TokenCounter(f"{fake_vllm.base}/tokenize", fake_vllm.model)
    text = "SELECT name, SUM(total) FROM orders GROUP BY 1"

    async def twice() -> tuple[int, int]:
        return await counter.count(text), await counter.count(text)

    first, second = asyncio.run(twice())
    assert first == second == len(prompt_pieces(text))
    assert counter.method == "server"
    assert len(fake_vllm.requests("/tokenize")) == 1


def test_server_without_tokenize_falls_back_locally(fake_vllm: FakeVLLM) -> None:
    counter = TokenCounter(f"{fake_vllm.base}/no-tokenize-here", fake_vllm.model)
    assert asyncio.run(counter.count("SELECT 1")) == approx_tokens("SELECT 1")
    assert counter.method == "approx"
    asyncio.run(counter.count("SELECT 2"))
    assert len(fake_vllm.requests("/no-tokenize-here")) == 1  # never asked again


def test_input_budget_keeps_the_answer_room() -> None:
    assert input_budget(8192, 512, 2) < 8192 - 512
    assert input_budget(8192, 512, 2) > 6000
    assert input_budget(32768, 512, 2) - input_budget(8192, 512, 2) > 20000


# -- relevance ----------------------------------------------------------------------------------
def test_words_split_identifiers_and_drop_stop_words() -> None:
    assert words("How many orderItems per customer_segments?") == {"order", "item", "customer",
                                                                   "segment"}


def test_demo_relevance_uses_synonyms_metrics_and_foreign_keys(demo_db: Path) -> None:
    tc = tablechat.connect(demo_db)
    try:
        snap = tc.snapshot()
        relevant, rest = rank_tables(snap, "revenue by region", tc.semantic)
        assert relevant[0] == "order_items"  # the revenue metric's table
        assert "regions" in relevant[:4]
        assert "orders" in relevant  # the FK neighbour joining them
        assert set(relevant) | set(rest) == set(snap.tables)
        shop = scores(snap, "which shops sell the most?", tc.semantic)
        assert max(shop, key=lambda t: shop[t]) == "stores"  # "shops" is a synonym
    finally:
        tc.close()


def test_wide_relevance_picks_the_tables_and_their_neighbours(wide: tablechat.TableChat) -> None:
    relevant, _ = rank_tables(wide.snapshot(), QUESTION)
    assert relevant[0] == "zephyr_payouts"
    assert relevant.index("zephyr_partners") < 3


# -- trimming -----------------------------------------------------------------------------------
def _fit(snap: SchemaSnapshot, counter: TokenCounter, budget_tokens: int):  # type: ignore[no-untyped-def]
    def render(schema: str) -> str:
        return f"You write SQL.\n\n## Database schema\n{schema}\n\n## Rules\n- be good"

    return asyncio.run(fit_schema(snap, QUESTION, render, counter, budget_tokens,
                                  dynamic=QUESTION))


def test_small_schema_is_kept_whole_without_a_request(demo_db: Path, fake_vllm: FakeVLLM) -> None:
    tc = tablechat.connect(demo_db)
    try:
        counter = TokenCounter(f"{fake_vllm.base}/tokenize", fake_vllm.model)
        fit = _fit(tc.snapshot(), counter, 6000)
        assert not fit.trimmed and len(fit.tables) == 7
        assert fake_vllm.requests("/tokenize") == []  # the local estimate was enough
    finally:
        tc.close()


@pytest.mark.parametrize("exact", [True, False], ids=["server-count", "approximate"])
def test_500_tables_are_trimmed_to_the_budget(
    wide: tablechat.TableChat, fake_vllm: FakeVLLM, exact: bool
) -> None:
    snap = wide.snapshot()
    assert len(snap.tables) == 500
    counter = TokenCounter(f"{fake_vllm.base}/tokenize", fake_vllm.model) if exact \
        else TokenCounter()
    fit = _fit(snap, counter, 3000)
    assert fit.trimmed and fit.total_tables == 500
    assert 3 <= len(fit.tables) < 500
    assert fit.tables[0] == "zephyr_payouts" and "zephyr_partners" in fit.tables
    assert "CREATE TABLE zephyr_payouts" in fit.text and "500 tables shown" in fit.text
    # the fake server's tokenizer agrees that the prompt fits
    with httpx.Client(trust_env=False) as http:
        counted = http.post(f"{fake_vllm.base}/tokenize",
                            json={"prompt": fit.text + QUESTION}).json()["count"]
    assert counted <= 3000


def test_500_tables_end_to_end_within_the_context_window(
    wide_db: Path, fake_vllm_factory
) -> None:
    server = fake_vllm_factory(max_model_len=4096)
    sql = ("SELECT p.partner_name, SUM(y.payout_amount) AS total FROM zephyr_payouts y "
           "JOIN zephyr_partners p ON p.id = y.partner_id GROUP BY 1 ORDER BY 2 DESC")
    server.script(rules=[
        {"match": "## Database schema", "on": "prompt", "reply": {"content": json.dumps(
            {"sql": sql})}},
        {"match": "SQL that was run", "on": "prompt", "reply": {"content": "Ada: 15."}},
    ])
    tc = tablechat.connect(wide_db, llm=server.url, llm_max_retries=0, sample_values=2)
    try:
        answer = tc.ask(QUESTION)
    finally:
        tc.close()
    assert answer.error is None, answer.error
    assert answer.rows == [("Ada", 15.0), ("Bo", 7.0)]
    (sql_request,) = [r for r in server.chat_requests() if r["status"] == 200
                      and "## Database schema" in r["body"]["messages"][0]["content"]]
    prompt = sql_request["body"]["messages"][0]["content"]
    assert "CREATE TABLE zephyr_payouts" in prompt and "CREATE TABLE zephyr_partners" in prompt
    assert prompt.count("CREATE TABLE") < 500
    assert prompt.index("## Database schema") < prompt.index(QUESTION)
    assert server.requests("/tokenize"), "vLLM's own tokenizer counted the prompt"
    trimmed = [e for e in answer.events if isinstance(e, ev.Status) and "trimmed" in e.message]
    assert trimmed and "of 500 tables" in trimmed[0].message


def test_the_schema_part_is_capped_however_large_the_window(
    wide: tablechat.TableChat, demo_db: Path
) -> None:
    """TABLECHAT_PROMPT_SCHEMA_TOKENS bounds the schema text itself (issue 11): a window of a
    million tokens still gets at most that much schema, the most relevant tables first."""
    counter = TokenCounter()

    def render(schema: str) -> str:
        return f"You write SQL.\n\n## Database schema\n{schema}\n\n## Rules\n- be good"

    fit = asyncio.run(fit_schema(wide.snapshot(), QUESTION, render, counter, 1_000_000,
                                 dynamic=QUESTION, schema_tokens=800))
    assert fit.trimmed and counter.estimate(fit.text) <= 800
    assert fit.tables[0] == "zephyr_payouts"
    tc = tablechat.connect(demo_db)  # a schema under the cap is kept whole
    try:
        whole = asyncio.run(fit_schema(tc.snapshot(), "revenue", render, counter, 1_000_000,
                                       schema_tokens=6000))
        assert not whole.trimmed and len(whole.tables) == 7
    finally:
        tc.close()
