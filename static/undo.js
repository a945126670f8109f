/*
 * ducksheet — undo and redo of the user's own requests (edits, block edits, spreads): the
 * Undo and Redo buttons, and Ctrl/Cmd+Z, Ctrl/Cmd+Shift+Z and Ctrl+Y anywhere on the page
 * but in a text field, where the browser's own undo of the text stays. The server keeps
 * the stacks and decides; this words its refusals ("Can't undo: bob changed …").
 *
 * Created by app.js with a context of:
 *   state        the client state (role)
 *   notify       (level, text) toast
 *   submit       (message, what, onChange, explain) → request, see connection.js
 *   beginAction  () a new action starts (older toasts go)
 *   focusGrid    () give the keyboard back to the grid (after a button click)
 */

import { readOnlyReason } from './model.js';
import { monthLabel } from './util.js';

const MAC = /Mac|iPhone|iPad/.test(navigator.platform || navigator.userAgent);
const KEYS = MAC ? { undo: '⌘Z', redo: '⇧⌘Z' } : { undo: 'Ctrl+Z', redo: 'Ctrl+Shift+Z or Ctrl+Y' };
const NAMED = 3;               // cells named per user in a conflict, then "and N more"

// "Acme › Nova › Mar 2024" for a cell { supplier, brand, family, month } of an error.
export function cellPath(cell) {
  const path = [cell.supplier, cell.brand, cell.family].filter((p) => p != null);
  return [...(path.length ? path : ['Grand total']), cell.month ? monthLabel(cell.month) : 'Total'].join(' › ');
}

// "bob changed Acme › Nova › Mar 2024 since", per user, from an undo_conflict's cells.
export function conflictText(error) {
  const cells = Array.isArray(error.cells) ? error.cells : [];
  const others = Array.isArray(error.by) ? error.by.join(' and ') : error.by;
  if (!cells.length) return error.message || `${others || 'someone'} changed its cells since`;
  const byUser = new Map();
  cells.forEach((cell) => {
    const by = cell.by || others || 'someone';
    byUser.set(by, [...(byUser.get(by) || []), cellPath(cell)]);
  });
  return [...byUser].map(([by, names]) => {
    const more = names.length > NAMED ? ` and ${names.length - NAMED} more` : '';
    return `${by} changed ${names.slice(0, NAMED).join(', ')}${more} since`;
  }).join('; ');
}

export function createUndo(ctx) {
  const { state } = ctx;
  const buttons = { undo: document.querySelector('#undo-button'), redo: document.querySelector('#redo-button') };

  function explain(word, error) {
    if (error.code === `nothing_to_${word}`) return { level: 'info', text: `Nothing to ${word}` };
    const text = error.code === 'undo_conflict' ? conflictText(error) : error.message || error.code || 'unknown reason';
    return { level: error.code === 'undo_conflict' || error.code === 'held' ? 'warn' : 'error', text: `Can't ${word}: ${text}` };
  }

  function send(word) {
    ctx.beginAction();
    const readOnly = readOnlyReason(state);
    if (readOnly) {
      ctx.notify('warn', readOnly);
      return;
    }
    ctx.submit({ type: word }, word === 'undo' ? 'Undo' : 'Redo', () => {}, (error) => explain(word, error));
  }

  // Not while typing: a field keeps the browser's own undo of its text.
  function typing(target) {
    return target instanceof Element && (target.isContentEditable || Boolean(target.closest('input, textarea, select')));
  }

  function onKeyDown(event) {
    if (event.defaultPrevented || !(event.ctrlKey || event.metaKey) || event.altKey || typing(event.target)) return;
    const key = event.key.toLowerCase();
    if (key === 'z') send(event.shiftKey ? 'redo' : 'undo');
    else if (key === 'y' && !event.shiftKey) send('redo');
    else return;
    event.preventDefault();
  }

  // Read-only users cannot undo, nor anyone in a locked version; called once the role is
  // known (welcome) and when the version shown is locked or unlocked.
  function showRole() {
    Object.values(buttons).forEach((b) => { b.disabled = Boolean(readOnlyReason(state)); });
  }

  buttons.undo.title = `Undo your last change (${KEYS.undo})`;
  buttons.redo.title = `Redo what you undid (${KEYS.redo})`;
  Object.entries(buttons).forEach(([word, button]) => button.addEventListener('click', () => {
    send(word);
    ctx.focusGrid();
  }));
  document.addEventListener('keydown', onKeyDown);

  return { undo: () => send('undo'), redo: () => send('redo'), showRole };
}
