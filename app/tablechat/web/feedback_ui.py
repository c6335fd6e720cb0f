"""Feedback in the chat: 👍/👎 on each answer, an optional comment, and "Save as the right
answer" for SQL the person corrected and ran (issue 14). The handlers are plain functions over
``TableChat.feedback``; :func:`wire_feedback` adds the few components and events to the UI.

Which answer a vote is about comes from the session's own conversation (the ``gr.State`` the
chat keeps), never from what the client sends: Gradio's like event carries a message index and
the message's text, both chosen by whoever sends the request (every event is a public
endpoint). The index only picks a turn of the server's copy; the text is ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from ..answer import Answer
from ..core import TableChat
from ..errors import ConfigurationError, RetryableSQLError
from ..store import FeedbackError, StoreError
from . import chat
from .auth import principal_of
from .markup import plain

Turn = dict[str, Any]
ANONYMOUS = "anon"  # principal_of() when auth is off: nobody in particular
ENGINES = ("llm", "offline")  # the engines whose label chat.engine_label writes on a turn
THANKS = {True: "👍", False: "👎"}


class VoteData(gr.EventData):
    """The like event's data (``index``, ``liked``), checked instead of trusted: unlike
    ``gr.LikeData``, which fails with a KeyError on a body without ``index``, it never raises;
    ``problem`` says what is wrong with it."""

    def __init__(self, target: Any, data: Any) -> None:
        super().__init__(target, data)
        self.index: int | None = None
        self.liked: bool | str | None = None
        self.problem: str | None = None
        if not isinstance(data, dict):
            self.problem = "The vote carries no data"
            return
        index, liked = data.get("index"), data.get("liked")
        if isinstance(index, bool) or not isinstance(index, int):
            self.problem = "The vote names no message (index must be a whole number)"
        elif not isinstance(liked, bool | str):
            self.problem = "A vote is 👍 or 👎 (liked must be true or false)"
        else:
            self.index, self.liked = index, liked


# what a handler gets when a request carries no event data (``/gradio_api/call/vote`` has no
# field for it); a default, since Gradio only passes event data to a parameter annotated with
# the bare class (not ``VoteData | None``)
NO_VOTE = VoteData(None, None)


@dataclass(slots=True)
class Rated:
    """The answer a message belongs to, rebuilt from the session's conversation."""

    turn: int  # the assistant turn's position in the conversation
    answer: Answer
    history: list[Turn]  # the conversation before the question


def principal_of_request(request: gr.Request | None) -> str | None:
    """Who is giving feedback: the caller the auth middleware recognised (``user-NAME``, the
    form ``POST /api/feedback`` and ``TABLECHAT_VERIFIERS`` use), else Gradio's own login
    name; None when nobody is logged in. Never a password: neither holds one."""
    raw = getattr(request, "request", None) if request is not None else None
    scope = getattr(raw, "scope", None)
    if isinstance(scope, dict):
        who = principal_of(scope)
        if who and who != ANONYMOUS:
            return who
    user = getattr(request, "username", None) if request is not None else None
    return f"user-{user}" if isinstance(user, str) and user else None


def _session(request: gr.Request | None) -> str:
    from .ui import session_of  # ui imports this module: import at call time

    return session_of(request)


def turn_of_message(conv: list[Turn], index: int) -> int | None:
    """The conversation turn the Chatbot message at ``index`` was rendered from (a turn may
    make several messages: an answer's steps, then its text); None when out of range."""
    if index < 0:
        return None
    start = 0
    for i, turn in enumerate(conv):
        count = len(chat.messages([turn]))
        if index < start + count:
            return i
        start += count
    return None


def engine_of(tc: TableChat, turn: Turn) -> str:
    """The engine that answered (``llm``/``offline``), from the label the chat showed."""
    label = turn.get("engine") or ""
    return next((e for e in ENGINES if chat.engine_label(tc, e) == label), "")


