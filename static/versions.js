/*
 * ducksheet — versions in the header: the version shown and edited (#version), the one
 * it is compared with (#compare: every cell then shows its variance, Δ or Δ%, coloured),
 * a new version copied from the one shown (the New version dialog) and, for admins,
 * locking the version shown. The choice is kept in the URL (?version=budget&compare=actual)
 * so that a reload or a shared link shows the same.
 *
 * Created by app.js with a context of:
 *   state           the client state: version, versions, compare, compareSheet, varianceAs
 *   notify          (level, text) toast
 *   beginAction     () a new action starts (older toasts go)
 *   versionChanged  () the version shown changed: take its snapshot
 *   compareChanged  (cellKeys | null) compared values changed (null: all of them)
 *   lockChanged     () the version shown was locked or unlocked
 *
 * The compared version's summary comes from GET /view_table (page by page) and is kept
 * up to date from the `updates` rows of that version, which every socket receives.
 */

import {
  ACTUAL, TABLE, applyRows, cellKeyOfCell, createSheet, isLockedVersion, versionOf, versionParam,
} from './model.js';
import { compareSeq, el, errorText, fetchJson, postJson } from './util.js';

const PAGE = 1000;                    // DUCKSHEET_VIEW_PAGE_MAX's default
const NEW_VERSION = '#new';
const VERSION_NAME = /^[a-z0-9][a-z0-9_.-]{0,39}$/;

