"""The syntax-tree node kinds the guard refuses anywhere in a statement: whatever writes,
changes state or runs a command (a CTE may hold DML; DESCRIBE and SHOW are commands too)."""

from __future__ import annotations

from sqlglot import exp

# Node kinds that write, change state or run commands. Looked up by name so a sqlglot release
# that renames or drops one does not break the import.
_FORBIDDEN_NODE_NAMES = (
    "Insert",
    "Update",
    "Delete",
    "Merge",
    "Create",
    "Drop",
    "Alter",
    "AlterColumn",
    "Command",
    "Copy",
    "Set",
    "SetItem",
    "Pragma",
    "Attach",
    "Detach",
    "Install",
    "Use",
    "Transaction",
    "Commit",
    "Rollback",
    "Into",
    "LoadData",
    "Kill",
    "Grant",
    "Revoke",
    "TruncateTable",
    "Describe",
    "Summarize",
    "Show",
    "Analyze",
    "Cache",
    "Uncache",
    "Refresh",
    "Export",
    "Comment",
    "Declare",
    "Execute",
    "Put",
    "Get",
    "Call",
    "Lock",
    "Vacuum",
    # variables: MySQL's @@datadir, BigQuery's @@project_id and Snowflake's $name read server
    # or session state, and IDENTIFIER($name) picks a table the guard cannot see
    # (tests/security/test_guard_dialects.py)
    "Parameter",
    "SessionParameter",
    "DynamicIdentifier",
)
FORBIDDEN_NODES: tuple[type[exp.Expr], ...] = tuple(
    getattr(exp, name)
    for name in _FORBIDDEN_NODE_NAMES
    if isinstance(getattr(exp, name, None), type)
)
