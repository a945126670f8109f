/*
 * ducksheet — the sheet's data without any DOM: the node tree built from the summary rows
 * of `sales_summary_by_product_family`, the month columns, the held cells and the seq
 * bookkeeping. Every function takes the sheet object made by createSheet(); app.js
 * extends that object into the client state exposed as window.ducksheet.state.
 */

import { compareSeq, monthLabel } from './util.js';

export const TABLE = 'sales_summary_by_product_family';
export const ACTUAL = 'actual';
export const LEVEL = Object.freeze({ FAMILY: 0, BRAND: 1, SUPPLIER: 3, TOTAL: 7 });
export const DEPTH = Object.freeze({ 7: 0, 3: 1, 1: 2, 0: 3 });
export const NAME_COL = '#name';
export const TOTAL_COL = '';

const COLLATOR = new Intl.Collator('en', { numeric: true, sensitivity: 'base' });

/* ---- Keys --------------------------------------------------------------------------- */

// Node keys are "supplier|brand|family", cell keys "supplier|brand|family|month"; a null
// part is "" (the grand total's Total cell is "|||").
export const part = (v) => (v === null || v === undefined ? '' : String(v));
export const nodeKeyOf = (s, b, f) => `${part(s)}|${part(b)}|${part(f)}`;
export const cellKeyOf = (nodeKey, month) => `${nodeKey}|${part(month)}`;
export const cellKeyOfCell = (c) => cellKeyOf(nodeKeyOf(c.supplier, c.brand, c.family), c.month);

export function splitCellKey(cellKey) {
  const cut = cellKey.lastIndexOf('|');
  return { nodeKey: cellKey.slice(0, cut), month: cellKey.slice(cut + 1) };
}

// The condition naming one summary cell, as the server expects it.
export function cellCondition(node, month) {
  if (isPeriod(month)) return { supplier: node.supplier, brand: node.brand, family: node.family, period: month };
  return {
    supplier: node.supplier,
    brand: node.brand,
    family: node.family,
    month: month === TOTAL_COL || month === NAME_COL ? null : month,
  };
}

// The edit of one summary cell (the fields of an `edit`, one item of an `edit_many`).
export function cellEdit(node, month, column, value, spread) {
  return { table: TABLE, column, value, condition: cellCondition(node, month), spread };
}

/* ---- The sheet ---------------------------------------------------------------------- */

export function createSheet() {
  const sheet = {
    seq: null,                 // last seq seen (snapshot/updates/applied); sent as `since`
    dataSeq: null,             // seq of the data currently shown (snapshot/updates only)
    nodes: new Map(),          // node key -> node (see ensureNode)
    root: null,                // grand-total node
    months: [],                // sorted "YYYY-MM" columns present in the data
    showPeriods: false,        // quarter and year columns after each year's months
    collapsedYears: new Set(), // years shown by their quarters and total only (months hidden)
    monthCount: new Map(),     // month -> number of cells, to notice columns appearing/vanishing
    expanded: new Set(),       // node keys of expanded suppliers/brands; survives snapshots
    expandedInitialised: false,
    holds: new Map(),          // cell key -> { by, level } of every held cell
    lastChange: null,          // { by, at } of the latest `updates`
    version: ACTUAL,           // the version shown and edited
  };
  resetSheet(sheet);
  return sheet;
}

export function resetSheet(sheet) {
  sheet.nodes = new Map();
  sheet.monthCount = new Map();
  sheet.months = [];
  sheet.root = ensureNode(sheet, LEVEL.TOTAL, null, null, null);
}

export const columns = (sheet) => [
  NAME_COL, ...(sheet.showPeriods ? withPeriods(sheet.months, sheet.collapsedYears) : sheet.months), TOTAL_COL,
];

/* ---- Quarters and years -------------------------------------------------------------- */

// Quarter ("2025-Q1") and year ("2025") columns: the sums of their month cells, shown
// after the months of each year; edits of them spread over those months (`period`).
export const isPeriod = (col) => /^\d{4}(-Q[1-4])?$/.test(col);

export function periodMonths(period) {
  const [year, quarter] = period.split('-Q');
  const first = quarter ? 3 * Number(quarter) - 2 : 1;
  const count = quarter ? 3 : 12;
  return Array.from({ length: count }, (_, i) => `${year}-${String(first + i).padStart(2, '0')}`);
}

export const isYear = (col) => /^\d{4}$/.test(col);

function withPeriods(months, collapsedYears) {
  const out = [];
  let year = null;
  const quarters = new Set();
  const close = () => {
    if (year === null) return;
    [...quarters].sort().forEach((q) => out.push(`${year}-Q${q}`));
    out.push(year);
    quarters.clear();
  };
  for (const month of months) {
    if (month.slice(0, 4) !== year) {
      close();
      year = month.slice(0, 4);
    }
    if (!collapsedYears.has(year)) out.push(month);
    quarters.add(Math.ceil(Number(month.slice(5)) / 3));
  }
  close();
  return out;
}

