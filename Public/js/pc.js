// The PC page (main device): makes a session, shows its QR code and time left, and follows the phone over
// Server-Sent Events: waiting → connected → inputting → completed. When the session expires it makes a new one.
//
// Built on tandem-client.js, which makes the session, follows its stream (reconnects, resync), counts the time by the
// server's clock and rotates the QR code's token (docs/protocol.md) while nobody has claimed the session. This page
// shows it: the QR code, the status line, the countdown, and once a phone has claimed the session its pairing code
// (the phone shows the same) with a "not my phone" button, which ends the session and starts a new one. If the
// phone's page goes away for longer than the grace, a note says so until it comes back.

import { bindLanguageSwitches, lang, setLiteral, setText, t, translatePage } from './i18n.js';
import { showDialog } from './dialog.js';
import { createPairing } from './tandem-client.js';
import { isArticleForm } from './form.js';

const qr = document.getElementById('qr');
const heading = document.querySelector('main h1');
const pairing = document.getElementById('pairing');
const pairingCode = document.getElementById('pairing-code');
const notMyPhoneButton = document.getElementById('not-my-phone');
const phoneLeft = document.getElementById('phone-left');
const status = document.getElementById('status');
const statusText = document.getElementById('status-text');
const countdown = document.getElementById('countdown');
const phoneUrl = document.getElementById('phone-url');
const linkLost = document.getElementById('link-lost');
const newSessionButton = document.getElementById('new-session');

// The status line only moves forward through the phone's steps (rank 0 and up): a replayed event after a
// reconnect never moves it back. The states without a rank belong to making a session and always show.
const STATES = {
  creating: { rank: -1, text: 'statusCreating', busy: true },
  failed: { rank: -1, text: 'statusCreateFailed', busy: true },
  expired: { rank: -1, text: 'statusExpired', busy: true },
  waiting: { rank: 0, text: 'statusWaiting', busy: true },
  connected: { rank: 1, text: 'statusConnected', busy: true },
  'input-started': { rank: 2, text: 'statusInputStarted', busy: true },
  completed: { rank: 3, text: 'statusCompleted', busy: false },
};
const RETRY_MS = 5000;

// The pairing shown (tandem-client.js's Pairing), or null while one is being made.
let session = null;
// Bumped by every startSession(): an older start that finishes late leaves the page alone.
let generation = 0;
let startedAt = 0;
let ticker = 0;
let retryTimer = 0;

function setStatus(state, current = session) {
  if (current !== session) return;
  const next = STATES[state];
  const previous = STATES[status.dataset.state];
  if (next.rank >= 0 && previous && previous.rank >= next.rank) return; // never backwards
  status.dataset.state = state;
  status.classList.toggle('busy', next.busy);
  setText(statusText, statusTextOf(state, current));
}

/** The status line's text: while the phone is away (its page gone past the grace, its steps may still arrive), the
 * line waits for it instead of saying it is connected or typing. */
function statusTextOf(state, current) {
  const away = current?.phoneAway === true && (state === 'connected' || state === 'input-started');
  return away ? 'statusPhoneAway' : STATES[state].text;
}

function showTimeLeft() {
  if (session === null || session.status === 'completed') return;
  const seconds = Math.ceil(session.timeLeft() / 1000);
  countdown.textContent = `${String(Math.floor(seconds / 60)).padStart(2, '0')}:${String(seconds % 60).padStart(2, '0')}`;
  countdown.classList.toggle('soon', seconds <= 60);
}

/** The session ended without a submission (or its stream was refused): start a new one. A session refused right
 * after it was made (something is wrong on the server) is retried after a pause, so the page never loops hot,
 * unless the server said the session is gone (`immediately`): then a new one starts at once. */
function renew(current, immediately) {
  if (current !== session) return;
  setStatus('expired', current);
  clearInterval(ticker);
  const young = performance.now() - startedAt < RETRY_MS;
  retryTimer = setTimeout(startSession, young && !immediately ? RETRY_MS : 0);
}

