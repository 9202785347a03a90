"""The embedded chat store (SQLite): `SqliteChatStore` and its schema version.

Modules: `schema` (tables and migrations), `writer` (group commit), `transactions` (writes),
`queries` (reads), `store` (the ChatStore that composes them).
"""

from .schema import SCHEMA_VERSION
from .store import SqliteChatStore

__all__ = ["SCHEMA_VERSION", "SqliteChatStore"]
