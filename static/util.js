/*
 * ducksheet — small helpers shared by the grid and the panel: DOM construction,
 * Redis-stream seq comparison, number/date formatting and parsing, and JSON fetching. No state, no side effects beyond the DOM nodes they create.
 */

/* ---- DOM ---------------------------------------------------------------------------- */

export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// A <thead> row of column names; `numeric(column)` right-aligns a column.
export function tableHead(table, columns, numeric) {
  const tr = el('tr');
  columns.forEach((c) => {
    const th = el('th', numeric(c) ? 'num' : '', c);
    th.scope = 'col';
    tr.append(th);
  });
  table.tHead.replaceChildren(tr);
}

// A message element that hides itself when empty.
export function setMessage(target, text) {
  target.textContent = text;
  target.hidden = !text;
}

export const clamp = (v, lo, hi) => Math.max(lo, Math.min(hi, v));

export function plural(count, noun) {
  return `${count} ${noun}${count === 1 ? '' : 's'}`;
}

/* ---- Seq handling: Redis stream ids "<ms>-<n>", compared numerically ---------------- */

function seqParts(seq) {
  const m = /^(\d+)(?:-(\d+))?$/.exec(String(seq));
  return m ? [BigInt(m[1]), BigInt(m[2] || 0)] : [-1n, -1n];
}

// Orders seqs numerically; null sorts first.
export function compareSeq(a, b) {
  if (a == null || b == null) return (a == null ? 0 : 1) - (b == null ? 0 : 1);
  const [am, an] = seqParts(a);
  const [bm, bn] = seqParts(b);
  if (am !== bm) return am < bm ? -1 : 1;
  if (an !== bn) return an < bn ? -1 : 1;
  return 0;
}

/* ---- Values: kinds, formatting and parsing ------------------------------------------ */

// How each editable column is formatted and parsed.
export const KIND = Object.freeze({
  net_amount: 'money', net_price: 'money', quantity: 'integer', invoice_date: 'date',
});

const MAX_ABS_VALUE = 1e13;
const MONTH_NAMES = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun',
  'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const FORMAT = Object.freeze({
  money: new Intl.NumberFormat('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 2 }),
  integer: new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 }),
  decimal: new Intl.NumberFormat('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 4 }),
});

export function formatValue(value, kind) {
  if (value === null || value === undefined || value === '') return '';
  if (kind === 'date') return String(value);
  const n = Number(value);
  return Number.isFinite(n) ? FORMAT[kind].format(n || 0) : String(value);
}

const COMPACT = Object.freeze([[1e9, 'B'], [1e6, 'M'], [1e3, 'K']]);

// A short form for narrow columns: 14,463,267.89 → "14.46M", 12,500 → "12.5K".
export function formatCompact(value, kind) {
  if (value === null || value === undefined || value === '' || kind === 'date') return formatValue(value, kind);
  const n = Number(value);
  const step = COMPACT.find(([size]) => Math.abs(n) >= size);
  if (!Number.isFinite(n) || !step) return formatValue(value, kind === 'money' ? 'integer' : kind);
  const scaled = n / step[0];
  const digits = Math.abs(scaled) >= 100 ? 1 : 2;
  return `${Number(scaled.toFixed(digits))}${step[1]}`;
}

const MONEY_COLUMN = /amount|price|revenue|^total$|^(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)$|change_from_previous/;
const PLAIN_COLUMN = /^(year|level|rank|month_of_year)$|_id$/;

// How a report column's numbers read, from its name: share_* as percentages, money with
// 2 decimals, years/ranks/ids as they are, other whole numbers with separators.
export function reportFormatter(column) {
  if (column.startsWith('share_')) {
    return (v) => (typeof v === 'number' ? `${FORMAT.money.format(v * 100)} %` : formatAny(v));
  }
  if (MONEY_COLUMN.test(column)) return (v) => (typeof v === 'number' ? formatValue(v, 'money') : formatAny(v));
  if (PLAIN_COLUMN.test(column)) return (v) => (v === null || v === undefined ? '' : String(v));
  return formatAny;
}

