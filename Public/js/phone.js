// The phone page (sub device), opened from the QR code as /phone.html?session=ID&t=TOKEN (the article's pages
// make ?session=ID alone). It checks the session (the first check claims it for this device: the answer sets the
// phone key cookie), shows the pairing code, tells the PC when typing starts, sends the form, and handles the
// article's four error cases:
//   1. invalid session on load: no form, a dialog that cannot be dismissed;
//   2. session expired while filling: the form is disabled, a locked dialog;
//   3. the server refuses the submission: its message in a dialog with OK; the button works again;
//   4. network error: a dialog with OK; the button works again.
// and those of the pairing (docs/protocol.md): another device claimed the session first (409 already_claimed), the
// QR code is out of date (410 qr_stale), and what the phone's own channel (GET /api/phone/events) tells it at once:
// the PC left, ended the session or refused this phone, the session expired or was submitted. Each of these locks
// the page with a dialog that cannot be dismissed. The article's 5 s poll stays, as a second way to learn the same.

import { apiHeaders, bindLanguageSwitches, lang, onLanguageChange, setLiteral, setText, t, translatePage } from './i18n.js';
import { lockedDialogShowing, showDialog } from './dialog.js';
import { isArticleForm } from './form.js';

const SESSION_CHECK_INTERVAL_MS = 5000;
const CHANNEL_RETRY_MS = 5000;
const REASON_WAIT_MS = 3000;
const REQUEST_TIMEOUT_MS = 15000;
// The server's limits, counted the same way: characters as people see them (grapheme clusters). A configured form
// (GET /api/form) replaces these with its own.
const LIMITS = { name: 20, phone: 15 };

const form = document.getElementById('info-form');
const checking = document.getElementById('checking');
const done = document.getElementById('done');
const submitButton = document.getElementById('submit');
const limitAnnouncer = document.getElementById('limit-announcer');
const doneHeading = document.getElementById('done-heading');
const pairing = document.getElementById('pairing');
const pairingCode = document.getElementById('pairing-code');
// The form's fields by name: the article's two, written in the page, or those of the configured form (each then
// with its definition, `def`, from GET /api/form).
let fields = {
  name: { input: document.getElementById('name'), count: document.getElementById('name-count'), error: document.getElementById('name-error') },
  phone: { input: document.getElementById('phone'), count: document.getElementById('phone-count'), error: document.getElementById('phone-error') },
};

const query = new URLSearchParams(location.search);
const sessionId = query.get('session') ?? '';
// The QR code's pairing token: needed once, to claim the session; after that the phone key cookie is enough.
let pairingToken = query.get('t');
const segmenter = typeof Intl.Segmenter === 'function' ? new Intl.Segmenter(undefined, { granularity: 'grapheme' }) : null;

let inputStarted = 'no'; // 'no' | 'sending' | 'done'
let submitting = false;
let finished = false; // this page submitted the form
let locked = null; // the message key of the locked dialog, once the session is over for this page
let poller = 0;
let polling = false;
let channel = null; // the phone's EventSource
let channelRetry = 0;

function characters(text) {
  if (segmenter === null) return Array.from(text).length; // code points: close enough without Intl.Segmenter
  return Array.from(segmenter.segment(text)).length;
}

/**
 * GET /api/validate-session, with the QR code's token until the session is claimed (then the phone key cookie,
 * which the browser sends by itself, is enough). Answers `{ state, pairingCode }`, the state one of 'valid',
 * 'cancelled' (404 session_cancelled: the PC made a new QR code or left), 'invalid' (other 400/404), 'completed'
 * (409 already_submitted), 'claimed' (409 already_claimed: another device has the session), 'stale' (410
 * qr_stale: an old QR code), 'unavailable' (other answers) or 'network'.
 */
