// Types of tandem-client.js (Tandem's client for the PC side of a pairing). No build step: the module is plain
// JavaScript; this file is for editors and TypeScript users. Tests/e2e/test_client_module.py checks that its
// exports match the module's.

/** Options of `createPairing()`. */
export interface PairingOptions {
  /** The Tandem node, e.g. `https://tandem.example/`. Default: the origin this module was loaded from. */
  baseURL?: string | URL;
  /** `Accept-Language` of every request and the QR image's default alt text: `'ja'` (default) or `'en'`, or a
   * function read at each request (a page whose language switches). */
  lang?: string | (() => string);
  /** Aborting it closes the pairing (and aborts the request that makes it). */
  signal?: AbortSignal;
  /** The fetch to use (default: `globalThis.fetch`, looked up at each call). */
  fetch?: typeof globalThis.fetch;
  /** How the reader key travels: `'cookie'` (Tandem's HttpOnly cookie; the default on Tandem's own origin) or `'key'`
   * (`?key=`, the key kept in memory; the default from another origin, whose browser never sends the cookie). */
  auth?: 'cookie' | 'key';
}

/** The server's stable error codes (see Public/openapi.yaml, `ErrorCode`), plus the client's own. */
export type TandemErrorCode =
  | 'network_error'
  | 'timeout'
  | 'aborted'
  | 'bad_response'
  | 'cross_site_request'
  | 'rate_limited'
  | 'reader_key_required'
  | 'session_not_found'
  | 'session_cancelled'
  | 'service_unavailable'
  | (string & {});

/** A failure: `status` is the HTTP status (0: no answer), `code` the server's stable code. */
export class TandemError extends Error {
  constructor(message: string, details?: { status?: number; code?: string; cause?: unknown });
  readonly name: 'TandemError';
  status: number;
  code: TandemErrorCode;
}

/** A session's steps, then how it ended. */
export type PairingStatus = 'waiting' | 'connected' | 'inputting' | 'completed' | 'cancelled' | 'expired' | 'closed' | 'failed';

/** What the phone submitted: the form's fields in order (by default `{name, phone}`). */
export type Submission = Record<string, string>;

/** Every event type and its `data`. */
export interface PairingEventMap {
  /** First on every (re)connect: the session info; `expiresAt` is the local deadline by the server's time left. */
  'session-info': { type: 'session-info'; expiryTime: number; ttlMinutes: number; serverTime?: number; expiresAt: number };
  /** A phone opened (claimed) the session; `code` is the pairing code both screens show. */
  connected: { code: string | null };
  /** The phone started typing. */
  'input-started': Record<string, never>;
  /** The phone submitted; the pairing ends. */
  complete: Submission;
  /** The session ended without a submission (`pc-cancelled`, `pc-left`, `phone-rejected`); the pairing ends. */
  cancelled: { reason: string };
  /** The session is gone: `ttl` (its time ran out), `lost` (the server lost it), `gone` (the stream was refused, 404). */
  expired: { reason: 'ttl' | 'lost' | 'gone'; type?: 'expired' };
  /** The phone's page has been gone past the grace. */
  'phone-left': Record<string, never>;
  /** The phone's page is back. */
  'phone-returned': Record<string, never>;
  /** The server did not know the resume point: the state in one event, as sent. The step events it stands for
   * follow, marked `synthetic`. */
  resync: { status: string; code?: string; reason?: string; phoneAway?: boolean; [field: string]: unknown };
  /** A new QR token is shown (every `qrRotateSeconds` while nobody claimed the session); `qrURL` is a path on the node's own origin, else absolute. */
  qr: { qrURL: string; phoneURL: string };
  /** The stream dropped (`reconnecting`: the browser retries with Last-Event-ID) or is back (`open`). */
  link: { state: 'open' | 'reconnecting' };
  /** The stream was refused for good; the pairing ends (`failed`). */
  error: TandemError;
  /** The last event: how the pairing ended. */
  end: {
    reason: 'completed' | 'cancelled' | 'expired' | 'failed' | 'closed';
    /** Why: the cancel's reason (`pc-left`, …) or the expiry's (`ttl`, `lost`, `gone`). */
    cause?: string;
    error?: TandemError;
  };
}

export type PairingEventType = keyof PairingEventMap;

export interface PairingEvent<T extends PairingEventType = PairingEventType> {
  type: T;
  data: PairingEventMap[T];
  /** The SSE `id:` (the session log's position), when the event has one. */
  id: string | null;
  /** Made from a `resync`, not sent as such. */
  synthetic: boolean;
  pairing: Pairing;
}

/** Every event type, in no particular order. */
export const EVENT_TYPES: readonly PairingEventType[];

/** The local deadline (Date.now() clock) of a session info: by `expiryTime - serverTime` when both are there. */
export function deadlineOf(expiryTime: unknown, ttlMinutes: unknown, serverTime: unknown): number;

/** Makes a session and starts following it. Rejects with a `TandemError`. */
export function createPairing(options?: PairingOptions): Promise<Pairing>;

/** One session between this PC and a phone. */
export class Pairing {
  private constructor();
  readonly id: string;
  phoneURL: string;
  qrURL: string;
  qrRotateSeconds: number;
  expiresAt: number;
  pairingCode: string | null;
  status: PairingStatus;
  phoneAway: boolean;
  submission: Submission | null;
  ended: boolean;
  /** Milliseconds left, by the server's clock. */
  timeLeft(): number;
  /** An <img> of the QR code, kept current while the token rotates; `img` adopts an element of the page. */
  qrElement(options?: { img?: HTMLImageElement; alt?: string; size?: number }): HTMLImageElement;
  /** Calls `handler` for each event of `type` (`'*'`: all); returns a function that stops it. */
  on<T extends PairingEventType>(type: T, handler: (event: PairingEvent<T>) => void): () => void;
  on(type: '*', handler: (event: PairingEvent) => void): () => void;
  /** The events from now on; ends after `end`. */
  events(): AsyncGenerator<PairingEvent, void, void>;
  /** Cancels the session on the server (keepalive) and stops following it. */
  cancel(reason?: 'not-my-phone'): Promise<void>;
  /** "Not my phone": cancels with reason `phone-rejected`. */
  rejectPhone(): Promise<void>;
  /** Stops following the session without telling the server. */
  close(): void;
}
