/*
 * ducksheet — browser grid for the shared sheet `sales_summary_by_product_family`.
 * Vanilla ES2020, no dependencies, no build step. Loaded by static/index.html as a module.
 *
 * Server contract: JSON text frames over a WebSocket at ws(s)://<same host>/ws
 * (override for debugging with the query parameter ?ws=<url>). See the project brief /
 * protocol package for the message shapes; this file handles welcome, snapshot, resync,
 * queued, applied, rejected, updates, error and pong, and sends hello, edit and ping.
 *
 * Test / debugging hooks (stable; browser tests rely on them):
 *   window.ducksheet.state                  the live client state object (treat as read-only)
 *   window.ducksheet.lastSeq()              last seq seen in snapshot/updates/applied, or null
 *   window.ducksheet.cell(s, b, f, month)   the value <td> of that cell, or null when it is not
 *                                           rendered (collapsed parent, or windowed out of view).
 *                                           null, undefined and "" all mean "all"/"Total".
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
 *   td.editing > input.editor                   the inline editor
 *   #status[data-state="connecting|live|reconnecting"], #log > .log-entry (toasts)
 * When more than WINDOW_THRESHOLD rows are visible, only rows near the viewport are in the DOM.
 */

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
const SETTLE_MS = 3000;
const MAX_ABS_VALUE = 1e13;
const STORAGE_NAME = 'ducksheet.name';
const MONTH_NAMES = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun',
  'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const STATUS_TEXT = Object.freeze({
  connecting: 'Connecting…', live: 'Live', reconnecting: 'Reconnecting…',
});
const FORMAT = Object.freeze({
  net_amount: new Intl.NumberFormat('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 2 }),
  quantity: new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 }),
});
const COLLATOR = new Intl.Collator('en', { numeric: true, sensitivity: 'base' });

/* ---- State -------------------------------------------------------------------------- */

// Everything a test might want to inspect lives here (exposed as window.ducksheet.state).
const state = {
  name: '',                  // display name sent in hello
  user: null,                // user name confirmed by welcome
  role: null,                // role from welcome; "viewer" makes the grid read-only
  status: 'connecting',      // connecting | live | reconnecting
  seq: null,                 // last seq seen (snapshot/updates/applied); sent as `since`
  dataSeq: null,             // seq of the data currently shown (snapshot/updates only)
  measure: 'net_amount',     // net_amount | quantity
  spread: 'proportional',    // proportional | equal
  nodes: new Map(),          // node key -> node (see ensureNode)
  root: null,                // grand-total node
  months: [],                // sorted "YYYY-MM" columns present in the data
  monthCount: new Map(),     // month -> number of cells, to notice columns appearing/vanishing
  expanded: new Set(),       // node keys of expanded suppliers/brands; survives snapshots
  expandedInitialised: false,
  selection: null,           // { key: node key, col: NAME_COL | month | TOTAL_COL }
  pending: new Map(),        // client edit id -> edit awaiting applied/rejected
  overlays: new Map(),       // "cellKey#column" -> edit whose value is shown until confirmed
  lastChange: null,          // { by, at } of the latest `updates`
  log: [],                   // recent notifications { at, level, text }
};

// DOM bookkeeping for what is currently rendered (not part of the public hook).
const view = {
  list: [],                  // visible nodes in display order
  index: new Map(),          // node key -> position in list
  rows: new Map(),           // node key -> { tr, toggle, tds: Map col -> td } for rendered rows
  cells: new Map(),          // cell key (data-key) -> value <td> for rendered rows
  start: 0,                  // rendered window [start, end) of list
  end: 0,
  rowHeight: 28,
  selectedTd: null,
  editor: null,              // { key, nodeKey, month, column, input, initial }
  scrollQueued: false,
};

const conn = {
  ws: null, backoff: BACKOFF_MIN_MS, retryTimer: null, pingTimer: null, pingOutstanding: false,
  editCounter: 0,
};
const clientTag = Math.random().toString(36).slice(2, 8);
const dom = {};

/* ---- Small helpers ------------------------------------------------------------------ */

