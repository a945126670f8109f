/*
 * ducksheet — block edits of the grid's range: Ctrl+C copies it as TSV, Ctrl+V pastes a
 * TSV block (from a spreadsheet) at its top-left cell, Ctrl+D fills it down and Ctrl+R
 * right. A paste or fill goes out as one `edit_many` of the measure shown: one request
 * that applies whole or not at all, one undo step. Created by grid.js with the rendered
 * grid's view (see `rendered` there), the overlays, `notify`, `submit`, `beginAction`,
 * `cells()` (the range, see selection.js) and `selectRect(rect)`.
 */

import { NAME_COL, cellEdit, cellKeyOf, cellLabel, readOnlyReason } from './model.js';
import { rectHeight, rectSize, rectWidth, valueColumns } from './range.js';
import { formatTsv, parseNumbers, parseTsv } from './tsv.js';
import { KIND, plural, rawValue } from './util.js';

export const MAX_BLOCK = 10000;      // edits in one edit_many (DUCKSHEET_MAX_EDITS_PER_REQUEST)
const MAX_FRAME_BYTES = 2 << 20;     // the server's default WebSocket frame limit (max_block_body)

export function createBlocks(ctx) {
  const { state, overlays } = ctx;

  function mayEdit() {
    const readOnly = readOnlyReason(state);
    if (readOnly) ctx.notify('warn', readOnly);
    return !readOnly;
  }

  /* ---- Copy ------------------------------------------------------------------------- */

  // The range (or the selected cell) as TSV, numbers as typed; a selected name copies
  // the row's name. Null when nothing is selected.
  function copyText() {
    const sel = state.selection;
    if (!sel) return null;
    if (sel.col === NAME_COL && !state.range) return state.nodes.get(sel.key)?.label ?? null;
    const range = ctx.cells();
    if (!range) return null;
    const kind = KIND[state.measure];
    return formatTsv(range.nodes.map((node) => range.months.map(
      (month) => rawValue(ctx.displayedValue(cellKeyOf(node.key, month)), kind),
    )));
  }

  // Copy and paste events go to the node holding the page's text selection, which may be
  // any cell or the body: what counts is that the grid has the focus (no editor open).
  const gridFocused = () => document.activeElement === ctx.scroller;

  function onCopy(event) {
    if (!gridFocused()) return;
    const text = copyText();
    if (text === null) return;
    event.clipboardData.setData('text/plain', text);
    event.preventDefault();
  }

  /* ---- Paste ------------------------------------------------------------------------ */

  function onPaste(event) {
    if (!gridFocused()) return;
    event.preventDefault();
    paste(event.clipboardData.getData('text/plain'));
  }

  // Pastes a TSV block at the range's top-left cell, clipped to the visible grid; a single
  // value fills the whole range. Nothing is sent when any field is not a number.
  function paste(text) {
    ctx.beginAction();
    if (!mayEdit()) return;
    const range = ctx.cells();
    if (!range || (state.selection.col === NAME_COL && !state.range)) {
      ctx.notify('warn', 'Select a value cell to paste into.');
      return;
    }
    const parsed = parseNumbers(parseTsv(text), KIND[state.measure]);
    if (parsed.error) {
      ctx.notify('error', refusal(parsed.error));
      return;
    }
    const { rect } = range;
    let { values } = parsed;
    if (values.length === 1 && values[0].length === 1 && rectSize(rect) > 1) {
      values = Array.from({ length: rectHeight(rect) }, () => Array(rectWidth(rect)).fill(values[0][0]));
    }
    const list = ctx.list();
    const cols = valueColumns(state);
    const height = Math.min(values.length, list.length - rect.top);
    const width = Math.min(Math.max(0, ...values.map((r) => r.length)), cols.length - rect.left);
    const targets = [];
    let clipped = 0;
    values.forEach((row, r) => row.forEach((value, c) => {
      if (value === null) return;
      if (r < height && c < width) targets.push({ node: list[rect.top + r], month: cols[rect.left + c], value });
      else clipped++;
    }));
    if (!targets.length) {
      ctx.notify('warn', clipped ? 'Nothing pasted: the whole block falls outside the grid.' : 'Nothing to paste: the clipboard holds no values.');
      return;
    }
    if (!send(targets, `Paste of ${plural(targets.length, 'value')}`)) return;
    ctx.selectRect({ top: rect.top, bottom: rect.top + height - 1, left: rect.left, right: rect.left + width - 1 });
    if (clipped) ctx.notify('info', `${plural(clipped, 'value')} fell outside the grid and ${clipped === 1 ? 'was' : 'were'} not pasted.`);
  }

  // "Nothing pasted — row 2, column 3 ("12.345"): Amounts allow at most 2 decimals."
  function refusal({ row, col, text, message }) {
    const shown = message.includes(`"${text}"`) ? '' : ` ("${text}")`;
    return `Nothing pasted — row ${row}, column ${col} of the pasted block${shown}: ${message}`;
  }

  /* ---- Fill ------------------------------------------------------------------------- */

  // Copies the range's top row down it ('down') or its left column across it ('right');
  // a range one row high (one column wide) fills from the row above (column left of) it.
  function fill(direction) {
    ctx.beginAction();
    if (!mayEdit()) return;
    const range = ctx.cells();
    if (!range) return;
    const { rect } = range;
    const down = direction === 'down';
    const from = down ? rect.top - (rectHeight(rect) > 1 ? 0 : 1) : rect.left - (rectWidth(rect) > 1 ? 0 : 1);
    if (from < 0) {
      ctx.notify('warn', down ? 'Nothing above to fill down from.' : 'Nothing to the left to fill right from.');
      return;
    }
    const list = ctx.list();
    const cols = valueColumns(state);
    const targets = [];
    for (let r = rect.top; r <= rect.bottom; r++) {
      for (let c = rect.left; c <= rect.right; c++) {
        if ((down ? r : c) === from) continue;
        const source = down ? cellKeyOf(list[from].key, cols[c]) : cellKeyOf(list[r].key, cols[from]);
        const value = ctx.displayedValue(source);
        if (value !== null && value !== undefined) targets.push({ node: list[r], month: cols[c], value: Number(value) });
      }
    }
    if (!targets.length) {
      ctx.notify('warn', 'Nothing to fill.');
      return;
    }
    send(targets, `Fill ${direction} of ${plural(targets.length, 'cell')}`);
  }

  /* ---- Sending ---------------------------------------------------------------------- */

  // Sends the cells { node, month, value } as one edit_many and shows their new values
  // until it is applied; false when it was not sent.
  function send(targets, what) {
    if (targets.length > MAX_BLOCK) {
      ctx.notify('error', `${what} not sent: one block edit holds at most ${MAX_BLOCK.toLocaleString('en-US')} cells.`);
      return false;
    }
    const held = targets.map((t) => cellKeyOf(t.node.key, t.month)).find((key) => ctx.isHeld(key));
    if (held) {
      const by = state.holds.get(held)?.by ?? state.user;
      ctx.notify('warn', `${what} not sent: ${cellLabel(state, held)} is held by ${by}.`);
      return false;
    }
    const column = state.measure;
    const edits = targets.map((t) => cellEdit(t.node, t.month, column, t.value, state.spread));
    // A frame over the limit would cost the connection (close 1009), not just the paste.
    const bytes = new TextEncoder().encode(JSON.stringify(edits)).length;
    if (bytes > MAX_FRAME_BYTES - 1024) {
      ctx.notify('error', `${what} not sent: ${(bytes / 1e6).toFixed(1)} MB is more than one message may carry; send fewer cells at a time.`);
      return false;
    }
    // One overlay entry per cell, each following the one request.
    const entries = targets.map((t) => ({
      key: `${cellKeyOf(t.node.key, t.month)}#${column}`, value: t.value, status: 'sent', request: null, seq: null,
    }));
    const request = ctx.submit(
      { type: 'edit_many', edits },
      what,
      (r) => entries.forEach((entry) => {
        Object.assign(entry, { status: r.status, request: r.request, seq: r.seq });
        overlays.follow(entry.key, entry);
      }),
      (error) => {
        const at = Number.isInteger(error.index) ? targets[error.index] : null;
        const where = at ? ` at ${cellLabel(state, cellKeyOf(at.node.key, at.month))}` : '';
        const reason = (error.message || error.code || 'unknown reason').replace(/\.$/, '');
        return { level: 'error', text: `${what} rejected${where}: ${reason}. Nothing was changed.` };
      },
    );
    if (!request) return false;
    entries.forEach((entry) => overlays.show(entry.key, entry));
    return true;
  }

  document.addEventListener('copy', onCopy);
  document.addEventListener('paste', onPaste);

  return { copyText, paste, fill };
}
