// Tandem's client for the PC side of a pairing (docs/protocol.md), an ES module without dependencies or a build
// step. Tandem's own PC page (pc.js) is built on it, and so can a page of another origin listed in
// `cors.allowedOrigins` (examples/embed/): import it from the Tandem node, make a pairing, show its QR code, follow
// the phone's steps.
//
//   import { createPairing } from 'https://tandem.example/js/tandem-client.js';
//   const pairing = await createPairing({ lang: 'en' });
//   document.querySelector('#qr-slot').append(pairing.qrElement());
//   for await (const event of pairing.events()) {
//     if (event.type === 'complete') show(event.data); // {name, phone}, in the form's order
//   }
//
// What it takes care of:
// - The session: `POST /api/sessions`. On Tandem's own origin the reader key comes back as an HttpOnly cookie and
//   never touches script. From another origin that cookie (SameSite=Strict) is never sent, so the module keeps the
//   `readerKey` of the answer in memory (never in storage) and sends it as `?key=` to the stream, the QR rotation and
//   the cancel; requests go without credentials, so the server's plain CORS answer (`Access-Control-Allow-Origin`
//   for listed origins, no credentials) is all it needs.
// - The stream (`GET /api/events`, an EventSource): the browser reconnects by itself with `Last-Event-ID` and the
//   server replays what was missed; a `resync` (the server did not know the resume point) is turned into the step
//   events the consumer has not seen yet, so a consumer that handles the steps needs nothing else. If the stream
//   is refused for good (EventSource CLOSED), a HEAD of the stream tells why: 404 ends the pairing as `expired`,
//   a transient failure opens a new stream (events already delivered are not delivered again).
// - The time left, by the server's clock (`expiryTime - serverTime` of every session info), also after a reconnect.
// - The QR code: `qrElement()` is an <img> of `/api/qr` whose token is renewed every `qrRotateSeconds` while nobody
//   has claimed the session; the new image is decoded before it replaces the old one, so it never blinks.
// - `cancel()` / `rejectPhone()` (`POST /api/cancel`, keepalive, so it also works from `pagehide`).
// - Errors: a `TandemError` with the HTTP status and the server's stable `code`.
//
// Types: tandem-client.d.ts beside this file.

/** The steps of a session, in the order they happen; a session never moves back. */
const STEPS = { waiting: 0, connected: 1, inputting: 2, completed: 3 };
/** The events of the session's log, numbered by their SSE `id:` (the others carry none of their own). */
const LOG_EVENTS = new Set(['connected', 'input-started', 'complete', 'cancelled', 'phone-left', 'phone-returned']);
/** The keys of a `resync` that are not fields of the submission. */
const RESYNC_KEYS = new Set(['status', 'code', 'reason', 'phoneAway']);
/** Every event a pairing emits (`on(type)`, `events()`); `*` listens to all of them. */
export const EVENT_TYPES = Object.freeze([
  'session-info', 'connected', 'input-started', 'complete', 'cancelled', 'expired', 'phone-left', 'phone-returned',
  'resync', 'qr', 'link', 'error', 'end',
]);
const REQUEST_TIMEOUT_MS = 15000;
// After a failed fetch of a new QR token: soon, since the token shown is good for only two rotations.
const ROTATE_RETRY_MS = 2000;
// A PC clock this far off the server's makes expiryTime useless; the TTL then counts from now instead.
const CLOCK_SKEW_LIMIT_MS = 5000;
// How often a refused stream is opened again when the server says the session is still there.
const MAX_REOPENS = 5;
const REOPEN_DELAY_MS = 1000;
const QR_ALT = {
  ja: 'スマートフォンで開くページのQRコード',
  en: 'QR code of the page to open on the phone',
};

/** A failure, with the HTTP status (0 when there was no answer) and the server's stable `code`. */
export class TandemError extends Error {
  /**
   * @param {string} message
   * @param {{ status?: number, code?: string, cause?: unknown }} [details]
   */
  constructor(message, { status = 0, code = 'network_error', cause } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'TandemError';
    /** @type {number} */
    this.status = status;
    /** @type {string} */
    this.code = code;
  }
}