async function validate() {
  let url = `/api/validate-session?session=${encodeURIComponent(sessionId)}`;
  if (pairingToken) url += `&t=${encodeURIComponent(pairingToken)}`;
  try {
    const response = await fetch(url, {
      headers: apiHeaders(),
      cache: 'no-store',
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
    const body = await response.json().catch(() => null);
    const refused = refusal(response.status, body);
    if (refused !== null) return { state: refused };
    if (response.status === 409) return { state: 'completed' };
    if (response.status === 400 || response.status === 404) return { state: 'invalid' };
    if (!response.ok) return { state: 'unavailable' };
    if (body?.valid !== true) return { state: 'invalid' };
    return { state: 'valid', pairingCode: body.pairingCode };
  } catch {
    return { state: 'network' };
  }
}

/**
 * What the answer to any of the phone's calls says when it ends the session for this page: 'claimed' (409
 * already_claimed), 'stale' (410 qr_stale) or 'cancelled' (404 session_cancelled); null for any other answer.
 */
function refusal(status, body) {
  if (status === 409 && body?.code === 'already_claimed') return 'claimed';
  if (status === 410) return 'stale';
  if (status === 404 && body?.code === 'session_cancelled') return 'cancelled';
  return null;
}

/**
 * The locked dialog's words for each way a session is not (or no longer) this page's. The server's messages for
 * already_claimed and qr_stale are the same words; the page's own are used so that a later switch of language
 * translates the dialog too.
 */
const LOCK_MESSAGES = {
  claimed: 'alreadyClaimed',
  stale: 'qrStale',
  cancelled: 'sessionInvalid',
  completed: 'sessionCompleted',
  invalid: 'sessionInvalid',
};

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
    lock('sessionInvalid');
    return;
  }
  const [result] = await Promise.all([validate(), formLoaded]);
  checking.hidden = true;
  if (result.state === 'valid') {
    claimed(result.pairingCode);
    form.hidden = false;
    poller = setInterval(checkSession, SESSION_CHECK_INTERVAL_MS);
    openChannel();
    Object.values(fields)[0].input.focus();
  } else if (result.state in LOCK_MESSAGES) {
    // Error case 1 (the session does not exist: the PC made a new QR code, or the link is wrong), or the session
    // is not this device's to fill (claimed by another, an old QR code, already submitted): no form, ever.
    lock(LOCK_MESSAGES[result.state]);
  } else {
    // The server could not be asked: say so, and ask again once the user closes the dialog.
    showDialog({ kind: 'error', content: () => t('networkError'), onClose: () => start() });
  }
}

/**
 * The session is this device's: its pairing code shows (to compare with the PC's), and the token leaves the
 * address bar, since the phone key cookie now carries the claim: a reload or a shared link must not carry a token
 * that no longer matters.
 */
function claimed(code) {
  showPairingCode(code);
  if (pairingToken === null) return;
  pairingToken = null;
  try {
    const url = new URL(location.href);
    url.searchParams.delete('t');
    history.replaceState(history.state, '', url);
  } catch {
    // an address that cannot be rewritten: the cookie works all the same
  }
}

function showPairingCode(code) {
  if (typeof code !== 'string' || code === '') return;
  pairingCode.textContent = code;
  pairing.hidden = false;
}

/**
 * This page is done with the session (it ended or expired, or it is another device's): the form is disabled (or
 * never shown), the poll and the channel stop, and a dialog that cannot be closed says why. The first reason wins,
 * except that "the PC refused this phone" replaces the general "invalid session" (a poll may learn of the
 * cancellation before the channel says why). Nothing locks a page that has submitted: it shows its success.
 */
function lock(messageKey) {
  if (finished) return;
  if (locked !== null && !(locked === 'sessionInvalid' && messageKey === 'phoneRejected')) return;
  locked = messageKey;
  clearInterval(poller);
  clearTimeout(channelRetry);
  // The channel may still say why the session ended (a poll can learn of a cancellation just before the channel,
  // reconnecting, tells that the PC refused this phone): it stays open a moment for that.
  if (messageKey === 'sessionInvalid' && channel !== null) setTimeout(closeChannel, REASON_WAIT_MS);
  else closeChannel();
  checking.hidden = true;
  for (const element of form.querySelectorAll('input, button, select')) element.disabled = true;
  form.classList.add('disabled');
  showDialog({ kind: 'error', content: () => t(messageKey), locked: true });
}

/** Acts on what a later validate-session said (the poll, or the check after the channel was refused). */
function apply(result) {
  if (finished || locked !== null) return;
  if (result.state === 'valid') showPairingCode(result.pairingCode);
  // Error case 2: a session that is unknown while its form is open has expired.
  else if (result.state === 'invalid') lock('sessionExpired');
  else if (result.state === 'completed') completedElsewhere();
  else if (result.state in LOCK_MESSAGES) lock(LOCK_MESSAGES[result.state]);
}