// Any other JSON value of a report cell: numbers formatted, everything else as text.
export function formatAny(value) {
  if (value === null || value === undefined) return '';
  if (typeof value !== 'number') return String(value);
  return formatValue(value, Number.isInteger(value) ? 'integer' : 'decimal');
}

// Plain text put into an editor: no separators, so it can be edited directly.
export function rawValue(value, kind) {
  if (value === null || value === undefined) return '';
  if (kind === 'date') return String(value);
  const n = Number(value);
  return kind === 'integer' ? String(Math.round(n)) : n.toFixed(2);
}

function parseDate(s) {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(s);
  const date = m && new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3])));
  if (!date || date.toISOString().slice(0, 10) !== s) return { error: `"${s}" is not a date (YYYY-MM-DD).` };
  return { value: s };
}

// Accepts "1234.5", "1,234.5", "-12", "+3"; commas must be real thousands separators.
// Returns { value } or { error } with a message for the user.
export function parseValue(text, kind) {
  const s = text.trim().replace(/[\s\u00a0\u202f]/g, '');
  if (kind === 'date') return parseDate(s);
  if (!s) return { error: 'Enter a number.' };
  if (!/^[-+]?(?:\d{1,3}(?:,\d{3})+|\d*)(?:\.\d*)?$/.test(s) || !/\d/.test(s)) {
    return { error: `"${text.trim()}" is not a number (use e.g. 1,234.50).` };
  }
  const value = Number(s.replace(/,/g, ''));
  const decimals = (s.split('.')[1] || '').length;
  if (!Number.isFinite(value) || Math.abs(value) >= MAX_ABS_VALUE) return { error: 'Value is too large.' };
  if (kind === 'integer' && !Number.isInteger(value)) return { error: 'Quantity must be a whole number.' };
  if (kind === 'money' && decimals > 2) return { error: 'Amounts allow at most 2 decimals.' };
  return { value: kind === 'integer' ? value || 0 : Number(value.toFixed(2)) || 0 };
}

// "+5%", "-3.5 %", "5%": a change in percent of a cell (spread 'percent'); null when the
// text is not a percent, { error } when it is one the server would refuse.
export function parsePercent(text) {
  const m = /^([-+]?)\s*(\d+(?:\.\d*)?)\s*%$/.exec(text.trim());
  if (!m) return null;
  if ((m[2].split('.')[1] || '').length > 4) return { error: 'A percent allows at most 4 decimals.' };
  const value = Number(m[2]) * (m[1] === '-' ? -1 : 1);
  if (value < -100) return { error: 'A cell can go down by 100 % at most.' };
  if (value > 10000) return { error: 'A cell can go up by 10,000 % at most.' };
  return { value };
}

// What a cell of `current` shows after a change of `percent` (the server's rounding:
// half away from zero), while the edit is on its way.
export function afterPercent(current, percent, kind) {
  const units = kind === 'integer' ? 1 : 100;
  const exact = Number(current || 0) * units * (1 + percent / 100);
  return (Math.sign(exact) * Math.round(Math.abs(exact))) / units;
}

