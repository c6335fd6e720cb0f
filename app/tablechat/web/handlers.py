"""The UI's event handlers: thin adapters from Gradio events to ``chat`` / ``results`` /
``browse`` over ``TableChat``. Each returns values for the outputs ``ui.py`` wires it to, in the
orders named below (``RESULT_OUTS`` and the lists that embed it).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr

from .. import _loop
from ..core import TableChat
from ..errors import TableChatError
from ..redact import redact_url
from . import browse, chat
from .files import ResultFiles
from .formats import units_of
from .gradio_guard import inside_upload_folder
from .markup import plain
from .metrics import Metrics
from .results import Result, chart_view, download_label, pretty_sql

REFUSALS = {
    "UnsafeSQLError": "Refused by the SQL guard",
    "InvalidSQLError": "Invalid SQL",
    "SQLExecutionError": "The database could not run it",
    "QueryTimeoutError": "Too slow",
}
# table, info, result state, page state, download, number, chart, prev, next, export, tabs
RESULT_OUTS = 11
SKIP_RESULT = [gr.skip()] * RESULT_OUTS


def session_of(request: gr.Request | None) -> str:
    """The tablechat session of a browser tab (or a gradio_client)."""
    sid = getattr(request, "session_hash", None) or "anonymous"
    return f"ui-{sid}"


def stop_button(active: bool) -> Any:
    """Stop is pressable only while an answer runs."""
    return gr.Button(interactive=active)


@dataclass(slots=True, eq=False)  # each run is its own (kept in a set)
class Running:
    """An answer running in a session, and the signal that ends it (Stop, Clear)."""

    stop: asyncio.Event = field(default_factory=asyncio.Event)
    cleared: bool = False  # Clear, not Stop: the answer leaves the emptied chat alone


async def until_stopped(stream: AsyncIterator[list[Any]], stop: asyncio.Event
                        ) -> AsyncIterator[list[Any]]:
    """``stream``'s items until ``stop`` is set; then its work is cancelled (the question's
    LLM call, its query) and the iteration ends normally.

    Stop and Clear end an answer this way rather than with Gradio's ``cancels``: a cancelled
    event ends in the browser with an empty completion that fails there, and Gradio then drops
    the question sent meanwhile, which ``trigger_mode="always_last"`` had put off until the
    answer ended (a question sent right after Stop went unanswered; issue 12)."""
    it = aiter(stream)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        while True:
            step = asyncio.ensure_future(anext(it))
            await asyncio.wait({step, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if not step.done():  # stopped: cancel the work where it waits
                step.cancel()
                await asyncio.gather(step, return_exceptions=True)
                return
            try:
                item = step.result()
            except StopAsyncIteration:
                return
            yield item
            if stop.is_set():
                return
    finally:
        stopped.cancel()
        close = getattr(it, "aclose", None)
        if close is not None:
            await close()


class Handlers:
    """The handlers of one UI, over one ``TableChat``."""

    def __init__(self, tc: TableChat, files: ResultFiles, metrics: Metrics | None) -> None:
        self.tc = tc
        self.files = files
        self.metrics = metrics
        self.units = units_of(tc.semantic)
        self.dialect = tc.snapshot().dialect
        self.running: dict[str, set[Running]] = {}  # by session: the answers running

    # -- results ------------------------------------------------------------------------------
    def csv_file(self, result: Result, session: str, *, whole: bool = False) -> Path | None:
        """A CSV of the result (blocking), in a file of its own named after the question: the
        fetched rows, or with ``whole`` (the Export button) the whole result: its query runs
        again through the same guard, up to TABLECHAT_EXPORT_MAX_ROWS rows. The session's
        files stay within the disk budgets (``files``); None when even the rows shown are over
        them."""
        if result.exported is not None and result.exported.path.is_file():
            return result.exported.path  # exported whole already: that file
        if not whole and result.csv is not None and result.csv.is_file():
            return result.csv  # shown again (a message clicked): the same file
        files = self.files

        def new_path() -> Path:
            # "result-" first: the budgets count a session's files by that prefix
            return files.folder(session) / (f"result-{uuid.uuid4().hex[:12]}-"
                                             f"{result.csv_name()}.csv")
        path = new_path()
        try:
            if whole and result.source:
                with files.writing(session) as room:  # the disk budget, while it writes
                    exported = self.tc.export_csv(result.source, path, session=session,
                                                  max_bytes=room)
                files.admit(session, path)
                result.exported = exported
            else:
                result.csv = files.admit(session, result.write_csv(path))
                return result.csv
        except (TableChatError, OSError) as exc:
            result.export_error = str(exc)
            try:  # the rows shown, at least
                return files.admit(session, result.write_csv(new_path()))
            except (TableChatError, OSError):
                return None
        return path

    def show(self, result: Result | None, page: int = 0,
             empty: str = "Ask a question to see its result here.",
             csv: Path | bool | None = None, *, focus: bool = False) -> list[Any]:
        """Values for the result outputs (``csv=None``: a preview, the CSV comes later;
        ``csv=False``: no CSV, over the disk budget; ``focus``: bring the Result tab
        forward)."""
        tabs = gr.Tabs(selected="result") if focus else gr.skip()
        if result is None:
            return [gr.Dataframe(value=None, visible=False), empty, None, 0,
                    gr.DownloadButton(value=None, visible=False), gr.Markdown(visible=False),
                    gr.HTML(value="", visible=False), gr.Button(visible=False),
                    gr.Button(visible=False), gr.Button(visible=False), tabs]
        frame, info, page = result.page(page, self.units)
        download: Any = gr.skip()
        if csv is False:
            download = gr.DownloadButton(value=None, visible=False)
        elif isinstance(csv, Path):
            download = gr.DownloadButton(value=str(csv), visible=bool(result.rows),
                                         label=download_label(result))
        view = chart_view(result, self.units)
        paged = result.pages > 1
        return [gr.Dataframe(value=frame, visible=True), info, result, page, download,
                gr.Markdown(view.markdown, visible=view.kind == "number"),
                gr.HTML(value=view.html, visible=view.kind == "chart"),
                gr.Button(visible=paged, interactive=page > 0),
                gr.Button(visible=paged, interactive=page < result.pages - 1),
                gr.Button(visible=isinstance(csv, Path) and result.exportable), tabs]

    # -- asking -------------------------------------------------------------------------------
    async def stream_answer(self, question: str, conv: list[chat.Turn],
                            session: str) -> AsyncIterator[list[Any]]:
        """Values for [chatbot, conv, question, notice, sql, stop, *result] as the answer
        streams. The question box is always skipped: it was emptied when the question was
        sent, and what the person types meanwhile stays. An answer without a table (a
        refusal, an error, a chat reply) leaves the previous result where it is."""
        current: Result | None = None
        first = True
        async for upd in chat.ask(self.tc, question, conv, session=session,
                                  metrics=self.metrics):
            if upd.notice is not None:  # bad input: nothing else changes
                yield [gr.skip(), gr.skip(), gr.skip(), upd.notice, gr.skip(),
                       stop_button(False), *SKIP_RESULT]
                return
            out: list[Any] = [chat.messages(upd.conv), upd.conv, gr.skip(), "",
                              upd.sql if upd.sql is not None else gr.skip(),
                              stop_button(True) if first else gr.skip()]
            first = False
            if upd.result is not None:
                current = upd.result
            if upd.done:  # the last yield carries everything, whole
                out[5] = stop_button(False)
                shown = upd.conv[-1].get("shown_sql") if current is not None else None
                out[4] = shown or gr.skip()
                if current is None:
                    out.extend(SKIP_RESULT)
                else:
                    csv = await _loop.in_thread(self.csv_file, current, session) or False
                    out.extend(self.show(current, csv=csv, focus=True))
            elif upd.result is not None:
                out.extend(self.show(current, focus=True))
            else:
                out.extend(SKIP_RESULT)
            yield out

    async def answer(self, question: str, conv: list[chat.Turn], session: str
                     ) -> AsyncIterator[list[Any]]:
        """``stream_answer`` until it ends or Stop / Clear ends it (``stop``): after Stop the
        last update marks the answer stopped, after Clear it changes nothing."""
        run = Running()
        self.running.setdefault(session, set()).add(run)
        latest = conv
        try:
            async for out in until_stopped(self.stream_answer(question, conv, session),
                                           run.stop):
                if isinstance(out[1], list):
                    latest = out[1]
                yield out
        finally:
            runs = self.running.get(session, set())
            runs.discard(run)
            if not runs:
                self.running.pop(session, None)
        if run.stop.is_set():
            if run.cleared:
                yield [gr.skip()] * (6 + RESULT_OUTS)
            else:
                stopped = chat.stop(latest)
                yield [chat.messages(stopped), stopped, gr.skip(), gr.skip(), gr.skip(),
                       stop_button(False), *SKIP_RESULT]

    def stop_answers(self, session: str, *, cleared: bool = False) -> None:
        """Signal the session's running answers to end (Stop, Clear)."""
        for run in self.running.get(session, ()):
            run.cleared = run.cleared or cleared
            run.stop.set()

    async def on_ask(self, question: str, conv: list[chat.Turn], request: gr.Request
                     ) -> AsyncIterator[list[Any]]:
        """Answer the question sent (``asked``) in this tab's conversation."""
        async for out in self.answer(question, conv or [], session_of(request)):
            yield out

    async def on_regenerate(self, conv: list[chat.Turn], request: gr.Request
                            ) -> AsyncIterator[list[Any]]:
        """Ask the last question again."""
        question, before = chat.last_question(conv or [])
        if question is None:
            yield [gr.skip(), gr.skip(), gr.skip(), "Nothing to regenerate yet.", gr.skip(),
                   gr.skip(), *SKIP_RESULT]
            return
        async for out in self.answer(question, before, session_of(request)):
            yield out

    async def on_stop(self, conv: list[chat.Turn], request: gr.Request) -> list[Any]:
        """End the running answer and mark it stopped (async: on the loop its answer runs
        on, where its signal is set)."""
        self.stop_answers(session_of(request))
        conv = chat.stop(conv or [])
        return [chat.messages(conv), conv, stop_button(False)]

    def on_undo(self, conv: list[chat.Turn]) -> list[Any]:
        """Take the last exchange back into the question box."""
        text, conv = chat.undo(conv or [])
        return [chat.messages(conv), conv, text]

    async def on_clear(self, request: gr.Request) -> list[Any]:
        """Start over: [chatbot, conv, question, notice, sql, stop, *result]; a running
        answer ends and leaves the emptied chat alone. The question box is left as it is:
        what the person types right after Clear (before this reply is back) is their next
        question (issue 12: on a loaded machine the reply came later and emptied it)."""
        self.stop_answers(session_of(request), cleared=True)
        return [[], [], gr.skip(), "", "", stop_button(False), *self.show(None)]

    def on_select(self, conv: list[chat.Turn], evt: gr.SelectData, request: gr.Request
                  ) -> list[Any]:
        """The side pane follows the message clicked: [sql, *result]."""
        index = evt.index if isinstance(evt.index, int) else -1
        turn, result = chat.result_of(conv or [], index)
        if turn is None or result is None:
            return [gr.skip(), *SKIP_RESULT]
        sql = turn.get("shown_sql") or pretty_sql(result.source or result.sql, self.dialect)
        csv = self.csv_file(result, session_of(request)) or False
        return [sql, *self.show(result, csv=csv, focus=True)]

    # -- SQL, pages, export -------------------------------------------------------------------
    def on_run_sql(self, sql: str, conv: list[chat.Turn], request: gr.Request) -> list[Any]:
        """Run the edited SQL: [chatbot, conv, notice, *result]."""
        session = session_of(request)
        conv = conv or []
        if not (sql or "").strip():
            return [gr.skip(), gr.skip(), "⚠️ Type a SQL query first.", *SKIP_RESULT]
        try:
            answer = self.tc.run_sql(sql, session=session)
        except TableChatError as exc:
            if self.metrics is not None:
                self.metrics.sql_run("refused")
            message = f"{REFUSALS.get(type(exc).__name__, 'Error')}: {exc}"
            conv = chat.record_sql_run(conv, sql, None, message)
            return [chat.messages(conv), conv, f"⚠️ {plain(message)}", *SKIP_RESULT]
        if self.metrics is not None:
            self.metrics.sql_run("ok")
        result = Result(sql=answer.sql or sql, columns=answer.columns, rows=answer.rows,
                        truncated=answer.truncated, chart=answer.chart, source=sql,
                        question="edited query")
        conv = chat.record_sql_run(conv, sql, result, None, self.units)
        return [chat.messages(conv), conv, "",
                *self.show(result, csv=self.csv_file(result, session) or False, focus=True)]

    def on_page(self, result: Result | None, page: int, delta: int) -> list[Any]:
        """Another page of the result shown."""
        if result is None:
            return list(SKIP_RESULT)
        frame, info, page = result.page(page + delta, self.units)
        return [frame, info, gr.skip(), page, gr.skip(), gr.skip(), gr.skip(),
                gr.Button(interactive=page > 0),
                gr.Button(interactive=page < result.pages - 1), gr.skip(), gr.skip()]

    def on_export(self, result: Result | None, request: gr.Request) -> list[Any]:
        """The whole of a result cut at the row cap, as the CSV to download (the result in
        the session's state learns its row count in place)."""
        if result is None or not result.exportable:
            return [gr.skip()] * 3
        path = self.csv_file(result, session_of(request), whole=True)
        download = (gr.DownloadButton(value=None, visible=False) if path is None else
                    gr.DownloadButton(value=str(path), label=download_label(result)))
        return [result.info(0), download, gr.Button(visible=result.exportable)]

    # -- schema, uploads, page life -----------------------------------------------------------
    def schema_values(self, session: str, pick: str | None) -> list[Any]:
        """[tables, picker, summary, columns] for a session."""
        snap = self.tc.snapshot(session)
        names = list(snap.tables)
        if pick not in snap.tables:
            pick = names[0] if names else None
        return [browse.tables_frame(snap), gr.Dropdown(choices=names, value=pick),
                browse.table_summary(snap, pick), browse.columns_frame(snap, pick)]

    def on_pick(self, pick: str | None, request: gr.Request) -> list[Any]:
        """The columns of the table picked."""
        snap = self.tc.snapshot(session_of(request))
        return [browse.table_summary(snap, pick), browse.columns_frame(snap, pick)]

    def on_upload(self, path: str | None, request: gr.Request) -> list[Any]:
        """A file uploaded through the page becomes a table of this tab."""
        session = session_of(request)
        if not path:
            return [gr.skip()] * 5
        # Gradio checks this too (gradio_guard); a handler trusts no path it is given
        if not inside_upload_folder(path):
            if self.metrics is not None:
                self.metrics.upload("refused")
            return ["⚠️ Upload the file through this page: a server path is not accepted.",
                    *[gr.skip()] * 4]
        # the file is Gradio's, named by its content: another session may upload the same
        # bytes to this path and not have read them yet. Not deleted here, it goes once the
        # sessions that read it have ended (files.py; issue 12)
        self.files.uploaded(session, Path(path))
        try:
            info = self.tc.upload(session, Path(path).name, path)
        except TableChatError as exc:
            if self.metrics is not None:
                self.metrics.upload("refused")
            return [f"⚠️ {plain(exc)}", *[gr.skip()] * 4]
        if self.metrics is not None:
            self.metrics.upload("ok")
        rows = f"{info.row_count:,} rows" if info.row_count is not None else "rows"
        name = plain(info.name)
        msg = (f"✔ Uploaded **{name}**: {len(info.columns)} columns, {rows}. Only this "
               f"session sees it. Try: *How many rows are in {name}?*")
        return [msg, *self.schema_values(session, info.name)]

    def on_load(self, request: gr.Request) -> str:
        """The header: the database, the engine and, when no LLM answers, the admin's hint
        (kept out of the answers: issue 12)."""
        tc = self.tc
        snap = tc.snapshot(session_of(request))
        text = (f"**Database:** {plain(tc.database.name)} ({snap.dialect}, {len(snap.tables)} "
                "tables)  \n")
        if tc.engine_name == "llm":
            return text + f"**Engine:** LLM · {plain(tc.model_label)}"
        text += "**Engine:** offline engine (common questions only)"
        url = tc.settings.llm_url
        if url:
            hint = (f"the LLM server at {redact_url(url)} does not answer; questions are "
                    "answered offline until it does (details: /api/health)")
        else:
            hint = ("no LLM is configured: connect a vLLM server to answer any question "
                    "(the settings are in docs/llm.md)")
        return text + f'\n\n<details class="tc-admin"><summary>For the admin</summary>' \
            f"\n\n{plain(hint)}\n\n</details>"

    def on_unload(self, request: gr.Request) -> None:
        """The tab closed: its uploads and files go."""
        session = session_of(request)
        self.tc.end_session(session)
        self.files.end(session)
