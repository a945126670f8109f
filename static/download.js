/*
 * ducksheet — the Download button: the grid's current view (measure, expanded
 * suppliers and brands) as an xlsx workbook from GET /grid/export, with the hierarchy
 * as Excel outline levels and every total.
 *
 * Created by app.js with a context of:
 *   state   the client state (measure, nodes, expanded)
 *   notify  (level, text) toast
 */

import { LEVEL, versionParam } from './model.js';
import { accessToken } from './util.js';

// The expanded nodes as the server names them: [supplier] or [supplier, brand].
export function expandedPaths(state) {
  const paths = [];
  state.expanded.forEach((key) => {
    const node = state.nodes.get(key);
    if (!node) return;
    if (node.level === LEVEL.SUPPLIER) paths.push([node.supplier]);
    else if (node.level === LEVEL.BRAND) paths.push([node.supplier, node.brand]);
  });
  return paths;
}

export function createDownload(ctx) {
  const { state } = ctx;
  const button = document.querySelector('#download-button');

  async function download() {
    const query = new URLSearchParams({
      measure: state.measure,
      expanded: JSON.stringify(expandedPaths(state)),
    });
    const version = versionParam(state);
    if (version) query.set('version', version);
    const headers = {};
    const token = accessToken();
    if (token) headers.Authorization = `Bearer ${token}`;
    button.disabled = true;
    try {
      const response = await fetch(`/grid/export?${query}`, { headers });
      if (!response.ok) {
        ctx.notify('error', `Download failed: HTTP ${response.status}`);
        return;
      }
      const url = URL.createObjectURL(await response.blob());
      const link = document.createElement('a');
      link.href = url;
      link.download = `ducksheet-${state.measure}.xlsx`;
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    } catch (err) {
      ctx.notify('error', `Download failed: ${err.message}`);
    } finally {
      button.disabled = false;
    }
  }

  button.addEventListener('click', download);
  return { download };
}
