/*
 * ducksheet — the panel under the grid: the `sales` rows below the selected node, and the
 * analytics reports. Created by app.js, which passes `submit` (send an edit over the
 * WebSocket and follow it), `notify` (toast) and `dataSeq` (seq of the data shown).
 *
 * Sales rows: the sales table has no supplier/brand/family columns and /view_table only
 * takes equality conditions on a table's own columns, so the panel lists the node's
 * products (GET /view_table/product?condition={supplier,brand,family}) and pages through
 * the sales of one picked product (GET /view_table/sales?condition={"product_id":N}).
 * quantity, net_price and invoice_date are edited with the same `edit` message as the
 * grid; changed rows come back in `updates.base` and the grid shows the roll-up.
 * Reports: GET /reports lists them, GET /reports/{name}?start_date&end_date… runs one; a
 * server without them (404) shows "Reports are unavailable".
 *
 * Test hooks: #panel[data-pane="sales|reports"] (hidden when closed), button[data-panel],
 * #sales-node, #sales-product > option[value=product_id], #sales-range, #sales-message,
 * #sales-table tr[data-sale="<sale_id>"] > td[data-col="<column>"] (td.editable,
 * td.pending, td.flash, tr.in-month; editor input.editor), #report-name, #report-run,
 * #report-table, #report-message.
 */

import { KIND, Overlays, el, errorText, formatAny, formatValue, getJson, parseValue, plural, rawValue } from './util.js';

/* ---- Constants and state ------------------------------------------------------------ */

const SALES_PAGE = 50;
const PRODUCT_LIMIT = 1000;
const REPORT_ROWS_SHOWN = 1000;
const FOLLOW_DELAY_MS = 150;          // wait for the selection to rest before fetching
const EDITABLE = new Set(['quantity', 'net_price', 'invoice_date']);
const NUMERIC = new Set(['sale_id', 'product_id', 'customer_id', 'quantity', 'net_price']);

let ctx = null;                        // { submit, notify, dataSeq } from app.js
let overlays = null;                   // own unconfirmed sales edits, "<sale_id>#<column>"
const dom = {};
const panel = { open: null };          // null | 'sales' | 'reports'

const sales = {
  node: null,                          // the grid node whose sales are shown
  month: null,                         // selected grid month, highlighted in the rows
  loadedKey: null,                     // node key the product list belongs to
  products: [],
  productId: null,
  offset: 0,
  total: 0,
  columns: [],
  rows: new Map(),                     // sale_id -> row of the current page
  cells: new Map(),                    // "<sale_id>#<column>" -> <td>
  token: 0,                            // newest request; older responses are ignored
  followTimer: null,
  editor: null,                        // { key, saleId, column, input, initial }
};

const reports = { list: null, token: 0 };

/* ---- Small helpers ------------------------------------------------------------------ */

async function fetchJson(path, params) {
  try {
    return await getJson(path, params);
  } catch (err) {
    return { status: 0, body: { error: { message: `network error: ${err.message}` } } };
  }
}

function tableHead(table, columns, numeric) {
  const tr = el('tr');
  columns.forEach((c) => {
    const th = el('th', numeric(c) ? 'num' : '', c);
    th.scope = 'col';
    tr.append(th);
  });
  table.tHead.replaceChildren(tr);
}

function setMessage(target, text) {
  target.textContent = text;
  target.hidden = !text;
}

/* ---- Opening and closing ------------------------------------------------------------ */

function openPane(name) {
  panel.open = name === panel.open ? null : name;
  dom.panel.hidden = !panel.open;
  dom.panel.dataset.pane = panel.open || '';
  dom.salesPane.hidden = panel.open !== 'sales';
  dom.reportsPane.hidden = panel.open !== 'reports';
  dom.openButtons.forEach((b) => b.setAttribute('aria-pressed', String(b.dataset.panel === panel.open)));
  if (panel.open === 'sales') followSelection(true);
  if (panel.open === 'reports' && !reports.list) loadCatalog();
}

/* ---- Sales rows: following the grid's selection ------------------------------------- */

