/*
 * ducksheet — the grid in #grid: header, rows (windowed when long), cells with their
 * overlays, holds, other users' cursors and flashes. Selection and keyboard/mouse handling
 * are in selection.js, the inline editor in editor.js, copy, paste and fill in blocks.js;
 * all three are created here.
 *
 * Created by app.js with a context of:
 *   state             the client state (read; selection and expanded are changed here)
 *   notify            (level, text) toast
 *   submit            (message, what, onChange) → request, see connection.js
 *   peersOn           (cell key) → peers whose cursor is on it, or undefined
 *   colorOfName       (user name) → their colour or null
 *   selectionChanged  () the selection moved (cursor, hold button, panel follow it)
 *   toggleHold        () hold or release the selected cell (key H)
 *   beginAction       () the user starts an edit (older toasts go)
 *
 * When more than WINDOW_THRESHOLD rows are visible, only rows near the viewport are in
 * the DOM (with spacer rows above and below).
 */

import {
  DEPTH, NAME_COL, TOTAL_COL, cellKeyOf, cellOf, columns, isExpandable, isExpanded, isPeriod, isYear,
  mayRelease, toggleExpanded, versionParam, visibleNodes, withPeriodKeys,
} from './model.js';
import { createBlocks } from './blocks.js';
import { INDENT_PX, createColumns } from './columns.js';
import { createEditor } from './editor.js';
import { createSelection } from './selection.js';
import { varianceLine, varianceOf, varianceText } from './variance.js';
import {
  KIND, Overlays, clamp, el, formatCompact, formatValue, monthLabel, plural, relativeTime,
} from './util.js';

const WINDOW_THRESHOLD = 300;
const OVERSCAN = 20;

