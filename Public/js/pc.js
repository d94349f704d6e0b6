// The PC page (main device): makes a session, shows its QR code and time left, and follows the phone over
// Server-Sent Events: waiting → connected → inputting → completed. When the session expires it makes a new one.
//
// The pairing (docs/protocol.md): the QR code carries a token that goes stale, so while the session waits the page
// fetches a new one every `qrRotateSeconds` and swaps the image once the new one has loaded. The first phone to
// open the code claims the session; from then on the page shows the session's pairing code (the phone shows the
// same) and a "not my phone" button, which ends the session and starts a new one. If the phone's page goes away
// for longer than the grace, a note says so until it comes back.

import { apiHeaders, bindLanguageSwitches, lang, setLiteral, setText, t, translatePage } from './i18n.js';
import { showDialog } from './dialog.js';

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
// After a failed fetch of a new QR token: soon, since the token shown is good for only two rotations.
const ROTATE_RETRY_MS = 2000;
const REQUEST_TIMEOUT_MS = 15000;
// A PC clock this far off the server's makes expiryTime useless; the TTL then counts from now instead.
const CLOCK_SKEW_LIMIT_MS = 5000;

// { id, source, deadline, completed, renewing, cancelled, claimed, startedAt, rotateSeconds, rotateTimer, rotatedAt }
let session = null;
let ticker = 0;
let retryTimer = 0;

function setStatus(state, current = session) {
  if (current !== session) return;
  const next = STATES[state];
  const previous = STATES[status.dataset.state];
  if (next.rank >= 0 && previous && previous.rank >= next.rank) return; // never backwards
  status.dataset.state = state;
  status.classList.toggle('busy', next.busy);
  setText(statusText, next.text);
}

function showTimeLeft() {
  if (session === null || session.completed) return;
  const left = Math.max(0, session.deadline - Date.now());
  const seconds = Math.ceil(left / 1000);
  countdown.textContent = `${String(Math.floor(seconds / 60)).padStart(2, '0')}:${String(seconds % 60).padStart(2, '0')}`;
  countdown.classList.toggle('soon', seconds <= 60);
  if (left === 0) renew(session);
}

/**
 * The local deadline for a session. With the server's clock at hand (`serverTime`, sent with every session info),
 * the time left is the server's: expiryTime - serverTime from now, whatever this PC's clock says and however late a
 * stream was resumed. Without it (an older server), expiryTime, unless this PC's clock disagrees with the server's.
 */
function deadlineOf(expiryTime, ttlMinutes, serverTime) {
  const ttl = Number(ttlMinutes) * 60000;
  const expiry = Number(expiryTime);
  const now = Number(serverTime);
  if (Number.isFinite(expiry) && Number.isFinite(now)) return Date.now() + Math.max(0, expiry - now);
  if (!Number.isFinite(expiry)) return Date.now() + ttl;
  return Math.abs(expiry - Date.now() - ttl) > CLOCK_SKEW_LIMIT_MS && Number.isFinite(ttl) ? Date.now() + ttl : expiry;
}

/**
 * Ends a session on the server, so its phone is told at once instead of typing into a session nobody watches.
 * `keepalive` lets the request outlive the page (pagehide); the reader cookie authorizes it.
 */
function cancelOnServer(current) {
  if (current === null || current.id === '' || current.completed || current.cancelled) return;
  current.cancelled = true;
  fetch(`/api/cancel?session=${encodeURIComponent(current.id)}`, {
    method: 'POST',
    headers: apiHeaders(),
    keepalive: true,
  }).catch(() => {}); // the grace ends it anyway if this never arrives
}

/** The session ran out (or its stream was refused): start a new one, once. A session refused right after it
 * was made (something is wrong on the server) is retried after a pause, so the page never loops hot, unless the
 * server said the session is gone (`immediately`): then a new one starts at once. */
function renew(current, immediately = false) {
  if (current !== session || current.completed || current.renewing) return;
  current.renewing = true;
  current.source?.close();
  setStatus('expired', current);
  clearInterval(ticker);
  const young = performance.now() - current.startedAt < RETRY_MS;
  retryTimer = setTimeout(startSession, young && !immediately ? RETRY_MS : 0);
}

