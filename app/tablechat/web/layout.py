"""The UI's components, laid out: the chat, the result pane, the schema and upload tabs.

No wiring here (``ui.py``) and no logic (``handlers.py``, ``chat.py``, ``results.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

UPLOAD_TYPES = [".csv", ".tsv", ".parquet", ".pq", ".json", ".jsonl", ".ndjson"]
PLACEHOLDER = "Ask about your data…"  # short: a phone shows it whole (issue 12)
CSS = """
.tc-number { font-size: 3.2rem; font-weight: 700; line-height: 1.1; }
.tc-number-label { font-size: 1.1rem; opacity: .75; }
#tc-notice p { margin: 0; }
footer { display: none !important; }
/* the question box, Send and Stop on one line at any width */
#tc-input-row { flex-wrap: nowrap !important; align-items: stretch; gap: 6px; }
#tc-input-row > * { min-width: 0 !important; }
#tc-question { flex: 1 1 auto !important; }
#tc-ask, #tc-stop { flex: 0 0 auto !important; min-width: 64px !important; }
#tc-question textarea::placeholder { white-space: nowrap; overflow: hidden;
  text-overflow: ellipsis; }
/* an answer's work inside its message */
#tc-chat .tc-read-as { font-size: .9em; opacity: .8; font-style: italic; }
#tc-chat details.tc-work { margin: .35em 0; }
#tc-chat details.tc-work > summary { cursor: pointer; font-weight: 600; }
#tc-chat .tc-msg-table { overflow-x: auto; max-width: 100%; }
#tc-chat .tc-msg-table table { border-collapse: collapse; font-size: .85em; width: auto; }
#tc-chat .tc-msg-table th, #tc-chat .tc-msg-table td { padding: 2px 8px;
  white-space: nowrap; word-break: keep-all; }
#tc-chat .tc-msg-table td.num { text-align: right; font-variant-numeric: tabular-nums; }
.tc-svg { display: block; }
.tc-side-chart { max-width: 520px; }
.tc-side-chart svg.tc-svg { width: 100%; height: auto; }
/* in a message the chart has its own pixel size (the Chatbot's sanitizer drops viewBox):
   zoomed to the bubble on narrow screens */
#tc-chat .tc-msg-chart { overflow: hidden; }
/* table cells break between words, never inside one */
#tc-table td, #tc-table th, #tc-tables td, #tc-tables th { word-break: normal !important;
  overflow-wrap: normal !important; hyphens: none; }