// A quarter's or year's value, summed in cents so that it is exact; undefined when the
// node has no month cell in it.
function periodCell(node, period) {
  let quantity = 0;
  let cents = 0;
  let found = false;
  for (const month of periodMonths(period)) {
    const cell = node.cells.get(month);
    if (!cell) continue;
    found = true;
    quantity += Number(cell.quantity);
    cents += Math.round(Number(cell.net_amount) * 100);
  }
  return found ? { quantity, net_amount: cents / 100 } : undefined;
}

// With the quarter and year columns shown, the cells of theirs that `monthCellKeys` change.
export function withPeriodKeys(sheet, monthCellKeys) {
  if (!sheet.showPeriods) return monthCellKeys;
  const keys = new Set(monthCellKeys);
  for (const cellKey of monthCellKeys) {
    const { nodeKey, month } = splitCellKey(cellKey);
    if (!/^\d{4}-\d{2}$/.test(month)) continue;
    keys.add(cellKeyOf(nodeKey, `${month.slice(0, 4)}-Q${Math.ceil(Number(month.slice(5)) / 3)}`));
    keys.add(cellKeyOf(nodeKey, month.slice(0, 4)));
  }
  return [...keys];
}

export function noteSeq(sheet, seq) {
  if (seq != null && compareSeq(seq, sheet.seq) > 0) sheet.seq = String(seq);
}

// The stored cell ({ quantity, net_amount, by, changedBy, changedAt }) of a cell key, or
// undefined. `by` are the users of the last `updates` frame that changed it; changedBy and
// changedAt (ISO time) come from the row itself, undefined when the server sends neither.
export function cellOf(sheet, cellKey) {
  const { nodeKey, month } = splitCellKey(cellKey);
  const node = sheet.nodes.get(nodeKey);
  if (node && isPeriod(month)) return periodCell(node, month);
  return node?.cells.get(month);
}

// "Coach · Mar 2024" for messages and tooltips.
export function cellLabel(sheet, cellKey) {
  const { nodeKey, month } = splitCellKey(cellKey);
  const node = sheet.nodes.get(nodeKey);
  return `${node ? node.label : nodeKey} · ${month ? monthLabel(month) : 'Total'}`;
}

// Why this client cannot edit the sheet now ('' when it can): a viewer's role, or the
// version shown is locked. (`role` and `versions` are the client state's.)
export function readOnlyReason(sheet) {
  if (sheet.role === 'viewer') return 'Read-only: your role cannot edit.';
  if (isLockedVersion(sheet)) return `Read-only: ${sheet.version} is locked.`;
  return '';
}

// Whether the version shown is locked (`versions` is the client state's list).
export function isLockedVersion(sheet) {
  return Boolean(sheet.versions?.some((v) => v.name === sheet.version && v.locked));
}

// Only the holder or an admin may release a hold.
export function mayRelease(hold, user, overridesHolds) {
  return Boolean(overridesHolds) || (hold.by != null && hold.by === user);
}

/* ---- The node tree ------------------------------------------------------------------ */

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
function ensureNode(sheet, level, supplier, brand, family) {
  const key = nodeKeyOf(supplier, brand, family);
  const existing = sheet.nodes.get(key);
  if (existing) return existing;
  const node = {
    key, level, supplier, brand, family,
    label: labelOf(level, supplier, brand, family),
    cells: new Map(),        // month ("" = all months) -> cell, see cellOf
    children: [],
    sorted: true,
    parent: null,
  };
  sheet.nodes.set(key, node);
  if (level !== LEVEL.TOTAL) {
    node.parent = ensureNode(sheet, ...parentArgs(level, supplier, brand));
    node.parent.children.push(node);
    node.parent.sorted = false;
  }
  return node;
}

// Removes a node without cells or children, then any ancestors left empty by that.
function pruneNode(sheet, node) {
  let current = node;
  while (current.level !== LEVEL.TOTAL && current.cells.size === 0 && current.children.length === 0) {
    sheet.nodes.delete(current.key);
    const siblings = current.parent.children;
    siblings.splice(siblings.indexOf(current), 1);
    current = current.parent;
  }
}

export function sortedChildren(node) {
  if (!node.sorted) {
    node.children.sort((a, b) => COLLATOR.compare(a.label, b.label));
    node.sorted = true;
  }
  return node.children;
}

export function isExpandable(node) {
  return node.level !== LEVEL.TOTAL && node.children.length > 0;
}

export function isExpanded(sheet, node) {
  return node.level === LEVEL.TOTAL || sheet.expanded.has(node.key);
}

// Flips an expandable node; false when there is nothing to expand.
export function toggleExpanded(sheet, nodeKey) {
  const node = sheet.nodes.get(nodeKey);
  if (!node || !isExpandable(node)) return false;
  if (sheet.expanded.has(nodeKey)) sheet.expanded.delete(nodeKey);
  else sheet.expanded.add(nodeKey);
  return true;
}

