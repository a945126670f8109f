/*
 * ducksheet — the history pane: what changed the selected summary cell (GET /history),
 * newest first: when, who, which action, the shown measure before → after and how many
 * sales rows the request changed. Refreshed when the selection moves and when an update
 * touches the cell. Created by panel.js with `state` and `isOpen`.
 */

import { TABLE, cellCondition, cellKeyOf, cellKeyOfCell, cellLabel } from './model.js';
import { KIND, el, errorText, fetchJson, formatValue, setMessage, tableHead, timeAgo } from './util.js';

const ACTION = Object.freeze({
  edit: 'edit', edit_many: 'block edit', spread: 'spread', undo: 'undo', redo: 'redo',
  import: 'import', hold: 'hold',
});

export function createHistory(ctx) {
  const $ = (sel) => document.querySelector(sel);
  const dom = { cell: $('#history-cell'), table: $('#history-table'), message: $('#history-message') };
  let target = null;           // { key, node, month } of the selected cell
  let asked = 0;               // the newest fetch; older answers are dropped

  function setSelection(node, month) {
    target = node ? { key: cellKeyOf(node.key, month ?? ''), node, month: month ?? '' } : null;
    if (ctx.isOpen()) reload();
  }

  function applyUpdates(msg) {
    if (!target || !ctx.isOpen()) return;
    if ((msg.rows || []).some((row) => row.table === TABLE && cellKeyOfCell(row) === target.key)) reload();
  }

  async function reload() {
    const ticket = ++asked;
    if (!target) {
      dom.cell.textContent = '';
      dom.table.hidden = true;
      setMessage(dom.message, 'Select a cell to see what changed it.');
      return;
    }
    dom.cell.textContent = cellLabel(ctx.state, target.key);
    const condition = cellCondition(target.node, target.month);
    const result = await fetchJson('/history', { table: TABLE, condition, limit: 50 });
    if (ticket !== asked) return;
    if (result.status !== 200) {
      dom.table.hidden = true;
      setMessage(dom.message, `History unavailable: ${errorText(result)}`);
      return;
    }
    show(result.body.data.events);
  }

  function show(events) {
    const measure = ctx.state.measure;
    const kind = KIND[measure];
    const value = (v) => (v ? formatValue(v[measure], kind) : '—');
    tableHead(dom.table, ['When', 'Who', 'What', 'Before', 'After', 'Rows'], (c) => ['Before', 'After', 'Rows'].includes(c));
    const rows = events.map((event) => {
      const tr = el('tr');
      const when = el('td', '', timeAgo(event.time));
      when.title = event.time;
      const what = ACTION[event.action] ?? event.action;
      tr.append(
        when,
        el('td', '', event.user),
        el('td', '', event.action === 'hold' ? (event.held ? 'held' : 'released') : what),
        el('td', 'num', value(event.old)),
        el('td', 'num', value(event.new)),
        el('td', 'num', String(event.rows)),
      );
      return tr;
    });
    dom.table.tBodies[0].replaceChildren(...rows);
    dom.table.hidden = rows.length === 0;
    setMessage(dom.message, rows.length ? '' : 'No changes recorded for this cell yet.');
  }

  return { setSelection, applyUpdates, reload };
}