@media (max-width: 640px) {
  #tc-chat { height: 64vh !important; }
}
@media (max-width: 480px) { #tc-chat .tc-msg-chart svg.tc-svg { zoom: 0.85; } }
@media (max-width: 420px) { #tc-chat .tc-msg-chart svg.tc-svg { zoom: 0.75; } }
"""


@dataclass(slots=True)
class ChatParts:
    """The chat column's components."""

    chatbot: gr.Chatbot
    question: gr.Textbox
    asked: gr.Textbox  # the question being answered (the box itself is free to type in)
    send: gr.Button
    stop: gr.Button
    notice: gr.Markdown
    examples: gr.Dataset


@dataclass(slots=True)
class ResultParts:
    """The result pane's components (the Result tab)."""

    tabs: gr.Tabs
    sql: gr.Code
    run: gr.Button
    download: gr.DownloadButton
    export: gr.Button
    info: gr.Markdown
    table: gr.Dataframe
    prev: gr.Button
    next: gr.Button
    number: gr.Markdown
    chart: gr.HTML


def build_chat(examples: list[str]) -> ChatParts:
    """The chat: its Chatbot (``.chatbot``, where other modules attach their events, such as
    feedback), the one-line question box with Send and Stop, the notice line, the examples."""
    # no custom tags and no LaTeX: answers carry model and data text (markup.py)
    chatbot = gr.Chatbot(
        label="Chat", height=600, elem_id="tc-chat", buttons=["copy"],
        allow_tags=False, latex_delimiters=[], group_consecutive_messages=True,
        placeholder="Ask about the data: counts, totals, top-N, trends. Each answer shows "
        "its SQL, its table and a chart.",
    )
    with gr.Row(elem_id="tc-input-row"):
        question = gr.Textbox(placeholder=PLACEHOLDER, label="Question", show_label=False,
                              scale=8, lines=1, max_lines=6, elem_id="tc-question",
                              autofocus=True, container=False)
        send = gr.Button("Send", variant="primary", scale=0, min_width=64, size="md",
                         elem_id="tc-ask")
        stop = gr.Button("Stop", variant="stop", scale=0, min_width=64, size="md",
                         elem_id="tc-stop", interactive=False)
    asked = gr.Textbox(visible=False, label="Asked", elem_id="tc-asked")
    notice = gr.Markdown(label="Notice", elem_id="tc-notice")
    examples_ds = gr.Dataset(components=[question], label="Examples",
                             samples=[[q] for q in examples], elem_id="tc-examples")
    return ChatParts(chatbot, question, asked, send, stop, notice, examples_ds)


def build_results() -> ResultParts:
    """The Result tab's contents; the caller opens the Tabs (``tabs`` is filled in later)."""
    sql = gr.Code(language="sql", interactive=True, label="SQL", lines=4, max_lines=16,
                  elem_id="tc-sql", wrap_lines=True)
    with gr.Row():
        run = gr.Button("▶ Run SQL", size="sm", elem_id="tc-run")
        download = gr.DownloadButton("⬇ Download CSV", size="sm", visible=False,
                                     elem_id="tc-csv")
        export = gr.Button("Export all rows", size="sm", visible=False, elem_id="tc-export")
    info = gr.Markdown("Ask a question to see its result here.", label="Rows shown",
                       elem_id="tc-table-info")
    table = gr.Dataframe(interactive=False, max_height=360, label="Result", elem_id="tc-table",
                         wrap=True, visible=False)
    with gr.Row():
        prev = gr.Button("◀ Previous", size="sm", visible=False, elem_id="tc-prev")
        nxt = gr.Button("Next ▶", size="sm", visible=False, elem_id="tc-next")
    number = gr.Markdown(visible=False, label="Number", elem_id="tc-number")
    chart = gr.HTML(visible=False, label="Chart", elem_id="tc-chart")
    return ResultParts(tabs=None, sql=sql, run=run, download=download,  # type: ignore[arg-type]
                       export=export, info=info, table=table, prev=prev, next=nxt,
                       number=number, chart=chart)


def build_schema(tables: Any, names: list[str], summary: str, columns: Any
                 ) -> tuple[gr.Dataframe, gr.Dropdown, gr.Markdown, gr.Dataframe]:
    """The Schema tab: the tables, a table picker, its summary and its columns."""
    tables_df = gr.Dataframe(tables, interactive=False, label="Tables", max_height=300,
                             wrap=True, column_widths=["20%", "12%", "11%", "14%", "43%"],
                             elem_id="tc-tables")
    pick = gr.Dropdown(names, value=names[0] if names else None, label="Table",
                       elem_id="tc-table-pick")
    table_md = gr.Markdown(summary, label="Table")
    columns_df = gr.Dataframe(columns, interactive=False, label="Columns", max_height=420,
                              wrap=True, column_widths=["18%", "14%", "16%", "30%", "22%"])
    return tables_df, pick, table_md, columns_df


def build_upload(max_mb: float) -> tuple[gr.File, gr.Markdown]:
    """The Upload tab: the file input and its message line."""
    gr.Markdown(f"Upload a **CSV, Parquet or JSON** file (up to {max_mb:g} MB). "
                "It becomes a table only you can see, in this browser tab.")
    upload = gr.File(file_types=UPLOAD_TYPES, type="filepath", label="Data file",
                     elem_id="tc-upload")
    message = gr.Markdown(label="Upload", elem_id="tc-upload-msg")
    return upload, message