def rated_answer(tc: TableChat, conv: list[Turn], turn_index: int) -> Rated:
    """The answer at ``conv[turn_index]`` with its question and the conversation before it.
    Raises :class:`FeedbackError` when that turn is no finished answer to a question."""
    turn = conv[turn_index]
    if turn.get("role") != "assistant":
        raise FeedbackError("that message is a question: rate an answer")
    if turn.get("pending"):
        raise FeedbackError("this answer is still being written: rate it when it is done")
    if turn.get("stopped"):
        raise FeedbackError("this answer was stopped before it was done")
    asked = turn_index - 1
    if asked < 0 or conv[asked].get("role") != "user":
        raise FeedbackError("this answer has no question")
    if conv[asked].get("sql_run"):
        raise FeedbackError("this is your own SQL run: to keep it, use “Save as the right "
                            "answer”")
    sql = turn.get("sql") or None
    answer = Answer(question=str(conv[asked].get("content") or ""), sql=sql,
                    source_sql=turn.get("source") or sql, engine=engine_of(tc, turn),
                    text=str(turn.get("content") or ""))
    return Rated(turn_index, answer, chat.history_of(conv[:asked]))


def last_answer(conv: list[Turn]) -> int | None:
    """The latest finished answer to a question (what a comment is about by default)."""
    for i in range(len(conv) - 1, 0, -1):
        turn = conv[i]
        if (turn.get("role") == "assistant" and not turn.get("pending")
                and not turn.get("stopped") and conv[i - 1].get("role") == "user"
                and not conv[i - 1].get("sql_run")):
            return i
    return None


def _refusal(exc: Exception) -> str:
    text = str(exc)
    return f"⚠️ {plain(text[:1].upper() + text[1:])}"


def _failed(exc: StoreError | ConfigurationError) -> str:
    return f"⚠️ Feedback cannot be kept now: {plain(exc)}"


def vote(tc: TableChat, conv: list[Turn] | None, like: VoteData,
         request: gr.Request | None, options: tuple[str, ...] = ()) -> tuple[str, Any]:
    """A 👍/👎 (or one of the Chatbot's other ``options``, kept as a comment) on the message
    ``like.index`` names. Returns the notice and the voted turn (the comment's target)."""
    conv = conv or []
    if like is NO_VOTE:
        return "⚠️ No vote in this request: click 👍 or 👎 under an answer.", gr.skip()
    if like.problem or like.index is None:
        return f"⚠️ {plain(like.problem or 'no vote')}.", gr.skip()
    liked = like.liked
    if liked == "":  # the browser sends "" when a vote is clicked again to take it back
        return "Vote taken back: nothing new recorded.", gr.skip()
    if isinstance(liked, str) and liked not in options:
        return "⚠️ Unknown feedback: a vote is 👍 or 👎.", gr.skip()
    turn = turn_of_message(conv, like.index)
    if turn is None:
        return (f"⚠️ No message {like.index} in this conversation "
                f"(it has {len(chat.messages(conv))}).", gr.skip())
    try:
        rated = rated_answer(tc, conv, turn)
        good = liked if isinstance(liked, bool) else None
        record = tc.feedback(rated.answer, good=good,
                             comment=liked if isinstance(liked, str) else None,
                             principal=principal_of_request(request),
                             session=_session(request), history=rated.history)
    except FeedbackError as exc:
        return _refusal(exc), gr.skip()
    except (StoreError, ConfigurationError) as exc:
        return _failed(exc), gr.skip()
    said = THANKS[liked] if isinstance(liked, bool) else f"“{plain(liked)}”"
    kept = " It is now a verified example." if record.verified else ""
    return (f"Thanks: your {said} on “{plain(rated.answer.question)}” is recorded.{kept} "
            "Add a comment below if you like."), rated.turn


