/*
 * ducksheet — the grid's selection and the keyboard and mouse handling of #grid. The
 * selection is a cell (state.selection = { key: node key, col }), and Shift+click or
 * Shift+arrows make it the anchor of a range of value cells whose other corner is
 * state.range ({ key, col }, null for no range); a plain click or arrow drops the range.
 * Created by grid.js with the rendered grid's view (see `rendered` there), `changed` (the
 * selection moved), `toggleHold` and `fill` (Ctrl+D: 'down', Ctrl+R: 'right').
 */

import { NAME_COL, TOTAL_COL, columns, expandAncestors, splitCellKey } from './model.js';
import { rangeRect, rectCells, rectSize, valueColumns } from './range.js';
import { clamp } from './util.js';

export function createSelection(ctx) {
  const { state, scroller } = ctx;
  let selectedTd = null;
  let rangeTds = [];
  let editor = null;

  function select(nodeKey, col) {
    state.selection = { key: nodeKey, col };
    state.range = null;
    scrollIntoView(state.selection);
    paint();
    ctx.changed();
  }

  function paint() {
    if (selectedTd) {
      selectedTd.classList.remove('selected');
      selectedTd.removeAttribute('aria-selected');
    }
    const sel = state.selection;
    const td = sel ? ctx.td(sel.key, sel.col) : null;
    selectedTd = td;
    if (td) {
      td.classList.add('selected');
      td.setAttribute('aria-selected', 'true');
    }
    paintRange();
  }

  /* ---- The range -------------------------------------------------------------------- */

  // The range as positions in the visible list and value columns, or null; a plain
  // selection of a value cell is a range of one cell.
  function rect() {
    const sel = state.selection;
    if (!sel || (!state.range && sel.col === NAME_COL)) return null;
    return rangeRect(ctx.indexOf, valueColumns(state), sel, state.range);
  }

  // The nodes and months of the range ({ nodes, months, rect }), or null.
  function cells() {
    const r = rect();
    return r ? { ...rectCells(r, ctx.list(), valueColumns(state)), rect: r } : null;
  }

  // Paints the rendered cells of a range of more than one cell (td.in-range).
  function paintRange() {
    rangeTds.forEach((td) => {
      td.classList.remove('in-range');
      if (td !== selectedTd) td.removeAttribute('aria-selected');
    });
    rangeTds = [];
    const r = state.range && rect();
    if (!r || rectSize(r) < 2) return;
    const list = ctx.list();
    const cols = valueColumns(state);
    const [from, to] = ctx.renderedRows();
    for (let i = Math.max(r.top, from); i <= Math.min(r.bottom, to - 1); i++) {
      for (let c = r.left; c <= r.right; c++) {
        const td = ctx.td(list[i].key, cols[c]);
        if (!td) continue;
        td.classList.add('in-range');
        td.setAttribute('aria-selected', 'true');
        rangeTds.push(td);
      }
    }
  }

  function setExtent(nodeKey, col) {
    if (!state.selection) return;
    state.range = { key: nodeKey, col: col === NAME_COL ? valueColumns(state)[0] : col };
    scrollIntoView(state.range);
    paintRange();
  }

  // Shift+arrows: moves the range's far corner (the selection itself when there is none).
  function extend(rowDelta, colDelta) {
    const sel = state.selection;
    if (!sel) return;
    const corner = state.range || sel;
    const list = ctx.list();
    const cols = valueColumns(state);
    const row = clamp((ctx.indexOf(corner.key) ?? 0) + rowDelta, 0, list.length - 1);
    const col = clamp(Math.max(0, cols.indexOf(corner.col)) + colDelta, 0, cols.length - 1);
    setExtent(list[row].key, cols[col]);
  }

  // Selects a rectangle given as positions (e.g. the cells a paste changed).
  function selectRect(r) {
    const list = ctx.list();
    const cols = valueColumns(state);
    select(list[r.top].key, cols[r.left]);
    if (rectSize(r) > 1) setExtent(list[r.bottom].key, cols[r.right]);
  }

  // After collapse/removal, moves the selection to the nearest visible ancestor.
  function keepVisible() {
    const sel = state.selection;
    if (!sel) return;
    let node = state.nodes.get(sel.key);
    while (node && ctx.indexOf(node.key) === undefined) node = node.parent;
    const col = columns(state).includes(sel.col) ? sel.col : TOTAL_COL;
    state.selection = node ? { key: node.key, col } : null;
    const range = state.range;
    if (range && (ctx.indexOf(range.key) === undefined || !columns(state).includes(range.col))) state.range = null;
    if (!node || node.key !== sel.key || col !== sel.col) ctx.changed();
  }

  // Scrolls the cell { key, col } into view.
  function scrollIntoView(sel) {
    const index = sel ? ctx.indexOf(sel.key) : undefined;
    if (index === undefined) return;
    const rowHeight = ctx.rowHeight();
    const top = index * rowHeight;
    const bottom = top + rowHeight;
    const room = scroller.clientHeight - ctx.headerHeight();
    if (top < scroller.scrollTop) scroller.scrollTop = top;
    else if (bottom > scroller.scrollTop + room) scroller.scrollTop = bottom - room;
    ctx.updateWindow();
    const td = ctx.td(sel.key, sel.col);
    if (!td || sel.col === NAME_COL) return;
    const left = td.offsetLeft - ctx.nameWidth();
    const right = td.offsetLeft + td.offsetWidth;
    if (left < scroller.scrollLeft) scroller.scrollLeft = left;
    else if (right > scroller.scrollLeft + scroller.clientWidth) {
      scroller.scrollLeft = right - scroller.clientWidth;
    }
  }

  function move(rowDelta, colDelta) {
    const sel = state.selection;
    if (!sel) {
      select(state.root.key, columns(state)[1]);
      return;
    }
    const list = ctx.list();
    const cols = columns(state);
    const row = ctx.indexOf(sel.key) ?? 0;
    const col = Math.max(0, cols.indexOf(sel.col));
    const nextRow = clamp(row + rowDelta, 0, list.length - 1);
    const nextCol = clamp(col + colDelta, 0, cols.length - 1);
    select(list[nextRow].key, cols[nextCol]);
  }

  // Expands the ancestors of a cell and selects it (used to jump to another user's cursor).
  function reveal(cellKey) {
    const { nodeKey, month } = splitCellKey(cellKey);
    const node = state.nodes.get(nodeKey);
    if (!node) return;
    expandAncestors(state, node);
    ctx.refreshStructure();
    select(nodeKey, columns(state).includes(month) ? month : TOTAL_COL);
    scroller.focus({ preventScroll: true });
  }

  function pageRows() {
    return Math.max(1, Math.floor((scroller.clientHeight - ctx.headerHeight()) / ctx.rowHeight()) - 1);
  }

  /* ---- Keyboard --------------------------------------------------------------------- */

  function onKeyDown(event) {
    if (editor.isOpen() || event.target !== scroller) return;
    const sel = state.selection;
    const onName = sel && sel.col === NAME_COL;
    const plain = !event.ctrlKey && !event.metaKey && !event.altKey;
    const moves = {
      ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1],
      PageUp: [-pageRows(), 0], PageDown: [pageRows(), 0], Home: [0, -Infinity], End: [0, Infinity],
    };
    const shortcut = (event.ctrlKey || event.metaKey) && !event.altKey && !event.shiftKey;
    if (moves[event.key] && event.shiftKey && !event.ctrlKey && !event.metaKey && !event.altKey) {
      extend(...moves[event.key]);
    } else if (moves[event.key]) {
      move(...moves[event.key]);
    } else if (shortcut && /^[dr]$/i.test(event.key)) {
      ctx.fill(event.key.toLowerCase() === 'd' ? 'down' : 'right');
    } else if (event.key === 'Tab' && sel && plain) {
      const edge = event.shiftKey ? NAME_COL : TOTAL_COL;
      if (sel.col === edge) return;     // let Tab leave the grid at the row edge
      move(0, event.shiftKey ? -1 : 1);
    } else if ((event.key === 'Enter' || event.key === ' ') && onName) {
      ctx.toggleNode(sel.key);
    } else if (event.key === 'Enter' || event.key === 'F2') {
      editor.start(null);
    } else if (plain && (event.key === 'h' || event.key === 'H') && sel && !onName) {
      ctx.toggleHold();
    } else if (plain && /^[0-9.+-]$/.test(event.key) && sel && !onName) {
      editor.start(event.key);
    } else {
      return;
    }
    event.preventDefault();
  }

  /* ---- Mouse ------------------------------------------------------------------------ */

  function cellTarget(event) {
    if (event.target.closest('input')) return null;
    const td = event.target.closest('td');
    const nodeKey = td && td.parentNode.dataset.node;
    if (!nodeKey) return null;
    const col = td.dataset.col === 'name' ? NAME_COL : splitCellKey(td.dataset.key).month;
    return { td, nodeKey, col };
  }

  function onClick(event) {
    const target = cellTarget(event);
    if (!target) return;
    if (event.shiftKey && state.selection && !event.target.closest('.toggle')) {
      setExtent(target.nodeKey, target.col);
    } else {
      if (event.target.closest('.toggle')) ctx.toggleNode(target.nodeKey);
      select(target.nodeKey, target.col);
    }
    scroller.focus({ preventScroll: true });
  }

  // Shift+click extends the range: keep the browser from selecting the page's text.
  function onMouseDown(event) {
    if (event.shiftKey && cellTarget(event)) event.preventDefault();
  }

  function onDoubleClick(event) {
    const target = cellTarget(event);
    if (!target || event.target.closest('.toggle')) return;
    if (target.col === NAME_COL) ctx.toggleNode(target.nodeKey);
    else editor.start(null);
  }

  scroller.addEventListener('keydown', onKeyDown);
  scroller.addEventListener('mousedown', onMouseDown);
  scroller.addEventListener('click', onClick);
  scroller.addEventListener('dblclick', onDoubleClick);

  return {
    paint,
    keepVisible,
    move,
    reveal,
    cells,
    selectRect,
    forget: () => { selectedTd = null; rangeTds = []; },
    setEditor: (e) => { editor = e; },
  };
}
