"""A web process's text conditions (server/edge/sql_trees.py): each text's tree fetched
once (here from DuckDB's parser in this process, as the data process answers it), a
message's parse repeated until its trees are known, within a bound."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import server  # noqa: F401  (installs DuckDB's parser, restored after each test)
from protocol import conditions
from protocol.catalog import TABLES
from protocol.conditions import Compare, Junction, parse_text_condition
from protocol.edits import parse_edit
from protocol.errors import ProtocolError
from server.edge.sql_trees import MAX_FETCHES, SqlTrees
from server.store.sql_parser import serialize_sql


@pytest.fixture
def trees() -> Iterator[tuple[SqlTrees, list[str]]]:
    fetched: list[str] = []

    async def fetch(sql: str) -> dict[str, Any]:
        fetched.append(sql)
        return serialize_sql(sql)

    installed = conditions._parser
    cache = SqlTrees()
    cache.fetch = fetch
    conditions.use_sql_parser(cache)
    try:
        yield cache, fetched
    finally:
        conditions.use_sql_parser(installed)  # type: ignore[arg-type]


def parse_all(*texts: str) -> list[Any]:
    """A parse that meets several text conditions (a message holds one or two)."""
    return [parse_text_condition(TABLES["sales"], text) for text in texts]


async def test_each_text_is_fetched_once_and_the_parse_is_the_same(trees) -> None:
    cache, fetched = trees
    texts = ("sale_id = 1", "quantity > 2 OR sale_id = 2", "sale_id = 1")
    parsed = await cache.parse(lambda: parse_all(*texts))
    assert len(fetched) == 2
    assert parsed[0] == parsed[2] == Compare("sale_id", "=", 1)
    assert isinstance(parsed[1], Junction) and parsed[1].op == "OR"
    edit = {"table": "sales", "column": "quantity", "value": 1, "condition": "sale_id = 1"}
    assert (await cache.parse(lambda: parse_edit(edit))).condition == {"sale_id": 1}
    assert len(fetched) == 2  # kept


async def test_too_many_new_texts_in_one_message_are_refused(trees) -> None:
    cache, fetched = trees
    texts = [f"sale_id = {i}" for i in range(MAX_FETCHES + 1)]
    with pytest.raises(ProtocolError) as refused:
        await cache.parse(lambda: parse_all(*texts))
    assert refused.value.code == "bad_condition" and len(fetched) == MAX_FETCHES
    assert len(await cache.parse(lambda: parse_all(*texts))) == MAX_FETCHES + 1  # next time


async def test_a_bad_text_is_refused_as_duckdb_parses_it(trees) -> None:
    cache, _ = trees
    with pytest.raises(ProtocolError) as refused:
        await cache.parse(lambda: parse_all("sale_id = (SELECT 1)"))
    assert refused.value.code == "bad_condition"
