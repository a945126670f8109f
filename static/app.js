/*
 * ducksheet — browser grid for the shared sheet `sales_summary_by_product_family`.
 * Vanilla ES2020 modules, no dependencies, no build step. Loaded by static/index.html;
 * imports util.js (pure helpers) and panel.js (the sales rows and reports panel).
 *
 * Server contract: JSON text frames over a WebSocket at ws(s)://<same host>/ws
 * (override for debugging with the query parameter ?ws=<url>); see README.md. This file
 * handles welcome, snapshot, resync, queued, applied, rejected, updates, presence, error
 * and pong, and sends hello, edit, hold, cursor and ping.
 *
 * Test / debugging hooks (stable; browser tests rely on them):
 *   window.ducksheet.state                  the live client state object (treat as read-only)
 *   window.ducksheet.lastSeq()              last seq seen in snapshot/updates/applied, or null
 *   window.ducksheet.cell(s, b, f, month)   the value <td> of that cell, or null when it is not
 *                                           rendered (collapsed parent, or windowed out of view).
 *                                           null, undefined and "" all mean "all"/"Total".
 *   window.ducksheet.socket()               the open WebSocket or null (tests close it)
 * DOM attributes and classes:
 *   td[data-key="supplier|brand|family|month"]  value cell; null parts are "" (the grand
 *                                               total's Total cell is "|||"). The displayed
 *                                               text is in the cell's <span>.
 *   td[data-col="name"]                         the node-name cell of a row
 *   tr[data-level="7|3|1|0"]                    data level: 7 total, 3 supplier, 1 brand, 0 family
 *   tr[data-node="supplier|brand|family"]       node key; tr[aria-expanded] on expandable rows
 *   th[data-month="YYYY-MM"], th[data-month=""] month header cells ("" = Total column)
 *   .toggle                                     the ▸/▾ expander inside a name cell
 *   td.selected / td.pending / td.flash         selection, unconfirmed own edit, live-change flash
 *   td.flash[data-by="ann, bob"]                who made the change (others than you)
 *   td.held[data-held-by]                       a held cell (lock); td.hold-pending while own
 *                                               hold/release is unconfirmed
 *   td.peer[data-peer="ann"]                    another user's cursor (outline in their colour)
 *   td.editing > input.editor, .spread-choice   the inline editor and its spread buttons
 *   #status[data-state="connecting|live|reconnecting"], #log > .log-entry (toasts)
 *   #presence > li[data-id]                     connected users (li.me is you)
 *   #hold-button[aria-pressed]                  hold/release the selected cell
 *   panel.js documents the hooks of #panel (sales rows and reports).
 * When more than WINDOW_THRESHOLD rows are visible, only rows near the viewport are in the DOM.
 */

import {
  KIND, Overlays, accessToken, clamp, compareSeq, el, formatValue, monthLabel, parseValue, plural, rawValue,
} from './util.js';
import { createPanel } from './panel.js';

/* ---- Constants ---------------------------------------------------------------------- */

const TABLE = 'sales_summary_by_product_family';
const LEVEL = Object.freeze({ FAMILY: 0, BRAND: 1, SUPPLIER: 3, TOTAL: 7 });
const DEPTH = Object.freeze({ 7: 0, 3: 1, 1: 2, 0: 3 });
const NAME_COL = '#name';
const TOTAL_COL = '';
const COL_WIDTH = Object.freeze({ name: 280, month: 124, total: 140 });
const INDENT_PX = 18;
const WINDOW_THRESHOLD = 300;
const OVERSCAN = 20;
const PING_MS = 20000;
const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 10000;
const CURSOR_MS = 100;             // at most ~10 cursor messages a second
const STORAGE_NAME = 'ducksheet.name';
const PEER_COLORS = ['#e11d48', '#7c3aed', '#0891b2', '#ea580c', '#16a34a', '#db2777', '#4f46e5', '#ca8a04'];
const STATUS_TEXT = Object.freeze({
  connecting: 'Connecting…', live: 'Live', reconnecting: 'Reconnecting…',
});
const SPREAD_LABEL = Object.freeze({ proportional: 'Proportional', equal: 'Equal' });
const COLLATOR = new Intl.Collator('en', { numeric: true, sensitivity: 'base' });

/* ---- State -------------------------------------------------------------------------- */

// Everything a test might want to inspect lives here (exposed as window.ducksheet.state).
const state = {
  name: '',                  // display name sent in hello
  user: null,                // user name confirmed by welcome
  me: null,                  // own presence id from welcome
  role: null,                // role from welcome; "viewer" makes the grid read-only
  status: 'connecting',      // connecting | live | reconnecting
  seq: null,                 // last seq seen (snapshot/updates/applied); sent as `since`
  dataSeq: null,             // seq of the data currently shown (snapshot/updates only)
  measure: 'net_amount',     // net_amount | quantity
  spread: 'proportional',    // proportional | equal: default spread of parent edits
  nodes: new Map(),          // node key -> node (see ensureNode)
  root: null,                // grand-total node
  months: [],                // sorted "YYYY-MM" columns present in the data
  monthCount: new Map(),     // month -> number of cells, to notice columns appearing/vanishing
  expanded: new Set(),       // node keys of expanded suppliers/brands; survives snapshots
  expandedInitialised: false,
  selection: null,           // { key: node key, col: NAME_COL | month | TOTAL_COL }
  holds: new Map(),          // cell key -> { by, level } of every held cell
  peers: new Map(),          // presence id -> { id, name, cell, color } of other users
  pending: new Map(),        // client request id -> request awaiting applied/rejected
  lastChange: null,          // { by, at } of the latest `updates`
  log: [],                   // recent notifications { at, level, text }
};

// DOM bookkeeping for what is currently rendered (not part of the public hook).
const view = {
  list: [],                  // visible nodes in display order
  index: new Map(),          // node key -> position in list
  rows: new Map(),           // node key -> { tr, toggle, tds: Map col -> td } for rendered rows
  cells: new Map(),          // cell key (data-key) -> value <td> for rendered rows
  peerCells: new Map(),      // cell key -> peers on it
  start: 0,                  // rendered window [start, end) of list
  end: 0,
  rowHeight: 28,
  selectedTd: null,
  editor: null,              // { key, nodeKey, month, column, input, initial }
  scrollQueued: false,
};

