/*
 * ducksheet — the panel under the grid, with the sales rows pane (sales.js), the reports
 * pane (reports.js) and the history pane (history.js); the buttons in the header open
 * and close it. Created by app.js with `state`, `submit` (send an edit over the WebSocket
 * and follow it), `notify` (toast), `beginAction` (a new action starts: older toasts go)
 * and `dataSeq` (seq of the data shown).
 */

import { createHistory } from './history.js';
import { createReports } from './reports.js';
import { createSales } from './sales.js';

export function createPanel(context) {
  const $ = (sel) => document.querySelector(sel);
  const dom = {
    panel: $('#panel'), salesPane: $('#sales-pane'), reportsPane: $('#reports-pane'),
    historyPane: $('#history-pane'),
    openButtons: [...document.querySelectorAll('button[data-panel]')],
    closeButtons: [...document.querySelectorAll('#panel .panel-close')],
  };
  let open = null;             // null | 'sales' | 'reports' | 'history'
  const sales = createSales({ ...context, isOpen: () => open === 'sales' });
  const reports = createReports(context);
  const history = createHistory({ state: context.state, dataSeq: context.dataSeq, isOpen: () => open === 'history' });

  function openPane(name) {
    open = name === open ? null : name;
    dom.panel.hidden = !open;
    dom.panel.dataset.pane = open || '';
    dom.salesPane.hidden = open !== 'sales';
    dom.reportsPane.hidden = open !== 'reports';
    dom.historyPane.hidden = open !== 'history';
    dom.openButtons.forEach((b) => b.setAttribute('aria-pressed', String(b.dataset.panel === open)));
    if (open === 'sales') sales.followSelection(true);
    if (open === 'reports') reports.opened();
    if (open === 'history') history.reload();
  }

  dom.openButtons.forEach((b) => b.addEventListener('click', () => openPane(b.dataset.panel)));
  dom.closeButtons.forEach((b) => b.addEventListener('click', () => openPane(open)));

  return {
    setSelection(node, month) {
      sales.setSelection(node, month);
      history.setSelection(node, month);
    },
    applyUpdates(msg) {
      sales.applyUpdates(msg);
      history.applyUpdates(msg);
    },
    // After a snapshot (first load, resync): fetch what is shown again.
    reload() {
      sales.reload();
      history.reload();
    },
    measureChanged: history.measureChanged,
  };
}