function nodePath(node) {
  return [node.supplier, node.brand, node.family].filter((p) => p != null).join(' › ') || 'All products';
}

function nodeCondition(node) {
  const condition = {};
  ['supplier', 'brand', 'family'].forEach((c) => { if (node[c] != null) condition[c] = node[c]; });
  return Object.keys(condition).length ? condition : null;
}

function setSelection(node, month) {
  sales.node = node;
  if (month !== sales.month) {
    sales.month = month;
    sales.rows.forEach((row) => paintMonth(row));
  }
  if (panel.open === 'sales') followSelection(false);
}

// Loads the products of the selected node once the selection rests (at once if `now`).
function followSelection(now) {
  clearTimeout(sales.followTimer);
  if (!sales.node) {
    clearSales('Select a row in the grid to see its sales rows.');
    return;
  }
  if (sales.node.key === sales.loadedKey && !now) return;
  sales.followTimer = setTimeout(loadProducts, now ? 0 : FOLLOW_DELAY_MS);
}

async function loadProducts() {
  const node = sales.node;
  const token = ++sales.token;
  dom.salesNode.textContent = nodePath(node);
  const result = await fetchJson('/view_table/product', {
    condition: nodeCondition(node), limit: PRODUCT_LIMIT, order: 'product_name,product_id',
  });
  if (token !== sales.token) return;
  if (result.status !== 200) {
    clearSales(`Could not load the products: ${errorText(result)}`);
    return;
  }
  const data = result.body.data;
  sales.loadedKey = node.key;
  sales.products = data.rows;
  const kept = data.rows.some((p) => p.product_id === sales.productId);
  sales.productId = kept ? sales.productId : data.rows[0]?.product_id ?? null;
  renderProducts(data.total);
  loadSales(0);
}

function renderProducts(total) {
  const options = sales.products.map((p) => {
    const option = el('option', '', `${p.product_name} (#${p.product_id})`);
    option.value = String(p.product_id);
    return option;
  });
  dom.salesProduct.replaceChildren(...options);
  dom.salesProduct.value = sales.productId == null ? '' : String(sales.productId);
  dom.salesProduct.disabled = !options.length;
  dom.salesProduct.title = total > options.length
    ? `the first ${options.length} of ${plural(total, 'product')}` : plural(total, 'product');
}

/* ---- Sales rows: one product's page ------------------------------------------------- */

async function loadSales(offset) {
  closeSaleEditor(false);
  if (sales.productId == null) {
    clearSales(`No products under ${nodePath(sales.node)}.`);
    return;
  }
  const token = ++sales.token;
  const result = await fetchJson('/view_table/sales', {
    condition: { product_id: sales.productId }, limit: SALES_PAGE, offset, order: 'invoice_date,sale_id',
  });
  if (token !== sales.token) return;
  if (result.status !== 200) {
    clearSales(`Could not load the sales rows: ${errorText(result)}`);
    return;
  }
  const data = result.body.data;
  sales.offset = offset;
  sales.total = data.total;
  sales.columns = data.columns;
  sales.rows = new Map(data.rows.map((row) => [row.sale_id, row]));
  renderSales();
}

function clearSales(message) {
  closeSaleEditor(false);
  sales.rows = new Map();
  sales.cells = new Map();
  sales.total = 0;
  dom.salesTable.tBodies[0].replaceChildren();
  dom.salesTable.hidden = true;
  dom.salesRange.textContent = '';
  dom.salesPrev.disabled = true;
  dom.salesNext.disabled = true;
  if (!sales.node) dom.salesNode.textContent = '';
  setMessage(dom.salesMessage, message);
}

function renderSales() {
  sales.cells = new Map();
  tableHead(dom.salesTable, sales.columns, (c) => NUMERIC.has(c));
  const rows = [...sales.rows.values()].map(saleRow);
  dom.salesTable.tBodies[0].replaceChildren(...rows);
  dom.salesTable.hidden = !rows.length;
  setMessage(dom.salesMessage, rows.length ? '' : 'This product has no sales rows.');
  const last = sales.offset + rows.length;
  dom.salesRange.textContent = rows.length ? `${sales.offset + 1}–${last} of ${sales.total}` : '';
  dom.salesPrev.disabled = sales.offset === 0;
  dom.salesNext.disabled = last >= sales.total;
}