/**
 * Makes a session on the Tandem node and starts following it.
 * @param {import('./tandem-client.js').PairingOptions} [options]
 * @returns {Promise<Pairing>}
 * @throws {TandemError} the server refused (its `code`: `cross_site_request`, `rate_limited`, …), or no answer
 *   (`network_error`: also what a browser reports when CORS refuses, e.g. an origin not in `cors.allowedOrigins`)
 */
export async function createPairing(options = {}) {
  const client = new Client(options);
  const created = await client.json('POST', '/api/sessions', {});
  return new Pairing(client, created);
}

/** How the module talks to one Tandem node: its base URL, language, credentials and typed errors. */
class Client {
  constructor({ baseURL, lang = 'ja', fetch, signal, auth } = {}) {
    this.base = new URL(baseURL ?? new URL('../', import.meta.url).href, globalThis.location?.href);
    const sameOrigin = this.base.origin === globalThis.location?.origin;
    /** 'cookie': the HttpOnly reader cookie (Tandem's own page); 'key': `?key=` (another origin). */
    this.auth = auth ?? (sameOrigin ? 'cookie' : 'key');
    this.crossOrigin = !sameOrigin;
    this.lang = typeof lang === 'function' ? lang : () => lang;
    // Looked up at each call, so a fetch replaced after the import (a test's, a polyfill) is the one used.
    this.fetch = fetch ?? ((...args) => globalThis.fetch(...args));
    this.signal = signal ?? null;
  }

  /** The absolute URL of `path` with `params` (those that are null or undefined are left out). */
  url(path, params = {}) {
    const url = new URL(path, this.base);
    for (const [name, value] of Object.entries(params)) {
      if (value !== undefined && value !== null) url.searchParams.set(name, String(value));
    }
    return url.href;
  }

  /** Where an image of the node is loaded from: its own path on the node's own origin, else the absolute URL. */
  src(path) {
    return this.crossOrigin ? this.url(path) : path;
  }

  headers() {
    return { Accept: 'application/json', 'Accept-Language': this.lang() };
  }

  /** A request; its answer, or a TandemError with the server's code (no answer: `network_error`, `timeout`). */
  async send(method, path, params, { keepalive = false, timeoutMs = REQUEST_TIMEOUT_MS } = {}) {
    const signals = [AbortSignal.timeout(timeoutMs), this.signal].filter(Boolean);
    const init = {
      method,
      headers: this.headers(),
      // Same origin: the reader cookie goes along. Another origin: nothing does (the key is in the URL), so the
      // server's CORS answer needs no Access-Control-Allow-Credentials.
      credentials: this.crossOrigin ? 'omit' : 'same-origin',
      cache: 'no-store',
      keepalive,
      signal: signals.length > 1 && AbortSignal.any ? AbortSignal.any(signals) : signals[0],
    };
    let response;
    try {
      response = await this.fetch(this.url(path, params), init);
    } catch (error) {
      const timedOut = error?.name === 'TimeoutError';
      throw new TandemError(timedOut ? 'Tandem did not answer in time' : 'Tandem could not be reached', {
        code: timedOut ? 'timeout' : error?.name === 'AbortError' ? 'aborted' : 'network_error',
        cause: error,
      });
    }
    if (response.ok) return response;
    const body = await response.json().catch(() => null);
    throw new TandemError(String(body?.message ?? `HTTP ${response.status}`), {
      status: response.status,
      code: typeof body?.code === 'string' ? body.code : `http_${response.status}`,
    });
  }

  async json(method, path, params, options) {
    const response = await this.send(method, path, params, options);
    try {
      return await response.json();
    } catch (error) {
      throw new TandemError('Tandem answered something that is not JSON', { status: response.status, code: 'bad_response', cause: error });
    }
  }
}

/**
 * The local time (Date.now() clock) a session expires at. With the server's clock at hand (`serverTime`), the time
 * left is the server's: expiryTime - serverTime from now, whatever this PC's clock says and however late a stream was
 * resumed. Without it (an older server), expiryTime, unless this PC's clock disagrees with the server's.
 */
