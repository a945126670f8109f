/*
 * ducksheet — who else is on the sheet: the pills in #presence (li.me is you) and the
 * other users' cursors, sent as `cursor` (throttled) and received as `presence`.
 *
 * Created by app.js with a context of:
 *   state        the client state: me, user, name, status, selection, nodes; peers is kept here
 *   send         (message) → false when not connected
 *   peersMoved   (cell keys) the cells whose outline may have changed
 *   reveal       (cell key) expand to a cell and select it (clicking a pill)
 */

import { cellCondition, cellKeyOfCell, cellLabel } from './model.js';
import { el, plural } from './util.js';

const CURSOR_MS = 100;             // at most ~10 cursor messages a second
const PEER_COLORS = ['#e11d48', '#7c3aed', '#0891b2', '#ea580c', '#16a34a', '#db2777', '#4f46e5', '#ca8a04'];

export function createPresence(ctx) {
  const { state } = ctx;
  const list = document.querySelector('#presence');
  const cursor = { timer: null, lastAt: 0, lastSent: undefined };
  let peerCells = new Map();       // cell key -> peers on it

  function colorOf(id) {
    const n = Number(/\d+/.exec(String(id))?.[0] ?? 0);
    return PEER_COLORS[n % PEER_COLORS.length];
  }

  // The cell the selection is on, as sent in `cursor` (a node name counts as its Total).
  function cursorCell() {
    const sel = state.selection;
    const node = sel && state.nodes.get(sel.key);
    return node ? cellCondition(node, sel.col) : null;
  }

  // Sends the cursor now if it changed; `force` re-announces it (after welcome).
  function sendCursor(force) {
    cursor.timer = null;
    const cell = cursorCell();
    const text = JSON.stringify(cell);
    if (text === cursor.lastSent && !force) return;
    if (ctx.send({ type: 'cursor', cell })) {
      cursor.lastSent = text;
      cursor.lastAt = Date.now();
    }
  }

  // Throttles cursor messages to one per CURSOR_MS; the last position always goes out.
  function queueCursor() {
    if (cursor.timer) return;
    cursor.timer = setTimeout(() => sendCursor(false), Math.max(0, cursor.lastAt + CURSOR_MS - Date.now()));
  }

  function setPeers(peers) {
    state.peers = new Map();
    peers.forEach((p) => state.peers.set(p.id, { ...p, color: colorOf(p.id) }));
    peersChanged();
  }

  function onPresence(msg) {
    if (msg.id === state.me) return;
    if (msg.gone) state.peers.delete(msg.id);
    else state.peers.set(msg.id, { id: msg.id, name: msg.name, cell: msg.cell ?? null, color: colorOf(msg.id) });
    peersChanged();
  }

  // Recomputes which cells carry someone's outline, repaints them and the header list.
  function peersChanged() {
    const before = [...peerCells.keys()];
    peerCells = new Map();
    state.peers.forEach((peer) => {
      if (!peer.cell) return;
      const key = cellKeyOfCell(peer.cell);
      peerCells.set(key, [...(peerCells.get(key) || []), peer]);
    });
    ctx.peersMoved([...new Set([...before, ...peerCells.keys()])]);
    render();
  }

  function item(id, name, color, where) {
    const li = el('li');
    li.dataset.id = id;
    const dot = el('span', 'peer-dot');
    dot.style.background = color;
    li.append(dot, el('span', 'peer-name', name));
    li.title = where;
    return li;
  }

  function render() {
    const items = [];
    if (state.me && state.status === 'live') {
      const me = item(state.me, `${state.user ?? state.name} (you)`, colorOf(state.me), 'you');
      me.classList.add('me');
      items.push(me);
    }
    state.peers.forEach((peer) => {
      const where = peer.cell ? `on ${cellLabel(state, cellKeyOfCell(peer.cell))} — click to go there` : 'no cell selected';
      const li = item(peer.id, peer.name, peer.color, where);
      if (peer.cell) li.addEventListener('click', () => ctx.reveal(cellKeyOfCell(peer.cell)));
      items.push(li);
    });
    list.replaceChildren(...items);
    list.setAttribute('aria-label', `${plural(items.length, 'user')} connected`);
  }

  // After welcome: everyone already there, and where this user is.
  function welcome(peers) {
    setPeers(peers);
    sendCursor(true);
  }

  // The connection is gone: nobody is known to be here any more.
  function clear() {
    clearTimeout(cursor.timer);
    cursor.timer = null;
    setPeers([]);
  }

  return {
    welcome,
    clear,
    onPresence,
    render,
    queueCursor,
    peersOn: (cellKey) => peerCells.get(cellKey),
    // The colour of a connected user by name (changes name their author, not their id).
    colorOfName: (name) => [...state.peers.values()].find((peer) => peer.name === name)?.color ?? null,
  };
}
