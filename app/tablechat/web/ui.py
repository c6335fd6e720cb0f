"""The Gradio chat UI. Layout and wiring only: the logic is in ``chat``, ``results``, ``browse``.

Each browser tab is one session (``gr.Request.session_hash``): its conversation lives in a
``gr.State``, its uploads in the database's session cursor, dropped when the tab closes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import gradio as gr

from .. import _loop
from ..core import TableChat
from ..errors import TableChatError
from . import browse, chat
from .feedback_ui import wire_feedback
from .files import CACHE_SWEEP_SECONDS, ResultFiles
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
UPLOAD_TYPES = [".csv", ".tsv", ".parquet", ".pq", ".json", ".jsonl", ".ndjson"]
CSS = """
.tc-number { font-size: 3.2rem; font-weight: 700; line-height: 1.1; }
.tc-number-label { font-size: 1.1rem; opacity: .75; }
#tc-notice p { margin: 0; }
footer { display: none !important; }
"""


def session_of(request: gr.Request | None) -> str:
    """The tablechat session of a browser tab (or a gradio_client)."""
    sid = getattr(request, "session_hash", None) or "anonymous"
    return f"ui-{sid}"


def build_ui(tc: TableChat, metrics: Metrics | None = None,
             files: ResultFiles | None = None) -> gr.Blocks:
    """The Blocks of the UI; its result files go to ``files`` (made from the settings when
    not given)."""
    limit = tc.settings.concurrency_limit
    files = files or ResultFiles.from_settings(tc.settings)
    max_age = int(tc.settings.ui_file_max_age)
    examples = browse.example_questions(tc)
    base_snap = tc.snapshot()
    max_mb = tc.settings.upload_max_mb
    dialect = base_snap.dialect

    with gr.Blocks(title="tablechat", analytics_enabled=False, fill_width=True,
                   delete_cache=(max(1, min(CACHE_SWEEP_SECONDS, max_age)), max_age)) as demo:
        conv_state = gr.State([])
        result_state = gr.State(None)
        page_state = gr.State(0)
        with gr.Row():
            gr.Markdown(f"# tablechat\nAsk **{plain(tc.database.name)}** a question in plain "
                        "language.")
            engine_md = gr.Markdown(label="Engine", elem_id="tc-engine")
        with gr.Row(equal_height=False):
            with gr.Column(scale=5, min_width=420):
                # no custom tags and no LaTeX: answers carry model and data text (markup.py)
                chatbot = gr.Chatbot(
                    label="Chat", height=560, elem_id="tc-chat", buttons=["copy"],
                    allow_tags=False, latex_delimiters=[],
                    placeholder="Ask about the data: counts, totals, top-N, trends. "
                    "The SQL, the table and a chart appear on the right.",
                )
                with gr.Row():
                    question_box = gr.Textbox(
                        placeholder="Ask a question about the data…", label="Question",
                        show_label=False,
                        scale=8, lines=1, max_lines=6, elem_id="tc-question", autofocus=True,
                    )
                    ask_btn = gr.Button("Ask", variant="primary", scale=0, min_width=80,
                                        size="md", elem_id="tc-ask")
                    stop_btn = gr.Button("Stop", variant="stop", scale=0, min_width=80,
                                         size="md", elem_id="tc-stop")
                notice = gr.Markdown(label="Notice", elem_id="tc-notice")
                with gr.Row():
                    regen_btn = gr.Button("↻ Regenerate", size="sm", elem_id="tc-regenerate")
                    clear_btn = gr.Button("Clear chat", size="sm", elem_id="tc-clear")
                examples_ds = gr.Dataset(components=[question_box], label="Examples",
                                         samples=[[q] for q in examples], elem_id="tc-examples")
            with gr.Column(scale=6, min_width=420), gr.Tabs():
                with gr.Tab("Result", id="result"):
                    sql_code = gr.Code(language="sql", interactive=True, label="SQL", lines=4,
                                       max_lines=16, elem_id="tc-sql", wrap_lines=True)
                    with gr.Row():
                        run_btn = gr.Button("▶ Run SQL", size="sm", elem_id="tc-run")
                        download_btn = gr.DownloadButton("⬇ Download CSV", size="sm",
                                                         visible=False, elem_id="tc-csv")
                        export_btn = gr.Button("Export all rows", size="sm", visible=False,
                                               elem_id="tc-export")
                    wire_feedback(chatbot, sql_code, conv_state, tc, run_btn)
                    table_info = gr.Markdown("Ask a question to see its result here.",
                                             label="Rows shown", elem_id="tc-table-info")
                    table = gr.Dataframe(interactive=False, max_height=360, label="Result",
                                         elem_id="tc-table", wrap=True, visible=False)
                    with gr.Row():
                        prev_btn = gr.Button("◀ Previous", size="sm", visible=False,
                                             elem_id="tc-prev")
                        next_btn = gr.Button("Next ▶", size="sm", visible=False,
                                             elem_id="tc-next")
                    number_md = gr.Markdown(visible=False, label="Number", elem_id="tc-number")
                    bar = gr.BarPlot(visible=False, label="Bar chart", elem_id="tc-bar", height=320)
                    line = gr.LinePlot(visible=False, label="Line chart", elem_id="tc-line",
                                       height=320)
                    scatter = gr.ScatterPlot(visible=False, label="Scatter chart",
                                             elem_id="tc-scatter", height=320)
                with gr.Tab("Schema", id="schema"):
                    tables_df = gr.Dataframe(browse.tables_frame(base_snap), interactive=False,
                                             label="Tables", max_height=300, wrap=True,
                                             column_widths=["20%", "12%", "11%", "14%", "43%"],
                                             elem_id="tc-tables")
                    names = list(base_snap.tables)
                    table_pick = gr.Dropdown(names, value=names[0] if names else None,
                                             label="Table", elem_id="tc-table-pick")
                    table_md = gr.Markdown(browse.table_summary(base_snap, names[0] if names
                                                                else None), label="Table")
                    columns_df = gr.Dataframe(
                        browse.columns_frame(base_snap, names[0] if names else None),
                        interactive=False, label="Columns", max_height=420, wrap=True,
                        column_widths=["18%", "14%", "16%", "30%", "22%"])
                with gr.Tab("Upload", id="upload"):
                    gr.Markdown(f"Upload a **CSV, Parquet or JSON** file (up to {max_mb:g} MB). "
                                "It becomes a table only you can see, in this browser tab.")
                    upload_file = gr.File(file_types=UPLOAD_TYPES, type="filepath",
                                          label="Data file", elem_id="tc-upload")
                    upload_md = gr.Markdown(label="Upload", elem_id="tc-upload-msg")

        result_outs = [table, table_info, result_state, page_state, download_btn, number_md,
                       bar, line, scatter, prev_btn, next_btn, export_btn]
        ask_outs = [chatbot, conv_state, question_box, notice, sql_code, *result_outs]
        schema_outs = [tables_df, table_pick, table_md, columns_df]

        def csv_file(result: Result, session: str, *, whole: bool = False) -> Path | None:
            """A CSV of the result (blocking), in a file of its own: the fetched rows, or with
            ``whole`` (the Export button) the whole result: its query runs again through the
            same guard, up to TABLECHAT_EXPORT_MAX_ROWS rows, which counts them for the info
            line. The session's files stay within the disk budgets (``files``); None when
            even the rows shown are over them."""
            if result.exported is not None and result.exported.path.is_file():
                return result.exported.path  # exported whole already: that file
            path = files.new_path(session)
            try:
                if whole and result.source:
                    exported = tc.export_csv(result.source, path, session=session)
                    files.admit(session, path)
                    result.exported = exported
                else:
                    return files.admit(session, result.write_csv(path))
            except (TableChatError, OSError) as exc:
                result.export_error = str(exc)
                try:  # the rows shown, at least
                    return files.admit(session, result.write_csv(files.new_path(session)))
                except (TableChatError, OSError):
                    return None
            return path

        def show(result: Result | None, session: str, page: int = 0,
                 empty: str = "Ask a question to see its result here.",
                 csv: Path | bool | None = None) -> list[Any]:
            """Values for ``result_outs`` (``csv=None``: a preview, the CSV comes later;
            ``csv=False``: no CSV, over the disk budget)."""
            if result is None:
                return [gr.Dataframe(value=None, visible=False), empty, None, 0,
                        gr.DownloadButton(value=None, visible=False),
                        gr.Markdown(visible=False), gr.BarPlot(visible=False),
                        gr.LinePlot(visible=False), gr.ScatterPlot(visible=False),
                        gr.Button(visible=False), gr.Button(visible=False),
                        gr.Button(visible=False)]
            frame, info, page = result.page(page)
            download: Any = gr.skip()
            if csv is False:
                download = gr.DownloadButton(value=None, visible=False)
            elif isinstance(csv, Path):
                download = gr.DownloadButton(value=str(csv), visible=bool(result.rows),
                                             label=download_label(result))
            view = chart_view(result)
            hidden: dict[str, Any] = {"visible": False}

            def plot(kind: str, cls: Any) -> Any:
                if view.kind != kind:
                    return cls(**hidden)
                return cls(value=view.frame, x=view.x, y=view.y, color=view.color,
                           title=view.title, visible=True,
                           **({"sort": view.sort, "y_lim": view.y_lim} if kind == "bar"
                              else {}))

            paged = result.pages > 1
            return [gr.Dataframe(value=frame, visible=True), info, result, page, download,
                    gr.Markdown(view.markdown, visible=view.kind == "number"),
                    plot("bar", gr.BarPlot), plot("line", gr.LinePlot),
                    plot("scatter", gr.ScatterPlot),
                    gr.Button(visible=paged, interactive=page > 0),
                    gr.Button(visible=paged, interactive=page < result.pages - 1),
                    gr.Button(visible=isinstance(csv, Path) and result.exportable)]

        async def stream_answer(question: str, conv: list[chat.Turn],
                                session: str) -> AsyncIterator[list[Any]]:
            current: Result | None = None
            async for upd in chat.ask(tc, question, conv, session=session, metrics=metrics):
                if upd.notice is not None:  # bad input: nothing else changes
                    yield [gr.skip(), gr.skip(), gr.skip(), upd.notice, gr.skip(),
                           *[gr.skip()] * len(result_outs)]
                    return
                out: list[Any] = [chat.messages(upd.conv), upd.conv,
                                  "" if upd.clear_input else gr.skip(), ""]
                out.append(pretty_sql(upd.sql, dialect) if upd.sql is not None else gr.skip())
                if upd.result is not None:
                    current = upd.result
                if upd.done:  # the last yield carries everything, whole
                    sql = next((t.get("sql") for t in reversed(upd.conv)
                                if t["role"] == "assistant"), None)
                    out[4] = pretty_sql(sql, dialect) if sql else ""
                    csv = None if current is None else (await _loop.in_thread(
                        csv_file, current, session) or False)
                    out.extend(show(current, session, empty="This answer has no table.",
                                    csv=csv))
                elif upd.result is not None:
                    out.extend(show(current, session))
                else:
                    out.extend([gr.skip()] * len(result_outs))
                yield out

        async def on_ask(question: str, conv: list[chat.Turn], request: gr.Request
                         ) -> AsyncIterator[list[Any]]:
            async for out in stream_answer(question, conv or [], session_of(request)):
                yield out

        async def on_regenerate(conv: list[chat.Turn], request: gr.Request
                                ) -> AsyncIterator[list[Any]]:
            question, before = chat.last_question(conv or [])
            if question is None:
                yield [gr.skip(), gr.skip(), gr.skip(), "Nothing to regenerate yet.", gr.skip(),
                       *[gr.skip()] * len(result_outs)]
                return
            async for out in stream_answer(question, before, session_of(request)):
                yield out

        def on_stop(conv: list[chat.Turn]) -> list[Any]:
            conv = chat.stop(conv or [])
            return [chat.messages(conv), conv]

        def on_undo(conv: list[chat.Turn]) -> list[Any]:
            text, conv = chat.undo(conv or [])
            return [chat.messages(conv), conv, text]

        def on_clear(request: gr.Request) -> list[Any]:
            return [[], [], "", "", "", *show(None, session_of(request))]

        def on_run_sql(sql: str, conv: list[chat.Turn], request: gr.Request) -> list[Any]:
            session = session_of(request)
            conv = conv or []
            if not (sql or "").strip():
                return [gr.skip(), gr.skip(), "⚠️ Type a SQL query first.",
                        *[gr.skip()] * len(result_outs)]
            try:
                answer = tc.run_sql(sql, session=session)
            except TableChatError as exc:
                if metrics is not None:
                    metrics.sql_run("refused")
                message = f"{REFUSALS.get(type(exc).__name__, 'Error')}: {exc}"
                conv = chat.record_sql_run(conv, sql, None, message)
                return [chat.messages(conv), conv, f"⚠️ {plain(message)}",
                        *[gr.skip()] * len(result_outs)]
            if metrics is not None:
                metrics.sql_run("ok")
            result = Result(sql=answer.sql or sql, columns=answer.columns, rows=answer.rows,
                            truncated=answer.truncated, chart=answer.chart, source=sql)
            conv = chat.record_sql_run(conv, sql, result, None)
            return [chat.messages(conv), conv, "",
                    *show(result, session, csv=csv_file(result, session) or False)]

        def on_page(result: Result | None, page: int, delta: int) -> list[Any]:
            if result is None:
                return [gr.skip()] * len(result_outs)
            frame, info, page = result.page(page + delta)
            return [frame, info, gr.skip(), page, gr.skip(), gr.skip(), gr.skip(), gr.skip(),
                    gr.skip(), gr.Button(interactive=page > 0),
                    gr.Button(interactive=page < result.pages - 1), gr.skip()]

        def on_export(result: Result | None, request: gr.Request) -> list[Any]:
            """The whole of a result cut at the row cap, as the CSV to download (the result in
            the session's state learns its row count in place)."""
            if result is None or not result.exportable:
                return [gr.skip()] * 3
            path = csv_file(result, session_of(request), whole=True)
            download = (gr.DownloadButton(value=None, visible=False) if path is None else
                        gr.DownloadButton(value=str(path), label=download_label(result)))
            return [result.info(0), download,
                    gr.Button(visible=result.exportable)]

        def schema_values(session: str, pick: str | None) -> list[Any]:
            snap = tc.snapshot(session)
            names = list(snap.tables)
            if pick not in snap.tables:
                pick = names[0] if names else None
            return [browse.tables_frame(snap), gr.Dropdown(choices=names, value=pick),
                    browse.table_summary(snap, pick), browse.columns_frame(snap, pick)]

        def on_pick(pick: str | None, request: gr.Request) -> list[Any]:
            snap = tc.snapshot(session_of(request))
            return [browse.table_summary(snap, pick), browse.columns_frame(snap, pick)]

        def on_upload(path: str | None, request: gr.Request) -> list[Any]:
            session = session_of(request)
            if not path:
                return [gr.skip(), *[gr.skip()] * len(schema_outs)]
            # Gradio checks this too (gradio_guard); a handler trusts no path it is given
            if not inside_upload_folder(path):
                if metrics is not None:
                    metrics.upload("refused")
                return ["⚠️ Upload the file through this page: a server path is not accepted.",
                        *[gr.skip()] * len(schema_outs)]
            try:
                info = tc.upload(session, Path(path).name, path)
            except TableChatError as exc:
                if metrics is not None:
                    metrics.upload("refused")
                return [f"⚠️ {plain(exc)}", *[gr.skip()] * len(schema_outs)]
            finally:
                # its rows are in the session's table now: the file only takes disk
                Path(path).unlink(missing_ok=True)
            if metrics is not None:
                metrics.upload("ok")
            rows = f"{info.row_count:,} rows" if info.row_count is not None else "rows"
            name = plain(info.name)
            msg = (f"✔ Uploaded **{name}**: {len(info.columns)} columns, {rows}. Only this "
                   f"session sees it. Try: *How many rows are in {name}?*")
            return [msg, *schema_values(session, info.name)]

        def on_load(request: gr.Request) -> str:
            engine = tc.engine_name
            label = f"LLM · {plain(tc.model_label)}" if engine == "llm" else "offline engine"
            snap = tc.snapshot(session_of(request))
            text = (f"**Database:** {plain(tc.database.name)} ({snap.dialect}, {len(snap.tables)} "
                    f"tables)  \n**Engine:** {label}")
            return text

        def on_unload(request: gr.Request) -> None:
            session = session_of(request)
            tc.end_session(session)
            files.end(session)

        common: dict[str, Any] = {"concurrency_limit": limit}
        # an export still running when the result is replaced (a new question, a SQL run,
        # Clear) is cancelled: it must not bring the old result back
        export_ev = export_btn.click(on_export, [result_state],
                                     [table_info, download_btn, export_btn], api_name="export",
                                     **common)
        # the line for the page shown now (the person may have paged meanwhile)
        export_ev.then(lambda r, p: r.info(p) if r is not None else gr.skip(),
                       [result_state, page_state], [table_info], api_visibility="private",
                       **common)
        replaces: dict[str, Any] = {"cancels": [export_ev], **common}
        ask_inputs = [question_box, conv_state]
        # a question sent while one runs waits for it (instead of being dropped)
        queued: dict[str, Any] = {"trigger_mode": "always_last", **replaces}
        submit_ev = question_box.submit(on_ask, ask_inputs, ask_outs, api_name="ask", **queued)
        click_ev = ask_btn.click(on_ask, ask_inputs, ask_outs, api_visibility="private",
                                 **queued)
        regen_ev = regen_btn.click(on_regenerate, [conv_state], ask_outs,
                                   api_name="regenerate", **replaces)
        retry_ev = chatbot.retry(on_regenerate, [conv_state], ask_outs,
                                 api_visibility="private", **replaces)
        pick_ev = examples_ds.click(lambda sample: sample[0], [examples_ds], [question_box],
                                    api_visibility="private", **common)
        example_ev = pick_ev.then(on_ask, ask_inputs, ask_outs, api_visibility="private",
                                  **replaces)
        running = [submit_ev, click_ev, regen_ev, retry_ev, example_ev]
        stop_btn.click(on_stop, [conv_state], [chatbot, conv_state], cancels=running,
                       api_name="stop", **common)
        chatbot.undo(on_undo, [conv_state], [chatbot, conv_state, question_box],
                     api_visibility="private", **common)
        clear_outs = [chatbot, conv_state, question_box, notice, sql_code, *result_outs]
        clear_btn.click(on_clear, None, clear_outs, cancels=[*running, export_ev],
                        api_name="clear", **common)
        chatbot.clear(on_clear, None, clear_outs, cancels=[*running, export_ev],
                      api_visibility="private", **common)
        sql_outs = [chatbot, conv_state, notice, *result_outs]
        run_btn.click(on_run_sql, [sql_code, conv_state], sql_outs, api_name="run_sql",
                      **replaces)
        prev_btn.click(lambda r, p: on_page(r, p, -1), [result_state, page_state], result_outs,
                       api_visibility="private", **common)
        next_btn.click(lambda r, p: on_page(r, p, +1), [result_state, page_state], result_outs,
                       api_visibility="private", **common)
        table_pick.input(on_pick, [table_pick], [table_md, columns_df], api_name="schema",
                         **common)
        upload_file.upload(on_upload, [upload_file], [upload_md, *schema_outs],
                           api_name="upload", **common)
        demo.load(on_load, None, [engine_md], api_visibility="private", **common)
        demo.unload(on_unload)
    demo.queue(default_concurrency_limit=limit)
    # uploads Gradio holds for this app count in the total disk budget too
    files.extra = lambda: list(demo.upload_file_set)
    return demo
