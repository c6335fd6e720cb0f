"""One chat model shared by every LLM step (router, rewrite, SQL, answer, chat).

Each call is bounded as a whole by ``timeout`` (the HTTP client's own timeout is per read, and
the SDK's retries come on top), its tokens go into :class:`~tablechat.answer.Usage`, and any
client failure becomes an :class:`~tablechat.errors.LLMUnavailableError` with a message for the
person. Request options (the reply limit, constrained decoding) are written in the server's
dialect by its :class:`~tablechat.backends.LLMBackend`; the first time the server refuses a
constraint (HTTP 400/422 to a constrained call that then succeeds without it), constraints are
switched off for every step.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, BaseMessageChunk

from ..answer import Usage
from ..backends import LLMBackend, failure_kind
from ..backends.failures import dropped
from ..errors import LLMUnavailableError, TableChatError
from ..llm import cached_of, is_openai_compatible, llm_error, model_name, usage_of

log = logging.getLogger(__name__)


def text_of(message: BaseMessage | BaseMessageChunk) -> str:
    """The text of a message whose content may be a list of parts."""
    content = message.content
    if isinstance(content, str):
        return content
    parts = [p if isinstance(p, str) else str(p.get("text", "")) for p in content
             if isinstance(p, str | dict)]
    return "".join(parts)


class LLMClient:
    """A chat model plus how to call it: timeout, constraints, concurrency, token accounting."""

    def __init__(
        self,
        model: BaseChatModel,
        *,
        structured: bool = False,
        label: str | None = None,
        timeout: float = 60.0,
        backend: LLMBackend | None = None,
        retries: int = 0,
    ) -> None:
        self.model = model
        self.retries = retries  # replies dropped midway, asked again (the SDK will not)
        self.backend = backend
        self.structured = structured
        self.label = label or model_name(model)
        self.timeout = timeout
        # request options (max_tokens, extra_body) only for OpenAI-protocol models
        self.openai_compatible = is_openai_compatible(model)
        self.calls: dict[str, int] = {}  # step -> calls, for logs and tests
        self._slots: asyncio.Semaphore | None = None

    async def aclose(self) -> None:
        """Close the model's HTTP connections (ChatOpenAI's SDK clients)."""
        for attr in ("root_async_client", "root_client"):
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

    def constrains(self, spec: dict[str, Any] | None) -> bool:
        """Whether a call asking for ``spec`` gets a constrained reply."""
        if spec is None or not self.structured or not self.openai_compatible:
            return False
        return self.backend is None or self.backend.supports(spec)

    def _options(self, spec: dict[str, Any] | None, max_tokens: int | None) -> dict[str, Any]:
        """Request options for one call, passed to ``ainvoke``/``astream`` as keyword
        arguments (what ``model.bind`` would give, without a RunnableBinding per call)."""
        if not self.openai_compatible:
            return {}
        constraint = spec if self.constrains(spec) else None
        if self.backend is not None:
            return self.backend.request_options(constraint, max_tokens)
        kwargs: dict[str, Any] = {}
        if constraint is not None:
            kwargs["extra_body"] = {"structured_outputs": constraint}
        if max_tokens is not None:
            kwargs["max_tokens"] = max_tokens
        return kwargs

    def _count(self, step: str) -> None:
        self.calls[step] = self.calls.get(step, 0) + 1

    @contextlib.asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        """Hold one of the server's slots (the embedded model runs one call at a time: a
        second would only wait in its queue, its timeout running)."""
        limit = self.backend.max_concurrency if self.backend is not None else None
        if limit is None:
            yield
            return
        if self._slots is None:
            self._slots = asyncio.Semaphore(limit)
        async with self._slots:
            yield

    async def invoke(
        self,
        messages: Sequence[BaseMessage] | Callable[[bool], Sequence[BaseMessage]],
        usage: Usage,
        *,
        step: str,
        structured: dict[str, Any] | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> str:
        """One reply's text, whole (streamed from the server unless its backend says a
        timeout frees the server's slot without a stream: ``stream_whole_replies``).

        ``messages`` may be a function of whether the reply is constrained (``structured`` is
        asked for and the server takes it), so the prompt can describe the reply format.
        """
        constrained = self.constrains(structured)
        prompt = list(messages(constrained) if callable(messages) else messages)
        options = self._options(structured, max_tokens)
        if temperature is not None and self.openai_compatible:
            options["temperature"] = temperature
        try:
            async with self._slot(), asyncio.timeout(self.timeout):
                for attempt in range(self.retries + 1):
                    try:
                        message = await self.model.ainvoke(prompt, **options)
                        break
                    except Exception as exc:
                        if attempt >= self.retries or not dropped(exc):
                            raise
                        log.info("the reply was cut off midway; asking again: %s", exc)
        except TableChatError:
            raise
        except Exception as exc:
            if constrained and failure_kind(exc) == "bad_request":
                log.info("the LLM server refused the constraint; using free text: %s", exc)
                self.structured = False
                return await self.invoke(messages, usage, step=step, max_tokens=max_tokens,
                                         temperature=temperature)
            raise llm_error(exc, timeout=self.timeout) from exc
        self._count(step)
        usage.add(*usage_of(message), cached=cached_of(message))
        return text_of(message)

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
        prompt = completion = cached = 0
        try:
            async with self._slot(), asyncio.timeout(self.timeout):
                async for chunk in self.model.astream(list(messages), **options):
                    replied = True
                    if chunk.usage_metadata:  # the last chunk, with stream_usage=True
                        p, c = usage_of(chunk)
                        prompt, completion = prompt + p, completion + c
                        cached += cached_of(chunk)
                    text = text_of(chunk)
                    if text:
                        yield text
        except (TableChatError, GeneratorExit):
            raise
        except Exception as exc:
            raise llm_error(exc, timeout=self.timeout) from exc
        finally:
            if replied:
                usage.add(prompt, completion, cached)
                self._count(step)


__all__ = ["LLMClient", "LLMUnavailableError", "text_of"]
