/*
 * ducksheet — the grid's inline editor (td.editing > input.editor, .spread-choice) and
 * the edits it sends. Created by grid.js with the rendered grid's view (see `rendered`
 * there), the cell overlays, `notify`, `submit`, `beginAction` and `move` (move the
 * selection sideways). Held cells are read-only: no editor opens on them.
 */

import { LEVEL, NAME_COL, TOTAL_COL, cellEdit, cellKeyOf, cellLabel, isPeriod, readOnlyReason } from './model.js';
import { KIND, afterPercent, el, parsePercent, parseValue, rawValue } from './util.js';

const SPREAD_LABEL = Object.freeze({ proportional: 'Proportional', equal: 'Equal' });

export function createEditor(ctx) {
  const { state, scroller, overlays } = ctx;
  let editor = null;           // { key, nodeKey, month, column, input, choice, initial }

  function start(seedText) {
    const sel = state.selection;
    if (!sel || sel.col === NAME_COL) return;
    ctx.beginAction();
    const readOnly = readOnlyReason(state);
    if (readOnly) {
      ctx.notify('warn', readOnly);
      return;
    }
    if (editor) commit(0, true);
    const key = cellKeyOf(sel.key, sel.col);
    if (ctx.isHeld(key)) {
      const by = state.holds.get(key)?.by ?? state.user;
      ctx.notify('warn', `${cellLabel(state, key)} is held by ${by}: read-only until it is released.`);
      return;
    }
    const td = ctx.cellTd(key);
    if (!td) return;
    const kind = KIND[state.measure];
    const initial = rawValue(ctx.displayedValue(key), kind);
    const input = el('input', 'editor');
    input.type = 'text';
    input.inputMode = 'decimal';
    input.spellcheck = false;
    input.autocomplete = 'off';
    input.setAttribute('aria-label', `New ${state.measure === 'quantity' ? 'quantity' : 'net amount'}`);
    input.value = seedText === null ? initial : seedText;
    input.addEventListener('keydown', onKeyDown);
    input.addEventListener('blur', onBlur);
    const choice = spreadChoice(likeReferences(sel.key, sel.col));
    editor = { key, nodeKey: sel.key, month: sel.col, column: state.measure, input, choice, initial };
    td.classList.add('editing');
    td.append(input, choice);
    input.focus();
    if (seedText === null) input.select();
  }

  // `like`'s reference: the same period a year before (a month of a node with child
  // cells, or any node's quarter or year) when the sheet has it; null otherwise.
  function lastYear(nodeKey, month) {
    const node = state.nodes.get(nodeKey);
    if (!node || month === TOTAL_COL) return null;
    const earlier = `${Number(month.slice(0, 4)) - 1}${month.slice(4)}`;
    if (isPeriod(month)) return state.months.some((m) => m.startsWith(earlier.slice(0, 4))) ? earlier : null;
    if (node.level === LEVEL.FAMILY) return null;
    return state.months.includes(earlier) ? earlier : null;
  }

  // The `like` spreads offered for a cell: last year's mix, and the mix in the version
  // compared with (the same cell there), each { label, like, title }.
  function likeReferences(nodeKey, month) {
    const refs = [];
    const earlier = lastYear(nodeKey, month);
    if (earlier) refs.push({ label: 'Like last year', like: { period: earlier }, title: `Give the children the mix they had in ${earlier}` });
    const node = state.nodes.get(nodeKey);
    const hasChildren = node && (node.level !== LEVEL.FAMILY || isPeriod(month) || month === TOTAL_COL);
    if (state.compare && hasChildren) {
      refs.push({
        label: `Like ${state.compare}`,
        like: { version: state.compare },
        title: `Give the children the mix this cell has in ${state.compare}`,
      });
    }
    return refs;
  }

  // The buttons under the editor choosing how this edit spreads to the rows below the
  // cell; Enter uses the header's default, Shift+Enter always spreads equally.
  function spreadChoice(likes) {
    const box = el('div', 'spread-choice');
    box.append(el('span', 'spread-label', 'Spread'));
    const choices = [
      ...Object.keys(SPREAD_LABEL).map((spread) => ({ spread, label: SPREAD_LABEL[spread], like: null })),
      ...likes.map((ref) => ({ spread: 'like', ...ref })),
    ];
    for (const { spread, label, like, title } of choices) {
      const button = el('button', spread === state.spread ? 'default' : '', label);
      button.type = 'button';
      button.dataset.spread = spread;
      const keys = [spread === state.spread ? '↵' : '', spread === 'equal' ? '⇧↵' : ''].filter(Boolean);
      if (keys.length) button.append(el('kbd', '', keys.join(' ')));
      button.addEventListener('mousedown', (event) => event.preventDefault());  // keep focus
      if (title) button.title = title;
      button.addEventListener('click', () => commit(0, false, spread, like));
      box.append(button);
    }
    box.append(el('span', 'spread-hint', 'or type +5%'));
    return box;
  }

  function onKeyDown(event) {
    event.stopPropagation();
    if (event.key === 'Enter') commit(0, false, event.shiftKey ? 'equal' : state.spread);
    else if (event.key === 'Tab') commit(event.shiftKey ? -1 : 1, false);
    else if (event.key === 'Escape') close(true);
    else return;
    event.preventDefault();
  }

  // Focus moving elsewhere in the page commits. Switching windows keeps the input active
  // and re-renders refocus it synchronously, so neither commits.
  function onBlur(event) {
    const input = event.target;
    setTimeout(() => {
      if (editor && editor.input === input && document.activeElement !== input) commit(0, true);
    }, 0);
  }

  function commit(colDelta, fromBlur, spread = state.spread, like = null) {
    const text = editor.input.value;
    if (text.trim() !== editor.initial) {
      const percent = parsePercent(text);
      const parsed = percent ?? parseValue(text, KIND[editor.column]);
      if (parsed.error) {
        ctx.notify('error', fromBlur ? `${parsed.error} Edit discarded.` : parsed.error);
        if (fromBlur) close(false);
        else editor.input.select();
        return;
      }
      if (percent) {
        const now = ctx.displayedValue(editor.key);
        send(editor, percent.value, 'percent', afterPercent(now, percent.value, KIND[editor.column]));
      } else {
        send(editor, parsed.value, spread, parsed.value, like);
      }
    }
    close(!fromBlur);
    if (colDelta) ctx.move(colDelta);
  }

  function close(refocusGrid) {
    const open = editor;
    if (!open) return;
    editor = null;
    const td = open.input.parentNode;
    open.input.remove();
    open.choice.remove();
    if (td) td.classList.remove('editing');
    if (refocusGrid) scroller.focus({ preventScroll: true });
  }

  // Keeps an open editor attached after its row was re-rendered; closes it if the row is gone.
  function rehome() {
    if (!editor) return;
    const td = ctx.cellTd(editor.key);
    if (!td) {
      close(true);
      return;
    }
    if (editor.input.parentNode !== td) {
      td.classList.add('editing');
      td.append(editor.input, editor.choice);
    }
    if (document.activeElement !== editor.input) editor.input.focus({ preventScroll: true });
  }

  // `shown`: what the cell shows until the outcome arrives (a percent's result).
  function send(target, value, spread, shown = value, like = null) {
    const node = state.nodes.get(target.nodeKey);
    if (!node) return;
    const key = `${target.key}#${target.column}`;
    const request = ctx.submit(
      {
        type: 'edit',
        ...cellEdit(node, target.month, target.column, value, spread),
        ...(like ? { like } : {}),
      },
      `Edit of ${cellLabel(state, target.key)}`,
      (r) => overlays.follow(key, r),
    );
    if (!request) return;
    request.value = shown;
    overlays.show(key, request);
  }

  return { start, close, rehome, isOpen: () => editor !== null };
}
