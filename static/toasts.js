/*
 * ducksheet — notifications: #log > .log-entry.log-<level> toasts, dismissed by a click
 * after a few seconds, or when the user starts something new (clear).
 */

import { el } from './util.js';

const SHOWN = 4;
const ERROR_MS = 8000;
const NOTICE_MS = 5000;

export function createToasts() {
  const log = document.querySelector('#log');

  function notify(level, text) {
    const entry = el('div', `log-entry log-${level}`, text);
    entry.title = 'Click to dismiss';
    entry.addEventListener('click', () => entry.remove());
    log.append(entry);
    while (log.children.length > SHOWN) log.firstChild.remove();
    setTimeout(() => entry.remove(), level === 'error' ? ERROR_MS : NOTICE_MS);
  }

  function clear() {
    log.replaceChildren();
  }

  return { notify, clear };
}
