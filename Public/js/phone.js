// The phone page (sub device), opened from the QR code as /phone.html?session=ID. It checks the session, tells
// the PC when typing starts, sends the form, and handles the article's four error cases:
//   1. invalid session on load: no form, a dialog that cannot be dismissed;
//   2. session expired while filling: found by polling every 5 s; the form is disabled, a locked dialog;
//   3. the server refuses the submission: its message in a dialog with OK; the button works again;
//   4. network error: a dialog with OK; the button works again.

import { apiHeaders, bindLanguageSwitches, setLiteral, setText, t, translatePage } from './i18n.js';
import { lockedDialogShowing, showDialog } from './dialog.js';

const SESSION_CHECK_INTERVAL_MS = 5000;
const REQUEST_TIMEOUT_MS = 15000;
// The server's limits, counted the same way: characters as people see them (grapheme clusters).
const LIMITS = { name: 20, phone: 15 };

const form = document.getElementById('info-form');
const checking = document.getElementById('checking');
const done = document.getElementById('done');
const submitButton = document.getElementById('submit');
const limitAnnouncer = document.getElementById('limit-announcer');
const doneHeading = document.getElementById('done-heading');
const fields = {
  name: { input: document.getElementById('name'), count: document.getElementById('name-count'), error: document.getElementById('name-error') },
  phone: { input: document.getElementById('phone'), count: document.getElementById('phone-count'), error: document.getElementById('phone-error') },
};

const sessionId = new URLSearchParams(location.search).get('session') ?? '';
const segmenter = typeof Intl.Segmenter === 'function' ? new Intl.Segmenter(undefined, { granularity: 'grapheme' }) : null;

let inputStarted = 'no'; // 'no' | 'sending' | 'done'
let submitting = false;
let finished = false;
let expired = false;
let poller = 0;
let polling = false;

function characters(text) {
  if (segmenter === null) return Array.from(text).length; // code points: close enough without Intl.Segmenter
  return Array.from(segmenter.segment(text)).length;
}

/**
 * GET /api/validate-session: 'valid', 'cancelled' (404 session_cancelled: the PC made a new QR code or left),
 * 'invalid' (other 400/404), 'completed' (409: the session was already submitted), 'unavailable' (other answers)
 * or 'network'.
 */