function stopSession() {
  cancelOnServer(session);
  session?.source?.close();
  if (session !== null) clearTimeout(session.rotateTimer);
  session = null;
  clearInterval(ticker);
  clearTimeout(retryTimer);
}

async function startSession() {
  stopSession();
  const current = {
    id: '', source: null, deadline: 0, completed: false, renewing: false, cancelled: false, claimed: false,
    startedAt: performance.now(), rotateSeconds: 0, rotateTimer: 0, rotatedAt: 0,
  };
  session = current;
  setStatus('creating', current);
  qr.classList.remove('used');
  qr.dataset.i18nAlt = 'qrAlt';
  qr.alt = t('qrAlt');
  pairing.hidden = true;
  pairingCode.textContent = '';
  notMyPhoneButton.hidden = false;
  showPhoneLeft(false);
  countdown.textContent = '--:--';
  let created;
  try {
    const response = await fetch('/api/sessions', {
      method: 'POST',
      headers: apiHeaders(),
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    created = await response.json();
  } catch (error) {
    console.error('could not create a session', error);
    if (current !== session) return;
    setStatus('failed', current);
    retryTimer = setTimeout(startSession, RETRY_MS);
    return;
  }
  if (current !== session) return;
  current.id = String(created.sessionId);
  current.deadline = deadlineOf(created.expiryTime, created.ttlMinutes, created.serverTime);
  // The QR image's path carries the pairing token (an older server answers without `qr`: the ID alone).
  qr.src = typeof created.qr === 'string' && created.qr !== '' ? created.qr : `/api/qr?session=${encodeURIComponent(current.id)}`;
  qr.hidden = false;
  phoneUrl.textContent = String(created.phoneUrl ?? '');
  current.rotatedAt = performance.now();
  setStatus('waiting', current);
  linkLost.hidden = true;
  follow(current);
  scheduleRotation(current, created.qrRotateSeconds);
  showTimeLeft();
  ticker = setInterval(showTimeLeft, 250);
}

/** Fetches a new QR token after `seconds` (the server's `qrRotateSeconds`), while the session waits for a phone. */
function scheduleRotation(current, seconds, delayMs = Number(seconds) * 1000) {
  clearTimeout(current.rotateTimer);
  const rotateSeconds = Number(seconds);
  if (!Number.isFinite(rotateSeconds) || rotateSeconds <= 0) return; // a server without rotating tokens
  current.rotateSeconds = rotateSeconds;
  if (!waitingForPhone(current)) return;
  current.rotateTimer = setTimeout(() => rotate(current), Math.max(0, delayMs));
}

function waitingForPhone(current) {
  return current === session && !current.claimed && !current.completed && !current.cancelled && !current.renewing;
}

/**
 * GET /api/pairing (the reader cookie goes by itself): a new token, its phone URL and its QR image. The new image
 * is loaded before it replaces the old one, so the code never blinks; the URL changes with it. A failure leaves
 * the shown code (still good for another rotation) and tries again soon.
 */
async function rotate(current) {
  if (!waitingForPhone(current)) return;
  let next = null;
  try {
    const response = await fetch(`/api/pairing?session=${encodeURIComponent(current.id)}`, {
      headers: apiHeaders(),
      cache: 'no-store',
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
    if (response.ok) next = await response.json();
  } catch {
    next = null;
  }
  if (!waitingForPhone(current)) return;
  if (next !== null && typeof next.qr === 'string' && next.qr !== '' && (await showQr(current, next.qr, String(next.phoneUrl ?? '')))) {
    current.rotatedAt = performance.now();
    scheduleRotation(current, next.rotateSeconds ?? current.rotateSeconds);
  } else {
    scheduleRotation(current, current.rotateSeconds, ROTATE_RETRY_MS);
  }
}

/** Loads the image at `src` off screen, then shows it and `url` together; false if it did not load, or too late. */
async function showQr(current, src, url) {
  const image = new Image();
  image.src = src;
  try {
    await image.decode();
  } catch {
    return false;
  }
  if (!waitingForPhone(current)) return false;
  // The same URL, now in the document's list of available images: the swap shows it at once.
  qr.src = src;
  phoneUrl.textContent = url;
  return true;
}

/**
 * A phone has claimed the session: the QR code is used up (no more rotation, shown faded), and the pairing code
 * shows, if the server sent it, with the "not my phone" button.
 */
function claimed(current, code) {
  if (current !== session) return;
  current.claimed = true;
  clearTimeout(current.rotateTimer);
  qr.classList.add('used');
  qr.dataset.i18nAlt = 'qrUsedAlt';
  qr.alt = t('qrUsedAlt');
  if (typeof code === 'string' && code !== '') {
    pairingCode.textContent = code;
    notMyPhoneButton.hidden = current.completed;
    pairing.hidden = false;
  }
}

/**
 * "Not my phone": the phone the PC sees is someone else's (the QR code was photographed). The session is cancelled
 * with that reason (the phone is told at once) and a new one starts, with a new QR code.
 */
function rejectPhone() {
  const current = session;
  if (current === null || current.id === '' || current.completed || current.cancelled) return;
  current.cancelled = true;
  fetch(`/api/cancel?session=${encodeURIComponent(current.id)}&reason=not-my-phone`, {
    method: 'POST',
    headers: apiHeaders(),
    keepalive: true,
  }).catch(() => {}); // the grace ends it anyway if this never arrives
  startSession();
  // The button is gone with the old session: focus goes to the page's heading, above the new QR code.
  heading.tabIndex = -1;
  heading.focus();
}

/** The phone's page has been gone past the grace (phone-left), or is back (phone-returned). */
function showPhoneLeft(gone) {
  if (gone) setText(phoneLeft, 'phoneLeft');
  else setLiteral(phoneLeft, '');
}

/** A new QR code may be due when the page comes back to the foreground (timers are throttled in the background). */
function rotateIfDue() {
  const current = session;
  if (document.visibilityState !== 'visible' || current === null || !waitingForPhone(current) || current.rotateSeconds <= 0) return;
  if (performance.now() - current.rotatedAt >= current.rotateSeconds * 1000) rotate(current);
}

/**
 * Listens to the session's stream. The reader key came with the session as an HttpOnly cookie scoped to
 * /api/events, which EventSource sends by itself: the key never appears in a URL (or in a proxy's access log).
 */
function follow(current) {
  const source = new EventSource(`/api/events?session=${encodeURIComponent(current.id)}`);
  current.source = source;

  source.addEventListener('message', (event) => {
    const data = parse(event.data);
    if (data?.type === 'session-info' && current === session) {
      current.deadline = deadlineOf(data.expiryTime, data.ttlMinutes, data.serverTime);
    }
  });
  source.addEventListener('connected', (event) => {
    claimed(current, parse(event.data)?.code);
    setStatus('connected', current);
  });
  source.addEventListener('phone-left', () => {
    if (current === session && !current.completed) showPhoneLeft(true);
  });
  source.addEventListener('phone-returned', () => {
    if (current === session) showPhoneLeft(false);
  });
  // The session ended without a submission: this page was gone past the grace (pc-left), or it was cancelled
  // (pc-cancelled, by another tab of it). A new QR code at once; the phone has been told.
  source.addEventListener('cancelled', () => {
    if (current !== session || current.completed) return;
    current.cancelled = true;
    renew(current, true);
  });
  source.addEventListener('input-started', () => {
    claimed(current);
    setStatus('input-started', current);
  });
  // The server did not know where this stream left off: it sends the session's state in one event instead.
  source.addEventListener('resync', (event) => {
    if (current !== session || current.completed) return;
    const data = parse(event.data) ?? {};
    if (data.status === 'completed') {
      complete(current, source, data);
    } else if (data.status === 'cancelled') {
      current.cancelled = true;
      renew(current, true);
    } else if (data.status === 'connected' || data.status === 'inputting') {
      claimed(current, data.code);
      setStatus(data.status === 'inputting' ? 'input-started' : 'connected', current);
      // Whether the phone is away now (the phone-left and phone-returned events the resync stands for).
      showPhoneLeft(data.phoneAway === true);
    }
  });
  source.addEventListener('complete', (event) => {
    if (current !== session || current.completed) return;
    complete(current, source, parse(event.data) ?? {});
  });
  // The server lost the session before its expiry (its Redis restarted empty): waiting would show a countdown
  // for a session that no phone can reach any more.
  source.addEventListener('expired', () => renew(current, true));
  source.addEventListener('open', () => {
    if (current === session) linkLost.hidden = true;
  });
  source.addEventListener('error', () => {
    // EventSource reconnects by itself (with Last-Event-ID) while it is CONNECTING: say so, since events cannot
    // arrive meanwhile. CLOSED means the server refused the stream: the session has expired (404) or is gone,
    // so it is time for a new one.
    if (current !== session) return;
    if (source.readyState === EventSource.CONNECTING && !current.completed) linkLost.hidden = false;
    if (source.readyState === EventSource.CLOSED) {
      linkLost.hidden = true;
      renew(current);
    }
  });
}

/** The phone submitted: the result, and the session is done. */
function complete(current, source, data) {
  setStatus('completed', current);
  current.completed = true;
  source.close();
  clearInterval(ticker);
  clearTimeout(current.rotateTimer);
  notMyPhoneButton.hidden = true; // a completed session cannot be cancelled
  showPhoneLeft(false);
  // The session is done: a frozen countdown would suggest it still waits for something.
  countdown.textContent = '--:--';
  countdown.classList.remove('soon');
  qr.classList.add('used');
  showResult(data);
}

/** The phone's form as configured (GET /api/form), for the labels of a submission; null until read, or the article's. */
let formFields = null;
fetch('/api/form', { headers: apiHeaders() })
  .then((response) => (response.ok ? response.json() : null))
  .then((body) => {
    if (Array.isArray(body?.fields)) formFields = body.fields.filter((field) => typeof field?.name === 'string');
  })
  .catch(() => {});

/** Members of `complete` and `resync` data that are not the submission's fields. */
const NOT_FIELDS = new Set(['status', 'code', 'pairingCode', 'reason', 'phoneAway', 'type']);

/**
 * Shows the submission: the article's name and phone with the page's own labels, or a configured form's fields in
 * its order with their labels (a checkbox as yes or no). Values are text nodes, never HTML: the phone typed them.
 */
function showResult(data) {
  const line = (label, value, id) => {
    const paragraph = document.createElement('p');
    paragraph.className = 'result-line';
    const term = document.createElement('strong');
    term.textContent = `${label}:`;
    const text = document.createElement('span');
    text.id = id;
    text.className = 'result-value';
    text.textContent = value;
    paragraph.append(term, ' ', text);
    return paragraph;
  };
  const shown = (value) => (value === true ? t('yes') : value === false ? t('no') : String(value ?? ''));
  const keys = Object.keys(data).filter((key) => !NOT_FIELDS.has(key));
  const article = keys.length === 2 && keys.includes('name') && keys.includes('phone');
  showDialog({
    kind: 'success',
    heading: () => t('completeTitle'),
    content: () => {
      if (article) return [line(t('nameLabel'), shown(data.name), 'result-name'), line(t('phoneLabel'), shown(data.phone), 'result-phone')];
      const ordered = formFields === null ? keys : [...formFields.map((field) => field.name).filter((key) => keys.includes(key)),
        ...keys.filter((key) => !formFields.some((field) => field.name === key))];
      return ordered.map((key) => {
        const def = formFields?.find((field) => field.name === key);
        const label = def === undefined ? key : lang === 'en' ? def.label.en : def.label.ja;
        // A select's value by its option's label, as the phone showed it.
        const option = def?.options?.find((candidate) => candidate.value === data[key]);
        const value = option === undefined ? shown(data[key]) : lang === 'en' ? option.label.en : option.label.ja;
        return line(label, value, `result-${key}`);
      });
    },
  });
}

function parse(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

translatePage('pcTitle');
bindLanguageSwitches();
newSessionButton.addEventListener('click', () => startSession());
notMyPhoneButton.addEventListener('click', rejectPhone);
document.addEventListener('visibilitychange', rotateIfDue);
// Leaving (closing the tab, reloading, navigating away) ends the session, so its phone is told at once.
window.addEventListener('pagehide', () => cancelOnServer(session));
// Back from the back-forward cache: the session was ended on the way out, so start a new one.
window.addEventListener('pageshow', (event) => {
  if (event.persisted) startSession();
});
startSession();