const conn = {
  ws: null, backoff: BACKOFF_MIN_MS, retryTimer: null, pingTimer: null, pingOutstanding: false,
  requestCounter: 0,
};
const cursor = { timer: null, lastAt: 0, lastSent: undefined };
const clientTag = Math.random().toString(36).slice(2, 8);
const dom = {};

// Own edits ("<cell key>#<column>") and holds ("<cell key>#hold") awaiting confirmation.
const overlays = new Overlays(
  (key) => paintCellByKey(key.slice(0, key.lastIndexOf('#'))),
  () => state.dataSeq,
);
let panel = null;            // the sales rows / reports panel (panel.js)

/* ---- Small helpers ------------------------------------------------------------------ */

const part = (v) => (v === null || v === undefined ? '' : String(v));
const nodeKeyOf = (s, b, f) => `${part(s)}|${part(b)}|${part(f)}`;
const cellKeyOf = (nodeKey, month) => `${nodeKey}|${part(month)}`;
const cellKeyOfCell = (c) => cellKeyOf(nodeKeyOf(c.supplier, c.brand, c.family), c.month);
const columns = () => [NAME_COL, ...state.months, TOTAL_COL];

function splitCellKey(cellKey) {
  const cut = cellKey.lastIndexOf('|');
  return { nodeKey: cellKey.slice(0, cut), month: cellKey.slice(cut + 1) };
}

// The condition naming one summary cell, as the server expects it.
function cellCondition(node, month) {
  return {
    supplier: node.supplier,
    brand: node.brand,
    family: node.family,
    month: month === TOTAL_COL || month === NAME_COL ? null : month,
  };
}

// "Coach · Mar 2024" for messages and tooltips.
function cellLabel(cellKey) {
  const { nodeKey, month } = splitCellKey(cellKey);
  const node = state.nodes.get(nodeKey);
  return `${node ? node.label : nodeKey} · ${month ? monthLabel(month) : 'Total'}`;
}

function storageGet(key) {
  try { return localStorage.getItem(key); } catch { return null; }
}

function storageSet(key, value) {
  try { localStorage.setItem(key, value); } catch { /* private mode: keep in memory only */ }
}

function noteSeq(seq) {
  if (seq != null && compareSeq(seq, state.seq) > 0) state.seq = String(seq);
}

/* ---- Model: the node tree built from summary rows ----------------------------------- */

function parentArgs(level, supplier, brand) {
  if (level === LEVEL.FAMILY) return [LEVEL.BRAND, supplier, brand, null];
  if (level === LEVEL.BRAND) return [LEVEL.SUPPLIER, supplier, null, null];
  return [LEVEL.TOTAL, null, null, null];
}

function labelOf(level, supplier, brand, family) {
  if (level === LEVEL.TOTAL) return 'Grand total';
  const name = level === LEVEL.SUPPLIER ? supplier : level === LEVEL.BRAND ? brand : family;
  return name === null || name === '' ? '(blank)' : String(name);
}

// Returns the node for a key, creating it (and any missing ancestors) on first sight.
function ensureNode(level, supplier, brand, family) {
  const key = nodeKeyOf(supplier, brand, family);
  const existing = state.nodes.get(key);
  if (existing) return existing;
  const node = {
    key, level, supplier, brand, family,
    label: labelOf(level, supplier, brand, family),
    cells: new Map(),        // month ("" = all months) -> { quantity, net_amount, by }
    children: [],
    sorted: true,
    parent: null,
  };
  state.nodes.set(key, node);
  if (level !== LEVEL.TOTAL) {
    node.parent = ensureNode(...parentArgs(level, supplier, brand));
    node.parent.children.push(node);
    node.parent.sorted = false;
  }
  return node;
}

// Removes a node without cells or children, then any ancestors left empty by that.
function pruneNode(node) {
  let current = node;
  while (current.level !== LEVEL.TOTAL && current.cells.size === 0 && current.children.length === 0) {
    state.nodes.delete(current.key);
    const siblings = current.parent.children;
    siblings.splice(siblings.indexOf(current), 1);
    current = current.parent;
  }
}

function sortedChildren(node) {
  if (!node.sorted) {
    node.children.sort((a, b) => COLLATOR.compare(a.label, b.label));
    node.sorted = true;
  }
  return node.children;
}

function resetModel() {
  state.nodes = new Map();
  state.monthCount = new Map();
  state.months = [];
  state.root = ensureNode(LEVEL.TOTAL, null, null, null);
}

function countMonth(month, delta, changes) {
  if (month === TOTAL_COL) return;
  const count = (state.monthCount.get(month) || 0) + delta;
  if (count > 0) state.monthCount.set(month, count);
  else state.monthCount.delete(month);
  if (count === 0 || (delta > 0 && count === 1)) changes.columns = true;
}

// The row's level, inferred from which key parts are null when it is missing or unknown.
function levelOf(row) {
  const level = Number(row.level);
  if (row.level !== null && row.level !== undefined && level in DEPTH) return level;
  if (row.family != null) return LEVEL.FAMILY;
  if (row.brand != null) return LEVEL.BRAND;
  return row.supplier != null ? LEVEL.SUPPLIER : LEVEL.TOTAL;
}

// Applies one summary row (insert, replace or delete) and records what changed.
function applyRow(row, by, changes) {
  if (row.table && row.table !== TABLE) return;
  const supplier = row.supplier ?? null;
  const brand = row.brand ?? null;
  const family = row.family ?? null;
  const nodeKey = nodeKeyOf(supplier, brand, family);
  const month = part(row.month);
  if (row.deleted) {
    const node = state.nodes.get(nodeKey);
    if (!node || !node.cells.delete(month)) return;
    countMonth(month, -1, changes);
    if (node.cells.size === 0) {
      pruneNode(node);
      changes.structure = true;
    }
  } else {
    if (!state.nodes.has(nodeKey)) changes.structure = true;
    const node = ensureNode(levelOf(row), supplier, brand, family);
    if (!node.cells.has(month)) countMonth(month, +1, changes);
    node.cells.set(month, { quantity: row.quantity, net_amount: row.net_amount, by });
  }
  changes.cells.push(cellKeyOf(nodeKey, month));
}

