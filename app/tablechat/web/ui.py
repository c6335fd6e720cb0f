"""The Gradio chat UI: wiring only. The components are in ``layout``, the handlers in
``handlers``, the logic in ``chat``, ``results``, ``card`` and ``browse``.

Each browser tab is one session (``gr.Request.session_hash``): its conversation lives in a
``gr.State``, its uploads in the database's session cursor, dropped when the tab closes.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from ..core import TableChat
from . import browse, layout
from .feedback_ui import wire_feedback
from .files import CACHE_SWEEP_SECONDS, ResultFiles
from .handlers import Handlers, session_of
from .markup import plain
from .metrics import Metrics

CSS = layout.CSS
# the question box is emptied in the browser the moment a question is sent, and the question
# goes to the hidden ``asked`` box the answer reads: an update from the server never touches
# the box again, so what the person types meanwhile stays (issue 12)
TAKE_QUESTION = "(q) => ['', q]"


def picked(evt: gr.SelectData) -> str:
    """The question of a clicked suggestion (a Chatbot option)."""
    return str(evt.value)

__all__ = ["CSS", "build_ui", "session_of"]


def build_ui(tc: TableChat, metrics: Metrics | None = None,
             files: ResultFiles | None = None) -> gr.Blocks:
    """The Blocks of the UI; its result files go to ``files`` (made from the settings when
    not given)."""
    limit = tc.settings.concurrency_limit
    files = files or ResultFiles.from_settings(tc.settings)
    max_age = int(tc.settings.ui_file_max_age)
    h = Handlers(tc, files, metrics)
    base_snap = tc.snapshot()
    names = list(base_snap.tables)
    first = names[0] if names else None

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
            with gr.Column(scale=5, min_width=340):
                c = layout.build_chat(browse.example_questions(tc))
            with gr.Column(scale=6, min_width=340, elem_id="tc-side"), \
                    gr.Tabs(elem_id="tc-tabs") as tabs:
                with gr.Tab("Result", id="result"):
                    r = layout.build_results()
                    r.tabs = tabs
                    # 👍/👎, a comment, "save as the right answer" (issue 14): their controls
                    # go under the result's
                    wire_feedback(c.chatbot, r.sql, conv_state, tc, r.run)
                with gr.Tab("Schema", id="schema"):
                    tables_df, table_pick, table_md, columns_df = layout.build_schema(
                        browse.tables_frame(base_snap), names,
                        browse.table_summary(base_snap, first),
                        browse.columns_frame(base_snap, first))
                with gr.Tab("Upload", id="upload"):
                    upload_file, upload_md = layout.build_upload(tc.settings.upload_max_mb)

        chatbot = c.chatbot
        result_outs = [r.table, r.info, result_state, page_state, r.download, r.number,
                       r.chart, r.prev, r.next, r.export, r.tabs]
        # the question box is an output only to keep the API's positions: answers skip it
        ask_outs = [chatbot, conv_state, c.question, c.notice, r.sql, c.stop, *result_outs]
        schema_outs = [tables_df, table_pick, table_md, columns_df]
        common: dict[str, Any] = {"concurrency_limit": limit}

        # an export still running when the result is replaced (a new question, a SQL run,
        # Clear) is cancelled: it must not bring the old result back
        export_ev = r.export.click(h.on_export, [result_state], [r.info, r.download, r.export],
                                   api_name="export", **common)
        # the line for the page shown now (the person may have paged meanwhile)
        export_ev.then(lambda res, p: res.info(p) if res is not None else gr.skip(),
                       [result_state, page_state], [r.info], api_visibility="private",
                       **common)
        replaces: dict[str, Any] = {"cancels": [export_ev], **common}
        # a question sent while one runs waits for it (instead of being dropped)
        queued: dict[str, Any] = {"trigger_mode": "always_last", **replaces}
        ask_inputs = [c.asked, conv_state]

        def sent(trigger: Any, name: str | None) -> Any:
            """Send the box's question: emptied in the browser, then answered."""
            took = trigger(None, [c.question], [c.question, c.asked], js=TAKE_QUESTION,
                           api_visibility="private", queue=False)
            visibility: dict[str, Any] = ({"api_name": name} if name
                                          else {"api_visibility": "private"})
            return took.then(h.on_ask, ask_inputs, ask_outs, **visibility, **queued)

        sent(c.question.submit, "ask")
        sent(c.send.click, None)
        chatbot.retry(h.on_regenerate, [conv_state], ask_outs,
                                 api_name="regenerate", **replaces)
        # an example or a suggested rewording asks that question
        c.examples.click(lambda sample: sample[0], [c.examples], [c.asked],
                                      api_visibility="private", **common
                                      ).then(h.on_ask, ask_inputs, ask_outs,
                                             api_visibility="private", **queued)
        chatbot.option_select(picked, None, [c.asked],
                                          api_visibility="private", **common
                                          ).then(h.on_ask, ask_inputs, ask_outs,
                                                 api_visibility="private", **queued)
        # Stop and Clear end a running answer through the handlers (``Handlers.stop_answers``),
        # not Gradio's ``cancels``: a cancelled answer made the browser drop the question sent
        # right after it (issue 12)
        c.stop.click(h.on_stop, [conv_state], [chatbot, conv_state, c.stop], api_name="stop",
                     **common)
        chatbot.undo(h.on_undo, [conv_state], [chatbot, conv_state, c.question],
                     api_visibility="private", **common)
        # one Clear control: the chat's own (its bin icon)
        chatbot.clear(h.on_clear, None, ask_outs, cancels=[export_ev], api_name="clear",
                      **common)
        chatbot.select(h.on_select, [conv_state], [r.sql, *result_outs],
                       api_visibility="private", **common)
        r.run.click(h.on_run_sql, [r.sql, conv_state], [chatbot, conv_state, c.notice,
                                                        *result_outs],
                    api_name="run_sql", **replaces)
        r.prev.click(lambda res, p: h.on_page(res, p, -1), [result_state, page_state],
                     result_outs, api_visibility="private", **common)
        r.next.click(lambda res, p: h.on_page(res, p, +1), [result_state, page_state],
                     result_outs, api_visibility="private", **common)
        table_pick.input(h.on_pick, [table_pick], [table_md, columns_df], api_name="schema",
                         **common)
        upload_file.upload(h.on_upload, [upload_file], [upload_md, *schema_outs],
                           api_name="upload", **common)
        demo.load(h.on_load, None, [engine_md], api_visibility="private", **common)
        demo.unload(h.on_unload)
    demo.queue(default_concurrency_limit=limit)
    # uploads Gradio holds for this app count in the total disk budget too
    files.extra = lambda: list(demo.upload_file_set)
    return demo