function saleRow(row) {
  const tr = el('tr');
  tr.dataset.sale = String(row.sale_id);
  sales.columns.forEach((column) => {
    const td = el('td', NUMERIC.has(column) ? 'num' : '');
    td.dataset.col = column;
    if (EDITABLE.has(column)) {
      td.classList.add('editable');
      td.tabIndex = 0;
    }
    td.append(el('span'));
    sales.cells.set(`${row.sale_id}#${column}`, td);
    paintSaleCell(td, row);
    tr.append(td);
  });
  paintMonth(row, tr);
  return tr;
}

function saleValue(row, column) {
  const overlay = overlays.get(`${row.sale_id}#${column}`);
  return overlay ? overlay.value : row[column];
}

function paintSaleCell(td, row) {
  const column = td.dataset.col;
  const overlay = overlays.get(`${row.sale_id}#${column}`);
  const value = saleValue(row, column);
  td.firstChild.textContent = KIND[column] ? formatValue(value, KIND[column]) : String(value ?? '');
  td.classList.toggle('pending', Boolean(overlay) && overlay.status !== 'applied');
  td.title = EDITABLE.has(column) ? 'Double-click or Enter to edit' : '';
}

function repaintSaleKey(key) {
  const td = sales.cells.get(key);
  const row = sales.rows.get(Number(key.slice(0, key.indexOf('#'))));
  if (td && row) paintSaleCell(td, row);
}

function paintMonth(row, tr = dom.salesTable.querySelector(`tr[data-sale="${row.sale_id}"]`)) {
  if (tr) tr.classList.toggle('in-month', Boolean(sales.month) && String(row.invoice_date).startsWith(sales.month));
}

/* ---- Sales rows: live updates ------------------------------------------------------- */

// Replaces the shown rows that changed (`updates.base`) and flashes what moved.
function applyUpdates(msg) {
  const changed = [];
  (msg.base || []).forEach((row) => {
    if (row.table !== 'sales' || !sales.rows.has(row.sale_id)) return;
    const before = sales.rows.get(row.sale_id);
    sales.rows.set(row.sale_id, row);
    sales.columns.forEach((c) => { if (before[c] !== row[c]) changed.push(`${row.sale_id}#${c}`); });
    paintMonth(row);
  });
  if (msg.seq != null) overlays.settle(msg.seq);
  changed.forEach(repaintSaleKey);
  flashSales(changed);
  if (msg.base_truncated && panel.open === 'sales' && sales.rows.size) loadSales(sales.offset);
}

function flashSales(keys) {
  const tds = keys.map((k) => sales.cells.get(k)).filter(Boolean);
  tds.forEach((td) => td.classList.remove('flash'));
  if (tds.length) void dom.salesTable.offsetWidth;
  tds.forEach((td) => td.classList.add('flash'));
}

// After a snapshot (first load, resync) everything may have changed: fetch again.
function reload() {
  if (panel.open === 'sales' && sales.node) followSelection(true);
}

/* ---- Sales rows: editing ------------------------------------------------------------ */

function startSaleEdit(td) {
  const row = sales.rows.get(Number(td.parentNode.dataset.sale));
  const column = td.dataset.col;
  if (!row || !EDITABLE.has(column)) return;
  closeSaleEditor(false);
  const initial = rawValue(saleValue(row, column), KIND[column]);
  const input = el('input', 'editor');
  input.value = initial;
  input.spellcheck = false;
  input.autocomplete = 'off';
  input.setAttribute('aria-label', `New ${column} of sale ${row.sale_id}`);
  input.addEventListener('keydown', onSaleEditorKey);
  input.addEventListener('blur', () => setTimeout(() => {
    if (sales.editor && sales.editor.input === input) commitSaleEdit(true);
  }, 0));
  sales.editor = { saleId: row.sale_id, column, input, initial, td };
  td.classList.add('editing');
  td.append(input);
  input.focus();
  input.select();
}

