/*
 * ducksheet — the grid's selection (state.selection = { key: node key, col }) and the
 * keyboard and mouse handling of #grid. Created by grid.js with the rendered grid's view
 * (see `rendered` there), `changed` (the selection moved) and `toggleHold`.
 */

import { NAME_COL, TOTAL_COL, columns, expandAncestors, splitCellKey } from './model.js';
import { clamp } from './util.js';

export function createSelection(ctx) {
  const { state, scroller } = ctx;
  let selectedTd = null;
  let editor = null;

  function select(nodeKey, col) {
    state.selection = { key: nodeKey, col };
    scrollIntoView();
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
  }

  // After collapse/removal, moves the selection to the nearest visible ancestor.
  function keepVisible() {
    const sel = state.selection;
    if (!sel) return;
    let node = state.nodes.get(sel.key);
    while (node && ctx.indexOf(node.key) === undefined) node = node.parent;
    const col = columns(state).includes(sel.col) ? sel.col : TOTAL_COL;
    state.selection = node ? { key: node.key, col } : null;
    if (!node || node.key !== sel.key || col !== sel.col) ctx.changed();
  }

  function scrollIntoView() {
    const sel = state.selection;
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
    if (moves[event.key]) {
      move(...moves[event.key]);
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
    if (event.target.closest('.toggle')) ctx.toggleNode(target.nodeKey);
    select(target.nodeKey, target.col);
    scroller.focus({ preventScroll: true });
  }

  function onDoubleClick(event) {
    const target = cellTarget(event);
    if (!target || event.target.closest('.toggle')) return;
    if (target.col === NAME_COL) ctx.toggleNode(target.nodeKey);
    else editor.start(null);
  }

  scroller.addEventListener('keydown', onKeyDown);
  scroller.addEventListener('click', onClick);
  scroller.addEventListener('dblclick', onDoubleClick);

  return {
    paint,
    keepVisible,
    move,
    reveal,
    forget: () => { selectedTd = null; },
    setEditor: (e) => { editor = e; },
  };
}
