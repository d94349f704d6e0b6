// The operators' page: counts over SSE. EventSource cannot send a header, so the stream is read with fetch and a
// small SSE parser; the token lives in this tab's sessionStorage and goes only in the Authorization header (never
// in a URL or a cookie, so no other site can make the browser send it).
import { t, lang, translatePage, bindLanguageSwitches, onLanguageChange, apiHeaders } from '/js/i18n.js';

const TOKEN_KEY = 'tandem.opsToken';
const ANNOUNCE_EVERY_MS = 15000;

const login = document.getElementById('login');
const tokenInput = document.getElementById('token');
const loginError = document.getElementById('login-error');
const signIn = document.getElementById('sign-in');
const board = document.getElementById('board');
const stateLine = document.getElementById('ops-state');
const summary = document.getElementById('summary');
const oldest = document.getElementById('oldest');
const pairingsNote = document.getElementById('pairings-note');
const nodesBody = document.getElementById('nodes');
const signOut = document.getElementById('sign-out');

let controller = null;
let lastSnapshot = null;
let lastAnnounced = 0;

function storedToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

function storeToken(token) {
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // storage disabled: the token lasts as long as the page
  }
}

function showLogin(message) {
  if (controller) controller.abort();
  controller = null;
  board.hidden = true;
  login.hidden = false;
  loginError.textContent = message ? t(message) : '';
}

function number(value, digits = 0) {
  return typeof value === 'number' ? value.toLocaleString(lang, { maximumFractionDigits: digits }) : '-';
}

// Whole seconds as hours, minutes and seconds ("3 h 4 min 5 s"); '-' for anything but a number.
function duration(seconds) {
  if (typeof seconds !== 'number' || !Number.isFinite(seconds) || seconds < 0) return '-';
  const whole = Math.floor(seconds);
  const h = Math.floor(whole / 3600);
  const m = Math.floor((whole % 3600) / 60);
  const s = whole % 60;
  return h > 0 ? t('opsDuration', { h: number(h), m, s }) : t('opsDurationShort', { m, s });
}

function render(snapshot) {
  lastSnapshot = snapshot;
  for (const cell of document.querySelectorAll('#pairings td')) cell.textContent = number(snapshot.pairings[cell.dataset.key]);
  pairingsNote.textContent = typeof snapshot.sessionTTLSeconds === 'number'
    ? t('opsPairingsNote', { minutes: number(snapshot.sessionTTLSeconds / 60, 1) })
    : '';
  oldest.textContent = snapshot.oldestWaitingSeconds.length ? snapshot.oldestWaitingSeconds.map((s) => number(s)).join(', ') : t('opsNone');
  const rows = snapshot.nodes.map((node) => {
    const row = document.createElement('tr');
    const values = [
      node.name, node.version, duration(node.uptimeSeconds), number(node.pcStreams), number(node.phoneStreams),
      number(node.sessions), number(node.eventsPerSecond, 1),
      node.brokerP99Milliseconds == null ? '-' : '≤ ' + number(node.brokerP99Milliseconds, 2), number(node.reportAgeSeconds, 1),
    ];
    values.forEach((value, index) => {
      const cell = document.createElement(index === 0 ? 'th' : 'td');
      if (index === 0) cell.scope = 'row';
      cell.textContent = String(value);
      row.append(cell);
    });
    return row;
  });
  nodesBody.replaceChildren(...rows);
  stateLine.textContent = snapshot.brokerReachable ? t('opsLive', { count: snapshot.nodes.length }) : t('opsBrokerUnreachable');
  const said = t('opsSummary', snapshot.pairings);
  const now = Date.now();
  // Polite and rare: the counts move every second, a screen reader hears them at most every 15 s, when changed.
  if (said !== summary.textContent && now - lastAnnounced >= ANNOUNCE_EVERY_MS) {
    summary.textContent = said;
    lastAnnounced = now;
  }
}

// Reads `text/event-stream` from a fetch body; calls onEvent(name, data) for each complete event.
async function readEvents(body, onEvent) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    // Bounded: an event is a few KiB; a stream that never ends one is cut.
    if (buffer.length > 1 << 20) throw new Error('event too large');
    let end;
    while ((end = buffer.search(/\r?\n\r?\n/)) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, '');
      let name = 'message';
      const data = [];
      for (const line of block.split(/\r?\n/)) {
        if (line.startsWith('event:')) name = line.slice(6).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
      }
      if (data.length) onEvent(name, data.join('\n'));
    }
  }
}

// Retry-After in seconds (delta form; an HTTP date is turned into seconds), at least 1, at most an hour.
function retryAfterSeconds(response) {
  const header = (response.headers.get('Retry-After') || '').trim();
  let seconds = /^\d+$/.test(header) ? Number(header) : Math.ceil((Date.parse(header) - Date.now()) / 1000);
  if (!Number.isFinite(seconds)) seconds = 60;
  return Math.min(Math.max(seconds, 1), 3600);
}

// Says once (the state line is a live region: no announcement every second) when the next try comes, then waits.
async function waitOutRefusal(seconds, signal) {
  stateLine.textContent = t('opsTooManyTries', { seconds });
  await new Promise((resolve) => {
    const timer = setTimeout(resolve, seconds * 1000);
    signal.addEventListener('abort', () => { clearTimeout(timer); resolve(); }, { once: true });
  });
}

async function follow(token) {
  controller = new AbortController();
  const signal = controller.signal;
  login.hidden = true;
  board.hidden = false;
  stateLine.textContent = t('opsConnecting');
  while (!signal.aborted) {
    try {
      const response = await fetch('/api/ops/events', {
        headers: apiHeaders({ Accept: 'text/event-stream', Authorization: 'Bearer ' + token }),
        cache: 'no-store',
        signal,
      });
      if (response.status === 401 || response.status === 404) {
        storeToken(null);
        showLogin(response.status === 401 ? 'opsTokenWrong' : 'opsOff');
        return;
      }
      if (response.status === 429) {
        // The address spent its budget of wrong tokens (perhaps someone else behind the same address): say so and
        // wait as told, instead of "reconnecting" in a loop that only renews the refusal.
        await waitOutRefusal(retryAfterSeconds(response), signal);
        continue;
      }
      if (!response.ok || !response.body) throw new Error('status ' + response.status);
      await readEvents(response.body, (name, data) => {
        if (name === 'snapshot') render(JSON.parse(data));
      });
    } catch (error) {
      if (signal.aborted) return;
    }
    stateLine.textContent = t('opsReconnecting');
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}

login.addEventListener('submit', (event) => {
  event.preventDefault();
  const token = tokenInput.value.trim();
  tokenInput.value = '';
  if (!token) return;
  storeToken(token);
  follow(token);
});
// Disabled in the HTML: before this handler exists, sending the form would leave the page.
signIn.disabled = false;

signOut.addEventListener('click', () => {
  storeToken(null);
  showLogin(null);
});

translatePage('opsTitle');
bindLanguageSwitches();
onLanguageChange(() => {
  if (lastSnapshot) render(lastSnapshot);
});
const remembered = storedToken();
if (remembered) follow(remembered);
