/*
 * ducksheet — the reports pane of the panel: GET /reports lists the analytics reports,
 * GET /reports/{name}?start_date&end_date… runs one; a server without them (404) shows
 * "Reports are unavailable".
 */

import { versionParam } from './model.js';
import { el, errorText, fetchJson, parseValue, plural, reportFormatter, setMessage, tableHead } from './util.js';

const REPORT_ROWS_SHOWN = 1000;

export function createReports(ctx) {
  const $ = (sel) => document.querySelector(sel);
  const dom = {
    reportName: $('#report-name'), reportParams: $('#report-params'), reportRun: $('#report-run'),
    reportCsv: $('#report-csv'), reportDescription: $('#report-description'),
    reportTable: $('#report-table'), reportMessage: $('#report-message'), reportCount: $('#report-count'),
  };
  const reports = { list: null, token: 0 };

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

  // One input per report parameter: dates as YYYY-MM-DD text (as the API takes them;
  // a date picker would show the browser's locale format), integers as number fields.
  function showReportForm() {
    const report = currentReport();
    dom.reportDescription.textContent = report ? report.description : '';
    const fields = (report ? report.parameters : []).map((param) => {
      const label = el('label', 'field');
      label.title = param.description || '';
      const input = el('input');
      input.name = param.name;
      if (param.type === 'date') {
        input.type = 'text';
        input.className = 'date';
        input.placeholder = 'YYYY-MM-DD';
        input.maxLength = 10;
        input.inputMode = 'numeric';
        input.spellcheck = false;
        input.autocomplete = 'off';
      } else {
        input.type = 'number';
        if (param.min != null) input.min = String(param.min);
        if (param.max != null) input.max = String(param.max);
        if (param.default != null) input.placeholder = String(param.default);
      }
      label.append(el('span', '', param.name.replace(/_/g, ' ')), input);
      return label;
    });
    dom.reportParams.replaceChildren(...fields);
  }

  // The parameters typed in, or { error } for a date that is not YYYY-MM-DD.
  function reportParams() {
    const params = {};
    for (const input of dom.reportParams.querySelectorAll('input')) {
      const value = input.value.trim();
      if (value && input.classList.contains('date')) {
        const parsed = parseValue(value, 'date');
        if (parsed.error) return { error: `${input.name.replace(/_/g, ' ')}: ${parsed.error}` };
      }
      params[input.name] = value;
    }
    const version = versionParam(ctx.state);
    if (version) params.version = version;
    return { params };
  }

  async function runReport() {
    const report = currentReport();
    if (!report) return;
    ctx.beginAction();
    const token = ++reports.token;
    const { params, error } = reportParams();
    if (error) {
      setMessage(dom.reportMessage, error);
      return;
    }
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
    const formats = new Map(data.columns.map((c) => [c, reportFormatter(c)]));
    tableHead(dom.reportTable, data.columns, numeric);
    dom.reportTable.tBodies[0].replaceChildren(...rows.slice(0, REPORT_ROWS_SHOWN).map((row) => {
      const tr = el('tr');
      data.columns.forEach((c) => {
        const td = el('td', typeof row[c] === 'number' ? 'num' : '', formats.get(c)(row[c]));
        td.dataset.col = c;
        tr.append(td);
      });
      return tr;
    }));
    dom.reportTable.hidden = !rows.length;
    const more = rows.length > REPORT_ROWS_SHOWN ? ` (the first ${REPORT_ROWS_SHOWN} shown; CSV has all)` : '';
    setMessage(dom.reportMessage, rows.length ? '' : 'No rows for these parameters.');
    dom.reportCount.textContent = `${plural(rows.length, 'row')}${more}`;
  }

  dom.reportName.addEventListener('change', () => {
    showReportForm();
    runReport();
  });
  dom.reportRun.addEventListener('click', runReport);
  dom.reportParams.addEventListener('keydown', (e) => { if (e.key === 'Enter') runReport(); });

  // Loads the list of reports the first time the pane opens.
  function opened() {
    if (!reports.list) loadCatalog();
  }

  return { opened };
}
