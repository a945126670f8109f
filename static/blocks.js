/*
 * ducksheet — block edits and undo/redo from the grid: copying the selected range as
 * TSV, pasting a TSV block (from Excel or Google Sheets) at the selection as one
 * `edit_many`, filling down or right, and undo / redo of your own requests.
 *
 * Created by grid.js with the rendered grid's view (`list`, `indexOf`, `displayedValue`,
 * `isHeld`), `range` (the selected range), the overlays, `notify`, `submit` and
 * `beginAction`.
 */

import { NAME_COL, TABLE, cellCondition, cellKeyOf, cellLabel, columns } from './model.js';
import { formatTsv, parseTsv } from './tsv.js';
import { KIND, parseValue, plural, rawValue } from './util.js';

export function createBlocks(ctx) {
  const { state } = ctx;
  const valueColumns = () => columns(state).filter((c) => c !== NAME_COL);

  // The selected range as row nodes and value columns, in display order.
  function selectedBlock() {
    const range = ctx.range();
    if (!range) return null;
    const list = ctx.list();
    const cols = valueColumns();
    return {
      nodes: list.slice(range.top, range.bottom + 1),
      cols: cols.slice(range.left, range.right + 1),
      top: range.top,
      left: range.left,
    };
  }

  function copyText() {
    const block = selectedBlock();
    if (!block) return null;
    const kind = KIND[state.measure];
    return formatTsv(block.nodes.map((node) => block.cols.map(
      (col) => rawValue(ctx.displayedValue(cellKeyOf(node.key, col)), kind),
    )));
  }

  // Values of a pasted text at the selection: a single value fills the whole range;
  // a block goes from the range's top-left, clipped to the grid.
  function paste(text) {
    const block = selectedBlock();
    if (!block || !denyViewer()) return;
    let values = parseTsv(text);
    if (values.length === 1 && values[0].length === 1) {
      values = block.nodes.map(() => block.cols.map(() => values[0][0]));
    }
    writeBlock(block.top, block.left, values, 'Paste');
  }

  // Ctrl+D: the range's top row down its rows; Ctrl+R: its left column right.
  function fill(direction) {
    const block = selectedBlock();
    if (!block || !denyViewer()) return;
    const kind = KIND[state.measure];
    const value = (node, col) => rawValue(ctx.displayedValue(cellKeyOf(node.key, col)), kind);
    const values = direction === 'down'
      ? block.nodes.map(() => block.cols.map((col) => value(block.nodes[0], col)))
      : block.nodes.map((node) => block.cols.map(() => value(node, block.cols[0])));
    writeBlock(block.top, block.left, values, direction === 'down' ? 'Fill down' : 'Fill right');
  }

  function writeBlock(top, left, values, what) {
    ctx.beginAction();
    const list = ctx.list();
    const cols = valueColumns();
    const kind = KIND[state.measure];
    const edits = [];
    const shown = [];
    let clipped = 0;
    for (let r = 0; r < values.length; r += 1) {
      for (let c = 0; c < values[r].length; c += 1) {
        const node = list[top + r];
        const col = cols[left + c];
        if (!node || col === undefined) {
          clipped += 1;
          continue;
        }
        const parsed = parseValue(values[r][c], kind);
        const key = cellKeyOf(node.key, col);
        if (parsed.error) {
          ctx.notify('error', `${what}: row ${r + 1}, column ${c + 1} (${cellLabel(state, key)}): ${parsed.error} Nothing was sent.`);
          return;
        }
        if (ctx.isHeld(key)) {
          ctx.notify('error', `${what}: ${cellLabel(state, key)} is held. Nothing was sent.`);
          return;
        }
        edits.push({ table: TABLE, column: state.measure, value: parsed.value, condition: cellCondition(node, col), spread: state.spread });
        shown.push([`${key}#${state.measure}`, parsed.value]);
      }
    }
    if (!edits.length) return;
    const label = `${what} of ${plural(edits.length, 'cell')}`;
    let overlays = [];
    const request = ctx.submit({ type: 'edit_many', edits }, label, () => {
      overlays.forEach(([key, overlay]) => ctx.overlays.follow(key, overlay));
    });
    if (!request) return;
    // one overlay per cell (its own value), following the block's one request
    overlays = shown.map(([key, value]) => [key, {
      value,
      get status() { return request.status; },
      get seq() { return request.seq; },
      get request() { return request.request; },
    }]);
    overlays.forEach(([key, overlay]) => ctx.overlays.show(key, overlay));
    if (clipped) ctx.notify('warn', `${label}: ${plural(clipped, 'value')} past the edge of the grid left out.`);
  }

  function undo(redo) {
    ctx.beginAction();
    if (!denyViewer()) return;
    ctx.submit({ type: redo ? 'redo' : 'undo' }, redo ? 'Redo' : 'Undo', () => {});
  }

  function denyViewer() {
    if (state.role !== 'viewer') return true;
    ctx.notify('warn', 'Read-only: your role cannot edit.');
    return false;
  }

  return { copyText, paste, fill, undo };
}