function onSaleEditorKey(event) {
  event.stopPropagation();
  if (event.key === 'Enter') commitSaleEdit(false);
  else if (event.key === 'Escape') closeSaleEditor(true);
  else return;
  event.preventDefault();
}

function commitSaleEdit(fromBlur) {
  const editor = sales.editor;
  const text = editor.input.value;
  if (text.trim() !== editor.initial) {
    const parsed = parseValue(text, KIND[editor.column]);
    if (parsed.error) {
      ctx.notify('error', fromBlur ? `${parsed.error} Edit discarded.` : parsed.error);
      if (fromBlur) closeSaleEditor(false);
      else editor.input.select();
      return;
    }
    sendSaleEdit(editor, parsed.value);
  }
  closeSaleEditor(!fromBlur);
}

function closeSaleEditor(refocus) {
  const editor = sales.editor;
  if (!editor) return;
  sales.editor = null;
  editor.input.remove();
  editor.td.classList.remove('editing');
  if (refocus) editor.td.focus();
}

function sendSaleEdit(editor, value) {
  const key = `${editor.saleId}#${editor.column}`;
  const request = ctx.submit({
    type: 'edit', table: 'sales', column: editor.column, value, condition: { sale_id: editor.saleId },
  }, `Edit of sale ${editor.saleId} (${editor.column})`, (r) => overlays.follow(key, r));
  if (!request) return;
  request.value = value;
  overlays.show(key, request);
}

function onSalesKeyDown(event) {
  const td = event.target.closest('td.editable');
  if (!td || sales.editor) return;
  if (event.key === 'Enter' || event.key === 'F2') {
    event.preventDefault();
    startSaleEdit(td);
  }
}

function onSalesDoubleClick(event) {
  const td = event.target.closest('td.editable');
  if (td && !event.target.closest('input')) startSaleEdit(td);
}

/* ---- Reports ------------------------------------------------------------------------ */

async function loadCatalog() {
  setMessage(dom.reportMessage, 'Loading reports…');
  const result = await fetchJson('/reports');
  if (result.status === 404) {
    reportsUnavailable('Reports are unavailable on this server (GET /reports answered 404).');
    return;
  }
  if (result.status !== 200) {
    reportsUnavailable(`Reports are unavailable: ${errorText(result)}`);
    return;
  }
  const data = result.body.data;
  reports.list = Array.isArray(data) ? data : data.reports || [];
  dom.reportName.replaceChildren(...reports.list.map((r) => {
    const option = el('option', '', r.name);
    option.value = r.name;
    return option;
  }));
  dom.reportName.disabled = false;
  dom.reportRun.disabled = !reports.list.length;
  showReportForm();
  if (reports.list.length) runReport();
  else setMessage(dom.reportMessage, 'The server has no reports.');
}

function reportsUnavailable(text) {
  dom.reportName.disabled = true;
  dom.reportRun.disabled = true;
  dom.reportTable.hidden = true;
  setMessage(dom.reportMessage, text);
}

function currentReport() {
  return (reports.list || []).find((r) => r.name === dom.reportName.value) || null;
}

// One input per report parameter: dates as date pickers, integers as number fields.
function showReportForm() {
  const report = currentReport();
  dom.reportDescription.textContent = report ? report.description : '';
  const fields = (report ? report.parameters : []).map((param) => {
    const label = el('label', 'field');
    label.title = param.description || '';
    const input = el('input');
    input.name = param.name;
    input.type = param.type === 'date' ? 'date' : 'number';
    if (param.type !== 'date') {
      if (param.min != null) input.min = String(param.min);
      if (param.max != null) input.max = String(param.max);
      if (param.default != null) input.placeholder = String(param.default);
    }
    label.append(el('span', '', param.name.replace(/_/g, ' ')), input);
    return label;
  });
  dom.reportParams.replaceChildren(...fields);
}

function reportParams() {
  const params = {};
  dom.reportParams.querySelectorAll('input').forEach((input) => { params[input.name] = input.value; });
  return params;
}