/** The session was submitted: by another page (locked), or by this one (its answer shows the success). */
function completedElsewhere() {
  if (submitting || finished) return;
  lock('sessionCompleted');
}

/** Error case 2: polled every 5 s, as the article does; network errors are ignored (the phone may be offline). */
async function checkSession() {
  if (polling || finished || locked !== null) return;
  polling = true;
  const result = await validate();
  polling = false;
  apply(result);
}

/**
 * The phone's own channel: the server tells this page at once when the session ends, with no poll. EventSource
 * reconnects by itself (with Last-Event-ID); a refused stream (CLOSED) is followed by a validate-session, which
 * says why, and the channel opens again a little later if the session is still good.
 */
function openChannel() {
  if (channel !== null || finished || locked !== null || typeof EventSource !== 'function') return;
  const source = new EventSource(`/api/phone/events?session=${encodeURIComponent(sessionId)}`);
  channel = source;
  const data = (event) => {
    try {
      return JSON.parse(event.data) ?? {};
    } catch {
      return {};
    }
  };
  // First on every (re)connect: the session's state now.
  source.addEventListener('message', (event) => {
    const info = data(event);
    if (info.type !== 'session-info') return;
    showPairingCode(info.pairingCode);
    applyStatus(info.status, info.reason);
  });
  // The PC has been gone past the grace: the article's words for a session whose QR screen went away.
  source.addEventListener('pc-left', () => lock('sessionInvalid'));
  source.addEventListener('cancelled', (event) => lock(data(event).reason === 'phone-rejected' ? 'phoneRejected' : 'sessionInvalid'));
  source.addEventListener('expired', () => lock('sessionExpired'));
  source.addEventListener('completed', () => completedElsewhere());
  // The server did not know where this stream left off: the state in one event instead.
  source.addEventListener('resync', (event) => {
    const state = data(event);
    showPairingCode(state.pairingCode);
    applyStatus(state.status, state.reason);
  });
  source.addEventListener('error', () => {
    if (source.readyState !== EventSource.CLOSED || channel !== source) return;
    channel = null;
    recheck();
  });
}

/** A session's status as the channel gives it (session info, resync). */
function applyStatus(state, reason) {
  if (state === 'cancelled') lock(reason === 'phone-rejected' ? 'phoneRejected' : 'sessionInvalid');
  else if (state === 'completed') completedElsewhere();
}

function closeChannel() {
  channel?.close();
  channel = null;
}

/** The channel was refused: validate-session says why; if the session is still good, the channel opens again. */
async function recheck() {
  if (finished || locked !== null) return;
  const result = await validate();
  apply(result);
  if (finished || locked !== null) return;
  clearTimeout(channelRetry);
  channelRetry = setTimeout(() => {
    if (channel === null) openChannel();
  }, CHANNEL_RETRY_MS);
}

