/*
 * ducksheet — the rectangle of value cells between two corners of a range selection,
 * over the visible rows in display order and the value columns (months, then the
 * Total). Pure: the caller passes the visible list, its index and the sheet.
 */

import { NAME_COL, TOTAL_COL } from './model.js';

// The columns a range can span: every month, then the Total.
export const valueColumns = (sheet) => [...sheet.months, TOTAL_COL];

// A corner's column position; a row's name counts as its first value column.
function colIndex(cols, col) {
  return col === NAME_COL ? 0 : cols.indexOf(col);
}

// { top, bottom, left, right } (inclusive positions in `list` and `cols`) spanned by the
// corners `anchor` and `extent` ({ key, col }; extent null = the anchor alone), or null
// when a corner is not visible.
export function rangeRect(indexOf, cols, anchor, extent) {
  if (!anchor || !cols.length) return null;
  const corner = extent || anchor;
  const rows = [indexOf(anchor.key), indexOf(corner.key)];
  const columns = [colIndex(cols, anchor.col), colIndex(cols, corner.col)];
  if (rows.includes(undefined) || columns.includes(-1)) return null;
  return {
    top: Math.min(...rows), bottom: Math.max(...rows),
    left: Math.min(...columns), right: Math.max(...columns),
  };
}

export const rectHeight = (rect) => rect.bottom - rect.top + 1;
export const rectWidth = (rect) => rect.right - rect.left + 1;
export const rectSize = (rect) => rectHeight(rect) * rectWidth(rect);

// The nodes and month columns of a rectangle: { nodes, months }.
export function rectCells(rect, list, cols) {
  return {
    nodes: list.slice(rect.top, rect.bottom + 1),
    months: cols.slice(rect.left, rect.right + 1),
  };
}
