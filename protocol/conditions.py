"""String conditions such as "supplier = 'Smith Ltd' AND family = 'impact'".

The text is parsed by DuckDB's own parser (its json_serialize_sql tree, given by the
server through `use_sql_parser`, so this module stays pure) and accepted only if its
tree holds column references of the table, constants, comparisons, IN, BETWEEN,
IS [NOT] NULL and AND/OR/NOT. The tree is then
rebuilt as our own expression; SQL is generated from that with parameters, so nothing
from the client is ever spliced into SQL text.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from protocol.catalog import Table
from protocol.errors import ProtocolError
from protocol.values import coerce_value

WHERE = "$where"  # key of a condition kept as (validated) text
MAX_TEXT = 2000
MAX_NODES = 200
COMPARISONS = {
    "COMPARE_EQUAL": "=",
    "COMPARE_NOTEQUAL": "<>",
    "COMPARE_LESSTHAN": "<",
    "COMPARE_GREATERTHAN": ">",
    "COMPARE_LESSTHANOREQUALTO": "<=",
    "COMPARE_GREATERTHANOREQUALTO": ">=",
}
MIRRORED = {"<": ">", ">": "<", "<=": ">=", ">=": "<="}
# SQL text -> DuckDB's json_serialize_sql tree (as a dict)
SqlParser = Callable[[str], dict[str, Any]]
_parser: SqlParser | None = None


@dataclass(frozen=True)
class Compare:
    column: str
    op: str
    value: Any


@dataclass(frozen=True)
class In:
    column: str
    values: tuple[Any, ...]
    negated: bool = False


@dataclass(frozen=True)
class Between:
    column: str
    low: Any
    high: Any


@dataclass(frozen=True)
class IsNull:
    column: str
    negated: bool = False


@dataclass(frozen=True)
class Junction:
    op: str  # AND | OR
    parts: tuple[Expr, ...]


@dataclass(frozen=True)
class Not:
    part: Expr


Expr = Compare | In | Between | IsNull | Junction | Not


def invalid(message: str) -> ProtocolError:
    return ProtocolError("bad_condition", message)


def parse_text_condition(table: Table, text: str) -> Expr:
    if len(text) > MAX_TEXT:
        raise invalid(f"condition longer than {MAX_TEXT} characters")
    tree = _serialize(f"SELECT * FROM t WHERE {text}")
    statements = tree.get("statements") or []
    if tree.get("error") or len(statements) != 1:
        # DuckDB's own message would echo parser internals: say what is expected instead
        raise invalid(
            "not a condition: expected one expression such as \"supplier = 'Acme' AND "
            "month = '2024-03'\" (columns, constants, comparisons, IN, BETWEEN, IS NULL, "
            "AND/OR/NOT)"
        )
    node = statements[0]["node"]
    if node.get("type") != "SELECT_NODE" or node.get("group_expressions") or node.get("having"):
        raise invalid("only a plain condition is allowed")
    if node.get("modifiers") or node.get("cte_map", {}).get("map"):
        raise invalid("only a plain condition is allowed")
    counter = [0]
    return _Builder(table, counter).expr(node["where_clause"])


def use_sql_parser(parser: SqlParser) -> None:
    """Install the parser of text conditions (the server installs DuckDB's)."""
    global _parser
    _parser = parser


def _serialize(sql: str) -> dict[str, Any]:
    if _parser is None:
        raise invalid("text conditions are not available here; use an object condition")
    return _parser(sql)


class _Builder:
    def __init__(self, table: Table, counter: list[int]) -> None:
        self.table = table
        self.counter = counter

    def expr(self, node: dict[str, Any]) -> Expr:
        self.counter[0] += 1
        if self.counter[0] > MAX_NODES:
            raise invalid(f"condition has more than {MAX_NODES} parts")
        kind = node.get("type", "")
        children = node.get("children") or []
        if kind in ("CONJUNCTION_AND", "CONJUNCTION_OR"):
            return Junction(kind.removeprefix("CONJUNCTION_"), tuple(map(self.expr, children)))
        if kind == "OPERATOR_NOT" and len(children) == 1:
            return Not(self.expr(children[0]))
        if kind in COMPARISONS:
            left, right, op = node["left"], node["right"], COMPARISONS[kind]
            if left.get("class") != "COLUMN_REF":  # allow 5 < quantity
                left, right, op = right, left, MIRRORED.get(op, op)
            column = self.column(left)
            return Compare(column, op, self.constant(column, right))
        if kind in ("COMPARE_IN", "COMPARE_NOT_IN") and len(children) >= 2:
            column = self.column(children[0])
            values = tuple(self.constant(column, child) for child in children[1:])
            return In(column, values, kind == "COMPARE_NOT_IN")
        if kind == "COMPARE_BETWEEN":
            column = self.column(node["input"])
            return Between(
                column, self.constant(column, node["lower"]), self.constant(column, node["upper"])
            )
        if kind in ("OPERATOR_IS_NULL", "OPERATOR_IS_NOT_NULL") and len(children) == 1:
            return IsNull(self.column(children[0]), kind == "OPERATOR_IS_NOT_NULL")
        raise invalid(f"{kind.lower() or 'this'} is not allowed in a condition")

    def column(self, node: dict[str, Any]) -> str:
        names = node.get("column_names") or []
        if node.get("class") != "COLUMN_REF" or len(names) != 1:
            raise invalid("comparisons need a column of the table on one side")
        if names[0] not in self.table.columns:
            raise ProtocolError(
                "unknown_column",
                f"condition names unknown column {names[0]!r} of {self.table.name!r}",
            )
        return names[0]

    def constant(self, column: str, node: dict[str, Any]) -> Any:
        if node.get("class") != "CONSTANT":
            raise invalid("comparisons need a constant on the other side")
        literal = node.get("value") or node.get("literal") or {}
        text = literal.get("text", literal.get("value"))
        if literal.get("kind") in ("NULL", "NULL_LITERAL") or literal.get("is_null"):
            raise invalid("compare with IS NULL, not = NULL")
        try:
            return coerce_value(self.table.columns[column], text, what="condition value")
        except ProtocolError as exc:
            raise invalid(exc.message) from exc


def equalities(expr: Expr) -> dict[str, Any] | None:
    """The object form of a condition that only ANDs `col = value` and `col IS NULL`."""
    parts = expr.parts if isinstance(expr, Junction) and expr.op == "AND" else (expr,)
    result: dict[str, Any] = {}
    for part in parts:
        if isinstance(part, Compare) and part.op == "=" and part.column not in result:
            result[part.column] = part.value
        elif isinstance(part, IsNull) and not part.negated and part.column not in result:
            result[part.column] = None
        else:
            return None
    return result
