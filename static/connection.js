/*
 * ducksheet — the WebSocket to the server: hello (resuming with `since`), keep-alive
 * pings, reconnecting with backoff, and the requests (edits, holds) followed until the
 * server has applied or rejected them.
 *
 * Created by app.js with a context of:
 *   state       the client state: name and seq are read for hello, pending is kept here
 *   notify      (level, text) toast
 *   setStatus   (connecting | live | reconnecting)
 *   on          { welcome, snapshot, resync, updates, presence }: handlers of those frames
 *   onDrop      () called when the socket is gone (after pending requests were abandoned)
 *
 * The socket URL is ws(s)://<same host>/ws, or the query parameter ?ws=<url>.
 */

import { noteSeq, versionParam } from './model.js';
import { accessToken } from './util.js';

const PING_MS = 20000;
const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 10000;

export function createConnection(ctx) {
  const { state, notify, setStatus } = ctx;
  const conn = { ws: null, backoff: BACKOFF_MIN_MS, retryTimer: null, pingTimer: null, pingOutstanding: false };
  const clientTag = Math.random().toString(36).slice(2, 8);
  let requestCounter = 0;

  /* ---- Requests --------------------------------------------------------------------- */

  // `version` for requests and hello: the version shown (none for actual).
  const inVersion = () => (versionParam(state) ? { version: state.version } : {});

  // Sends an edit, block edit, hold, undo or redo with a fresh client id and follows it:
  // `onChange(request)` is called on queued, applied, rejected and on a lost connection
  // (status "lost"). `what` names it in messages ("Edit of Coach · Mar 2024"); `explain`
  // (error) → { level, text }, if given, words a rejection instead. Returns null when not connected.
  // Every request is of the version shown.
  function submit(message, what, onChange, explain = null) {
    const id = `${clientTag}-${Date.now().toString(36)}-${++requestCounter}`;
    if (!send({ ...message, ...inVersion(), id })) {
      notify('error', `Not connected — ${what} not sent.`);
      return null;
    }
    const request = { id, what, status: 'sent', request: null, seq: null, onChange, explain };
    state.pending.set(id, request);
    return request;
  }

  // Moves a pending request to a new status and tells its owner.
  function advance(id, status, fields) {
    const request = state.pending.get(id);
    if (!request) return null;
    if (status !== 'queued') state.pending.delete(id);
    Object.assign(request, { status }, fields);
    request.onChange(request);
    return request;
  }

  function abandonPending() {
    const unconfirmed = [...state.pending.keys()];
    unconfirmed.forEach((id) => advance(id, 'lost', {}));
    if (unconfirmed.length) {
      notify('warn', `Connection lost with ${unconfirmed.length} unconfirmed change(s); values refresh on reconnect.`);
    }
  }

  /* ---- Messages --------------------------------------------------------------------- */

  const handlers = {
    welcome(msg) {
      conn.backoff = BACKOFF_MIN_MS;
      ctx.on.welcome(msg);
    },
    snapshot: (msg) => ctx.on.snapshot(msg),
    resync: (msg) => ctx.on.resync(msg),
    updates: (msg) => ctx.on.updates(msg),
    presence: (msg) => ctx.on.presence(msg),
    queued(msg) {
      advance(msg.id, 'queued', { request: msg.request ?? null });
    },
    applied(msg) {
      noteSeq(state, msg.seq);
      advance(msg.id, 'applied', { seq: msg.seq ?? null });
    },
    rejected(msg) {
      const error = msg.error || {};
      const request = advance(msg.id, 'rejected', {});
      if (request && request.explain) {
        const { level, text } = request.explain(error);
        notify(level, text);
        return;
      }
      const reason = error.message || error.code || 'unknown reason';
      notify('error', `${request ? request.what : 'Request'} rejected: ${reason}`);
    },
    error(msg) {
      notify('error', `Server error${msg.code ? ` (${msg.code})` : ''}: ${msg.message || 'unknown'}`);
    },
    pong() {},
  };

  function onMessage(data) {
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      notify('error', 'Received a malformed message from the server.');
      return;
    }
    const handler = msg && Object.prototype.hasOwnProperty.call(handlers, msg.type) && handlers[msg.type];
    if (handler) handler(msg);
  }

  /* ---- The socket ------------------------------------------------------------------- */

  function socketUrl() {
    const override = new URLSearchParams(location.search).get('ws');
    if (override) return override;
    return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
  }

  function send(msg) {
    if (!conn.ws || conn.ws.readyState !== WebSocket.OPEN) return false;
    conn.ws.send(JSON.stringify(msg));
    return true;
  }

  function connect() {
    clearTimeout(conn.retryTimer);
    let ws;
    try {
      ws = new WebSocket(socketUrl());
    } catch (err) {
      notify('error', `Cannot open connection: ${err.message}`);
      scheduleReconnect();
      return;
    }
    conn.ws = ws;
    ws.addEventListener('open', () => {
      if (ws !== conn.ws) return;
      send({ type: 'hello', name: state.name, token: accessToken(), since: state.seq, ...inVersion() });
      conn.pingOutstanding = false;
      conn.pingTimer = setInterval(keepAlive, PING_MS);
    });
    ws.addEventListener('message', (event) => {
      if (ws !== conn.ws) return;
      conn.pingOutstanding = false;
      onMessage(event.data);
    });
    ws.addEventListener('close', () => {
      if (ws !== conn.ws) return;
      dropConnection();
      scheduleReconnect();
    });
  }

  // Pings every PING_MS; a connection that stayed silent for a whole period after a ping
  // is treated as dead (half-open TCP never fires `close` on its own).
  function keepAlive() {
    if (!conn.pingOutstanding) {
      conn.pingOutstanding = send({ type: 'ping' });
      return;
    }
    notify('warn', 'The server stopped answering — reconnecting.');
    abandonSocket('ping timeout');
    scheduleReconnect();
  }

  function dropConnection() {
    clearInterval(conn.pingTimer);
    conn.ws = null;
    abandonPending();
    ctx.onDrop();
  }

  // Forgets the current socket (its late `close` event is ignored) and closes it.
  function abandonSocket(reason) {
    const old = conn.ws;
    dropConnection();
    if (old) old.close(1000, reason);
  }

  function scheduleReconnect() {
    setStatus('reconnecting');
    conn.retryTimer = setTimeout(connect, conn.backoff);
    conn.backoff = Math.min(conn.backoff * 2, BACKOFF_MAX_MS);
  }

  // Used when the display name or the version shown changes: close deliberately and say
  // hello again at once.
  function reconnectNow(reason) {
    abandonSocket(reason);
    conn.backoff = BACKOFF_MIN_MS;
    setStatus('connecting');
    connect();
  }

  function start() {
    setStatus('connecting');
    connect();
  }

  return { start, send, submit, reconnectNow, socket: () => conn.ws };
}