function sortMonths() {
  state.months = [...state.monthCount.keys()].sort();
}

function isExpandable(node) {
  return node.level !== LEVEL.TOTAL && node.children.length > 0;
}

function isExpanded(node) {
  return node.level === LEVEL.TOTAL || state.expanded.has(node.key);
}

// Expands the first supplier once, on the first snapshot that has one.
function expandFirstSupplier() {
  const first = sortedChildren(state.root)[0];
  if (first) state.expanded.add(first.key);
  return Boolean(first);
}

/* ---- Rendering: header and column layout -------------------------------------------- */

function renderHeader() {
  const cols = columns();
  const widths = cols.map((c) => {
    if (c === NAME_COL) return COL_WIDTH.name;
    return c === TOTAL_COL ? COL_WIDTH.total : COL_WIDTH.month;
  });
  dom.colgroup.replaceChildren(...widths.map((w) => {
    const col = el('col');
    col.style.width = `${w}px`;
    return col;
  }));
  dom.table.style.width = `${widths.reduce((a, b) => a + b, 0)}px`;
  const tr = el('tr');
  for (const c of cols) tr.append(headerCell(c));
  dom.thead.replaceChildren(tr);
}

function headerCell(col) {
  if (col === NAME_COL) {
    const th = el('th', 'name', 'Product');
    th.dataset.col = 'name';
    return th;
  }
  const isTotal = col === TOTAL_COL;
  const th = el('th', isTotal ? 'num total' : 'num', isTotal ? 'Total' : monthLabel(col));
  th.dataset.month = col;
  th.scope = 'col';
  if (!isTotal) th.title = col;
  return th;
}

/* ---- Rendering: visible rows, windowing and row reuse ------------------------------- */

function buildVisibleList() {
  const list = [];
  const walk = (node) => {
    list.push(node);
    if (isExpanded(node)) sortedChildren(node).forEach(walk);
  };
  walk(state.root);
  view.list = list;
  view.index = new Map(list.map((node, i) => [node.key, i]));
}

function viewportRows() {
  const scroller = dom.grid;
  const visible = Math.ceil(scroller.clientHeight / view.rowHeight);
  const maxFirst = Math.max(0, view.list.length - visible);
  const first = clamp(Math.floor(scroller.scrollTop / view.rowHeight), 0, maxFirst);
  return [first, Math.min(view.list.length, first + visible + 1)];
}

function windowRange() {
  const count = view.list.length;
  if (count <= WINDOW_THRESHOLD) return [0, count];
  const [first, last] = viewportRows();
  return [Math.max(0, first - OVERSCAN), Math.min(count, last + OVERSCAN)];
}

function spacerRow(height) {
  const tr = el('tr', 'spacer');
  const td = el('td');
  td.colSpan = columns().length;
  td.style.height = `${height}px`;
  tr.append(td);
  return tr;
}

// Renders rows [start, end) of the visible list, reusing <tr>s that are already built.
function renderBody() {
  [view.start, view.end] = windowRange();
  const previous = view.rows;
  const next = new Map();
  const fragment = document.createDocumentFragment();
  const after = view.list.length - view.end;
  if (view.start > 0) fragment.append(spacerRow(view.start * view.rowHeight));
  for (let i = view.start; i < view.end; i++) {
    const node = view.list[i];
    const row = previous.get(node.key) || buildRow(node);
    previous.delete(node.key);
    paintRowHead(row, node);
    next.set(node.key, row);
    fragment.append(row.tr);
  }
  if (after > 0) fragment.append(spacerRow(after * view.rowHeight));
  previous.forEach(forgetRow);
  view.rows = next;
  dom.tbody.replaceChildren(fragment);
  const empty = state.nodes.size === 1 && state.root.cells.size === 0;
  dom.table.hidden = empty;
  dom.empty.hidden = !empty;
  rehomeEditor();
  paintSelection();
  renderSummary();
}

function buildRow(node) {
  const tr = el('tr', `lvl-${node.level}`);
  tr.dataset.level = String(node.level);
  tr.dataset.node = node.key;
  tr.setAttribute('aria-level', String(DEPTH[node.level] + 1));
  const head = el('td', 'name');
  head.dataset.col = 'name';
  head.style.paddingLeft = `${8 + DEPTH[node.level] * INDENT_PX}px`;
  head.title = node.label;
  const toggle = el('span', 'toggle');
  head.append(toggle, el('span', 'label', node.label));
  tr.append(head);
  const tds = new Map([[NAME_COL, head]]);
  for (const month of [...state.months, TOTAL_COL]) {
    const td = el('td', month === TOTAL_COL ? 'num total' : 'num');
    td.dataset.key = cellKeyOf(node.key, month);
    td.append(el('span'));
    paintCell(td);
    view.cells.set(td.dataset.key, td);
    tds.set(month, td);
    tr.append(td);
  }
  return { tr, toggle, tds };
}

function forgetRow(row) {
  row.tds.forEach((td, col) => {
    if (col !== NAME_COL) view.cells.delete(td.dataset.key);
  });
}

function paintRowHead(row, node) {
  if (isExpandable(node)) {
    const open = isExpanded(node);
    row.toggle.textContent = open ? '▾' : '▸';
    row.tr.setAttribute('aria-expanded', String(open));
  } else {
    row.toggle.textContent = '';
    row.tr.removeAttribute('aria-expanded');
  }
}

// Rebuilds everything: used when the snapshot arrives or the month columns change.
function renderAll() {
  view.rows = new Map();
  view.cells = new Map();
  view.selectedTd = null;
  renderHeader();
  refreshStructure();
}

// Re-derives the visible rows after expand/collapse or nodes appearing/disappearing.
function refreshStructure() {
  buildVisibleList();
  keepSelectionVisible();
  renderBody();
}

function onScroll() {
  if (view.scrollQueued) return;
  view.scrollQueued = true;
  requestAnimationFrame(() => {
    view.scrollQueued = false;
    updateWindow();
  });
}

function updateWindow() {
  if (view.list.length <= WINDOW_THRESHOLD) return;
  const [first, last] = viewportRows();
  if (first < view.start || last > view.end) renderBody();
}

