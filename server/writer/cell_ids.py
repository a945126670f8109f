"""Which summary cell has which `cell_id` in DuckDB: the persister's key for setting
cells in bulk (the hierarchy columns hold NULLs, so they cannot be one)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import duckdb
import numpy as np

from protocol.catalog import CELL_KEY, SUMMARY
from protocol.rollup import Cell

Conn = duckdb.DuckDBPyConnection
MONEY = "(v.cents::DECIMAL(18, 0) * 0.01)::DECIMAL(18, 2)"


class CellIds:
    def __init__(self, ids: dict[Cell, int]) -> None:
        self.ids = ids

    @classmethod
    def load(cls, con: Conn) -> CellIds:
        rows = con.execute(f"SELECT {', '.join(CELL_KEY)}, cell_id FROM {SUMMARY}").fetchall()
        return cls({tuple(row[:5]): row[5] for row in rows})  # type: ignore[misc]

    def write(
        self,
        con: Conn,
        cells: dict[Cell, list[int] | None],
        writers: dict[Cell, tuple[str, dt.datetime]] | None = None,
    ) -> list[tuple[Any, ...]]:
        """Set the cells to their values (None: delete) and who changed them when, inside
        the caller's transaction; returns the new cells' (cell key, cell_id) rows, to
        pass to `committed`."""
        writers = writers or {}
        gone = [
            self.ids[cell] for cell, value in cells.items() if value is None and cell in self.ids
        ]
        kept = [
            (self.ids[cell], *value) for cell, value in cells.items() if value and cell in self.ids
        ]
        new = [(cell, value) for cell, value in cells.items() if value and cell not in self.ids]
        if gone:
            con.execute(
                f"DELETE FROM {SUMMARY} WHERE cell_id IN (SELECT unnest(?::BIGINT[]))", [gone]
            )
        if kept:
            columns = np.array(kept, dtype=np.int64).T
            v = dict(zip(("cell_id", "quantity", "cents", "lines"), columns, strict=True))  # noqa: F841
            con.execute(
                f"UPDATE {SUMMARY} SET quantity = v.quantity, net_amount = {MONEY}, "
                f"line_count = v.lines FROM v WHERE {SUMMARY}.cell_id = v.cell_id"
            )
        changed = [
            (self.ids[cell], *writers[cell])
            for cell, value in cells.items()
            if value and cell in self.ids and cell in writers
        ]
        if changed:
            ids, by, at = zip(*changed, strict=True)
            w = {  # noqa: F841 (scanned by name below; numpy, not bound lists: faster)
                "cell_id": np.array(ids, dtype=np.int64),
                "changed_by": np.array(by, dtype=object),
                "changed_at": np.array(at, dtype="datetime64[us]"),
            }
            con.execute(
                f"UPDATE {SUMMARY} SET changed_by = w.changed_by, changed_at = w.changed_at "
                f"FROM w WHERE {SUMMARY}.cell_id = w.cell_id"
            )
        if not new:
            return []
        params: dict[str, list[Any]] = {
            name: [cell[i] for cell, _ in new] for i, name in enumerate(CELL_KEY)
        }
        for i, name in enumerate(("quantity", "cents", "lines")):
            params[name] = [value[i] for _, value in new]
        params["by"] = [writers.get(cell, (None, None))[0] for cell, _ in new]
        params["at"] = [writers.get(cell, (None, None))[1] for cell, _ in new]
        return con.execute(
            f"""
            INSERT INTO {SUMMARY}
                (supplier, brand, family, month, level, quantity, net_amount, line_count,
                 changed_by, changed_at)
            SELECT unnest($supplier::VARCHAR[]), unnest($brand::VARCHAR[]),
                   unnest($family::VARCHAR[]), unnest($month::VARCHAR[]),
                   unnest($level::INTEGER[]), unnest($quantity::BIGINT[]),
                   (unnest($cents::BIGINT[])::DECIMAL(18, 0) * 0.01)::DECIMAL(18, 2),
                   unnest($lines::BIGINT[]), unnest($by::VARCHAR[]), unnest($at::TIMESTAMP[])
            RETURNING {", ".join(CELL_KEY)}, cell_id
            """,
            params,
        ).fetchall()

    def committed(
        self, cells: dict[Cell, list[int] | None], inserted: list[tuple[Any, ...]]
    ) -> None:
        """What DuckDB holds once the transaction of `write` committed."""
        for cell, value in cells.items():
            if value is None:
                self.ids.pop(cell, None)
        for row in inserted:
            self.ids[tuple(row[:5])] = row[5]  # type: ignore[index]
