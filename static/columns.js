/*
 * ducksheet — the grid's column widths: fitted to the values shown (and grown when a
 * value gets wider), resized by dragging a header's right edge (th > .col-resize), fitted
 * again by double-clicking that edge. Text is measured on a canvas, so fitting needs no
 * layout. Created by grid.js with a context of:
 *   state       the client state (nodes, months, measure)
 *   text        (cell key) → the text the cell shows
 *   changed     () the widths changed (the selection may need scrolling)
 */

import { DEPTH, NAME_COL, TOTAL_COL, cellKeyOf, columns } from './model.js';
import { clamp, el } from './util.js';

export const INDENT_PX = 18;
const CELL_PAD = 20;            // 10px padding each side
const LOCK_ROOM = 14;           // the lock of a held cell sits left of the number
const NAME_PAD = 8 + 18 + 10;   // left padding, toggle, right padding
const MIN_WIDTH = 56;
const NAME_MIN = 96;
const SMALL_SCREEN = 600;

export function createColumns(ctx) {
  const { state } = ctx;
  const $ = (sel) => document.querySelector(sel);
  const colgroup = $('#sheet colgroup');
  const table = $('#sheet');
  const widths = new Map();     // column -> px
  const manual = new Set();     // columns the user sized by dragging
  const canvas = document.createElement('canvas').getContext('2d');
  let fonts = null;

  // The widest name column: a third of a small screen, 280px otherwise.
  const nameMax = () => (window.innerWidth < SMALL_SCREEN ? Math.max(NAME_MIN, Math.floor(window.innerWidth / 3)) : 280);

  function measure(text, font) {
    if (!fonts) {
      const style = getComputedStyle(table);
      const family = style.fontFamily;
      fonts = { cell: `700 ${style.fontSize} ${family}`, head: `600 12px ${family}` };
    }
    canvas.font = fonts[font];
    return Math.ceil(canvas.measureText(text).width);
  }

  // Whether a cell's text fits its column.
  function fits(text, col) {
    return measure(text, 'cell') + CELL_PAD + LOCK_ROOM <= (widths.get(col) ?? Infinity);
  }

  function needed(col) {
    if (col === NAME_COL) {
      let widest = measure('Product', 'head') + CELL_PAD;
      state.nodes.forEach((node) => {
        widest = Math.max(widest, measure(node.label, 'cell') + NAME_PAD + DEPTH[node.level] * INDENT_PX);
      });
      return clamp(widest, NAME_MIN, nameMax());
    }
    let widest = measure(col === TOTAL_COL ? 'Total' : 'Mmm 0000', 'head') + CELL_PAD;
    state.nodes.forEach((node) => {
      if (node.cells.has(col)) widest = Math.max(widest, measure(ctx.text(cellKeyOf(node.key, col)), 'cell') + CELL_PAD + LOCK_ROOM);
    });
    return Math.max(MIN_WIDTH, widest);
  }

  // Fits every column the user has not sized (all of them with `reset`).
  function fitAll(reset) {
    if (reset) manual.clear();
    const cols = columns(state);
    [...widths.keys()].filter((c) => !cols.includes(c)).forEach((c) => widths.delete(c));
    cols.forEach((col) => { if (!manual.has(col)) widths.set(col, needed(col)); });
    apply();
  }

  // Widens the columns of changed cells whose text no longer fits.
  function grow(cellKeys) {
    let wider = false;
    cellKeys.forEach((cellKey) => {
      const col = cellKey.slice(cellKey.lastIndexOf('|') + 1);
      if (manual.has(col) || !widths.has(col) || fits(ctx.text(cellKey), col)) return;
      widths.set(col, Math.max(widths.get(col), needed(col)));
      wider = true;
    });
    if (wider) apply();
  }

  function apply() {
    const cols = columns(state);
    const list = cols.map((c) => widths.get(c) ?? needed(c));
    if (colgroup.children.length !== cols.length) {
      colgroup.replaceChildren(...cols.map(() => el('col')));
    }
    list.forEach((w, i) => { colgroup.children[i].style.width = `${w}px`; });
    table.style.width = `${list.reduce((a, b) => a + b, 0)}px`;
    ctx.changed();
  }

  /* ---- Dragging and double-clicking header edges ------------------------------------ */

  function handle(col) {
    const grip = el('span', 'col-resize');
    grip.title = 'Drag to resize; double-click to fit';
    grip.setAttribute('aria-hidden', 'true');
    grip.addEventListener('pointerdown', (event) => startDrag(event, col, grip));
    grip.addEventListener('dblclick', (event) => {
      event.stopPropagation();
      manual.delete(col);
      widths.set(col, needed(col));
      apply();
    });
    return grip;
  }

  function startDrag(event, col, grip) {
    event.preventDefault();
    const startX = event.clientX;
    const startWidth = widths.get(col) ?? needed(col);
    grip.setPointerCapture(event.pointerId);
    grip.classList.add('dragging');
    const onMove = (e) => {
      manual.add(col);
      widths.set(col, Math.max(col === NAME_COL ? NAME_MIN : MIN_WIDTH / 2, startWidth + e.clientX - startX));
      apply();
    };
    const onUp = () => {
      grip.classList.remove('dragging');
      grip.removeEventListener('pointermove', onMove);
      grip.removeEventListener('pointerup', onUp);
      grip.removeEventListener('pointercancel', onUp);
    };
    grip.addEventListener('pointermove', onMove);
    grip.addEventListener('pointerup', onUp);
    grip.addEventListener('pointercancel', onUp);
  }

  return { fitAll, grow, fits, handle, width: (col) => widths.get(col) ?? 0 };
}
