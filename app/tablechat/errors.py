"""Errors, split by who handles them.

- :class:`RetryableSQLError` and its subclasses go back to the LLM, which gets another try.
- :class:`UserFacingError` and its subclasses are for the person asking: say what happened.
- :class:`ConfigurationError` is for the programmer: a setting or argument is wrong.

Every error raised by tablechat derives from :class:`TableChatError`.
"""

from __future__ import annotations

from .redact import scrub


class TableChatError(Exception):
    """Root of every error tablechat raises."""


# --- errors fed back to the model -------------------------------------------------------------
class RetryableSQLError(TableChatError):
    """The generated SQL is unusable; the message is written for the model to repair it.

    The message is scrubbed of server paths and credentials (a DuckDB error may name its temp
    directory or secret store): it goes to the model and to the person, never only to a log.
    """

    def __init__(
        self, message: str, *, sql: str = "", line: int | None = None, col: int | None = None
    ) -> None:
        message = scrub(message)
        super().__init__(message)
        self.message = message
        self.sql = sql
        self.line = line
        self.col = col

    def for_model(self) -> str:
        where = f" (line {self.line}, column {self.col})" if self.line is not None else ""
        return f"{type(self).__name__}{where}: {self.message}"


class UnsafeSQLError(RetryableSQLError):
    """The SQL guard refused the statement (writes, file access, several statements, ...)."""


class InvalidSQLError(RetryableSQLError):
    """The SQL does not parse, or names a table, column or function the database lacks."""


class SQLExecutionError(RetryableSQLError):
    """The database refused or failed the query."""


# --- errors for the person --------------------------------------------------------------------
class UserFacingError(TableChatError):
    """Something the person asking can act on."""


class BadQuestionError(UserFacingError):
    """The question is empty, too long or otherwise not a question."""


class LLMUnavailableError(UserFacingError):
    """No LLM server is configured, reachable or answering sensibly."""


class QueryTimeoutError(UserFacingError):
    """The query ran longer than the configured timeout and was cancelled."""


class DatabaseUnavailableError(UserFacingError):
    """The database cannot be opened."""


class NoAnswerError(UserFacingError):
    """The question could not be answered (retries exhausted, or the engine does not know)."""


class UploadError(UserFacingError):
    """An uploaded file is malformed, too large or of an unsupported kind."""


# --- errors for the programmer ----------------------------------------------------------------
class ConfigurationError(TableChatError):
    """A setting or argument is invalid."""