const part = (v) => (v === null || v === undefined ? '' : String(v));
const nodeKeyOf = (s, b, f) => `${part(s)}|${part(b)}|${part(f)}`;
const cellKeyOf = (nodeKey, month) => `${nodeKey}|${part(month)}`;
const overlayKey = (cellKey, column) => `${cellKey}#${column}`;
const columns = () => [NAME_COL, ...state.months, TOTAL_COL];
const clamp = (v, lo, hi) => Math.max(lo, Math.min(hi, v));

function splitCellKey(cellKey) {
  const cut = cellKey.lastIndexOf('|');
  return { nodeKey: cellKey.slice(0, cut), month: cellKey.slice(cut + 1) };
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function storageGet(key) {
  try { return localStorage.getItem(key); } catch { return null; }
}

function storageSet(key, value) {
  try { localStorage.setItem(key, value); } catch { /* private mode: keep in memory only */ }
}

/* ---- Seq handling: Redis stream ids "<ms>-<n>", compared numerically ---------------- */

function seqParts(seq) {
  const m = /^(\d+)(?:-(\d+))?$/.exec(String(seq));
  return m ? [BigInt(m[1]), BigInt(m[2] || 0)] : [-1n, -1n];
}

function compareSeq(a, b) {
  if (a == null || b == null) return (a == null ? 0 : 1) - (b == null ? 0 : 1);
  const [am, an] = seqParts(a);
  const [bm, bn] = seqParts(b);
  if (am !== bm) return am < bm ? -1 : 1;
  if (an !== bn) return an < bn ? -1 : 1;
  return 0;
}

function noteSeq(seq) {
  if (seq != null && compareSeq(seq, state.seq) > 0) state.seq = String(seq);
}

/* ---- Number formatting and parsing -------------------------------------------------- */

function formatValue(value, column) {
  if (value === null || value === undefined || value === '') return '';
  const n = Number(value);
  return Number.isFinite(n) ? FORMAT[column].format(n || 0) : String(value);
}

// Plain text put into the editor: no separators, so it can be edited directly.
function rawValue(value, column) {
  if (value === null || value === undefined) return '';
  const n = Number(value);
  return column === 'quantity' ? String(Math.round(n)) : n.toFixed(2);
}

// Accepts "1234.5", "1,234.5", "-12", "+3"; commas must be real thousands separators.
function parseValue(text, column) {
  const s = text.trim().replace(/[\s\u00a0\u202f]/g, '');
  if (!s) return { error: 'Enter a number.' };
  if (!/^[-+]?(?:\d{1,3}(?:,\d{3})+|\d*)(?:\.\d*)?$/.test(s) || !/\d/.test(s)) {
    return { error: `"${text.trim()}" is not a number (use e.g. 1,234.50).` };
  }
  const value = Number(s.replace(/,/g, ''));
  const decimals = (s.split('.')[1] || '').length;
  if (!Number.isFinite(value) || Math.abs(value) >= MAX_ABS_VALUE) return { error: 'Value is too large.' };
  if (column === 'quantity' && !Number.isInteger(value)) {
    return { error: 'Quantity must be a whole number.' };
  }
  if (column === 'net_amount' && decimals > 2) return { error: 'Net amount allows at most 2 decimals.' };
  return { value: column === 'quantity' ? value || 0 : Number(value.toFixed(2)) || 0 };
}

function monthLabel(month) {
  const m = /^(\d{4})-(\d{2})$/.exec(month);
  const name = m && MONTH_NAMES[Number(m[2]) - 1];
  return name ? `${name} ${m[1]}` : month;
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

function plural(count, noun) {
  return `${count} ${noun}${count === 1 ? '' : 's'}`;
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

/* ---- Rendering: cells, pending overlays and flashing -------------------------------- */

function displayedValue(cellKey) {
  const overlay = state.overlays.get(overlayKey(cellKey, state.measure));
  if (overlay) return overlay.value;
  const { nodeKey, month } = splitCellKey(cellKey);
  const cell = state.nodes.get(nodeKey)?.cells.get(month);
  return cell ? cell[state.measure] : null;
}

function cellTitle(cellKey) {
  const overlay = state.overlays.get(overlayKey(cellKey, state.measure));
  if (overlay && overlay.status === 'sent') return 'Sending…';
  if (overlay && overlay.status === 'queued') return `Queued (request ${overlay.request})`;
  const { nodeKey, month } = splitCellKey(cellKey);
  const by = state.nodes.get(nodeKey)?.cells.get(month)?.by;
  return by && by.length ? `changed by ${by.join(', ')}` : '';
}

function paintCell(td) {
  const key = td.dataset.key;
  const overlay = state.overlays.get(overlayKey(key, state.measure));
  const value = displayedValue(key);
  td.firstChild.textContent = formatValue(value, state.measure);
  td.classList.toggle('neg', Number(value) < 0);
  td.classList.toggle('pending', Boolean(overlay) && overlay.status !== 'applied');
  td.title = cellTitle(key);
}

function paintCellByKey(cellKey) {
  const td = view.cells.get(cellKey);
  if (td) paintCell(td);
}

function repaintAllCells() {
  view.cells.forEach(paintCell);
}

// Restarts the CSS flash animation on the given cells with a single forced reflow.
function flashCells(cellKeys) {
  const tds = cellKeys.map((k) => view.cells.get(k)).filter(Boolean);
  if (!tds.length) return;
  tds.forEach((td) => td.classList.remove('flash'));
  void dom.tbody.offsetWidth;
  tds.forEach((td) => td.classList.add('flash'));
}

/* ---- Selection and keyboard navigation ---------------------------------------------- */

function select(nodeKey, col) {
  state.selection = { key: nodeKey, col };
  scrollSelectionIntoView();
  paintSelection();
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
  const initial = rawValue(displayedValue(key), state.measure);
  const input = el('input', 'editor');
  input.type = 'text';
  input.inputMode = 'decimal';
  input.spellcheck = false;
  input.autocomplete = 'off';
  input.setAttribute('aria-label', `New ${state.measure === 'quantity' ? 'quantity' : 'net amount'}`);
  input.value = seedText === null ? initial : seedText;
  input.addEventListener('keydown', onEditorKeyDown);
  input.addEventListener('blur', onEditorBlur);
  view.editor = { key, nodeKey: sel.key, month: sel.col, column: state.measure, input, initial };
  td.classList.add('editing');
  td.append(input);
  input.focus();
  if (seedText === null) input.select();
}

function onEditorKeyDown(event) {
  event.stopPropagation();
  if (event.key === 'Enter') commitEdit(0, false);
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

function commitEdit(colDelta, fromBlur) {
  const editor = view.editor;
  const text = editor.input.value;
  if (text.trim() !== editor.initial) {
    const parsed = parseValue(text, editor.column);
    if (parsed.error) {
      notify('error', fromBlur ? `${parsed.error} Edit discarded.` : parsed.error);
      if (fromBlur) closeEditor(false);
      else editor.input.select();
      return;
    }
    sendEdit(editor, parsed.value);
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
    td.append(editor.input);
  }
  if (document.activeElement !== editor.input) editor.input.focus({ preventScroll: true });
}

/* ---- Edits: sending and tracking until applied/rejected ----------------------------- */

function sendEdit(target, value) {
  const node = state.nodes.get(target.nodeKey);
  if (!node) return;
  const id = `${clientTag}-${Date.now().toString(36)}-${++conn.editCounter}`;
  const sent = send({
    type: 'edit',
    id,
    table: TABLE,
    column: target.column,
    value,
    condition: {
      supplier: node.supplier,
      brand: node.brand,
      family: node.family,
      month: target.month === TOTAL_COL ? null : target.month,
    },
    spread: state.spread,
  });
  if (!sent) {
    notify('error', 'Not connected — edit not sent.');
    return;
  }
  const edit = {
    id, key: target.key, column: target.column, value, status: 'sent', request: null, seq: null,
  };
  state.pending.set(id, edit);
  state.overlays.set(overlayKey(edit.key, edit.column), edit);
  paintCellByKey(edit.key);
}

function dropOverlay(edit) {
  const key = overlayKey(edit.key, edit.column);
  if (state.overlays.get(key) !== edit) return;
  state.overlays.delete(key);
  paintCellByKey(edit.key);
}

// Applied edits keep showing their value until the matching `updates` arrive (or a timeout).
function settleOverlays(seq) {
  state.overlays.forEach((edit) => {
    if (edit.status === 'applied' && compareSeq(edit.seq, seq) <= 0) dropOverlay(edit);
  });
}

function abandonPending() {
  const unconfirmed = state.pending.size;
  state.pending.clear();
  state.overlays.forEach(dropOverlay);
  if (unconfirmed) {
    notify('warn', `Connection lost with ${unconfirmed} unconfirmed edit(s); values refresh on reconnect.`);
  }
}

/* ---- Server messages ---------------------------------------------------------------- */

const handlers = {
  welcome(msg) {
    state.user = msg.user ?? null;
    state.role = msg.role ?? null;
    conn.backoff = BACKOFF_MIN_MS;
    dom.role.hidden = state.role !== 'viewer';
    setStatus('live');
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
    state.overlays.forEach((edit) => { if (edit.status === 'applied') dropOverlay(edit); });
    renderAll();
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
      settleOverlays(msg.seq);
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
    flashCells(changes.cells);
  },

  queued(msg) {
    const edit = state.pending.get(msg.id);
    if (!edit) return;
    edit.status = 'queued';
    edit.request = msg.request ?? null;
    paintCellByKey(edit.key);
  },

  applied(msg) {
    noteSeq(msg.seq);
    const edit = state.pending.get(msg.id);
    if (!edit) return;
    state.pending.delete(msg.id);
    edit.status = 'applied';
    edit.seq = msg.seq ?? null;
    if (edit.seq == null || compareSeq(state.dataSeq, edit.seq) >= 0) dropOverlay(edit);
    else setTimeout(() => dropOverlay(edit), SETTLE_MS);
    paintCellByKey(edit.key);
  },

  rejected(msg) {
    const error = msg.error || {};
    notify('error', `Edit rejected: ${error.message || error.code || 'unknown reason'}`);
    const edit = state.pending.get(msg.id);
    if (!edit) return;
    state.pending.delete(msg.id);
    dropOverlay(edit);
  },

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
    send({ type: 'hello', name: state.name, since: state.seq, tables: [TABLE] });
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
  conn.ws = null;
  abandonPending();
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

/* ---- Header controls: status, name, measure, spread, notifications ------------------ */

function setStatus(status) {
  state.status = status;
  dom.status.dataset.state = status;
  dom.statusText.textContent = STATUS_TEXT[status];
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
    name: $('#name'), spread: $('#spread'), log: $('#log'), summary: $('#summary'),
    measureButtons: [...document.querySelectorAll('[data-measure]')],
  });
}

function bindEvents() {
  dom.grid.addEventListener('keydown', onGridKeyDown);
  dom.grid.addEventListener('click', onGridClick);
  dom.grid.addEventListener('dblclick', onGridDoubleClick);
  dom.grid.addEventListener('scroll', onScroll, { passive: true });
  dom.tbody.addEventListener('animationend', (e) => {
    if (e.animationName === 'flash') e.target.classList.remove('flash');
  });
  window.addEventListener('resize', onScroll);
  dom.name.addEventListener('change', onNameChange);
  dom.name.addEventListener('keydown', (e) => { if (e.key === 'Enter') dom.name.blur(); });
  dom.spread.addEventListener('change', () => { state.spread = dom.spread.value; });
  dom.measureButtons.forEach((b) => b.addEventListener('click', () => setMeasure(b.dataset.measure)));
}

function boot() {
  bindDom();
  bindEvents();
  state.name = defaultName();
  dom.name.value = state.name;
  dom.spread.value = state.spread;
  resetModel();
  renderAll();
  window.ducksheet = {
    state,
    lastSeq: () => state.seq,
    cell: (supplier, brand, family, month) =>
      view.cells.get(cellKeyOf(nodeKeyOf(supplier, brand, family), month)) || null,
  };
  setStatus('connecting');
  connect();
}

boot();
