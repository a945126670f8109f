/*
 * ducksheet — browser grid for the shared sheet `sales_summary_by_product_family`.
 * Vanilla ES2020 modules, no dependencies, no build step. Loaded by static/index.html.
 * This file creates the parts and wires them; each gets what it needs in a context:
 *
 *   model.js       the sheet's data, DOM-free: node tree, applying rows, seq, holds, keys
 *   connection.js  WebSocket: hello/resume with since, backoff, ping, requests, dispatch
 *   grid.js        rendering and windowing (selection.js, editor.js: selecting, editing)
 *   presence.js    who is connected and where their cursors are
 *   toolbar.js     status, name, measure, spread and the Hold button
 *   versions.js    the version shown, the one compared with, new versions, lock
 *   undo.js        the Undo / Redo buttons and keys
 *   download.js    the Download button: this view as an xlsx workbook
 *   toasts.js      notifications
 *   panel.js       the panel under the grid (sales.js: sales rows, reports.js: reports,
 *                  history.js: what changed the selected cell)
 *   util.js        pure helpers (formatting, parsing, seq comparison, fetching, overlays)
 *
 * Test / debugging hooks (stable; browser tests rely on them; the DOM attributes and
 * classes are listed in docs/grid.md):
 *   window.ducksheet.state                  the live client state object (treat as read-only)
 *   window.ducksheet.lastSeq()              last seq seen in snapshot/updates/applied, or null
 *   window.ducksheet.cell(s, b, f, month)   the value <td> of that cell, or null when it is not
 *                                           rendered (collapsed parent, or windowed out of view).
 *                                           null, undefined and "" all mean "all"/"Total".
 *   window.ducksheet.socket()               the open WebSocket or null (tests close it)
 */

import {
  NAME_COL, TOTAL_COL, applySnapshot, applyUpdates, cellKeyOf, createSheet, nodeKeyOf,
} from './model.js';
import { createConnection } from './connection.js';
import { createGrid } from './grid.js';
import { createPanel } from './panel.js';
import { createPresence } from './presence.js';
import { createToasts } from './toasts.js';
import { createToolbar } from './toolbar.js';
import { createDownload } from './download.js';
import { createUndo } from './undo.js';
import { createVersions, versionsFromUrl } from './versions.js';

// The sheet (see model.js) and this session, exposed as window.ducksheet.state.
const state = Object.assign(createSheet(), {
  name: '',                  // display name sent in hello
  user: null,                // user name confirmed by welcome
  me: null,                  // own presence id from welcome
  role: null,                // role from welcome; "viewer" makes the grid read-only
  status: 'connecting',      // connecting | live | reconnecting
  measure: 'net_amount',     // net_amount | quantity
  compact: false,            // values shown as 14.46M / 12.5K (full value in the tooltip)
  spread: 'proportional',    // proportional | equal: default spread of parent edits
  selection: null,           // { key: node key, col: NAME_COL | month | TOTAL_COL }
  range: null,               // the far corner { key, col } of a range from the selection, or null
  peers: new Map(),          // presence id -> { id, name, cell, color } of other users
  pending: new Map(),        // client request id -> request awaiting applied/rejected
  versions: [],              // [{ name, from, percent, locked, … }] from GET /versions
  compare: null,             // the version every cell is compared with, or null
  compareSheet: null,        // that version's sheet (see model.js) once it has loaded
  varianceAs: 'percent',     // percent | absolute: the variance shown in each cell
}, versionsFromUrl());

const toasts = createToasts();
const { notify } = toasts;
const beginAction = () => toasts.clear();

const connection = createConnection({
  state,
  notify,
  setStatus: (status) => toolbar.setStatus(status),
  onDrop: () => presence.clear(),
  on: {
    welcome(msg) {
      state.user = msg.user ?? null;
      state.me = msg.id ?? null;
      state.role = msg.role ?? null;
      state.overridesHolds = msg.overrides_holds === true; // an admin by token
      toolbar.showRole();
      undo.showRole();
      versions.showRole();
      toolbar.updateHoldButton();
      toolbar.setStatus('live');
      presence.welcome(Array.isArray(msg.presence) ? msg.presence : []);
    },
    snapshot(msg) {
      document.querySelector('#empty').textContent = 'This sheet has no rows yet.';
      const { holds } = applySnapshot(state, msg);
      grid.overlays.settle(msg.seq);
      grid.renderAll();
      grid.paintCells(holds);
      toolbar.updateHoldButton();
      panel.reload();
    },
    resync() {
      notify('info', 'Out of sync — reloading the whole sheet.');
    },
    updates(msg) {
      versions.applyUpdates(msg);
      const changes = applyUpdates(state, msg);
      if (!changes) return;
      if (msg.seq != null) grid.overlays.settle(msg.seq);
      grid.applyChanges(changes);
      toolbar.updateHoldButton();
      panel.applyUpdates(msg);
    },
    presence: (msg) => presence.onPresence(msg),
  },
});
const { submit } = connection;

const presence = createPresence({
  state,
  send: connection.send,
  peersMoved: (keys) => grid.paintCells(keys),
  reveal: (cellKey) => grid.reveal(cellKey),
});

const grid = createGrid({
  state,
  notify,
  submit,
  peersOn: presence.peersOn,
  colorOfName: presence.colorOfName,
  selectionChanged() {
    presence.queueCursor();
    toolbar.updateHoldButton();
    const sel = state.selection;
    const node = sel && state.nodes.get(sel.key);
    panel.setSelection(node || null, sel && sel.col !== NAME_COL && sel.col !== TOTAL_COL ? sel.col : null);
  },
  toggleHold: () => toolbar.toggleHold(),
  beginAction,
});

createDownload({ state, notify });

const toolbar = createToolbar({
  state,
  notify,
  submit,
  overlays: grid.overlays,
  isHeld: grid.isHeld,
  statusChanged: () => presence.render(),
  nameChanged: () => connection.reconnectNow('display name changed'),
  beginAction,
  measureChanged() {
    grid.closeEditor(false);
    grid.repaintAll();
    panel.measureChanged();
  },
  columnsChanged() {
    grid.closeEditor(false);
    grid.renderAll();
  },
});

const versions = createVersions({
  state,
  notify,
  beginAction,
  versionChanged() {
    grid.closeEditor(false);
    state.seq = null;        // a new snapshot, of the version now shown
    state.dataSeq = null;
    state.holds = new Map();
    connection.reconnectNow('version changed');
  },
  compareChanged(cellKeys) {
    if (cellKeys) grid.repaintCells(cellKeys);
    else grid.repaintAll();
  },
  lockChanged() {
    grid.closeEditor(false);
    undo.showRole();
  },
});

const undo = createUndo({ state, notify, submit, beginAction, focusGrid: () => grid.focus() });
const panel = createPanel({ state, submit, notify, beginAction, dataSeq: () => state.dataSeq });

grid.renderAll();
toolbar.updateHoldButton();
window.ducksheet = {
  state,
  lastSeq: () => state.seq,
  cell: (supplier, brand, family, month) => grid.cellTd(cellKeyOf(nodeKeyOf(supplier, brand, family), month)),
  socket: connection.socket,
};
connection.start();
versions.load();
