"""One chat model shared by every LLM step (router, rewrite, SQL, answer, chat).

Each call is bounded as a whole by ``timeout`` (the HTTP client's own timeout is per read, and
the SDK's retries come on top), its tokens go into :class:`~tablechat.answer.Usage`, and any
client failure becomes an :class:`~tablechat.errors.LLMUnavailableError` with a message for the
person. Constrained decoding (vLLM's ``structured_outputs``) is asked for per call; the first
time the server refuses it, it is switched off for every step and the call is repeated as free
text.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, cast

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, BaseMessageChunk
from langchain_core.outputs import ChatGeneration
from langchain_core.runnables.config import ensure_config

from .. import _loop
from ..answer import Usage
from ..errors import LLMUnavailableError, TableChatError
from ..llm import failure_kind, is_openai_compatible, llm_error, model_name, usage_of

log = logging.getLogger(__name__)


def text_of(message: BaseMessage | BaseMessageChunk) -> str:
    content = message.content
    if isinstance(content, str):
        return content
    parts = [p if isinstance(p, str) else str(p.get("text", "")) for p in content
             if isinstance(p, str | dict)]
    return "".join(parts)


def _run_config() -> dict[str, Any]:
    """What ``invoke``/``ainvoke`` hand ``generate``: the run config of the calling context
    (callbacks, tags and metadata of a LangChain run that called tablechat)."""
    config = ensure_config()
    return {"callbacks": config.get("callbacks"), "tags": config.get("tags"),
            "metadata": config.get("metadata"), "run_name": config.get("run_name"),
            "run_id": config.pop("run_id", None)}


def _sync_only(model: BaseChatModel) -> bool:
    from langchain_core.language_models.chat_models import SimpleChatModel

    own = type(model)._agenerate
    return own is BaseChatModel._agenerate or own is SimpleChatModel._agenerate


class LLMClient:
    """A chat model plus how to call it: timeout, structured outputs, token accounting."""

    def __init__(
        self,
        model: BaseChatModel,
        *,
        structured: bool = False,
        label: str | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.model = model
        self.structured = structured
        self.label = label or model_name(model)
        self.timeout = timeout
        # bind request options (max_tokens, extra_body) only for OpenAI-protocol models
        self.openai_compatible = is_openai_compatible(model)
        # a model with no asynchronous generate of its own: LangChain's ainvoke would run its
        # synchronous one in a thread anyway, behind an async layer that costs more than the
        # call; invoke it in a thread directly
        self.sync_only = _sync_only(model)
        # LangChain's invoke/ainvoke wrap the messages in a prompt value, unwrap them again and
        # call the public generate/agenerate; calling those directly (with the same config
        # from the context: a parent run's callbacks, tags, metadata) skips about 40 µs a call.
        # Only for a model that keeps all of LangChain's own steps in between.
        kind = type(model)
        self.direct = all(getattr(kind, name) is getattr(BaseChatModel, name) for name in (
            "invoke", "ainvoke", "generate_prompt", "agenerate_prompt", "_convert_input"))
        self.calls: dict[str, int] = {}  # step -> calls, for logs and tests

    async def aclose(self) -> None:
        """Close the model's HTTP connections: the aiohttp session of the transport tablechat
        gives the models it builds (``async_client``) and ChatOpenAI's own SDK clients."""
        for attr in ("async_client", "root_async_client", "root_client"):
            client = getattr(self.model, attr, None)
            close = getattr(client, "aclose", None) or getattr(client, "close", None)
            if close is None:
                continue
            try:
                result = close()
                if asyncio.iscoroutine(result):
                    await result
            except Exception as exc:  # closing must never fail a shutdown
                log.debug("closing the LLM client: %s", exc)

    def _options(self, spec: dict[str, Any] | None, max_tokens: int | None) -> dict[str, Any]:
        """Request options for one call, passed to ``ainvoke``/``astream`` as keyword arguments
        (what ``model.bind`` would give, without building a RunnableBinding per call)."""
        kwargs: dict[str, Any] = {}
        if self.openai_compatible:
            if spec is not None and self.structured:
                # per-call extra_body replaces the constructor's: give the whole body here
                kwargs["extra_body"] = {"structured_outputs": spec}
            if max_tokens is not None:
                kwargs["max_tokens"] = max_tokens
        return kwargs

    def _count(self, step: str) -> None:
        self.calls[step] = self.calls.get(step, 0) + 1

    async def invoke(
        self,
        messages: Sequence[BaseMessage] | Callable[[bool], Sequence[BaseMessage]],
        usage: Usage,
        *,
        step: str,
        structured: dict[str, Any] | None = None,
        max_tokens: int | None = None,
    ) -> str:
        """One non-streamed reply's text.

        ``messages`` may be a function of whether the reply is constrained (``structured`` is
        asked for and the server takes it), so the prompt can describe the reply format.
        """
        asked_structured = structured is not None and self.structured and self.openai_compatible
        prompt = list(messages(asked_structured) if callable(messages) else messages)
        options = self._options(structured, max_tokens)
        try:
            # asyncio.timeout, not wait_for: no extra task per call
            async with asyncio.timeout(self.timeout):
                if self.sync_only:
                    message = await _loop.in_thread(self._generate, prompt, options)
                elif self.direct:
                    result = await self.model.agenerate([prompt], **_run_config(), **options)
                    message = cast(ChatGeneration, result.generations[0][0]).message
                else:
                    message = await self.model.ainvoke(prompt, **options)
        except TableChatError:
            raise
        except Exception as exc:
            if asked_structured and failure_kind(exc) == "structured":
                log.info("the LLM server refused structured_outputs; using free text: %s", exc)
                self.structured = False
                return await self.invoke(messages, usage, step=step, max_tokens=max_tokens)
            raise llm_error(exc, timeout=self.timeout) from exc
        self._count(step)
        usage.add(*usage_of(message))
        return text_of(message)

    def _generate(self, prompt: list[BaseMessage], options: dict[str, Any]) -> BaseMessage:
        """One blocking call (in a worker thread)."""
        if not self.direct:
            return self.model.invoke(prompt, **options)
        result = self.model.generate([prompt], **_run_config(), **options)
        return cast(ChatGeneration, result.generations[0][0]).message

    async def stream(
        self,
        messages: Sequence[BaseMessage],
        usage: Usage,
        *,
        step: str,
        max_tokens: int | None = None,
    ) -> AsyncIterator[str]:
        """The reply's text as it streams. The whole stream is bounded by ``timeout``."""
        options = self._options(None, max_tokens)
        replied = False
        prompt = completion = 0
        try:
            async with asyncio.timeout(self.timeout):
                async for chunk in self.model.astream(list(messages), **options):
                    replied = True
                    if chunk.usage_metadata:  # the last chunk, with stream_usage=True
                        p, c = usage_of(chunk)
                        prompt, completion = prompt + p, completion + c
                    text = text_of(chunk)
                    if text:
                        yield text
        except (TableChatError, GeneratorExit):
            raise
        except Exception as exc:
            raise llm_error(exc, timeout=self.timeout) from exc
        finally:
            if replied:
                usage.add(prompt, completion)
                self._count(step)


__all__ = ["LLMClient", "LLMUnavailableError", "text_of"]