async function runReport() {
  const report = currentReport();
  if (!report) return;
  const token = ++reports.token;
  const params = reportParams();
  const path = `/reports/${encodeURIComponent(report.name)}`;
  setMessage(dom.reportMessage, 'Running…');
  const result = await fetchJson(path, params);
  if (token !== reports.token) return;
  if (result.status !== 200) {
    dom.reportTable.hidden = true;
    setMessage(dom.reportMessage, `The report failed: ${errorText(result)}`);
    return;
  }
  const query = new URLSearchParams({ ...params, format: 'csv' });
  [...query.keys()].filter((k) => !query.get(k)).forEach((k) => query.delete(k));
  dom.reportCsv.href = `${path}?${query}`;
  dom.reportCsv.hidden = false;
  renderReport(result.body.data);
}

function renderReport(data) {
  const rows = data.rows || [];
  const numeric = (c) => rows.some((r) => typeof r[c] === 'number');
  tableHead(dom.reportTable, data.columns, numeric);
  dom.reportTable.tBodies[0].replaceChildren(...rows.slice(0, REPORT_ROWS_SHOWN).map((row) => {
    const tr = el('tr');
    data.columns.forEach((c) => tr.append(el('td', typeof row[c] === 'number' ? 'num' : '', formatAny(row[c]))));
    return tr;
  }));
  dom.reportTable.hidden = !rows.length;
  const more = rows.length > REPORT_ROWS_SHOWN ? ` (the first ${REPORT_ROWS_SHOWN} shown; CSV has all)` : '';
  setMessage(dom.reportMessage, rows.length ? '' : 'No rows for these parameters.');
  dom.reportCount.textContent = `${plural(rows.length, 'row')}${more}`;
}

/* ---- Setup -------------------------------------------------------------------------- */

function bindDom() {
  const $ = (sel) => document.querySelector(sel);
  Object.assign(dom, {
    panel: $('#panel'), salesPane: $('#sales-pane'), reportsPane: $('#reports-pane'),
    openButtons: [...document.querySelectorAll('button[data-panel]')],
    closeButtons: [...document.querySelectorAll('#panel .panel-close')],
    salesNode: $('#sales-node'), salesProduct: $('#sales-product'), salesRange: $('#sales-range'),
    salesPrev: $('#sales-prev'), salesNext: $('#sales-next'), salesTable: $('#sales-table'),
    salesMessage: $('#sales-message'),
    reportName: $('#report-name'), reportParams: $('#report-params'), reportRun: $('#report-run'),
    reportCsv: $('#report-csv'), reportDescription: $('#report-description'),
    reportTable: $('#report-table'), reportMessage: $('#report-message'), reportCount: $('#report-count'),
  });
}

function bindEvents() {
  dom.openButtons.forEach((b) => b.addEventListener('click', () => openPane(b.dataset.panel)));
  dom.closeButtons.forEach((b) => b.addEventListener('click', () => openPane(panel.open)));
  dom.salesProduct.addEventListener('change', () => {
    sales.productId = Number(dom.salesProduct.value);
    loadSales(0);
  });
  dom.salesPrev.addEventListener('click', () => loadSales(Math.max(0, sales.offset - SALES_PAGE)));
  dom.salesNext.addEventListener('click', () => loadSales(sales.offset + SALES_PAGE));
  dom.salesTable.addEventListener('dblclick', onSalesDoubleClick);
  dom.salesTable.addEventListener('keydown', onSalesKeyDown);
  dom.salesTable.addEventListener('animationend', (e) => {
    if (e.animationName === 'flash') e.target.classList.remove('flash');
  });
  dom.reportName.addEventListener('change', () => {
    showReportForm();
    runReport();
  });
  dom.reportRun.addEventListener('click', runReport);
  dom.reportParams.addEventListener('keydown', (e) => { if (e.key === 'Enter') runReport(); });
}

export function createPanel(context) {
  ctx = context;
  overlays = new Overlays(repaintSaleKey, ctx.dataSeq);
  bindDom();
  bindEvents();
  clearSales('Select a row in the grid to see its sales rows.');
  return { setSelection, applyUpdates, reload };
}
