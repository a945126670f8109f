/*
 * ducksheet — the history pane of the panel: what changed the selected summary cell
 * (GET /history), newest first: when, who, which action, the shown measure before → after
 * and how many sales rows the request changed; "Older" pages back with `before`. It
 * follows the selection (once it rests), reloads when an update touches the cell, and
 * keeps its "2 min ago" current. Updates reach the grid before DuckDB holds them, so each
 * fetch asks for the data shown (`min_seq`): the list never lags the grid. Created by
 * panel.js with `state`, `dataSeq()` (seq of the data shown) and `isOpen()`.
 */

import {
  TABLE, cellCondition, cellKeyOf, cellKeyOfCell, cellLabel, isPeriod, versionOf, versionParam,
} from './model.js';
import { KIND, el, errorText, fetchJson, formatValue, relativeTime, setMessage, tableHead } from './util.js';

const PAGE = 50;
const FOLLOW_DELAY_MS = 150;          // wait for the selection to rest before fetching
const CLOCK_MS = 30000;               // how often "2 min ago" is brought up to date
const ACTION = Object.freeze({
  edit: 'edit', edit_many: 'block edit', spread: 'spread', undo: 'undo', redo: 'redo',
  import: 'import', hold: 'hold',
});
const COLUMNS = ['When', 'Who', 'Action', 'Before → after', 'Rows'];
const NUMERIC = new Set(['Before → after', 'Rows']);

export function createHistory(ctx) {
  const $ = (sel) => document.querySelector(sel);
  const dom = {
    cell: $('#history-cell'), table: $('#history-table'), message: $('#history-message'), older: $('#history-older'),
  };
  const history = {
    target: null,              // { key, node, month } of the selected cell
    shownKey: null,            // the cell whose events are listed
    events: [],
    more: false,               // a full page came back: there may be older events
    ticket: 0,                 // the newest fetch; older answers are dropped
    followTimer: null,
  };

  function setSelection(node, month) {
    history.target = node ? { key: cellKeyOf(node.key, month ?? ''), node, month: month ?? '' } : null;
    if (!ctx.isOpen()) return;
    clearTimeout(history.followTimer);
    history.followTimer = setTimeout(() => load(false), FOLLOW_DELAY_MS);
  }

  // Reloads when an `updates` frame changed the cell or its hold.
  function applyUpdates(msg) {
    const key = history.target?.key;
    if (!key || !ctx.isOpen()) return;
    const mine = (row) => (!row.table || row.table === TABLE) && versionOf(row) === ctx.state.version
      && cellKeyOfCell(row) === key;
    if ((msg.rows || []).some(mine) || (msg.holds || []).some(mine)) load(false);
  }

  function reload() {
    if (ctx.isOpen()) load(false);
  }

  // Fetches the newest page (or, with `older`, the page before the last event listed).
  async function load(older) {
    clearTimeout(history.followTimer);
    const ticket = ++history.ticket;
    const target = history.target;
    if (!target) {
      history.shownKey = null;
      dom.cell.textContent = '';
      showEvents([], false);
      setMessage(dom.message, 'Select a cell to see what changed it.');
      return;
    }
    dom.cell.textContent = cellLabel(ctx.state, target.key);
    if (isPeriod(target.month)) {
      history.shownKey = null;
      showEvents([], false);
      setMessage(dom.message, 'A quarter or year keeps no history of its own: select one of its months.');
      return;
    }
    const params = {
      table: TABLE,
      condition: cellCondition(target.node, target.month),
      limit: PAGE,
      min_seq: ctx.dataSeq(),
      version: versionParam(ctx.state),
    };
    if (older) params.before = history.events[history.events.length - 1].seq;
    if (!older && history.shownKey !== target.key) setMessage(dom.message, 'Loading…');
    const result = await fetchJson('/history', params);
    if (ticket !== history.ticket) return;
    if (result.status !== 200) {
      history.shownKey = null;
      showEvents([], false);
      setMessage(dom.message, `History unavailable: ${errorText(result)}`);
      return;
    }
    const events = result.body.data.events || [];
    history.shownKey = target.key;
    showEvents(older ? [...history.events, ...events] : events, events.length === PAGE);
  }

  function showEvents(events, more) {
    history.events = events;
    history.more = more;
    render();
  }

  // Draws the listed events in the measure shown.
  function render() {
    const { measure } = ctx.state;
    const value = (v) => (v && v[measure] != null ? formatValue(v[measure], KIND[measure]) : '—');
    tableHead(dom.table, COLUMNS, (c) => NUMERIC.has(c));
    const rows = history.events.map((event) => {
      const tr = el('tr');
      tr.dataset.seq = String(event.seq);
      tr.dataset.action = event.action;
      const when = el('td', 'when', relativeTime(event.time));
      when.title = event.time ? new Date(event.time).toLocaleString() : '';
      when.dataset.time = event.time ?? '';
      const action = event.action === 'hold' && event.held !== undefined
        ? (event.held ? 'held' : 'released') : ACTION[event.action] ?? event.action;
      const change = el('td', 'num', `${value(event.old)} → ${value(event.new)}`);
      change.dataset.col = 'change';
      tr.append(when, el('td', '', event.user ?? ''), el('td', '', action), change, el('td', 'num', String(event.rows ?? '')));
      return tr;
    });
    dom.table.tBodies[0].replaceChildren(...rows);
    dom.table.hidden = rows.length === 0;
    dom.older.hidden = !history.more;
    if (history.shownKey) setMessage(dom.message, rows.length ? '' : 'No changes recorded for this cell yet.');
  }

  function tick() {
    if (!ctx.isOpen()) return;
    dom.table.querySelectorAll('td.when').forEach((td) => { td.textContent = relativeTime(td.dataset.time); });
  }

  dom.older.addEventListener('click', () => load(true));
  setInterval(tick, CLOCK_MS);

  return { setSelection, applyUpdates, reload, measureChanged: render };
}
