/*
 * ducksheet — a cell's variance against the compared version (state.compareSheet, loaded
 * by versions.js): the numbers, exact in cents for money, and how the grid words them.
 * Pure: every function takes the client state and values, none touches the DOM.
 */

import { cellOf } from './model.js';
import { KIND, formatCompact, formatValue } from './util.js';

const absent = (v) => v === null || v === undefined || v === '';

// A shown value against a compared one: { diff, ratio }, the difference exact in cents
// for money (cents as whole doubles: exact below 2^53 cents, about 90 trillion),
// ratio = diff / compared (null where that is 0); null when neither has a value.
export function variance(shown, compared, kind) {
  if (absent(shown) && absent(compared)) return null;
  const scale = kind === 'money' ? 100 : 1;
  const a = Math.round(Number(absent(shown) ? 0 : shown) * scale);
  const b = Math.round(Number(absent(compared) ? 0 : compared) * scale);
  return { diff: (a - b) / scale, ratio: b === 0 ? null : (a - b) / b };
}

// The compared version's value of a cell in the measure shown (undefined: none there).
export function comparedValue(state, cellKey) {
  return state.compareSheet ? cellOf(state.compareSheet, cellKey)?.[state.measure] : undefined;
}

// The variance of a cell showing `shown`, or null when nothing is compared.
export function varianceOf(state, cellKey, shown) {
  if (!state.compareSheet) return null;
  return variance(shown, comparedValue(state, cellKey), KIND[state.measure]);
}

const signed = (text, n) => (n > 0 ? `+${text}` : text);

// "+5.0%"; "new" where the compared value is 0 (and the shown one is not).
export function percentText(v) {
  if (v.ratio === null) return v.diff === 0 ? '0%' : 'new';
  return signed(`${(v.ratio * 100).toFixed(1)}%`, v.ratio);
}

function diffText(state, v, format) {
  return signed(format(v.diff, KIND[state.measure]), v.diff);
}

// What a cell shows of its variance: Δ or Δ% (the header's choice); '' for none.
export function varianceText(state, v) {
  if (!v) return '';
  if (state.varianceAs !== 'absolute') return percentText(v);
  return diffText(state, v, state.compact ? formatCompact : formatValue);
}

// The tooltip's line: "vs actual: 28,571.43 · Δ +1,428.57 (+5.0%)"; '' for none.
export function varianceLine(state, cellKey, v) {
  if (!v) return '';
  const compared = formatValue(comparedValue(state, cellKey) ?? 0, KIND[state.measure]);
  return `vs ${state.compare}: ${compared} · Δ ${diffText(state, v, formatValue)} (${percentText(v)})`;
}