/** Ends the shown session on the server (its phone is told at once) and forgets it. */
function stopSession() {
  session?.cancel().catch(() => {}); // the grace ends it anyway if this never arrives
  session = null;
  clearInterval(ticker);
  clearTimeout(retryTimer);
}

async function startSession() {
  stopSession();
  const mine = ++generation;
  startedAt = performance.now();
  setStatus('creating', null);
  qr.classList.remove('used');
  qr.dataset.i18nAlt = 'qrAlt';
  qr.alt = t('qrAlt');
  pairing.hidden = true;
  pairingCode.textContent = '';
  notMyPhoneButton.hidden = false;
  showPhoneLeft(false);
  countdown.textContent = '--:--';
  let current;
  try {
    current = await createPairing({ lang: () => lang });
  } catch (error) {
    console.error('could not create a session', error);
    if (mine !== generation) return;
    setStatus('failed', null);
    retryTimer = setTimeout(startSession, RETRY_MS);
    return;
  }
  if (mine !== generation) {
    current.cancel().catch(() => {});
    return;
  }
  session = current;
  current.qrElement({ img: qr });
  phoneUrl.textContent = current.phoneURL;
  setStatus('waiting', current);
  linkLost.hidden = true;
  follow(current);
  showTimeLeft();
  ticker = setInterval(showTimeLeft, 250);
}

/**
 * A phone has claimed the session: the QR code is used up (the module stops rotating it; shown faded), and the
 * pairing code shows, with the "not my phone" button.
 */
function claimed(current) {
  if (current !== session) return;
  qr.classList.add('used');
  qr.dataset.i18nAlt = 'qrUsedAlt';
  qr.alt = t('qrUsedAlt');
  if (current.pairingCode !== null) {
    pairingCode.textContent = current.pairingCode;
    notMyPhoneButton.hidden = current.status === 'completed';
    pairing.hidden = false;
  }
}

/**
 * "Not my phone": the phone the PC sees is someone else's (the QR code was photographed). The session is cancelled
 * with that reason (the phone is told at once) and a new one starts, with a new QR code.
 */
function rejectPhone() {
  const current = session;
  if (current === null || current.ended) return;
  current.rejectPhone().catch(() => {}); // the grace ends it anyway if this never arrives
  startSession();
  // The button is gone with the old session: focus goes to the page's heading, above the new QR code.
  heading.tabIndex = -1;
  heading.focus();
}

/**
 * The phone's page has been gone past the grace (phone-left), or is back (phone-returned). The session's state does
 * not change (`data-state` stays), but its line no longer says the phone is connected while it is not: it says the
 * page waits for it, until it is back.
 */
function showPhoneLeft(gone) {
  if (gone) setText(phoneLeft, 'phoneLeft');
  else setLiteral(phoneLeft, '');
  const state = status.dataset.state;
  if (state === 'connected' || state === 'input-started') setText(statusText, statusTextOf(state, session));
}

/**
 * Shows what the pairing tells. The reader key came with the session as an HttpOnly cookie scoped to /api, which
 * the module's EventSource sends by itself: the key never appears in a URL (or in a proxy's access log). A `resync`
 * comes as the step events it stands for, so it needs nothing here.
 */
function follow(current) {
  const on = (type, handler) => current.on(type, (event) => {
    if (current === session) handler(event);
  });
  on('qr', ({ data }) => {
    phoneUrl.textContent = data.phoneURL;
  });
  on('connected', () => {
    claimed(current);
    setStatus('connected', current);
  });
  on('input-started', () => {
    claimed(current);
    setStatus('input-started', current);
  });
  on('phone-left', () => showPhoneLeft(true));
  on('phone-returned', () => showPhoneLeft(false));
  on('complete', ({ data }) => complete(current, data));
  on('link', ({ data }) => {
    // While the browser reconnects (with Last-Event-ID) no event can arrive: say so.
    linkLost.hidden = data.state !== 'reconnecting';
  });
  // The session ended without a submission. Cancelled (this page was gone past the grace, or another tab of it
  // cancelled it) or lost by the server (its Redis restarted empty): a new QR code at once, the phone has been told.
  // Its time ran out, or its stream was refused: a young session (something is wrong) waits first.
  on('end', ({ data }) => {
    if (data.reason === 'completed' || data.reason === 'closed') return;
    linkLost.hidden = true;
    renew(current, data.reason === 'cancelled' || data.cause === 'lost');
  });
}