function renderSummary() {
  if (dom.table.hidden) {
    dom.summary.textContent = '';
    return;
  }
  const parts = [
    plural(state.root.children.length, 'supplier'),
    plural(state.months.length, 'month'),
    `${plural(view.list.length, 'row')} shown`,
  ];
  const change = state.lastChange;
  if (change) {
    parts.push(`last change by ${change.by.join(', ') || 'server'} at ${change.at.toLocaleTimeString()}`);
  }
  dom.summary.textContent = parts.join(' · ');
}

/* ---- Rendering: cells, pending overlays, holds, peers and flashing ------------------ */

function displayedValue(cellKey) {
  const overlay = overlays.get(`${cellKey}#${state.measure}`);
  if (overlay) return overlay.value;
  const { nodeKey, month } = splitCellKey(cellKey);
  const cell = state.nodes.get(nodeKey)?.cells.get(month);
  return cell ? cell[state.measure] : null;
}

// Whether a cell shows as held: an unconfirmed own hold/release wins over the server's.
function isHeld(cellKey) {
  const overlay = overlays.get(`${cellKey}#hold`);
  return overlay ? overlay.value : state.holds.has(cellKey);
}

function cellTitle(cellKey) {
  const lines = [];
  const overlay = overlays.get(`${cellKey}#${state.measure}`);
  if (overlay && overlay.status === 'sent') lines.push('Sending…');
  if (overlay && overlay.status === 'queued') lines.push(`Queued (request ${overlay.request})`);
  const hold = state.holds.get(cellKey);
  if (hold) lines.push(`held by ${hold.by} (H releases)`);
  const peers = view.peerCells.get(cellKey);
  if (peers) lines.push(`${peers.map((p) => p.name).join(', ')} here`);
  const { nodeKey, month } = splitCellKey(cellKey);
  const by = state.nodes.get(nodeKey)?.cells.get(month)?.by;
  if (by && by.length) lines.push(`changed by ${by.join(', ')}`);
  return lines.join('\n');
}

function paintCell(td) {
  const key = td.dataset.key;
  const overlay = overlays.get(`${key}#${state.measure}`);
  const value = displayedValue(key);
  td.firstChild.textContent = formatValue(value, KIND[state.measure]);
  td.classList.toggle('neg', Number(value) < 0);
  td.classList.toggle('pending', Boolean(overlay) && overlay.status !== 'applied');
  paintHold(td, key);
  paintPeer(td, key);
  td.title = cellTitle(key);
}

function paintHold(td, key) {
  const held = isHeld(key);
  const overlay = overlays.get(`${key}#hold`);
  td.classList.toggle('held', held);
  td.classList.toggle('hold-pending', Boolean(overlay) && overlay.status !== 'applied');
  if (held) td.dataset.heldBy = state.holds.get(key)?.by ?? state.user ?? '';
  else delete td.dataset.heldBy;
}

function paintPeer(td, key) {
  const peer = view.peerCells.get(key)?.[0];
  td.classList.toggle('peer', Boolean(peer));
  if (peer) {
    td.style.setProperty('--peer-color', peer.color);
    td.dataset.peer = view.peerCells.get(key).map((p) => p.name).join(', ');
  } else {
    td.style.removeProperty('--peer-color');
    delete td.dataset.peer;
  }
}

function paintCellByKey(cellKey) {
  const td = view.cells.get(cellKey);
  if (td) paintCell(td);
}

function repaintAllCells() {
  view.cells.forEach(paintCell);
}

// Restarts the CSS flash animation on the given cells with a single forced reflow; `by`
// (the other users who made the change) is shown on the cell while it flashes.
function flashCells(cellKeys, by) {
  const tds = cellKeys.map((k) => view.cells.get(k)).filter(Boolean);
  if (!tds.length) return;
  tds.forEach((td) => td.classList.remove('flash'));
  void dom.tbody.offsetWidth;
  const color = peerColorOf(by[0]);
  tds.forEach((td) => {
    if (by.length) td.dataset.by = by.join(', ');
    else delete td.dataset.by;
    if (color) td.style.setProperty('--by-color', color);
    else td.style.removeProperty('--by-color');
    td.classList.add('flash');
  });
}

function onFlashEnd(event) {
  if (event.animationName !== 'flash') return;
  event.target.classList.remove('flash');
  delete event.target.dataset.by;
  event.target.style.removeProperty('--by-color');
}

/* ---- Selection and keyboard navigation ---------------------------------------------- */

function select(nodeKey, col) {
  state.selection = { key: nodeKey, col };
  scrollSelectionIntoView();
  paintSelection();
  selectionChanged();
}

// Tells everything that follows the selection: presence, the hold button, the panel.
function selectionChanged() {
  queueCursor();
  updateHoldButton();
  const sel = state.selection;
  const node = sel && state.nodes.get(sel.key);
  panel.setSelection(node || null, sel && sel.col !== NAME_COL && sel.col !== TOTAL_COL ? sel.col : null);
}

function paintSelection() {
  if (view.selectedTd) {
    view.selectedTd.classList.remove('selected');
    view.selectedTd.removeAttribute('aria-selected');
  }
  const sel = state.selection;
  const td = sel ? view.rows.get(sel.key)?.tds.get(sel.col) : null;
  view.selectedTd = td || null;
  if (td) {
    td.classList.add('selected');
    td.setAttribute('aria-selected', 'true');
  }
}

// After collapse/removal, moves the selection to the nearest visible ancestor.
function keepSelectionVisible() {
  const sel = state.selection;
  if (!sel) return;
  let node = state.nodes.get(sel.key);
  while (node && !view.index.has(node.key)) node = node.parent;
  const col = columns().includes(sel.col) ? sel.col : TOTAL_COL;
  state.selection = node ? { key: node.key, col } : null;
  if (!node || node.key !== sel.key || col !== sel.col) selectionChanged();
}

