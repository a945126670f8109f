/*
 * ducksheet — tab-separated text as spreadsheets put it on the clipboard: rows by
 * newlines (\n or \r\n), columns by tabs, a field with a tab, newline or quote wrapped in
 * double quotes (quotes doubled inside). Pure functions, no DOM.
 */

import { parseValue } from './util.js';

// The rows of a TSV text as arrays of strings; the trailing newline spreadsheets add
// (and any empty last lines) are not rows.
export function parseTsv(text) {
  const rows = [];
  let row = [];
  let field = '';
  let i = 0;
  const endField = () => { row.push(field); field = ''; };
  const endRow = () => { endField(); rows.push(row); row = []; };
  while (i < text.length) {
    const ch = text[i];
    if (ch === '"' && field === '') {
      const close = quotedEnd(text, i + 1);
      if (close >= 0) {
        field = text.slice(i + 1, close).replace(/""/g, '"');
        i = close + 1;
        continue;
      }
    }
    if (ch === '\t') endField();
    else if (ch === '\n') endRow();
    else if (ch === '\r') {
      endRow();
      if (text[i + 1] === '\n') i++;
    } else field += ch;
    i++;
  }
  endRow();
  while (rows.length && rows[rows.length - 1].every((f) => f === '')) rows.pop();
  return rows;
}

// Where a quoted field that opened before `from` closes: a quote not doubled, followed by
// a separator or the end. -1 when it is not a quoted field after all (a lone quote).
function quotedEnd(text, from) {
  for (let i = from; i < text.length; i++) {
    if (text[i] !== '"') continue;
    if (text[i + 1] === '"') {
      i++;
      continue;
    }
    const next = text[i + 1];
    return next === undefined || next === '\t' || next === '\n' || next === '\r' ? i : -1;
  }
  return -1;
}

function quoteField(field) {
  return /[\t\n\r"]/.test(field) ? `"${field.replace(/"/g, '""')}"` : field;
}

// Rows of strings as TSV, newline-separated, with no trailing newline.
export function formatTsv(rows) {
  return rows.map((row) => row.map(quoteField).join('\t')).join('\n');
}

// Parses every field as a number of `kind` (the editor's rules: "1,234.50", "1 234.5",
// "-12"). Empty fields are null (the cell is left alone). Returns { values } (rows of
// numbers or null), or { error: { row, col, text, message } } for the first field that is
// not a number, row and col counted from 1.
export function parseNumbers(rows, kind) {
  const values = [];
  for (let r = 0; r < rows.length; r++) {
    const out = [];
    for (let c = 0; c < rows[r].length; c++) {
      const text = rows[r][c].trim();
      if (text === '') {
        out.push(null);
        continue;
      }
      const parsed = parseValue(text, kind);
      if (parsed.error) return { error: { row: r + 1, col: c + 1, text, message: parsed.error } };
      out.push(parsed.value);
    }
    values.push(out);
  }
  return { values };
}