export function createGrid(ctx) {
  const { state } = ctx;
  const $ = (sel) => document.querySelector(sel);
  const dom = {
    grid: $('#grid'), table: $('#sheet'),
    thead: $('#sheet thead'), tbody: $('#sheet tbody'), empty: $('#empty'), summary: $('#summary'),
  };
  const view = {
    list: [],                  // visible nodes in display order
    index: new Map(),          // node key -> position in list
    rows: new Map(),           // node key -> { tr, toggle, tds: Map col -> td } for rendered rows
    cells: new Map(),          // cell key (data-key) -> value <td> for rendered rows
    start: 0,                  // rendered window [start, end) of list
    end: 0,
    rowHeight: 28,
    scrollQueued: false,
  };

  const widths = createColumns({
    state,
    text: (cellKey) => [cellText(cellKey), varianceText(state, cellVariance(cellKey))].join(' '),
    changed: () => view.cells.forEach((td) => { td.title = cellTitle(td.dataset.key, td.firstChild.textContent); }),
  });

  // Own edits ("<cell key>#<column>") and holds ("<cell key>#hold") awaiting confirmation.
  const overlays = new Overlays(
    (key) => paintCellByKey(key.slice(0, key.lastIndexOf('#'))),
    () => state.dataSeq,
  );

  /* ---- Header and column layout ----------------------------------------------------- */

  function renderHeader() {
    const tr = el('tr');
    for (const c of columns(state)) tr.append(headerCell(c));
    dom.thead.replaceChildren(tr);
    widths.fitAll(false);
  }

  function headerCell(col) {
    if (col === NAME_COL) {
      const th = el('th', 'name', 'Product');
      th.dataset.col = 'name';
      th.append(widths.handle(col));
      return th;
    }
    const isTotal = col === TOTAL_COL;
    const th = el('th', isTotal ? 'num total' : isPeriod(col) ? 'num period' : 'num', isTotal ? 'Total' : monthLabel(col));
    th.dataset.month = col;
    th.scope = 'col';
    if (!isTotal) th.title = col;
    if (isYear(col)) th.prepend(yearFold(col));
    th.append(widths.handle(col));
    return th;
  }

  // ▾/▸ before a year's header hides its months (its quarters and total stay) and shows them again.
  function yearFold(year) {
    const open = !state.collapsedYears.has(year);
    const button = el('button', 'fold');  // the glyph is CSS: the header's text stays "FY 2025"
    button.type = 'button';
    button.setAttribute('aria-expanded', String(open));
    button.title = `${open ? 'Hide' : 'Show'} the months of ${year}`;
    button.setAttribute('aria-label', button.title);
    button.addEventListener('click', (event) => {
      event.stopPropagation();
      if (open) state.collapsedYears.add(year);
      else state.collapsedYears.delete(year);
      renderAll();
    });
    return button;
  }

  /* ---- Visible rows, windowing and row reuse ---------------------------------------- */

  function buildVisibleList() {
    view.list = visibleNodes(state);
    view.index = new Map(view.list.map((node, i) => [node.key, i]));
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
    td.colSpan = columns(state).length;
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
    editor.rehome();
    selection.paint();
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
    for (const month of columns(state).slice(1)) {
      const td = el('td', month === TOTAL_COL ? 'num total' : isPeriod(month) ? 'num period' : 'num');
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
      const open = isExpanded(state, node);
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
    selection.forget();
    renderHeader();
    refreshStructure();
  }

  // Re-derives the visible rows after expand/collapse or nodes appearing/disappearing.
  function refreshStructure() {
    buildVisibleList();
    selection.keepVisible();
    renderBody();
  }

  function toggleNode(nodeKey) {
    if (toggleExpanded(state, nodeKey)) refreshStructure();
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
      ...(state.compare ? [`${state.version} vs ${state.compare}`] : versionParam(state) ? [state.version] : []),
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

  /* ---- Cells: pending overlays, holds, peers and flashing --------------------------- */

  function displayedValue(cellKey) {
    const overlay = overlays.get(`${cellKey}#${state.measure}`);
    if (overlay) return overlay.value;
    const cell = cellOf(state, cellKey);
    return cell ? cell[state.measure] : null;
  }

  // Whether a cell shows as held: an unconfirmed own hold/release wins over the server's.
  function isHeld(cellKey) {
    const overlay = overlays.get(`${cellKey}#hold`);
    return overlay ? overlay.value : state.holds.has(cellKey);
  }

  function cellText(cellKey) {
    const format = state.compact ? formatCompact : formatValue;
    return format(displayedValue(cellKey), KIND[state.measure]);
  }

  /* ---- Variance against the compared version (versions.js loads it) ----------------- */

  function cellVariance(cellKey) {
    return varianceOf(state, cellKey, displayedValue(cellKey));
  }

  function paintVariance(td, key) {
    const v = cellVariance(key);
    let tag = td.querySelector(':scope > .var');
    if (!v) {
      if (tag) tag.remove();
      return;
    }
    if (!tag) {
      tag = el('span', 'var');
      td.firstChild.after(tag);
    }
    tag.textContent = varianceText(state, v);
    tag.classList.toggle('up', v.diff > 0);
    tag.classList.toggle('down', v.diff < 0);
  }

  // The tooltip; it starts with the full value when the cell shows less (compact, clipped).
  function cellTitle(cellKey, text) {
    const lines = [];
    const full = formatValue(displayedValue(cellKey), KIND[state.measure]);
    const col = cellKey.slice(cellKey.lastIndexOf('|') + 1);
    if (full && (text !== full || !widths.fits(text, col))) lines.push(full);
    const overlay = overlays.get(`${cellKey}#${state.measure}`);
    if (overlay && overlay.status === 'sent') lines.push('Sending…');
    if (overlay && overlay.status === 'queued') lines.push(`Queued (request ${overlay.request})`);
    const hold = state.holds.get(cellKey);
    if (hold) lines.push(`held by ${hold.by}${mayRelease(hold, state.user, state.overridesHolds) ? ' (H releases)' : ''}; read-only`);
    const peers = ctx.peersOn(cellKey);
    if (peers) lines.push(`${peers.map((p) => p.name).join(', ')} here`);
    const changed = changedLine(cellOf(state, cellKey));
    if (changed) lines.push(changed);
    const versus = varianceLine(state, cellKey, cellVariance(cellKey));
    if (versus) lines.push(versus);
    return lines.join('\n');
  }

  // "changed by ann · 2 min ago" from the row's changed_by/changed_at; a server that sends
  // neither leaves the users of the last update that changed the cell.
  function changedLine(cell) {
    if (!cell) return '';
    if (cell.changedBy === undefined) return cell.by && cell.by.length ? `changed by ${cell.by.join(', ')}` : '';
    if (!cell.changedBy) return '';
    const when = relativeTime(cell.changedAt);
    return `changed by ${cell.changedBy}${when ? ` · ${when}` : ''}`;
  }

  // Tooltips say how long ago: bring a cell's up to date as the pointer reaches it.
  function onPointerOver(event) {
    const td = event.target.closest && event.target.closest('td.num');
    if (td && td.dataset.key && td.firstChild) td.title = cellTitle(td.dataset.key, td.firstChild.textContent);
  }

  function paintCell(td) {
    const key = td.dataset.key;
    const overlay = overlays.get(`${key}#${state.measure}`);
    const value = displayedValue(key);
    const text = cellText(key);
    td.firstChild.textContent = text;
    td.classList.toggle('neg', Number(value) < 0);
    td.classList.toggle('pending', Boolean(overlay) && overlay.status !== 'applied');
    paintVariance(td, key);
    paintHold(td, key);
    paintPeer(td, key);
    td.title = cellTitle(key, text);
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
    const peers = ctx.peersOn(key);
    td.classList.toggle('peer', Boolean(peers));
    if (peers) {
      td.style.setProperty('--peer-color', peers[0].color);
      td.dataset.peer = peers.map((p) => p.name).join(', ');
    } else {
      td.style.removeProperty('--peer-color');
      delete td.dataset.peer;
    }
  }

  function paintCellByKey(cellKey) {
    const td = view.cells.get(cellKey);
    if (td) paintCell(td);
  }

  // Restarts the CSS flash animation on the given cells with a single forced reflow; `by`
  // (the other users who made the change) is shown on the cell while it flashes.
  function flashCells(cellKeys, by) {
    const tds = cellKeys.map((k) => view.cells.get(k)).filter(Boolean);
    if (!tds.length) return;
    tds.forEach((td) => td.classList.remove('flash'));
    void dom.tbody.offsetWidth;
    const color = ctx.colorOfName(by[0]);
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

  // Shows an `updates` frame's changes (see model.applyUpdates).
  function applyChanges(changes) {
    if (changes.columns) renderAll();
    else if (changes.structure) refreshStructure();
    else renderSummary();
    const cells = withPeriodKeys(state, changes.cells);  // a month moves its quarter and year
    widths.grow(cells);
    cells.forEach(paintCellByKey);
    changes.holds.forEach(paintCellByKey);
    flashCells(cells, changes.by.filter((name) => name !== state.user));
  }

  /* ---- Selection and editing -------------------------------------------------------- */

  // What selection.js and editor.js see of the rendered grid.
  const rendered = {
    state,
    scroller: dom.grid,
    rowHeight: () => view.rowHeight,
    headerHeight: () => dom.thead.offsetHeight,
    nameWidth: () => widths.width(NAME_COL),
    list: () => view.list,
    indexOf: (nodeKey) => view.index.get(nodeKey),
    renderedRows: () => [view.start, view.end],
    td: (nodeKey, col) => view.rows.get(nodeKey)?.tds.get(col) ?? null,
    cellTd: (cellKey) => view.cells.get(cellKey) ?? null,
    updateWindow,
    refreshStructure,
    toggleNode,
    displayedValue,
    isHeld,
  };
  const selection = createSelection({
    ...rendered,
    changed: ctx.selectionChanged,
    toggleHold: ctx.toggleHold,
    fill: (direction) => blocks.fill(direction),
  });
  const editor = createEditor({
    ...rendered,
    overlays,
    notify: ctx.notify,
    submit: ctx.submit,
    beginAction: ctx.beginAction,
    move: (delta) => selection.move(0, delta),
  });
  selection.setEditor(editor);
  const blocks = createBlocks({
    ...rendered,
    overlays,
    notify: ctx.notify,
    submit: ctx.submit,
    beginAction: ctx.beginAction,
    cells: selection.cells,
    selectRect: selection.selectRect,
  });

  dom.grid.addEventListener('scroll', onScroll, { passive: true });
  dom.tbody.addEventListener('animationend', onFlashEnd);
  dom.tbody.addEventListener('pointerover', onPointerOver);
  new ResizeObserver(onScroll).observe(dom.grid);   // window resize and the panel opening
  window.addEventListener('resize', () => widths.fitAll(false));   // the name column follows the screen

  return {
    overlays,
    renderAll,
    refreshStructure,
    applyChanges,
    paintCells: (keys) => keys.forEach(paintCellByKey),
    repaintAll() {
      widths.fitAll(false);
      view.cells.forEach(paintCell);
      renderSummary();
    },
    // The compared version's cells changed: their variance is shown again.
    repaintCells(cellKeys) {
      const cells = withPeriodKeys(state, cellKeys);
      widths.grow(cells);
      cells.forEach(paintCellByKey);
    },
    isHeld,
    reveal: selection.reveal,
    closeEditor: editor.close,
    focus: () => dom.grid.focus({ preventScroll: true }),
    cellTd: rendered.cellTd,
  };
}