function scrollSelectionIntoView() {
  const sel = state.selection;
  const index = sel ? view.index.get(sel.key) : undefined;
  if (index === undefined) return;
  const scroller = dom.grid;
  const top = index * view.rowHeight;
  const bottom = top + view.rowHeight;
  const room = scroller.clientHeight - dom.thead.offsetHeight;
  if (top < scroller.scrollTop) scroller.scrollTop = top;
  else if (bottom > scroller.scrollTop + room) scroller.scrollTop = bottom - room;
  updateWindow();
  const td = view.rows.get(sel.key)?.tds.get(sel.col);
  if (!td || sel.col === NAME_COL) return;
  const left = td.offsetLeft - COL_WIDTH.name;
  const right = td.offsetLeft + td.offsetWidth;
  if (left < scroller.scrollLeft) scroller.scrollLeft = left;
  else if (right > scroller.scrollLeft + scroller.clientWidth) {
    scroller.scrollLeft = right - scroller.clientWidth;
  }
}

function moveSelection(rowDelta, colDelta) {
  const sel = state.selection;
  if (!sel) {
    select(state.root.key, columns()[1]);
    return;
  }
  const cols = columns();
  const row = view.index.get(sel.key) ?? 0;
  const col = Math.max(0, cols.indexOf(sel.col));
  const nextRow = clamp(row + rowDelta, 0, view.list.length - 1);
  const nextCol = clamp(col + colDelta, 0, cols.length - 1);
  select(view.list[nextRow].key, cols[nextCol]);
}

// Expands the ancestors of a cell and selects it (used to jump to another user's cursor).
function revealCell(cellKey) {
  const { nodeKey, month } = splitCellKey(cellKey);
  const node = state.nodes.get(nodeKey);
  if (!node) return;
  for (let up = node.parent; up && up.level !== LEVEL.TOTAL; up = up.parent) state.expanded.add(up.key);
  refreshStructure();
  select(nodeKey, columns().includes(month) ? month : TOTAL_COL);
  dom.grid.focus({ preventScroll: true });
}

function pageRows() {
  return Math.max(1, Math.floor((dom.grid.clientHeight - dom.thead.offsetHeight) / view.rowHeight) - 1);
}

function onGridKeyDown(event) {
  if (view.editor || event.target !== dom.grid) return;
  const sel = state.selection;
  const onName = sel && sel.col === NAME_COL;
  const plain = !event.ctrlKey && !event.metaKey && !event.altKey;
  const moves = {
    ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1],
    PageUp: [-pageRows(), 0], PageDown: [pageRows(), 0], Home: [0, -Infinity], End: [0, Infinity],
  };
  if (moves[event.key]) {
    moveSelection(...moves[event.key]);
  } else if (event.key === 'Tab' && sel && plain) {
    const edge = event.shiftKey ? NAME_COL : TOTAL_COL;
    if (sel.col === edge) return;     // let Tab leave the grid at the row edge
    moveSelection(0, event.shiftKey ? -1 : 1);
  } else if ((event.key === 'Enter' || event.key === ' ') && onName) {
    toggleNode(sel.key);
  } else if (event.key === 'Enter' || event.key === 'F2') {
    startEdit(null);
  } else if (plain && (event.key === 'h' || event.key === 'H') && sel && !onName) {
    toggleHold();
  } else if (plain && /^[0-9.+-]$/.test(event.key) && sel && !onName) {
    startEdit(event.key);
  } else {
    return;
  }
  event.preventDefault();
}

/* ---- Mouse interaction -------------------------------------------------------------- */

function cellTarget(event) {
  if (event.target.closest('input')) return null;
  const td = event.target.closest('td');
  const nodeKey = td && td.parentNode.dataset.node;
  if (!nodeKey) return null;
  const col = td.dataset.col === 'name' ? NAME_COL : splitCellKey(td.dataset.key).month;
  return { td, nodeKey, col };
}

function onGridClick(event) {
  const target = cellTarget(event);
  if (!target) return;
  if (event.target.closest('.toggle')) toggleNode(target.nodeKey);
  select(target.nodeKey, target.col);
  dom.grid.focus({ preventScroll: true });
}

function onGridDoubleClick(event) {
  const target = cellTarget(event);
  if (!target || event.target.closest('.toggle')) return;
  if (target.col === NAME_COL) toggleNode(target.nodeKey);
  else startEdit(null);
}

function toggleNode(nodeKey) {
  const node = state.nodes.get(nodeKey);
  if (!node || !isExpandable(node)) return;
  if (state.expanded.has(nodeKey)) state.expanded.delete(nodeKey);
  else state.expanded.add(nodeKey);
  refreshStructure();
}

/* ---- Inline editing ----------------------------------------------------------------- */

function startEdit(seedText) {
  const sel = state.selection;
  if (!sel || sel.col === NAME_COL) return;
  if (state.role === 'viewer') {
    notify('warn', 'Read-only: your role cannot edit.');
    return;
  }
  if (view.editor) commitEdit(0, true);
  const key = cellKeyOf(sel.key, sel.col);
  const td = view.cells.get(key);
  if (!td) return;
  const kind = KIND[state.measure];
  const initial = rawValue(displayedValue(key), kind);
  const input = el('input', 'editor');
  input.type = 'text';
  input.inputMode = 'decimal';
  input.spellcheck = false;
  input.autocomplete = 'off';
  input.setAttribute('aria-label', `New ${state.measure === 'quantity' ? 'quantity' : 'net amount'}`);
  input.value = seedText === null ? initial : seedText;
  input.addEventListener('keydown', onEditorKeyDown);
  input.addEventListener('blur', onEditorBlur);
  const choice = spreadChoice();
  view.editor = { key, nodeKey: sel.key, month: sel.col, column: state.measure, input, choice, initial };
  td.classList.add('editing');
  td.append(input, choice);
  input.focus();
  if (seedText === null) input.select();
}

// The buttons under the editor choosing how this edit spreads to the rows below the
// cell; Enter uses the header's default, Shift+Enter always spreads equally.
function spreadChoice() {
  const box = el('div', 'spread-choice');
  box.append(el('span', 'spread-label', 'Spread'));
  for (const spread of ['proportional', 'equal']) {
    const button = el('button', spread === state.spread ? 'default' : '', SPREAD_LABEL[spread]);
    button.type = 'button';
    button.dataset.spread = spread;
    const keys = [spread === state.spread ? '↵' : '', spread === 'equal' ? '⇧↵' : ''].filter(Boolean);
    if (keys.length) button.append(el('kbd', '', keys.join(' ')));
    button.addEventListener('mousedown', (event) => event.preventDefault());  // keep focus
    button.addEventListener('click', () => commitEdit(0, false, spread));
    box.append(button);
  }
  return box;
}