/** The phone submitted: the result, and the session is done. */
function complete(current, data) {
  setStatus('completed', current);
  clearInterval(ticker);
  notMyPhoneButton.hidden = true; // a completed session cannot be cancelled
  showPhoneLeft(false);
  linkLost.hidden = true;
  // The session is done: a frozen countdown would suggest it still waits for something.
  countdown.textContent = '--:--';
  countdown.classList.remove('soon');
  qr.classList.add('used');
  renderSubmission(data);
}

/** The phone's form as configured (GET /api/form), for the labels of a submission; null until read. */
let formFields = null;
fetch('/api/form', { headers: { Accept: 'application/json' } })
  .then((response) => (response.ok ? response.json() : null))
  .then((body) => {
    if (Array.isArray(body?.fields)) formFields = body.fields.filter((field) => typeof field?.name === 'string');
  })
  .catch(() => {});

/** The labels of the article's fields, the page's own words. */
const FIELD_LABELS = { name: 'nameLabel', phone: 'phoneLabel' };

/**
 * Shows a submission (the `complete` event's data): the article's name and phone with the page's own labels, or a
 * configured form's fields in its order with their labels (a select's option by its label, a checkbox as yes or no);
 * a field the form does not name is shown with its key. Never as HTML: the phone typed it. Each value's element has
 * the ID `result-<key>`.
 */
function renderSubmission(data) {
  const entries = Object.entries(data ?? {});
  // The article's labels only for the article's form: a configured form with the same two names has its own.
  const article = entries.length === 2 && 'name' in data && 'phone' in data && (formFields === null || isArticleForm(formFields));
  const line = ([key, value]) => {
    const def = article ? undefined : formFields?.find((field) => field.name === key);
    const label = def !== undefined ? (lang === 'en' ? def.label.en : def.label.ja) : FIELD_LABELS[key] ? t(FIELD_LABELS[key]) : key;
    const option = def?.options?.find((candidate) => candidate.value === value);
    const shown = option !== undefined ? (lang === 'en' ? option.label.en : option.label.ja)
      : value === true ? t('yes') : value === false ? t('no') : typeof value === 'string' ? value : JSON.stringify(value);
    const paragraph = document.createElement('p');
    paragraph.className = 'result-line';
    const term = document.createElement('strong');
    term.textContent = `${label}:`;
    const text = document.createElement('span');
    text.id = `result-${key}`;
    text.className = 'result-value';
    text.textContent = shown;
    paragraph.append(term, ' ', text);
    return paragraph;
  };
  // The form's order when it is known (the event keeps it too; a resync's keys may come in another).
  const order = (key) => {
    const index = formFields?.findIndex((field) => field.name === key) ?? -1;
    return index === -1 ? Number.MAX_SAFE_INTEGER : index;
  };
  const ordered = article ? entries : [...entries].sort((a, b) => order(a[0]) - order(b[0]));
  showDialog({
    kind: 'success',
    heading: () => t('completeTitle'),
    content: () => ordered.map(line),
  });
}

translatePage('pcTitle');
bindLanguageSwitches();
newSessionButton.addEventListener('click', () => startSession());
notMyPhoneButton.addEventListener('click', rejectPhone);
// Leaving (closing the tab, reloading, navigating away) ends the session, so its phone is told at once.
window.addEventListener('pagehide', () => session?.cancel().catch(() => {}));
// Back from the back-forward cache: the session was ended on the way out, so start a new one.
window.addEventListener('pageshow', (event) => {
  if (event.persisted) startSession();
});
startSession();
