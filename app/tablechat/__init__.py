"""tablechat: ask your database in plain language.

>>> import tablechat
>>> tc = tablechat.connect("data/demo.duckdb", llm="http://127.0.0.1:8000/v1")
>>> answer = tc.ask("top 5 customers by revenue in 2024")
>>> answer.sql, answer.rows, answer.text
"""

from .answer import Answer
from .api import connect
from .config import Settings
from .core import TableChat
from .errors import (
    BadQuestionError,
    ConfigurationError,
    DatabaseUnavailableError,
    InvalidSQLError,
    LLMUnavailableError,
    NoAnswerError,
    QueryTimeoutError,
    RetryableSQLError,
    SQLExecutionError,
    TableChatError,
    UnsafeSQLError,
    UploadError,
    UserFacingError,
)
from .events import Event

__version__ = "0.1.0"

__all__ = [
    "Answer",
    "BadQuestionError",
    "ConfigurationError",
    "DatabaseUnavailableError",
    "Event",
    "InvalidSQLError",
    "LLMUnavailableError",
    "NoAnswerError",
    "QueryTimeoutError",
    "RetryableSQLError",
    "SQLExecutionError",
    "Settings",
    "TableChat",
    "TableChatError",
    "UnsafeSQLError",
    "UploadError",
    "UserFacingError",
    "__version__",
    "connect",
]