function onEditorKeyDown(event) {
  event.stopPropagation();
  if (event.key === 'Enter') commitEdit(0, false, event.shiftKey ? 'equal' : state.spread);
  else if (event.key === 'Tab') commitEdit(event.shiftKey ? -1 : 1, false);
  else if (event.key === 'Escape') closeEditor(true);
  else return;
  event.preventDefault();
}

// Focus moving elsewhere in the page commits. Switching windows keeps the input active and
// re-renders refocus it synchronously, so neither commits.
function onEditorBlur(event) {
  const input = event.target;
  setTimeout(() => {
    if (view.editor && view.editor.input === input && document.activeElement !== input) {
      commitEdit(0, true);
    }
  }, 0);
}

function commitEdit(colDelta, fromBlur, spread = state.spread) {
  const editor = view.editor;
  const text = editor.input.value;
  if (text.trim() !== editor.initial) {
    const parsed = parseValue(text, KIND[editor.column]);
    if (parsed.error) {
      notify('error', fromBlur ? `${parsed.error} Edit discarded.` : parsed.error);
      if (fromBlur) closeEditor(false);
      else editor.input.select();
      return;
    }
    sendEdit(editor, parsed.value, spread);
  }
  closeEditor(!fromBlur);
  if (colDelta) moveSelection(0, colDelta);
}

function closeEditor(refocusGrid) {
  const editor = view.editor;
  if (!editor) return;
  view.editor = null;
  const td = editor.input.parentNode;
  editor.input.remove();
  editor.choice.remove();
  if (td) td.classList.remove('editing');
  if (refocusGrid) dom.grid.focus({ preventScroll: true });
}

// Keeps an open editor attached after its row was re-rendered; closes it if the row is gone.
function rehomeEditor() {
  const editor = view.editor;
  if (!editor) return;
  const td = view.cells.get(editor.key);
  if (!td) {
    closeEditor(true);
    return;
  }
  if (editor.input.parentNode !== td) {
    td.classList.add('editing');
    td.append(editor.input, editor.choice);
  }
  if (document.activeElement !== editor.input) editor.input.focus({ preventScroll: true });
}

/* ---- Requests: edits and holds, tracked until applied/rejected ---------------------- */

// Sends an edit or hold with a fresh client id and follows it: `onChange(request)` is
// called on queued, applied, rejected and on a lost connection (status "lost"). `what`
// names it in messages ("Edit of Coach · Mar 2024"). Returns null when not connected.
function submit(message, what, onChange) {
  const id = `${clientTag}-${Date.now().toString(36)}-${++conn.requestCounter}`;
  if (!send({ ...message, id })) {
    notify('error', `Not connected — ${what} not sent.`);
    return null;
  }
  const request = { id, what, status: 'sent', request: null, seq: null, onChange };
  state.pending.set(id, request);
  return request;
}

// Moves a pending request to a new status and tells its owner.
function advance(id, status, fields) {
  const request = state.pending.get(id);
  if (!request) return null;
  if (status !== 'queued') state.pending.delete(id);
  Object.assign(request, { status }, fields);
  request.onChange(request);
  return request;
}

function abandonPending() {
  const unconfirmed = [...state.pending.keys()];
  unconfirmed.forEach((id) => advance(id, 'lost', {}));
  if (unconfirmed.length) {
    notify('warn', `Connection lost with ${unconfirmed.length} unconfirmed change(s); values refresh on reconnect.`);
  }
}

function sendEdit(target, value, spread) {
  const node = state.nodes.get(target.nodeKey);
  if (!node) return;
  const key = `${target.key}#${target.column}`;
  const request = submit({
    type: 'edit',
    table: TABLE,
    column: target.column,
    value,
    condition: cellCondition(node, target.month),
    spread,
  }, `Edit of ${cellLabel(target.key)}`, (r) => overlays.follow(key, r));
  if (!request) return;
  request.value = value;
  overlays.show(key, request);
}

/* ---- Holds -------------------------------------------------------------------------- */

// Holds (or releases) the selected value cell for everyone.
function toggleHold() {
  const sel = state.selection;
  const node = sel && state.nodes.get(sel.key);
  if (!node || sel.col === NAME_COL) return;
  if (state.role === 'viewer') {
    notify('warn', 'Read-only: your role cannot hold cells.');
    return;
  }
  const cellKey = cellKeyOf(sel.key, sel.col);
  const key = `${cellKey}#hold`;
  const on = !isHeld(cellKey);
  const request = submit(
    { type: 'hold', condition: cellCondition(node, sel.col), on },
    `${on ? 'Hold' : 'Release'} of ${cellLabel(cellKey)}`,
    (r) => { overlays.follow(key, r); updateHoldButton(); },
  );
  if (!request) return;
  request.value = on;
  overlays.show(key, request);
  updateHoldButton();
}

// Applies `updates.holds` (or `snapshot.holds` when `replace`) and repaints what changed.
function applyHolds(holds, replace) {
  const touched = replace ? [...state.holds.keys()] : [];
  if (replace) state.holds = new Map();
  for (const hold of holds || []) {
    const key = cellKeyOfCell(hold);
    if (hold.on === false) state.holds.delete(key);
    else state.holds.set(key, { by: hold.by, level: hold.level });
    touched.push(key);
  }
  touched.forEach(paintCellByKey);
  updateHoldButton();
}

function updateHoldButton() {
  const sel = state.selection;
  const usable = Boolean(sel) && sel.col !== NAME_COL;
  const held = usable && isHeld(cellKeyOf(sel.key, sel.col));
  dom.holdButton.disabled = !usable;
  dom.holdButton.setAttribute('aria-pressed', String(held));
  dom.holdButtonText.textContent = held ? 'Release' : 'Hold';
  dom.holdButton.title = usable
    ? `${held ? 'Release' : 'Hold'} ${cellLabel(cellKeyOf(sel.key, sel.col))} (key H)`
    : 'Select a value cell to hold it (key H)';
}

/* ---- Presence: who is connected and where ------------------------------------------- */

function colorOf(id) {
  const n = Number(/\d+/.exec(String(id))?.[0] ?? 0);
  return PEER_COLORS[n % PEER_COLORS.length];
}