export function deadlineOf(expiryTime, ttlMinutes, serverTime) {
  const ttl = Number(ttlMinutes) * 60000;
  const expiry = Number(expiryTime);
  const now = Number(serverTime);
  if (Number.isFinite(expiry) && Number.isFinite(now)) return Date.now() + Math.max(0, expiry - now);
  if (!Number.isFinite(expiry)) return Date.now() + ttl;
  return Math.abs(expiry - Date.now() - ttl) > CLOCK_SKEW_LIMIT_MS && Number.isFinite(ttl) ? Date.now() + ttl : expiry;
}

function parse(text) {
  try {
    const value = JSON.parse(text);
    return value !== null && typeof value === 'object' ? value : {};
  } catch {
    return {};
  }
}

/** One session between this PC and a phone: made by `createPairing()`, followed until it ends. */
export class Pairing {
  #client;
  #readerKey;
  #listeners = new Map();
  #source = null;
  #images = new Set();
  #rotateTimer = 0;
  #expiryTimer = 0;
  #reopenTimer = 0;
  #reopens = 0;
  #lastSeen = 0;
  #opened = false;
  #linkLost = false;
  #rotatedAt = 0;
  #onVisible = () => this.#rotateIfDue();

  /** @param {Client} client @param {Record<string, unknown>} created the answer of POST /api/sessions */
  constructor(client, created) {
    this.#client = client;
    this.#readerKey = typeof created.readerKey === 'string' ? created.readerKey : null;
    /** The session's ID. */
    this.id = String(created.sessionId ?? '');
    /** What the QR code says: the phone page's URL, with the current pairing token. */
    this.phoneURL = String(created.phoneUrl ?? '');
    /** The QR image's URL (it changes with every rotation): a path on the node's own origin, else absolute. */
    this.qrURL = client.src(typeof created.qr === 'string' && created.qr !== '' ? created.qr : `/api/qr?session=${encodeURIComponent(this.id)}`);
    /** Seconds between two QR tokens; 0 when the server does not rotate them. */
    this.qrRotateSeconds = Number(created.qrRotateSeconds) > 0 ? Number(created.qrRotateSeconds) : 0;
    /** When the session expires, on this PC's clock (Date.now()), by the server's time left. */
    this.expiresAt = deadlineOf(created.expiryTime, created.ttlMinutes, created.serverTime);
    /** The four digits both screens show once a phone has claimed the session, else null. */
    this.pairingCode = null;
    /** @type {'waiting'|'connected'|'inputting'|'completed'|'cancelled'|'expired'|'closed'|'failed'} */
    this.status = 'waiting';
    /** Whether the phone's page has been gone past the grace (phone-left, until phone-returned). */
    this.phoneAway = false;
    /** What the phone submitted (the `complete` event's data), once completed. */
    this.submission = null;
    /** Whether the pairing has ended (completed, cancelled, expired, failed or closed): no more events. */
    this.ended = false;
    client.signal?.addEventListener('abort', () => this.close(), { once: true });
    globalThis.document?.addEventListener('visibilitychange', this.#onVisible);
    this.#rotatedAt = performance.now();
    this.#scheduleExpiry();
    this.#scheduleRotation(this.qrRotateSeconds * 1000);
    this.#open();
  }

  /** Milliseconds left before the session expires (by the server's clock), never below 0. */
  timeLeft() {
    return Math.max(0, this.expiresAt - Date.now());
  }

  /**
   * An <img> of the QR code, kept current while the token rotates (until a phone claims the session). Pass `img`
   * to use an element of the page; `alt` is set on a new element (by `lang`) or when given.
   * @param {{ img?: HTMLImageElement, alt?: string, size?: number }} [options]
   * @returns {HTMLImageElement}
   */
  qrElement({ img, alt, size = 280 } = {}) {
    const element = img ?? document.createElement('img');
    if (img === undefined) {
      element.width = size;
      element.height = size;
      element.className = 'tandem-qr';
    }
    if (alt !== undefined || img === undefined) element.alt = alt ?? QR_ALT[this.#client.lang()] ?? QR_ALT.en;
    // From another origin the image is read with CORS (Tandem's answers are Cross-Origin-Resource-Policy:
    // same-origin, which a plain cross-origin <img> would be refused by).
    if (this.#client.crossOrigin) element.crossOrigin = 'anonymous';
    element.src = this.qrURL;
    element.hidden = false;
    this.#images.add(element);
    return element;
  }

  /**
   * Calls `handler` for each event of `type` (`*`: every event); returns a function that stops it.
   * @param {string} type
   * @param {(event: import('./tandem-client.js').PairingEvent) => void} handler
   */
  on(type, handler) {
    if (type !== '*' && !EVENT_TYPES.includes(type)) throw new TypeError(`unknown pairing event: ${type}`);
    if (!this.#listeners.has(type)) this.#listeners.set(type, new Set());
    this.#listeners.get(type).add(handler);
    return () => this.#listeners.get(type)?.delete(handler);
  }

  /**
   * The events from now on, as an async iterator that ends after `end`.
   * @returns {AsyncGenerator<import('./tandem-client.js').PairingEvent, void, void>}
   */
  async *events() {
    if (this.ended) return;
    const queue = [];
    let wake = null;
    const stop = this.on('*', (event) => {
      queue.push(event);
      wake?.();
    });
    try {
      for (;;) {
        while (queue.length > 0) {
          const event = queue.shift();
          yield event;
          if (event.type === 'end') return;
        }
        await new Promise((resolve) => {
          wake = resolve;
        });
        wake = null;
      }
    } finally {
      stop();
    }
  }

  /**
   * Ends the session on the server (the phone is told at once) and stops following it. `keepalive`, so it may be
   * called from `pagehide`. Nothing is sent once the pairing has ended.
   * @param {'not-my-phone'} [reason]
   * @returns {Promise<void>} rejects with a TandemError
   */
  async cancel(reason) {
    if (this.ended) return;
    this.close();
    this.status = 'cancelled';
    await this.#client.send('POST', '/api/cancel', { session: this.id, reason, key: this.#keyParam() }, { keepalive: true });
  }

  /** "Not my phone": the phone that claimed the session is someone else's; the session is cancelled for it. */
  rejectPhone() {
    return this.cancel('not-my-phone');
  }

  /** Stops following the session (the stream, the QR rotation, the timers), without telling the server. */
  close() {
    if (this.ended) return;
    this.status = 'closed';
    this.#finish('closed');
  }

  // ---------------------------------------------------------------------------------------------------------------

  #keyParam() {
    return this.#client.auth === 'key' ? this.#readerKey : undefined;
  }

  #emit(type, data = {}, { id = null, synthetic = false } = {}) {
    const event = { type, data, id, synthetic, pairing: this };
    for (const key of [type, '*']) {
      for (const handler of [...(this.#listeners.get(key) ?? [])]) {
        try {
          handler(event);
        } catch (error) {
          queueMicrotask(() => {
            throw error; // reported like any uncaught error, without stopping the other handlers
          });
        }
      }
    }
  }

  #finish(reason, data = {}) {
    if (this.ended) return;
    this.ended = true;
    this.#source?.close();
    this.#source = null;
    clearTimeout(this.#rotateTimer);
    clearTimeout(this.#expiryTimer);
    clearTimeout(this.#reopenTimer);
    globalThis.document?.removeEventListener('visibilitychange', this.#onVisible);
    this.#images.clear();
    this.#emit('end', { ...data, reason });
  }

  /** Opens the stream. The reader key goes as the cookie (same origin) or `?key=`; EventSource resends it on retry. */
  #open() {
    const source = new EventSource(this.#client.url('/api/events', { session: this.id, key: this.#keyParam() }));
    this.#source = source;
    this.#opened = false;
    const on = (type, handler) =>
      source.addEventListener(type, (event) => {
        if (this.#source !== source || this.ended) return;
        // A stream opened again from the start replays the log: what was delivered is not delivered twice.
        const id = Number(event.lastEventId);
        if (LOG_EVENTS.has(type) && Number.isInteger(id) && event.lastEventId !== '') {
          if (id <= this.#lastSeen) return;
          this.#lastSeen = id;
        }
        handler(parse(event.data), event.lastEventId || null);
      });
    on('message', (data) => {
      if (data.type !== 'session-info') return;
      this.expiresAt = deadlineOf(data.expiryTime, data.ttlMinutes, data.serverTime);
      this.#scheduleExpiry();
      this.#emit('session-info', { ...data, expiresAt: this.expiresAt });
    });
    on('connected', (data, id) => this.#step('connected', data, { id }));
    on('input-started', (data, id) => this.#step('inputting', data, { id }));
    on('complete', (data, id) => this.#complete(data, { id }));
    on('cancelled', (data, id) => this.#cancelled(data, { id }));
    on('phone-left', (data, id) => this.#phoneAway(true, { id }));
    on('phone-returned', (data, id) => this.#phoneAway(false, { id }));
    on('resync', (data, id) => this.#resync(data, id));
    on('expired', (data) => this.#expired({ ...data, reason: 'lost' }));
    source.addEventListener('open', () => {
      if (this.#source !== source) return;
      this.#opened = true;
      this.#reopens = 0;
      if (this.#linkLost) {
        this.#linkLost = false;
        this.#emit('link', { state: 'open' });
      }
    });
    source.addEventListener('error', () => {
      if (this.#source !== source || this.ended) return;
      // CONNECTING: the browser retries by itself, with Last-Event-ID. CLOSED: the server refused the stream.
      if (source.readyState === EventSource.CONNECTING) {
        if (!this.#linkLost) {
          this.#linkLost = true;
          this.#emit('link', { state: 'reconnecting' });
        }
      } else if (source.readyState === EventSource.CLOSED) {
        this.#refused();
      }
    });
  }

  /** The stream was refused: a HEAD says whether the session is gone (404), else it is opened again, a few times. */
  async #refused() {
    this.#source?.close();
    this.#source = null;
    let status = 0;
    try {
      status = (await this.#client.fetch(this.#client.url('/api/events', { session: this.id }), {
        method: 'HEAD',
        credentials: this.#client.crossOrigin ? 'omit' : 'same-origin',
        cache: 'no-store',
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      })).status;
    } catch {
      status = 0;
    }
    if (this.ended) return;
    if (status === 404) {
      this.#expired({ reason: 'gone' });
    } else if ((status === 0 || status === 200 || status === 429 || status >= 500) && this.#reopens < MAX_REOPENS) {
      this.#reopens += 1;
      if (!this.#linkLost) {
        this.#linkLost = true;
        this.#emit('link', { state: 'reconnecting' });
      }
      this.#reopenTimer = setTimeout(() => this.#open(), REOPEN_DELAY_MS * this.#reopens);
    } else {
      const error = new TandemError('Tandem refused the session stream', {
        status, code: status === 403 ? 'reader_key_required' : status === 0 ? 'network_error' : `http_${status}`,
      });
      this.status = 'failed';
      this.#emit('error', error);
      this.#finish('failed', { error });
    }
  }

  /** The phone moved the session to `step` (connected, inputting); a replay never moves it back. */
  #step(step, data, options) {
    if (STEPS[this.status] === undefined) return;
    const claimedNow = this.pairingCode === null && typeof data.code === 'string' && data.code !== '';
    if (claimedNow) this.pairingCode = data.code;
    if (STEPS[step] <= STEPS[this.status] && !claimedNow) return;
    if (STEPS[step] > STEPS[this.status]) this.status = step;
    clearTimeout(this.#rotateTimer); // the QR code is used up
    this.#emit(step === 'inputting' ? 'input-started' : 'connected', step === 'connected' ? { code: this.pairingCode } : {}, options);
  }

  #complete(data, options) {
    if (this.ended) return;
    this.status = 'completed';
    this.phoneAway = false;
    this.submission = data;
    this.#emit('complete', data, options);
    this.#finish('completed');
  }

  #cancelled(data, options) {
    if (this.ended) return;
    this.status = 'cancelled';
    this.#emit('cancelled', { reason: String(data.reason ?? '') }, options);
    this.#finish('cancelled', { cause: String(data.reason ?? '') });
  }

  #expired(data) {
    if (this.ended) return;
    this.status = 'expired';
    this.#emit('expired', data);
    this.#finish('expired', { cause: data.reason });
  }

  #phoneAway(away, options) {
    if (this.ended || this.phoneAway === away) return;
    this.phoneAway = away;
    this.#emit(away ? 'phone-left' : 'phone-returned', {}, options);
  }

  /** The session's state in one event: `resync` as it came, then the step events it stands for that were not seen. */
  #resync(data, id) {
    const lastSeen = Number(id);
    if (Number.isInteger(lastSeen) && lastSeen > this.#lastSeen) this.#lastSeen = lastSeen;
    this.#emit('resync', data, { id });
    const synthetic = { id, synthetic: true };
    const step = STEPS[data.status];
    if (data.status === 'cancelled') {
      this.#cancelled(data, synthetic);
      return;
    }
    if (step >= STEPS.connected) this.#step('connected', data, synthetic);
    if (step >= STEPS.inputting) this.#step('inputting', data, synthetic);
    if (step === STEPS.completed) {
      this.#complete(Object.fromEntries(Object.entries(data).filter(([key]) => !RESYNC_KEYS.has(key))), synthetic);
    } else if (step >= STEPS.connected) {
      this.#phoneAway(data.phoneAway === true, synthetic);
    }
  }

  #scheduleExpiry() {
    clearTimeout(this.#expiryTimer);
    if (this.ended) return;
    // Timers are capped at 2^31-1 ms; a longer TTL checks again then.
    this.#expiryTimer = setTimeout(() => {
      if (this.timeLeft() > 0) this.#scheduleExpiry();
      else if (this.status !== 'completed') this.#expired({ reason: 'ttl' });
    }, Math.min(this.timeLeft(), 2 ** 31 - 1));
  }

  #waitingForPhone() {
    return !this.ended && this.status === 'waiting' && this.qrRotateSeconds > 0;
  }

  #scheduleRotation(delayMs) {
    clearTimeout(this.#rotateTimer);
    if (this.#waitingForPhone()) this.#rotateTimer = setTimeout(() => this.#rotate(), Math.max(0, delayMs));
  }

  /** A new QR code may be due when the page comes back to the foreground (timers are throttled in the background). */
  #rotateIfDue() {
    if (document.visibilityState !== 'visible' || !this.#waitingForPhone()) return;
    if (performance.now() - this.#rotatedAt >= this.qrRotateSeconds * 1000) this.#rotate();
  }

  /**
   * GET /api/pairing: a new token, its phone URL and its QR image. The new image is decoded before it replaces the
   * old one; the URL changes with it. A failure leaves the shown code (good for another rotation) and retries soon.
   */
  async #rotate() {
    if (!this.#waitingForPhone()) return;
    let next = null;
    try {
      next = await this.#client.json('GET', '/api/pairing', { session: this.id, key: this.#keyParam() });
    } catch {
      next = null;
    }
    if (!this.#waitingForPhone()) return;
    if (next !== null && typeof next.qr === 'string' && next.qr !== '' && (await this.#showQR(this.#client.src(next.qr), String(next.phoneUrl ?? '')))) {
      this.#rotatedAt = performance.now();
      if (Number(next.rotateSeconds) > 0) this.qrRotateSeconds = Number(next.rotateSeconds);
      this.#scheduleRotation(this.qrRotateSeconds * 1000);
    } else {
      this.#scheduleRotation(ROTATE_RETRY_MS);
    }
  }

  async #showQR(src, phoneURL) {
    const image = new Image();
    if (this.#client.crossOrigin) image.crossOrigin = 'anonymous';
    image.src = src;
    try {
      await image.decode();
    } catch {
      return false;
    }
    if (!this.#waitingForPhone()) return false;
    this.qrURL = src;
    this.phoneURL = phoneURL;
    // The same URL, now in the document's list of available images: the swap shows it at once.
    for (const element of this.#images) element.src = src;
    this.#emit('qr', { qrURL: src, phoneURL });
    return true;
  }
}