/** Tells the PC that typing started: once, on the first input; tried again on the next input if it failed. */
async function announceInput() {
  if (inputStarted !== 'no' || locked !== null || finished) return;
  inputStarted = 'sending';
  try {
    const response = await post('/api/input-started', { sessionId }, inputStartedKey);
    const body = response.ok ? null : await response.json().catch(() => null);
    const refused = refusal(response.status, body);
    // 409 already_submitted: nothing left to announce (the channel and the poll tell the rest).
    inputStarted = response.ok || (response.status === 409 && refused === null) ? 'done' : 'no';
    if (refused !== null) lock(LOCK_MESSAGES[refused]);
    else if (response.status === 404) lock('sessionExpired');
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
  const def = field.def;
  if (def !== undefined && (def.type === 'checkbox' || def.type === 'select')) {
    const empty = def.type === 'checkbox' ? !field.input.checked : field.input.value === '';
    const text = showEmpty && def.required && empty ? t(def.type === 'checkbox' ? 'fieldMustBeChecked' : 'fieldChoose', { field: labelOf(def) }) : null;
    showFieldError(key, { text });
    return text;
  }
  const limit = LIMITS[key];
  const length = characters(field.input.value);
  field.count.textContent = `${length}/${limit}`;
  field.count.classList.toggle('over', length > limit);
  const level = length > limit ? 'over' : length === limit ? 'at' : 'under';
  const name = def === undefined ? t(`${key}Label`) : labelOf(def);
  let error = null;
  let errorText = null;
  if (length > limit) {
    error = `${key}TooLong`;
    errorText = def === undefined ? null : t('fieldTooLong', { field: name, max: limit });
  } else if (showEmpty && field.input.value.trim() === '' && (def === undefined || def.required)) {
    error = `${key}Required`;
    errorText = def === undefined ? null : t('fieldRequired', { field: name });
  }
  if (def === undefined) showFieldError(key, { key: error });
  else showFieldError(key, { text: errorText });
  if (level !== (field.level ?? 'under')) {
    if (level === 'at') limitAnnouncer.textContent = t('limitReached', { field: name, max: limit });
    else if (level === 'over') limitAnnouncer.textContent = errorText ?? t(error);
    else limitAnnouncer.textContent = ''; // back under: the same words can be announced again later
  }
  field.level = level;
  return errorText ?? error;
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
  submitButton.disabled = on || locked !== null;
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
  if (submitting || locked !== null || finished) return;
  const invalid = Object.keys(fields).filter((key) => check(key, { showEmpty: true }) !== null);
  if (invalid.length > 0) {
    fields[invalid[0]].input.focus();
    return;
  }
  setSubmitting(true);
  // The same body on every try: the server answers 200 to a repeat of the submission it already stored, so a
  // retry after an answer that was lost (or a 503 while the store stalled) ends in success, never in a false error.
  const body = { sessionId };
  for (const [key, field] of Object.entries(fields)) {
    body[key] = field.def?.type === 'checkbox' ? field.input.checked : field.input.value;
  }
  const text = JSON.stringify(body);
  if (lastSubmission.text !== text) lastSubmission = { text, key: newIdempotencyKey() };
  const key = lastSubmission.key;
  let response = null;
  let result = null;
  for (const delay of SUBMIT_RETRY_DELAYS_MS) {
    if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay));
    if (locked !== null) break;
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
    if (locked === null) showDialog({ kind: 'error', content: () => t('networkError'), returnFocus: submitButton });
    return;
  }
  if (response.ok) {
    finished = true;
    submitting = false;
    clearInterval(poller);
    clearTimeout(channelRetry);
    closeChannel();
    form.hidden = true;
    done.hidden = false;
    // The page's own words (the server's message in Japanese is the same), so that the dialog, the page and a
    // later switch of language all say the same thing.
    showDialog({ kind: 'success', heading: () => t('doneHeading'), content: () => t('doneText'), returnFocus: doneHeading });
    return;
  }
  // The session ended on the PC's side, or it is not this device's: the form locks for good rather than inviting
  // a retry.
  const refused = refusal(response.status, result);
  if (refused !== null) {
    setSubmitting(false);
    lock(LOCK_MESSAGES[refused]);
    return;
  }
  // Error case 3: the server said no (validation, already submitted, expired, server error): its own words.
  setSubmitting(false);
  let invalidInput = null;
  for (const fieldError of Array.isArray(result?.errors) ? result.errors : []) {
    if (typeof fieldError?.path !== 'string' || !Object.hasOwn(fields, fieldError.path)) continue;
    showFieldError(fieldError.path, { text: String(fieldError.msg ?? '') });
    invalidInput ??= fields[fieldError.path].input;
  }
  if (locked === null && !lockedDialogShowing()) {
    const message = typeof result?.message === 'string' && result.message !== '' ? result.message : null;
    showDialog({ kind: 'error', content: () => message ?? t('submitFailed'), returnFocus: invalidInput ?? submitButton });
  }
}

translatePage('phoneTitle');
bindLanguageSwitches();
/** Listens to a field: its counter and error follow the typing, and the first input tells the PC. */
function watch(key) {
  const update = () => {
    check(key, { showEmpty: false });
    announceInput();
  };
  fields[key].input.addEventListener('input', update);
  if (fields[key].def !== undefined) fields[key].input.addEventListener('change', update);
}

/** A configured field's label in the page's language. */
function labelOf(def) {
  return lang === 'en' ? def.label.en : def.label.ja;
}

const AUTOCOMPLETE = { email: 'email', tel: 'tel', text: 'on', number: 'off' };