// "just now", "5 min ago", "3 h ago", "2 days ago", then the date, for an ISO time;
// '' when it is missing or not a time. A time ahead of this clock counts as now.
export function relativeTime(iso, now = Date.now()) {
  const at = iso ? Date.parse(iso) : NaN;
  if (!Number.isFinite(at)) return '';
  const seconds = Math.max(0, (now - at) / 1000);
  if (seconds < 45) return 'just now';
  if (seconds < 3600) return `${Math.max(1, Math.floor(seconds / 60))} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  if (seconds < 7 * 86400) return `${plural(Math.floor(seconds / 86400), 'day')} ago`;
  return new Date(at).toISOString().slice(0, 10);
}

export function monthLabel(month) {
  const quarter = /^(\d{4})-(Q[1-4])$/.exec(month);
  if (quarter) return `${quarter[2]} ${quarter[1]}`;
  if (/^\d{4}$/.test(month)) return `FY ${month}`;
  const m = /^(\d{4})-(\d{2})$/.exec(month);
  const name = m && MONTH_NAMES[Number(m[2]) - 1];
  return name ? `${name} ${m[1]}` : month;
}

/* ---- Access token ------------------------------------------------------------------ */

// A server with tokens is opened as /#token=<token>: the fragment never reaches the
// server in a URL; the token is kept for this tab and sent in hello and as Bearer.
export function accessToken() {
  const match = window.location.hash.match(/token=([^&]+)/);
  if (match) {
    sessionStorage.setItem('ducksheet.token', decodeURIComponent(match[1]));
    history.replaceState(null, '', window.location.pathname + window.location.search);
  }
  return sessionStorage.getItem('ducksheet.token');
}

/* ---- HTTP --------------------------------------------------------------------------- */

// A request to a JSON endpoint with the access token: { status, body } (body null when
// it is not JSON). Throws only on network failure.
async function requestJson(url, init = {}) {
  const headers = { Accept: 'application/json', ...init.headers };
  const token = accessToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(url, { ...init, headers });
  let body = null;
  try {
    body = await response.json();
  } catch { /* not JSON: callers report the status */ }
  return { status: response.status, body };
}

// A network failure as status 0, its message as the error.
async function orNetworkError(request) {
  try {
    return await request;
  } catch (err) {
    return { status: 0, body: { error: { message: `network error: ${err.message}` } } };
  }
}

// GET a JSON endpoint with query parameters (objects as JSON): { status, body }. Throws
// only on network failure.
export async function getJson(path, params = {}) {
  const query = new URLSearchParams();
  Object.entries(params).forEach(([k, v]) => {
    if (v !== null && v !== undefined && v !== '') query.set(k, typeof v === 'object' ? JSON.stringify(v) : String(v));
  });
  return requestJson(query.toString() ? `${path}?${query}` : path);
}

// getJson, with a network failure as status 0 and its message as the error.
export function fetchJson(path, params) {
  return orNetworkError(getJson(path, params));
}

// POST {"data": data} to a JSON endpoint: { status, body }, a network failure as fetchJson.
export function postJson(path, data) {
  const init = { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ data }) };
  return orNetworkError(requestJson(path, init));
}

// The server's error message of a failed response, for the user.
export function errorText(result) {
  const error = result.body && result.body.error;
  return error ? error.message || error.code : `HTTP ${result.status}`;
}

/* ---- Overlays: own values shown until the server confirms them ---------------------- */

const SETTLE_MS = 3000;

// Values of own requests (edits, holds) keyed by whatever the owner paints, shown from
// sending until the data that contains them arrives. `repaint(key)` redraws a key;
// `dataSeq()` is the seq of the data currently shown.
export class Overlays {
  constructor(repaint, dataSeq) {
    this.entries = new Map();
    this.repaint = repaint;
    this.dataSeq = dataSeq;
  }

  get(key) {
    return this.entries.get(key);
  }

  show(key, request) {
    this.entries.set(key, request);
    this.repaint(key);
  }

  // Follows a request's status: a rejected or lost one disappears at once, an applied one
  // once the shown data reaches its seq (or after SETTLE_MS, should that never come).
  follow(key, request) {
    if (request.status === 'rejected' || request.status === 'lost') {
      this.drop(key, request);
    } else if (request.status === 'applied' && compareSeq(this.dataSeq(), request.seq) >= 0) {
      this.drop(key, request);
    } else {
      if (request.status === 'applied') setTimeout(() => this.drop(key, request), SETTLE_MS);
      this.repaint(key);
    }
  }

  // New data up to `seq` arrived: applied requests it contains are no longer needed.
  settle(seq) {
    this.entries.forEach((request, key) => {
      if (request.status === 'applied' && compareSeq(request.seq, seq) <= 0) this.drop(key, request);
    });
  }

  drop(key, request) {
    if (this.entries.get(key) !== request) return;
    this.entries.delete(key);
    this.repaint(key);
  }
}
