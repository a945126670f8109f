/*
 * ducksheet — the grid's selection (state.selection = { key: node key, col }, and
 * state.anchor, the other corner of a selected range, or null) and the keyboard and
 * mouse handling of #grid: moving, Shift to extend a range, copy/paste and fill of
 * blocks, undo/redo. Created by grid.js with the rendered grid's view (see `rendered`
 * there), `changed` (the selection moved), `toggleHold` and `blocks` (blocks.js).
 */

import { NAME_COL, TOTAL_COL, columns, expandAncestors, splitCellKey } from './model.js';
import { clamp } from './util.js';

export function createSelection(ctx) {
  const { state, scroller } = ctx;
  let selectedTd = null;
  let rangeTds = [];
  let editor = null;

  // Selects a cell; with `extend`, the previous selection (or anchor) stays the range's
  // other corner.
  function select(nodeKey, col, extend = false) {
    if (extend && state.selection && col !== NAME_COL && state.selection.col !== NAME_COL) {
      state.anchor = state.anchor ?? state.selection;
    } else {
      state.anchor = null;
    }
    state.selection = { key: nodeKey, col };
    scrollIntoView();
    paint();
    ctx.changed();
  }

  // The selected range as indices { top, bottom, left, right } into the visible rows
  // and the value columns (name column excluded); null without a value cell selected.
  function range() {
    const sel = state.selection;
    if (!sel || sel.col === NAME_COL) return null;
    const corner = state.anchor ?? sel;
    const cols = columns(state).filter((c) => c !== NAME_COL);
    const rows = [ctx.indexOf(sel.key), ctx.indexOf(corner.key)];
    const at = [cols.indexOf(sel.col), cols.indexOf(corner.col)];
    if (rows.includes(undefined) || at.includes(-1)) return null;
    return {
      top: Math.min(...rows), bottom: Math.max(...rows), left: Math.min(...at), right: Math.max(...at),
    };
  }

  function paint() {
    if (selectedTd) {
      selectedTd.classList.remove('selected');
      selectedTd.removeAttribute('aria-selected');
    }
    rangeTds.forEach((td) => td.classList.remove('in-range'));
    rangeTds = [];
    const sel = state.selection;
    const td = sel ? ctx.td(sel.key, sel.col) : null;
    selectedTd = td;
    if (td) {
      td.classList.add('selected');
      td.setAttribute('aria-selected', 'true');
    }
    const r = state.anchor ? range() : null;
    if (!r) return;
    const list = ctx.list();
    const cols = columns(state).filter((c) => c !== NAME_COL);
    for (let i = r.top; i <= r.bottom; i += 1) {
      for (let j = r.left; j <= r.right; j += 1) {
        const cell = ctx.td(list[i].key, cols[j]);
        if (cell) {
          cell.classList.add('in-range');
          rangeTds.push(cell);
        }
      }
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
    if (state.anchor && ctx.indexOf(state.anchor.key) === undefined) state.anchor = null;
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

  function move(rowDelta, colDelta, extend = false) {
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
    select(list[nextRow].key, cols[nextCol], extend);
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
    const command = (event.ctrlKey || event.metaKey) && !event.altKey;
    const key = event.key.toLowerCase();
    const moves = {
      ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1],
      PageUp: [-pageRows(), 0], PageDown: [pageRows(), 0], Home: [0, -Infinity], End: [0, Infinity],
    };
    if (command && key === 'z') {
      ctx.blocks.undo(event.shiftKey);
    } else if (command && key === 'y') {
      ctx.blocks.undo(true);
    } else if (command && (key === 'd' || key === 'r') && !onName && sel) {
      ctx.blocks.fill(key === 'd' ? 'down' : 'right');
    } else if (moves[event.key] && !command) {
      move(...moves[event.key], event.shiftKey);
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
    select(target.nodeKey, target.col, event.shiftKey);
    scroller.focus({ preventScroll: true });
  }

  function onDoubleClick(event) {
    const target = cellTarget(event);
    if (!target || event.target.closest('.toggle')) return;
    if (target.col === NAME_COL) ctx.toggleNode(target.nodeKey);
    else editor.start(null);
  }

  // Copy and paste come as clipboard events (Ctrl/Cmd+C, V, the browser's menu): the
  // selected range leaves as TSV, a TSV block arrives as one block edit.
  function onCopy(event) {
    if (editor.isOpen() || event.target !== scroller) return;
    const text = ctx.blocks.copyText();
    if (text === null) return;
    event.clipboardData.setData('text/plain', text);
    event.preventDefault();
  }

  function onPaste(event) {
    if (editor.isOpen() || event.target !== scroller) return;
    event.preventDefault();
    ctx.blocks.paste(event.clipboardData.getData('text/plain'));
  }

  scroller.addEventListener('keydown', onKeyDown);
  scroller.addEventListener('copy', onCopy);
  scroller.addEventListener('paste', onPaste);
  scroller.addEventListener('click', onClick);
  scroller.addEventListener('dblclick', onDoubleClick);

  return {
    paint,
    range,
    keepVisible,
    move,
    reveal,
    forget: () => { selectedTd = null; rangeTds = []; },
    setEditor: (e) => { editor = e; },
  };
}