def comment(tc: TableChat, text: Any, conv: list[Turn] | None, target: Any,
            request: gr.Request | None) -> tuple[str, Any]:
    """A comment on the answer voted last (else the latest answer). Returns the notice and
    the comment box's new value (emptied once kept)."""
    conv = conv or []
    limit = tc.settings.feedback_max_chars
    if not isinstance(text, str):
        return "⚠️ A comment is text.", gr.skip()
    if not text.strip():
        return "⚠️ Type a comment first.", gr.skip()
    if len(text) > limit:
        return (f"⚠️ The comment is too long ({len(text):,} characters; the limit is "
                f"{limit:,})."), gr.skip()
    turn = target if isinstance(target, int) and 0 <= target < len(conv) else None
    turn = turn if turn is not None and turn == _still_answer(conv, turn) else last_answer(conv)
    if turn is None:
        return "⚠️ Nothing to comment on yet: ask a question first.", gr.skip()
    try:
        rated = rated_answer(tc, conv, turn)
        tc.feedback(rated.answer, comment=text, principal=principal_of_request(request),
                    session=_session(request), history=rated.history)
    except FeedbackError as exc:
        return _refusal(exc), gr.skip()
    except (StoreError, ConfigurationError) as exc:
        return _failed(exc), gr.skip()
    return f"Thanks: your comment on “{plain(rated.answer.question)}” is recorded.", ""


def _still_answer(conv: list[Turn], turn: int) -> int | None:
    """``turn`` if it is still an answer to a question (the chat may have been undone)."""
    return turn if turn == last_answer(conv[: turn + 1]) else None


def _ran_last(conv: list[Turn]) -> tuple[Turn, int] | None:
    """The SQL run that ends the conversation (its answer turn) and the question it corrects:
    the latest question asked before it."""
    if len(conv) < 2 or not conv[-2].get("sql_run") or conv[-1].get("error"):
        return None
    question = last_answer(conv[:-2])
    return (conv[-1], question) if question is not None else None


def offer(tc: TableChat, sql: Any, conv: list[Turn] | None,
          request: gr.Request | None) -> Any:
    """Whether "Save as the right answer" is offered when the SQL editor's query runs: SQL
    the guard accepts, different from the answer's, after a question was answered."""
    conv = conv or []
    question = last_answer(conv)  # a SQL run recorded meanwhile is skipped: no question
    if not isinstance(sql, str) or not sql.strip() or question is None:
        return gr.Button(visible=False)
    try:
        checked = tc.check_sql(sql, session=_session(request))
    except RetryableSQLError:
        return gr.Button(visible=False)
    same = checked.sql == (conv[question].get("sql") or "")
    return gr.Button(visible=not same)


def save_correction(tc: TableChat, sql: Any, conv: list[Turn] | None,
                    request: gr.Request | None) -> tuple[str, Any]:
    """Keep the SQL in the editor as the right answer to the last question, once it has run:
    a correction, which becomes a verified example as ``TABLECHAT_VERIFIERS`` allows."""
    conv = conv or []
    if not isinstance(sql, str) or not sql.strip():
        return "⚠️ Type the right SQL in the editor and run it first.", gr.skip()
    if len(sql) > tc.settings.feedback_max_chars:
        return (f"⚠️ The SQL is too long to keep ({len(sql):,} characters; the limit is "
                f"{tc.settings.feedback_max_chars:,})."), gr.skip()
    ran = _ran_last(conv)
    if ran is None:
        return ("⚠️ Nothing to save: edit the SQL of an answer, run it (▶ Run SQL), then "
                "save it."), gr.skip()
    run, question = ran
    session = _session(request)
    try:
        checked = tc.check_sql(sql, session=session)
        if checked.sql != run.get("sql"):
            raise FeedbackError("the SQL in the editor is not the one that ran: run it "
                                "first (▶ Run SQL), then save it")
        if checked.sql == conv[question].get("sql"):
            raise FeedbackError("this is the answer's own SQL: to say it is right, vote 👍")
        rated = rated_answer(tc, conv, question)
        record = tc.feedback(rated.answer, good=False, sql=sql,
                             principal=principal_of_request(request), session=session,
                             history=rated.history)
    except RetryableSQLError as exc:
        return _refusal(FeedbackError(f"the SQL is refused: {exc}")), gr.skip()
    except FeedbackError as exc:
        return _refusal(exc), gr.skip()
    except (StoreError, ConfigurationError) as exc:
        return _failed(exc), gr.skip()
    kept = (" It is now a verified example." if record.verified else
            " (Kept as feedback; it is not a verified example: "
            + ("a follow-up question only means something in its conversation)."
               if rated.history else "verifying is not open to you here)."))
    return (f"Saved as the right answer to “{plain(rated.answer.question)}”.{kept}",
            gr.Button(visible=False))