export function expandAncestors(sheet, node) {
  for (let up = node.parent; up && up.level !== LEVEL.TOTAL; up = up.parent) sheet.expanded.add(up.key);
}

// The nodes shown, in display order: every child of an expanded node.
export function visibleNodes(sheet) {
  const list = [];
  const walk = (node) => {
    list.push(node);
    if (isExpanded(sheet, node)) sortedChildren(node).forEach(walk);
  };
  walk(sheet.root);
  return list;
}

/* ---- Applying summary rows ---------------------------------------------------------- */

function countMonth(sheet, month, delta, changes) {
  if (month === TOTAL_COL) return;
  const count = (sheet.monthCount.get(month) || 0) + delta;
  if (count > 0) sheet.monthCount.set(month, count);
  else sheet.monthCount.delete(month);
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
function applyRow(sheet, row, by, changes) {
  if (row.table && row.table !== TABLE) return;
  const supplier = row.supplier ?? null;
  const brand = row.brand ?? null;
  const family = row.family ?? null;
  const nodeKey = nodeKeyOf(supplier, brand, family);
  const month = part(row.month);
  if (row.deleted) {
    const node = sheet.nodes.get(nodeKey);
    if (!node || !node.cells.delete(month)) return;
    countMonth(sheet, month, -1, changes);
    if (node.cells.size === 0) {
      pruneNode(sheet, node);
      changes.structure = true;
    }
  } else {
    if (!sheet.nodes.has(nodeKey)) changes.structure = true;
    const node = ensureNode(sheet, levelOf(row), supplier, brand, family);
    if (!node.cells.has(month)) countMonth(sheet, month, +1, changes);
    node.cells.set(month, {
      quantity: row.quantity,
      net_amount: row.net_amount,
      by,
      changedBy: row.changed_by,
      changedAt: row.changed_at,
    });
  }
  changes.cells.push(cellKeyOf(nodeKey, month));
}

function sortMonths(sheet) {
  sheet.months = [...sheet.monthCount.keys()].sort();
}

// Expands the first supplier once, on the first snapshot that has one.
function expandFirstSupplier(sheet) {
  const first = sortedChildren(sheet.root)[0];
  if (first) sheet.expanded.add(first.key);
  return Boolean(first);
}

// Replaces everything with a `snapshot`. Returns the cell keys whose hold changed.
export function applySnapshot(sheet, msg) {
  resetSheet(sheet);
  const changes = { cells: [], structure: false, columns: false };
  (msg.rows || []).forEach((row) => applyRow(sheet, row, null, changes));
  sortMonths(sheet);
  if (!sheet.expandedInitialised) sheet.expandedInitialised = expandFirstSupplier(sheet);
  if (msg.seq != null) sheet.seq = String(msg.seq);
  sheet.dataSeq = msg.seq ?? null;
  return { holds: applyHolds(sheet, msg.holds, true) };
}

// The `version` query parameter of reads of the version shown (none for actual).
export const versionParam = (sheet) => (sheet.version === ACTUAL ? undefined : sheet.version);

// The version a row of an `updates` frame belongs to (a row without `version` is actual's).
export const versionOf = (row) => row.version ?? ACTUAL;

// Applies summary rows of one version as they are (the compared version's sheet).
export function applyRows(sheet, rows) {
  const changes = { cells: [], structure: false, columns: false };
  rows.forEach((row) => applyRow(sheet, row, null, changes));
  if (changes.columns) sortMonths(sheet);
  return changes.cells;
}

// Applies an `updates` frame. Returns null for one already shown, else what changed:
// { cells, structure, columns, by, holds }.
export function applyUpdates(sheet, msg) {
  if (msg.seq != null && sheet.dataSeq != null && compareSeq(msg.seq, sheet.dataSeq) <= 0) return null;
  const by = Array.isArray(msg.by) ? msg.by : [];
  const changes = { cells: [], structure: false, columns: false, by };
  const shown = (row) => versionOf(row) === sheet.version;
  (msg.rows || []).filter(shown).forEach((row) => applyRow(sheet, row, by, changes));
  if (changes.columns) sortMonths(sheet);
  if (msg.seq != null) {
    sheet.dataSeq = String(msg.seq);
    noteSeq(sheet, msg.seq);
  }
  sheet.lastChange = { by, at: new Date() };
  changes.holds = applyHolds(sheet, (msg.holds || []).filter(shown), false);
  return changes;
}

// Applies `updates.holds` (or `snapshot.holds` when `replace`); returns the keys touched.
export function applyHolds(sheet, holds, replace) {
  const touched = replace ? [...sheet.holds.keys()] : [];
  if (replace) sheet.holds = new Map();
  for (const hold of holds || []) {
    const key = cellKeyOfCell(hold);
    if (hold.on === false) sheet.holds.delete(key);
    else sheet.holds.set(key, { by: hold.by, level: hold.level });
    touched.push(key);
  }
  return touched;
}