export function createVersions(ctx) {
  const { state } = ctx;
  const $ = (sel) => document.querySelector(sel);
  const dom = {
    version: $('#version'), compare: $('#compare'), varianceAs: $('#variance-as'),
    varianceButtons: [...document.querySelectorAll('[data-variance]')],
    lock: $('#lock-button'), locked: $('#locked'),
    dialog: $('#version-dialog'), form: $('#version-form'), name: $('#version-name'),
    from: $('#version-from'), percent: $('#version-percent'), error: $('#version-error'),
    cancel: $('#version-cancel'),
  };
  // The compared version while it loads: rows of it that arrive meanwhile, with the seq
  // of their frame, and the seq each loaded cell was read at.
  let loading = null;               // { token, buffered: [{ seq, rows }], readAt: Map }
  let loadToken = 0;

  /* ---- The list of versions --------------------------------------------------------- */

  const find = (name) => state.versions.find((v) => v.name === name);
  const isLocked = () => isLockedVersion(state);

  function option(value, text) {
    const o = el('option', '', text);
    o.value = value;
    return o;
  }

  function setVersions(list) {
    const wasLocked = isLocked();
    state.versions = list;
    const names = list.map((v) => option(v.name, v.locked ? `${v.name} (locked)` : v.name));
    const mayCreate = state.role !== 'viewer';
    dom.version.replaceChildren(...names, ...(mayCreate ? [option(NEW_VERSION, 'New version…')] : []));
    dom.version.value = state.version;
    dom.compare.replaceChildren(  // "vs …": readable where the label is hidden (small screens)
      option('', 'vs —'),
      ...list.filter((v) => v.name !== state.version).map((v) => option(v.name, `vs ${v.name}`)),
    );
    dom.compare.value = state.compare ?? '';
    paintLock();
    if (wasLocked !== isLocked()) ctx.lockChanged();
  }

  async function load() {
    const result = await fetchJson('/versions');
    if (result.status !== 200) {
      ctx.notify('error', `Could not load the versions: ${errorText(result)}`);
      return;
    }
    setVersions(result.body.data.versions);
    if (!find(state.version)) {
      ctx.notify('warn', `There is no version ${state.version}: showing actual.`);
      choose(ACTUAL);
    } else if (state.compare && !find(state.compare)) {
      ctx.notify('warn', `There is no version ${state.compare} to compare with.`);
      compareWith(null);
    } else if (state.compare && !state.compareSheet && !loading) {
      compareWith(state.compare);
    }
  }

  /* ---- Choosing -------------------------------------------------------------------- */

  function keepInUrl() {
    const url = new URL(window.location.href);
    const set = (key, value) => (value ? url.searchParams.set(key, value) : url.searchParams.delete(key));
    set('version', versionParam(state));
    set('compare', state.compare);
    history.replaceState(null, '', url.pathname + url.search);
  }

  function choose(name) {
    if (name === state.version) return;
    state.version = name;
    setVersions(state.versions);
    ctx.versionChanged();
    compareWith(state.compare === name ? null : state.compare);  // keeps both in the URL
  }

  function onVersionPicked() {
    ctx.beginAction();
    const picked = dom.version.value;
    if (picked === NEW_VERSION) {
      dom.version.value = state.version;
      openDialog();
      return;
    }
    choose(picked);
  }

  function compareWith(name) {
    state.compare = name || null;
    keepInUrl();
    dom.compare.value = state.compare ?? '';
    dom.varianceAs.hidden = !state.compare;
    if (state.compare) loadCompared();
    else dropCompared();
  }

  function dropCompared() {
    loading = null;
    loadToken += 1;
    state.compareSheet = null;
    ctx.compareChanged(null);
  }

  function setVarianceAs(form) {
    state.varianceAs = form;
    dom.varianceButtons.forEach((b) => b.setAttribute('aria-pressed', String(b.dataset.variance === form)));
    ctx.compareChanged(null);
  }

  /* ---- The compared version's values ---------------------------------------------- */

  async function loadCompared() {
    const token = ++loadToken;
    const name = state.compare;
    const sheet = createSheet();
    loading = { token, buffered: [], readAt: new Map() };
    state.compareSheet = null;
    for (let offset = 0; ; offset += PAGE) {
      const result = await fetchJson(`/view_table/${TABLE}`, { version: name, limit: PAGE, offset });
      if (token !== loadToken) return;
      if (result.status !== 200) {
        ctx.notify('error', `Could not load ${name} to compare: ${errorText(result)}`);
        compareWith(null);
        return;
      }
      const { rows, total, seq } = result.body.data;
      applyRows(sheet, rows);
      rows.forEach((row) => loading.readAt.set(cellKeyOfCell(row), seq));
      if (!rows.length || offset + rows.length >= total) break;
    }
    // Rows that changed while the pages were read: newer than the page that held them.
    for (const { seq, rows } of loading.buffered) {
      applyRows(sheet, rows.filter((row) => compareSeq(seq, loading.readAt.get(cellKeyOfCell(row)) ?? null) > 0));
    }
    loading = null;
    state.compareSheet = sheet;
    ctx.compareChanged(null);
  }

  // An `updates` frame: a new list of versions, rows of the compared version.
  function applyUpdates(msg) {
    if (Array.isArray(msg.versions)) setVersions(msg.versions);
    if (!state.compare) return;
    const rows = (msg.rows || []).filter((row) => (!row.table || row.table === TABLE) && versionOf(row) === state.compare);
    if (!rows.length) return;
    if (loading) loading.buffered.push({ seq: msg.seq, rows });
    else if (state.compareSheet) ctx.compareChanged(applyRows(state.compareSheet, rows));
  }

  /* ---- New version, lock ----------------------------------------------------------- */

  function openDialog() {
    if (state.role === 'viewer') return;
    dom.from.textContent = state.version;
    dom.name.value = '';
    dom.percent.value = '';
    dom.error.textContent = '';
    dom.dialog.showModal();
    dom.name.focus();
  }

  async function createVersion(event) {
    event.preventDefault();
    const name = dom.name.value.trim();
    const percentText = dom.percent.value.trim().replace(/%$/, '');
    if (!VERSION_NAME.test(name)) {
      dom.error.textContent = 'A name is 1–40 of a–z 0–9 . _ - and starts with a letter or digit.';
      return;
    }
    const percent = percentText === '' ? null : Number(percentText);
    if (percent !== null && !Number.isFinite(percent)) {
      dom.error.textContent = 'The percent is a number, such as 5 or -3.5.';
      return;
    }
    dom.error.textContent = 'Creating…';
    const data = { name, from: state.version, ...(percent === null ? {} : { percent: percentText }) };
    const result = await postJson('/versions?wait=30', data);
    if (result.status !== 200) {
      dom.error.textContent = `Not created: ${errorText(result)}`;
      return;
    }
    dom.dialog.close();
    const percentNote = percent === null ? '' : ` ${percent >= 0 ? '+' : ''}${percentText} %`;
    ctx.notify('info', `Created ${name} from ${data.from}${percentNote}.`);
    await load();
    choose(name);
  }

  function paintLock() {
    const locked = isLocked();
    dom.locked.hidden = !locked;
    dom.lock.hidden = state.role !== 'admin' || state.version === ACTUAL;
    dom.lock.textContent = locked ? 'Unlock' : 'Lock';
    dom.lock.setAttribute('aria-pressed', String(locked));
    dom.lock.title = locked ? `Let ${state.version} be edited again` : `Stop every edit of ${state.version}`;
  }

  async function toggleLock() {
    ctx.beginAction();
    const word = isLocked() ? 'unlock' : 'lock';
    const result = await postJson(`/versions/${encodeURIComponent(state.version)}/${word}?wait=30`, {});
    if (result.status !== 200) ctx.notify('error', `Could not ${word} ${state.version}: ${errorText(result)}`);
  }

  dom.version.addEventListener('change', onVersionPicked);
  dom.compare.addEventListener('change', () => {
    ctx.beginAction();
    compareWith(dom.compare.value);
  });
  dom.varianceButtons.forEach((b) => b.addEventListener('click', () => setVarianceAs(b.dataset.variance)));
  dom.form.addEventListener('submit', createVersion);
  dom.cancel.addEventListener('click', () => dom.dialog.close());
  dom.lock.addEventListener('click', toggleLock);

  return {
    load,
    applyUpdates,
    isLocked,
    // The role is known (welcome): who may create and lock.
    showRole: () => setVersions(state.versions),
  };
}

// The version and compared version a page opens with, from its URL.
export function versionsFromUrl() {
  const params = new URLSearchParams(window.location.search);
  const valid = (v) => (v && VERSION_NAME.test(v) ? v : null);
  const version = valid(params.get('version')) ?? ACTUAL;
  const compare = valid(params.get('compare'));
  return { version, compare: compare === version ? null : compare };
}
