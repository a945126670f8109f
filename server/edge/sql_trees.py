"""Text conditions in web processes, which hold no DuckDB (~45 MB with its parser's
connection): the parse tree of each text is asked of the data process, which parses it
with DuckDB's own parser as every other process does (server/store/sql_parser.py), and
kept for the messages after it.

`serve --role web` installs `TREES` as the protocol's SQL parser. A text it does not
hold yet stops the parse with `TreeNeeded`; `SqlTrees.parse` fetches that tree and
parses the message again, so the protocol's parsing stays synchronous and pure.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from protocol.errors import ProtocolError

T = TypeVar("T")
KEPT = 4096  # trees kept, the least recently used dropped first
MAX_FETCHES = 32  # texts not yet known in one message


class TreeNeeded(Exception):
    """The tree of `sql` has to be fetched before the parse can go on."""

    def __init__(self, sql: str) -> None:
        super().__init__(sql)
        self.sql = sql


class SqlTrees:
    def __init__(self) -> None:
        self.fetch: Callable[[str], Awaitable[dict[str, Any]]] | None = None
        self._trees: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def __call__(self, sql: str) -> dict[str, Any]:
        """The protocol's SQL parser: the tree of `sql`, if it is known."""
        tree = self._trees.get(sql)
        if tree is None:
            raise TreeNeeded(sql)
        self._trees.move_to_end(sql)
        return tree

    async def parse(self, parse: Callable[[], T]) -> T:
        """`parse()`, once the trees of every text condition it meets are known."""
        for _ in range(MAX_FETCHES):
            try:
                return parse()
            except TreeNeeded as need:
                if self.fetch is None:
                    raise ProtocolError(
                        "unavailable", "text conditions cannot be parsed yet"
                    ) from None
                self._keep(need.sql, await self.fetch(need.sql))
        raise ProtocolError(
            "bad_condition",
            f"more than {MAX_FETCHES} different text conditions in one message; "
            "use object conditions",
        )

    def _keep(self, sql: str, tree: dict[str, Any]) -> None:
        self._trees[sql] = tree
        while len(self._trees) > KEPT:
            self._trees.popitem(last=False)


TREES = SqlTrees()