// The cell the selection is on, as sent in `cursor` (a node name counts as its Total).
function cursorCell() {
  const sel = state.selection;
  const node = sel && state.nodes.get(sel.key);
  return node ? cellCondition(node, sel.col) : null;
}

// Sends the cursor now if it changed; `force` re-announces it (after welcome).
function sendCursor(force) {
  cursor.timer = null;
  const cell = cursorCell();
  const text = JSON.stringify(cell);
  if (text === cursor.lastSent && !force) return;
  if (send({ type: 'cursor', cell })) {
    cursor.lastSent = text;
    cursor.lastAt = Date.now();
  }
}

// Throttles cursor messages to one per CURSOR_MS; the last position always goes out.
function queueCursor() {
  if (cursor.timer) return;
  cursor.timer = setTimeout(() => sendCursor(false), Math.max(0, cursor.lastAt + CURSOR_MS - Date.now()));
}

// The colour of a connected user by name (changes name their author, not their id).
function peerColorOf(name) {
  return [...state.peers.values()].find((peer) => peer.name === name)?.color ?? null;
}

function setPeers(list) {
  state.peers = new Map();
  list.forEach((p) => state.peers.set(p.id, { ...p, color: colorOf(p.id) }));
  peersChanged();
}

function onPresence(msg) {
  if (msg.id === state.me) return;
  if (msg.gone) state.peers.delete(msg.id);
  else state.peers.set(msg.id, { id: msg.id, name: msg.name, cell: msg.cell ?? null, color: colorOf(msg.id) });
  peersChanged();
}

// Recomputes which cells carry someone's outline, repaints them and the header list.
function peersChanged() {
  const before = [...view.peerCells.keys()];
  view.peerCells = new Map();
  state.peers.forEach((peer) => {
    if (!peer.cell) return;
    const key = cellKeyOfCell(peer.cell);
    view.peerCells.set(key, [...(view.peerCells.get(key) || []), peer]);
  });
  new Set([...before, ...view.peerCells.keys()]).forEach(paintCellByKey);
  renderPresence();
}

function presenceItem(id, name, color, where) {
  const li = el('li');
  li.dataset.id = id;
  const dot = el('span', 'peer-dot');
  dot.style.background = color;
  li.append(dot, el('span', 'peer-name', name));
  li.title = where;
  return li;
}

function renderPresence() {
  const items = [];
  if (state.me && state.status === 'live') {
    const me = presenceItem(state.me, `${state.user ?? state.name} (you)`, colorOf(state.me), 'you');
    me.classList.add('me');
    items.push(me);
  }
  state.peers.forEach((peer) => {
    const where = peer.cell ? `on ${cellLabel(cellKeyOfCell(peer.cell))} — click to go there` : 'no cell selected';
    const li = presenceItem(peer.id, peer.name, peer.color, where);
    if (peer.cell) li.addEventListener('click', () => revealCell(cellKeyOfCell(peer.cell)));
    items.push(li);
  });
  dom.presence.replaceChildren(...items);
  dom.presence.setAttribute('aria-label', `${plural(items.length, 'user')} connected`);
}

/* ---- Server messages ---------------------------------------------------------------- */

const handlers = {
  welcome(msg) {
    state.user = msg.user ?? null;
    state.me = msg.id ?? null;
    state.role = msg.role ?? null;
    conn.backoff = BACKOFF_MIN_MS;
    dom.role.hidden = state.role !== 'viewer';
    setStatus('live');
    setPeers(Array.isArray(msg.presence) ? msg.presence : []);
    sendCursor(true);
  },

  snapshot(msg) {
    resetModel();
    dom.empty.textContent = 'This sheet has no rows yet.';
    const changes = { cells: [], structure: false, columns: false };
    (msg.rows || []).forEach((row) => applyRow(row, null, changes));
    sortMonths();
    if (!state.expandedInitialised) state.expandedInitialised = expandFirstSupplier();
    if (msg.seq != null) state.seq = String(msg.seq);
    state.dataSeq = msg.seq ?? null;
    applyHolds(msg.holds, true);
    overlays.settle(msg.seq);
    renderAll();
    panel.reload();
  },

  resync() {
    notify('info', 'Out of sync — reloading the whole sheet.');
  },

  updates(msg) {
    if (msg.seq != null && state.dataSeq != null && compareSeq(msg.seq, state.dataSeq) <= 0) return;
    const by = Array.isArray(msg.by) ? msg.by : [];
    const changes = { cells: [], structure: false, columns: false };
    (msg.rows || []).forEach((row) => applyRow(row, by, changes));
    if (msg.seq != null) {
      state.dataSeq = String(msg.seq);
      noteSeq(msg.seq);
      overlays.settle(msg.seq);
    }
    state.lastChange = { by, at: new Date() };
    if (changes.columns) {
      sortMonths();
      renderAll();
    } else if (changes.structure) {
      refreshStructure();
    } else {
      renderSummary();
    }
    changes.cells.forEach(paintCellByKey);
    applyHolds(msg.holds, false);
    flashCells(changes.cells, by.filter((name) => name !== state.user));
    panel.applyUpdates(msg);
  },

  queued(msg) {
    advance(msg.id, 'queued', { request: msg.request ?? null });
  },

  applied(msg) {
    noteSeq(msg.seq);
    advance(msg.id, 'applied', { seq: msg.seq ?? null });
  },

  rejected(msg) {
    const error = msg.error || {};
    const request = advance(msg.id, 'rejected', {});
    const reason = error.message || error.code || 'unknown reason';
    notify('error', `${request ? request.what : 'Request'} rejected: ${reason}`);
  },

  presence: onPresence,

  error(msg) {
    notify('error', `Server error${msg.code ? ` (${msg.code})` : ''}: ${msg.message || 'unknown'}`);
  },

  pong() {},
};

function onMessage(data) {
  let msg;
  try {
    msg = JSON.parse(data);
  } catch {
    notify('error', 'Received a malformed message from the server.');
    return;
  }
  const handler = msg && Object.prototype.hasOwnProperty.call(handlers, msg.type) && handlers[msg.type];
  if (handler) handler(msg);
}

/* ---- Connection: WebSocket, hello, ping, reconnect with backoff --------------------- */