async function validate() {
  try {
    const response = await fetch(`/api/validate-session?session=${encodeURIComponent(sessionId)}`, {
      headers: apiHeaders(),
      cache: 'no-store',
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
    if (response.status === 409) return 'completed';
    if (response.status === 404) {
      const body = await response.json().catch(() => null);
      return body?.code === 'session_cancelled' ? 'cancelled' : 'invalid';
    }
    if (response.status === 400) return 'invalid';
    if (!response.ok) return 'unavailable';
    const result = await response.json();
    return result.valid === true ? 'valid' : 'invalid';
  } catch {
    return 'network';
  }
}

/**
 * POSTs JSON. `idempotencyKey` marks the call's retries as the same call: the server answers a retry after a lost
 * answer as it answered the first.
 */
function post(path, body, idempotencyKey) {
  const headers = { 'Content-Type': 'application/json' };
  if (idempotencyKey) headers['Idempotency-Key'] = idempotencyKey;
  return fetch(path, {
    method: 'POST',
    headers: apiHeaders(headers),
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  });
}

/** 128 random bits as hex (crypto.randomUUID needs HTTPS; a phone on the LAN may have plain HTTP). */
function newIdempotencyKey() {
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (byte) => byte.toString(16).padStart(2, '0')).join('');
}

/** One key per distinct submission: pressing the button again with the same form is a retry of the same call. */
let lastSubmission = { text: '', key: '' };

/** The key for input-started, made once: a retry of it is the same call. */
const inputStartedKey = newIdempotencyKey();

async function start() {
  if (sessionId === '') {
    showInvalid();
    return;
  }
  const result = await validate();
  checking.hidden = true;
  if (result === 'valid') {
    form.hidden = false;
    poller = setInterval(checkSession, SESSION_CHECK_INTERVAL_MS);
    fields.name.input.focus();
  } else if (result === 'invalid' || result === 'cancelled') {
    showInvalid();
  } else if (result === 'completed') {
    showLocked('sessionCompleted');
  } else {
    // The server could not be asked: say so, and ask again once the user closes the dialog.
    showDialog({ kind: 'error', content: () => t('networkError'), onClose: () => start() });
  }
}

/** Error case 1: the session does not exist (the PC made a new QR code, or the link is wrong). */
function showInvalid() {
  showLocked('sessionInvalid');
}

/** No form for this session, ever: a dialog that cannot be closed says why. */
function showLocked(messageKey) {
  checking.hidden = true;
  form.hidden = true;
  clearInterval(poller);
  showDialog({ kind: 'error', content: () => t(messageKey), locked: true });
}

/**
 * The session ended while the form was open: the PC made a new QR code or left ('cancelled'), or another device
 * submitted ('completed'). The form locks, with the article's words for the first.
 */
function endedElsewhere(result) {
  if (expired || finished) return;
  expired = true;
  clearInterval(poller);
  for (const element of form.querySelectorAll('input, button')) element.disabled = true;
  form.classList.add('disabled');
  showDialog({ kind: 'error', content: () => t(result === 'completed' ? 'sessionCompleted' : 'sessionInvalid'), locked: true });
}

/** Error case 2: polled every 5 s, as the article does; network errors are ignored (the phone may be offline). */
async function checkSession() {
  if (polling || finished || expired) return;
  polling = true;
  const result = await validate();
  polling = false;
  if (result === 'invalid' && !finished) expire();
  if (result === 'cancelled' || result === 'completed') endedElsewhere(result);
}

function expire() {
  if (expired) return;
  expired = true;
  clearInterval(poller);
  for (const element of form.querySelectorAll('input, button')) element.disabled = true;
  form.classList.add('disabled');
  showDialog({ kind: 'error', content: () => t('sessionExpired'), locked: true });
}

/** Tells the PC that typing started: once, on the first input; tried again on the next input if it failed. */
async function announceInput() {
  if (inputStarted !== 'no' || expired || finished) return;
  inputStarted = 'sending';
  try {
    const response = await post('/api/input-started', { sessionId }, inputStartedKey);
    inputStarted = response.ok || response.status === 409 ? 'done' : 'no';
    if (response.status === 404) {
      const body = await response.json().catch(() => null);
      if (body?.code === 'session_cancelled') endedElsewhere('cancelled');
      else expire();
    }
  } catch {
    inputStarted = 'no';
  }
}

/**
 * Updates a field's counter; returns its error message key, or null. The counter is not a live region (it would
 * be read on every keystroke): only reaching the limit, and passing it, are announced, once each time.
 */
function check(key, { showEmpty }) {
  const field = fields[key];
  const length = characters(field.input.value);
  field.count.textContent = `${length}/${LIMITS[key]}`;
  field.count.classList.toggle('over', length > LIMITS[key]);
  const level = length > LIMITS[key] ? 'over' : length === LIMITS[key] ? 'at' : 'under';
  let error = null;
  if (length > LIMITS[key]) error = `${key}TooLong`;
  else if (showEmpty && field.input.value.trim() === '') error = `${key}Required`;
  showFieldError(key, { key: error });
  if (level !== (field.level ?? 'under')) {
    if (level === 'at') limitAnnouncer.textContent = t('limitReached', { field: t(`${key}Label`), max: LIMITS[key] });
    else if (level === 'over') limitAnnouncer.textContent = t(error);
    else limitAnnouncer.textContent = ''; // back under: the same words can be announced again later
  }
  field.level = level;
  return error;
}

/** Shows a field's error under it (linked by the input's aria-describedby): one of the page's words, or a text. */
function showFieldError(key, { key: messageKey = null, text = null } = {}) {
  const field = fields[key];
  if (messageKey !== null) setText(field.error, messageKey);
  else setLiteral(field.error, text ?? '');
  const shown = field.error.textContent !== '';
  field.error.hidden = !shown;
  field.input.setAttribute('aria-invalid', String(shown));
}

function setSubmitting(on) {
  submitting = on;
  submitButton.disabled = on || expired;
  setText(submitButton, on ? 'submitting' : 'submit');
}

/**
 * Waits before each try of a submission: the first at once, then backing off (about 3.5 s in all, so the person is
 * not left waiting; pressing the button again sends the same body, which is just as safe).
 */
const SUBMIT_RETRY_DELAYS_MS = [0, 500, 1000, 2000];
/** Answers that mean "not now" rather than "no": the submission is sent again. */
const RETRIED_STATUSES = new Set([502, 503, 504]);

async function submit(event) {
  event.preventDefault();
  if (submitting || expired || finished) return;
  const errors = ['name', 'phone'].map((key) => check(key, { showEmpty: true })).filter((error) => error !== null);
  if (errors.length > 0) {
    fields[errors[0].startsWith('name') ? 'name' : 'phone'].input.focus();
    return;
  }
  setSubmitting(true);
  // The same body on every try: the server answers 200 to a repeat of the submission it already stored, so a
  // retry after an answer that was lost (or a 503 while the store stalled) ends in success, never in a false error.
  const body = { sessionId, name: fields.name.input.value, phone: fields.phone.input.value };
  const text = JSON.stringify(body);
  if (lastSubmission.text !== text) lastSubmission = { text, key: newIdempotencyKey() };
  const key = lastSubmission.key;
  let response = null;
  let result = null;
  for (const delay of SUBMIT_RETRY_DELAYS_MS) {
    if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay));
    if (expired) break;
    try {
      response = await post('/api/submit', body, key);
      result = await response.json().catch(() => null);
    } catch {
      response = null;
      // No answer. Offline, retrying cannot help: say so at once (error case 4); otherwise try again.
      if (navigator.onLine === false) break;
      continue;
    }
    if (!RETRIED_STATUSES.has(response.status)) break;
  }
  if (response === null) {
    // Error case 4: the request never got an answer, even after retrying.
    setSubmitting(false);
    // Focus comes back to the button, which was disabled (and so lost focus) while sending.
    if (!expired) showDialog({ kind: 'error', content: () => t('networkError'), returnFocus: submitButton });
    return;
  }
  if (response.ok) {
    finished = true;
    clearInterval(poller);
    form.hidden = true;
    done.hidden = false;
    // The page's own words (the server's message in Japanese is the same), so that the dialog, the page and a
    // later switch of language all say the same thing.
    showDialog({ kind: 'success', heading: () => t('doneHeading'), content: () => t('doneText'), returnFocus: doneHeading });
    return;
  }
  // The session ended on the PC's side: the form locks for good rather than inviting a retry.
  if (response.status === 404 && result?.code === 'session_cancelled') {
    setSubmitting(false);
    endedElsewhere('cancelled');
    return;
  }
  // Error case 3: the server said no (validation, already submitted, expired, server error): its own words.
  setSubmitting(false);
  let invalidInput = null;
  for (const fieldError of Array.isArray(result?.errors) ? result.errors : []) {
    if (!(fieldError?.path in fields)) continue;
    showFieldError(fieldError.path, { text: String(fieldError.msg ?? '') });
    invalidInput ??= fields[fieldError.path].input;
  }
  if (!expired && !lockedDialogShowing()) {
    const message = typeof result?.message === 'string' && result.message !== '' ? result.message : null;
    showDialog({ kind: 'error', content: () => message ?? t('submitFailed'), returnFocus: invalidInput ?? submitButton });
  }
}

translatePage('phoneTitle');
bindLanguageSwitches();
for (const key of Object.keys(fields)) {
  fields[key].input.addEventListener('input', () => {
    check(key, { showEmpty: false });
    announceInput();
  });
}
form.addEventListener('submit', submit);
start();
