/*
 * ducksheet — the header's controls: the status pill, the read-only badge, the display
 * name, the measure switch, the compact (K/M) display, the default spread and the Hold
 * button (with key H).
 *
 * Created by app.js with a context of:
 *   state          the client state (status, name, measure, spread are kept here)
 *   notify         (level, text) toast
 *   submit         (message, what, onChange) → request, see connection.js
 *   overlays       the grid's overlays ("<cell key>#hold" for own holds)
 *   isHeld         (cell key) → whether the grid shows it held
 *   statusChanged  () after the status changed (the presence list depends on it)
 *   nameChanged    () after the display name changed (say hello again)
 *   measureChanged () after the measure or the compact display changed (repaint)
 *   beginAction    () a new action starts (older toasts go)
 */

import { NAME_COL, cellCondition, cellKeyOf, cellLabel, isPeriod, mayRelease, readOnlyReason } from './model.js';

const STORAGE_NAME = 'ducksheet.name';
const STATUS_TEXT = Object.freeze({
  connecting: 'Connecting…', live: 'Live', reconnecting: 'Reconnecting…',
});

function storageGet(key) {
  try { return localStorage.getItem(key); } catch { return null; }
}

function storageSet(key, value) {
  try { localStorage.setItem(key, value); } catch { /* private mode: keep in memory only */ }
}

export function createToolbar(ctx) {
  const { state } = ctx;
  const $ = (sel) => document.querySelector(sel);
  const dom = {
    status: $('#status'), statusText: $('#status-text'), role: $('#role'),
    holdButton: $('#hold-button'), holdButtonText: $('#hold-button-text'),
    name: $('#name'), spread: $('#spread'), compact: $('#compact-button'),
    periods: $('#periods-button'),
    measureButtons: [...document.querySelectorAll('[data-measure]')],
  };

  function setStatus(status) {
    state.status = status;
    dom.status.dataset.state = status;
    dom.statusText.textContent = STATUS_TEXT[status];
    ctx.statusChanged();
  }

  function showRole() {
    dom.role.hidden = state.role !== 'viewer';
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
    ctx.nameChanged();
  }

  function setMeasure(measure) {
    if (measure === state.measure) return;
    ctx.beginAction();
    state.measure = measure;
    dom.measureButtons.forEach((b) => b.setAttribute('aria-pressed', String(b.dataset.measure === measure)));
    ctx.measureChanged();
  }

  function toggleCompact() {
    ctx.beginAction();
    state.compact = !state.compact;
    dom.compact.setAttribute('aria-pressed', String(state.compact));
    ctx.measureChanged();
  }

  function togglePeriods() {
    ctx.beginAction();
    state.showPeriods = !state.showPeriods;
    dom.periods.setAttribute('aria-pressed', String(state.showPeriods));
    ctx.columnsChanged();
  }

  /* ---- Holds ------------------------------------------------------------------------ */

  // Holds (or releases) the selected value cell for everyone.
  function toggleHold() {
    const sel = state.selection;
    const node = sel && state.nodes.get(sel.key);
    if (!node || sel.col === NAME_COL) return;
    if (state.role === 'viewer') {
      ctx.notify('warn', 'Read-only: your role cannot hold cells.');
      return;
    }
    if (readOnlyReason(state)) {
      ctx.notify('warn', readOnlyReason(state));
      return;
    }
    if (isPeriod(sel.col)) {
      ctx.notify('warn', 'A quarter or year is the sum of its months: hold the months instead.');
      return;
    }
    ctx.beginAction();
    const cellKey = cellKeyOf(sel.key, sel.col);
    const key = `${cellKey}#hold`;
    const on = !ctx.isHeld(cellKey);
    const hold = state.holds.get(cellKey);
    if (!on && hold && !mayRelease(hold, state.user, state.overridesHolds)) {
      ctx.notify('warn', `Held by ${hold.by}: only ${hold.by} or an admin can release it.`);
      return;
    }
    const request = ctx.submit(
      { type: 'hold', condition: cellCondition(node, sel.col), on },
      `${on ? 'Hold' : 'Release'} of ${cellLabel(state, cellKey)}`,
      (r) => { ctx.overlays.follow(key, r); updateHoldButton(); },
    );
    if (!request) return;
    request.value = on;
    ctx.overlays.show(key, request);
    updateHoldButton();
  }

  function updateHoldButton() {
    const sel = state.selection;
    const usable = Boolean(sel) && sel.col !== NAME_COL && !isPeriod(sel.col);
    const cellKey = usable ? cellKeyOf(sel.key, sel.col) : null;
    const held = usable && ctx.isHeld(cellKey);
    const hold = held ? state.holds.get(cellKey) : null;
    const locked = Boolean(hold) && !mayRelease(hold, state.user, state.overridesHolds);
    dom.holdButton.disabled = !usable || locked;
    dom.holdButton.setAttribute('aria-pressed', String(held));
    dom.holdButtonText.textContent = held ? 'Release' : 'Hold';
    if (!usable) dom.holdButton.title = 'Select a value cell to hold it (key H)';
    else if (locked) dom.holdButton.title = `Held by ${hold.by}: only ${hold.by} or an admin can release it`;
    else dom.holdButton.title = `${held ? 'Release' : 'Hold'} ${cellLabel(state, cellKey)} (key H)`;
  }

  state.name = defaultName();
  dom.name.value = state.name;
  dom.spread.value = state.spread;
  dom.name.addEventListener('change', onNameChange);
  dom.name.addEventListener('keydown', (e) => { if (e.key === 'Enter') dom.name.blur(); });
  dom.spread.addEventListener('change', () => { state.spread = dom.spread.value; });
  dom.holdButton.addEventListener('click', () => {
    toggleHold();
    document.querySelector('#grid').focus({ preventScroll: true });
  });
  dom.measureButtons.forEach((b) => b.addEventListener('click', () => setMeasure(b.dataset.measure)));
  dom.compact.addEventListener('click', toggleCompact);
  dom.periods.addEventListener('click', togglePeriods);

  return { setStatus, showRole, toggleHold, updateHoldButton };
}
