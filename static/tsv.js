/*
 * ducksheet — tab-separated blocks as spreadsheets put them on the clipboard: rows by
 * newlines (\n or \r\n, a trailing one ignored), cells by tabs, a cell holding a tab or
 * newline in double quotes. Pure: no DOM.
 */

// The cells of a TSV text, as rows of strings (ragged rows are padded with "").
export function parseTsv(text) {
  const rows = [];
  let row = [];
  let cell = '';
  let quoted = false;
  const s = String(text ?? '').replace(/\r\n?/g, '\n').replace(/\n$/, '');
  for (let i = 0; i < s.length; i += 1) {
    const c = s[i];
    if (quoted) {
      if (c === '"' && s[i + 1] === '"') { cell += '"'; i += 1; }
      else if (c === '"') quoted = false;
      else cell += c;
    } else if (c === '"' && cell === '') quoted = true;
    else if (c === '\t') { row.push(cell); cell = ''; }
    else if (c === '\n') { row.push(cell); rows.push(row); row = []; cell = ''; }
    else cell += c;
  }
  row.push(cell);
  rows.push(row);
  const width = Math.max(...rows.map((r) => r.length));
  return rows.map((r) => [...r, ...Array(width - r.length).fill('')]);
}

// Rows of values as TSV (what spreadsheets paste); values are written as given.
export function formatTsv(rows) {
  const cell = (v) => {
    const text = v === null || v === undefined ? '' : String(v);
    return /[\t\n"]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
  };
  return rows.map((r) => r.map(cell).join('\t')).join('\n');
}
