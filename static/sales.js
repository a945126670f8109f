/*
 * ducksheet — the sales rows pane of the panel: the `sales` rows below the grid's selected
 * node. The sales table has no supplier/brand/family columns and /view_table only takes
 * equality conditions on a table's own columns, so the pane lists the node's products
 * (GET /view_table/product?condition={supplier,brand,family}) and pages through the sales
 * of one picked product (GET /view_table/sales?condition={"product_id":N}). quantity,
 * net_price and invoice_date are edited with the same `edit` message as the grid; changed
 * rows come back in `updates.base` and the grid shows the roll-up.
 *
 * Created by panel.js with `submit`, `notify`, `beginAction`, `dataSeq` (see app.js) and
 * `isOpen()`.
 */

import { versionOf, versionParam } from './model.js';
import {
  KIND, Overlays, el, errorText, fetchJson, formatValue, parseValue, plural, rawValue, setMessage, tableHead,
} from './util.js';

const SALES_PAGE = 50;
const PRODUCT_LIMIT = 1000;
const FOLLOW_DELAY_MS = 150;          // wait for the selection to rest before fetching
const EDITABLE = new Set(['quantity', 'net_price', 'invoice_date']);
const NUMERIC = new Set(['sale_id', 'product_id', 'customer_id', 'quantity', 'net_price']);

export function createSales(ctx) {
  const $ = (sel) => document.querySelector(sel);
  const dom = {
    salesNode: $('#sales-node'), salesProduct: $('#sales-product'), salesRange: $('#sales-range'),
    salesPrev: $('#sales-prev'), salesNext: $('#sales-next'), salesTable: $('#sales-table'),
    salesMessage: $('#sales-message'),
  };
  // Own unconfirmed sales edits, "<sale_id>#<column>".
  const overlays = new Overlays(repaintSaleKey, ctx.dataSeq);

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
    minSeq: null,                        // the newest update whose rows were not all listed
    followTimer: null,
    editor: null,                        // { key, saleId, column, input, initial }
  };

  /* ---- Following the grid's selection --------------------------------------------- */

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
    if (ctx.isOpen()) followSelection(false);
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

  /* ---- One product's page ---------------------------------------------------------- */

  async function loadSales(offset) {
    closeSaleEditor(false);
    if (sales.productId == null) {
      clearSales(`No products under ${nodePath(sales.node)}.`);
      return;
    }
    const token = ++sales.token;
    const minSeq = sales.minSeq; // read once DuckDB holds it (a paste's rows are persisted behind it)
    const result = await fetchJson('/view_table/sales', {
      condition: { product_id: sales.productId },
      limit: SALES_PAGE,
      offset,
      order: 'invoice_date,sale_id',
      version: versionParam(ctx.state),
      min_seq: minSeq,
    });
    if (token !== sales.token) return;
    if (sales.minSeq === minSeq) sales.minSeq = null; // waited for once (at most 5 s)
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

  /* ---- Live updates --------------------------------------------------------------- */

  // Replaces the shown rows that changed (`updates.base`) and flashes what moved.
  function applyUpdates(msg) {
    const changed = [];
    (msg.base || []).forEach((row) => {
      if (row.table !== 'sales' || versionOf(row) !== ctx.state.version || !sales.rows.has(row.sale_id)) return;
      const before = sales.rows.get(row.sale_id);
      sales.rows.set(row.sale_id, row);
      sales.columns.forEach((c) => { if (before[c] !== row[c]) changed.push(`${row.sale_id}#${c}`); });
      paintMonth(row);
    });
    if (msg.seq != null) overlays.settle(msg.seq);
    changed.forEach(repaintSaleKey);
    flashSales(changed);
    if (msg.base_truncated) {
      sales.minSeq = msg.seq ?? sales.minSeq;
      if (ctx.isOpen() && sales.productId != null) loadSales(sales.offset);
    }
  }

  function flashSales(keys) {
    const tds = keys.map((k) => sales.cells.get(k)).filter(Boolean);
    tds.forEach((td) => td.classList.remove('flash'));
    if (tds.length) void dom.salesTable.offsetWidth;
    tds.forEach((td) => td.classList.add('flash'));
  }

  // After a snapshot (first load, resync) everything may have changed: fetch again.
  function reload() {
    if (ctx.isOpen() && sales.node) followSelection(true);
  }

  /* ---- Editing -------------------------------------------------------------------- */

  function startSaleEdit(td) {
    const row = sales.rows.get(Number(td.parentNode.dataset.sale));
    const column = td.dataset.col;
    if (!row || !EDITABLE.has(column)) return;
    ctx.beginAction();
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
  clearSales('Select a row in the grid to see its sales rows.');

  return { setSelection, followSelection, applyUpdates, reload };
}