def wire_feedback(chatbot: gr.Chatbot, sql_code: gr.Code, conv_state: gr.State,
                  tc: TableChat, run_btn: gr.Button | None = None) -> None:
    """Add feedback to the chat UI, inside a ``gr.Blocks`` where the components it adds go:
    the Chatbot's like event (endpoint ``/vote``), a comment box (``/comment``) and a "Save as
    the right answer" button (``/save_correction``), offered when ``run_btn`` runs an edited
    SQL (always shown when no ``run_btn`` is given). ``conv_state`` is the chat's
    conversation (``chat.Turn`` list): what every vote is checked against."""
    limit = tc.settings.feedback_max_chars
    common: dict[str, Any] = {"concurrency_limit": tc.settings.concurrency_limit}
    options = tuple(o for o in (chatbot.feedback_options or ()) if o not in ("Like", "Dislike"))
    with gr.Group(elem_id="tc-feedback"):
        save_btn = gr.Button("✔ Save as the right answer", size="sm", variant="primary",
                             visible=run_btn is None, elem_id="tc-save-sql")
        with gr.Row(equal_height=True):
            comment_box = gr.Textbox(label="Comment on the answer (optional)", lines=1,
                                     max_lines=4, max_length=limit, scale=8,
                                     placeholder="What was wrong or right about it?",
                                     elem_id="tc-feedback-comment")
            send_btn = gr.Button("Send", size="sm", scale=0, min_width=80,
                                 elem_id="tc-feedback-send")
        notice = gr.Markdown(elem_id="tc-feedback-notice")
    voted = gr.State(None)  # the turn voted last: what a comment is about

    def on_vote(conv: list[Turn], request: gr.Request,
                like: VoteData = NO_VOTE) -> tuple[str, Any]:
        return vote(tc, conv, like, request, options)

    def on_comment(text: str, conv: list[Turn], target: Any,
                   request: gr.Request) -> tuple[str, Any]:
        return comment(tc, text, conv, target, request)

    def on_run(sql: str, conv: list[Turn], request: gr.Request) -> Any:
        return offer(tc, sql, conv, request)

    def on_save(sql: str, conv: list[Turn], request: gr.Request) -> tuple[str, Any]:
        return save_correction(tc, sql, conv, request)

    chatbot.like(on_vote, [conv_state], [notice, voted], api_name="vote", **common)
    comment_inputs = [comment_box, conv_state, voted]
    send_btn.click(on_comment, comment_inputs, [notice, comment_box], api_name="comment",
                   **common)
    comment_box.submit(on_comment, comment_inputs, [notice, comment_box],
                       api_visibility="private", **common)
    save_btn.click(on_save, [sql_code, conv_state], [notice, save_btn],
                   api_name="save_correction", **common)
    if run_btn is not None:
        # beside the run itself (not after it): the offer reads only the editor's SQL and
        # the question answered before; saving checks that this very SQL ran
        run_btn.click(on_run, [sql_code, conv_state], [save_btn], api_visibility="private",
                      **common)