function socketUrl() {
  const override = new URLSearchParams(location.search).get('ws');
  if (override) return override;
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
}

function send(msg) {
  if (!conn.ws || conn.ws.readyState !== WebSocket.OPEN) return false;
  conn.ws.send(JSON.stringify(msg));
  return true;
}

function connect() {
  clearTimeout(conn.retryTimer);
  let ws;
  try {
    ws = new WebSocket(socketUrl());
  } catch (err) {
    notify('error', `Cannot open connection: ${err.message}`);
    scheduleReconnect();
    return;
  }
  conn.ws = ws;
  ws.addEventListener('open', () => {
    if (ws !== conn.ws) return;
    send({ type: 'hello', name: state.name, token: accessToken(), since: state.seq, tables: [TABLE, 'sales'] });
    conn.pingOutstanding = false;
    conn.pingTimer = setInterval(keepAlive, PING_MS);
  });
  ws.addEventListener('message', (event) => {
    if (ws !== conn.ws) return;
    conn.pingOutstanding = false;
    onMessage(event.data);
  });
  ws.addEventListener('close', () => {
    if (ws !== conn.ws) return;
    dropConnection();
    scheduleReconnect();
  });
}

// Pings every PING_MS; a connection that stayed silent for a whole period after a ping
// is treated as dead (half-open TCP never fires `close` on its own).
function keepAlive() {
  if (!conn.pingOutstanding) {
    conn.pingOutstanding = send({ type: 'ping' });
    return;
  }
  notify('warn', 'The server stopped answering — reconnecting.');
  abandonSocket('ping timeout');
  scheduleReconnect();
}

function dropConnection() {
  clearInterval(conn.pingTimer);
  clearTimeout(cursor.timer);
  cursor.timer = null;
  conn.ws = null;
  abandonPending();
  setPeers([]);
}

// Forgets the current socket (its late `close` event is ignored) and closes it.
function abandonSocket(reason) {
  const old = conn.ws;
  dropConnection();
  if (old) old.close(1000, reason);
}

function scheduleReconnect() {
  setStatus('reconnecting');
  conn.retryTimer = setTimeout(connect, conn.backoff);
  conn.backoff = Math.min(conn.backoff * 2, BACKOFF_MAX_MS);
}

// Used when the display name changes: close deliberately and say hello again at once.
function reconnectNow() {
  abandonSocket('display name changed');
  conn.backoff = BACKOFF_MIN_MS;
  setStatus('connecting');
  connect();
}

/* ---- Header controls: status, name, measure, notifications ------------------------- */

function setStatus(status) {
  state.status = status;
  dom.status.dataset.state = status;
  dom.statusText.textContent = STATUS_TEXT[status];
  renderPresence();
}

function notify(level, text) {
  state.log.push({ at: Date.now(), level, text });
  if (state.log.length > 50) state.log.shift();
  const entry = el('div', `log-entry log-${level}`, text);
  entry.title = 'Click to dismiss';
  entry.addEventListener('click', () => entry.remove());
  dom.log.append(entry);
  while (dom.log.children.length > 4) dom.log.firstChild.remove();
  setTimeout(() => entry.remove(), level === 'error' ? 8000 : 5000);
}

function defaultName() {
  const stored = (storageGet(STORAGE_NAME) || '').trim();
  if (stored) return stored;
  const name = `user-${String(Math.floor(1000 + Math.random() * 9000))}`;
  storageSet(STORAGE_NAME, name);
  return name;
}

function onNameChange() {
  const name = dom.name.value.trim().slice(0, 40);
  if (!name || name === state.name) {
    dom.name.value = state.name;
    return;
  }
  state.name = name;
  dom.name.value = name;
  storageSet(STORAGE_NAME, name);
  reconnectNow();
}

function setMeasure(measure) {
  if (measure === state.measure) return;
  closeEditor(false);
  state.measure = measure;
  dom.measureButtons.forEach((b) => b.setAttribute('aria-pressed', String(b.dataset.measure === measure)));
  repaintAllCells();
}

/* ---- Boot --------------------------------------------------------------------------- */

function bindDom() {
  const $ = (sel) => document.querySelector(sel);
  Object.assign(dom, {
    grid: $('#grid'), table: $('#sheet'), colgroup: $('#sheet colgroup'),
    thead: $('#sheet thead'), tbody: $('#sheet tbody'), empty: $('#empty'),
    status: $('#status'), statusText: $('#status-text'), role: $('#role'),
    presence: $('#presence'), holdButton: $('#hold-button'), holdButtonText: $('#hold-button-text'),
    name: $('#name'), spread: $('#spread'), log: $('#log'), summary: $('#summary'),
    measureButtons: [...document.querySelectorAll('[data-measure]')],
  });
}

function bindEvents() {
  dom.grid.addEventListener('keydown', onGridKeyDown);
  dom.grid.addEventListener('click', onGridClick);
  dom.grid.addEventListener('dblclick', onGridDoubleClick);
  dom.grid.addEventListener('scroll', onScroll, { passive: true });
  dom.tbody.addEventListener('animationend', onFlashEnd);
  new ResizeObserver(onScroll).observe(dom.grid);   // window resize and the panel opening
  dom.name.addEventListener('change', onNameChange);
  dom.name.addEventListener('keydown', (e) => { if (e.key === 'Enter') dom.name.blur(); });
  dom.spread.addEventListener('change', () => { state.spread = dom.spread.value; });
  dom.holdButton.addEventListener('click', () => {
    toggleHold();
    dom.grid.focus({ preventScroll: true });
  });
  dom.measureButtons.forEach((b) => b.addEventListener('click', () => setMeasure(b.dataset.measure)));
}

function boot() {
  bindDom();
  panel = createPanel({ submit, notify, dataSeq: () => state.dataSeq });
  bindEvents();
  state.name = defaultName();
  dom.name.value = state.name;
  dom.spread.value = state.spread;
  resetModel();
  renderAll();
  updateHoldButton();
  window.ducksheet = {
    state,
    lastSeq: () => state.seq,
    cell: (supplier, brand, family, month) =>
      view.cells.get(cellKeyOf(nodeKeyOf(supplier, brand, family), month)) || null,
    socket: () => conn.ws,
  };
  setStatus('connecting');
  connect();
}

boot();