/**
 * Builds one configured field like the article's: a label, a counter for text, the control, and an error line
 * that the control's aria-describedby names. Labels and options are text nodes (never HTML): they come from the
 * server's configuration.
 */
function buildField(def) {
  const id = `field-${def.name}`;
  const wrapper = document.createElement('div');
  wrapper.className = def.type === 'checkbox' ? 'field field-checkbox' : 'field';
  const head = document.createElement('div');
  head.className = 'field-head';
  const label = document.createElement('label');
  label.htmlFor = id;
  const error = document.createElement('p');
  error.id = `${id}-error`;
  error.className = 'field-error';
  error.hidden = true;
  let input;
  let count = null;
  if (def.type === 'select') {
    input = document.createElement('select');
    const empty = document.createElement('option');
    empty.value = '';
    input.append(empty);
    for (const option of def.options ?? []) {
      const element = document.createElement('option');
      element.value = option.value;
      input.append(element);
    }
  } else {
    input = document.createElement('input');
    input.type = def.type === 'number' ? 'text' : def.type === 'checkbox' ? 'checkbox' : def.type;
    if (def.type === 'number') input.inputMode = 'decimal';
    if (def.type === 'tel') input.inputMode = 'tel';
    if (def.type !== 'checkbox') input.autocomplete = AUTOCOMPLETE[def.type] ?? 'on';
  }
  input.id = id;
  input.name = def.name;
  if (def.required) input.setAttribute('aria-required', 'true');
  const described = [error.id];
  if (def.type !== 'checkbox' && def.type !== 'select') {
    count = document.createElement('span');
    count.id = `${id}-count`;
    count.className = 'counter';
    count.textContent = `0/${def.maxLength}`;
    described.push(count.id);
    LIMITS[def.name] = def.maxLength;
  }
  input.setAttribute('aria-describedby', described.join(' '));
  if (def.type === 'checkbox') {
    head.append(input, label);
  } else {
    head.append(label);
    if (count !== null) head.append(count);
  }
  wrapper.append(head);
  if (def.type !== 'checkbox') wrapper.append(input);
  wrapper.append(error);
  return { wrapper, label, field: { input, count, error, def } };
}

/** Shows the configured fields' labels and options in the page's language. */
function labelFields() {
  for (const field of Object.values(fields)) {
    const def = field.def;
    if (def === undefined) continue;
    field.label.textContent = labelOf(def) + (def.required ? ' *' : '');
    if (def.type === 'select') {
      const [empty, ...options] = field.input.options;
      empty.textContent = t('choosePlaceholder');
      options.forEach((element, index) => { element.textContent = lang === 'en' ? def.options[index].label.en : def.options[index].label.ja; });
    }
    if (!field.error.hidden) check(def.name, { showEmpty: true });
  }
}

/**
 * Reads the form (GET /api/form). The article's form is already in the page; any other replaces its two fields.
 * When the form cannot be read, the page keeps the article's (the server then says which fields it misses).
 */
async function loadForm() {
  let list = null;
  try {
    const response = await fetch('/api/form', { headers: apiHeaders() });
    const body = response.ok ? await response.json() : null;
    if (Array.isArray(body?.fields) && body.fields.length > 0 && body.fields.every((field) => typeof field?.name === 'string')) list = body.fields;
  } catch {
    list = null;
  }
  if (list === null || isArticleForm(list)) {
    for (const key of Object.keys(fields)) watch(key);
    return;
  }
  for (const element of form.querySelectorAll('.field')) element.remove();
  // The article's lead names its two fields.
  setText(form.querySelector('.lead'), 'phoneLeadForm');
  const built = {};
  for (const def of list) {
    const { wrapper, label, field } = buildField(def);
    submitButton.before(wrapper);
    built[def.name] = { ...field, label };
  }
  fields = built;
  labelFields();
  for (const key of Object.keys(fields)) watch(key);
}

const formLoaded = loadForm();
onLanguageChange(() => labelFields());
form.addEventListener('submit', submit);
// Leaving the page closes the channel (the PC is told, after the grace, that the phone has gone), also when the
// page is kept in the back-forward cache; coming back from there opens it again and asks after the session.
window.addEventListener('pagehide', () => closeChannel());
window.addEventListener('pageshow', (event) => {
  if (!event.persisted || finished || locked !== null || form.hidden) return;
  checkSession();
  openChannel();
});
start();
