// The PC side of a Tandem pairing, embedded in a page of another origin. Tandem must list this page's origin in
// `cors.allowedOrigins`: the module import, the session, the stream and the QR image are all CORS requests.

const root = document.getElementById('tandem-embed');
const qrSlot = document.getElementById('qr-slot');
const phoneURL = document.getElementById('phone-url');
const status = document.getElementById('status');
const code = document.getElementById('pairing-code');
const countdown = document.getElementById('countdown');
const link = document.getElementById('link');
const steps = document.getElementById('steps');
const result = document.getElementById('result');
const error = document.getElementById('error');

const STATUS = {
  waiting: 'Scan the QR code with your phone.',
  connected: 'Your phone is connected.',
  'input-started': 'Your phone is typing…',
  complete: 'Done: your phone sent the form.',
  cancelled: 'The session was cancelled.',
  expired: 'The session expired. Reload the page for a new QR code.',
};

function setStatus(state) {
  status.dataset.state = state;
  status.textContent = STATUS[state];
}

function fail(message) {
  status.dataset.state = 'failed';
  status.textContent = 'Tandem is not available.';
  error.textContent = message;
  error.hidden = false;
}

function step(type) {
  const item = document.createElement('li');
  item.dataset.step = type;
  item.textContent = type;
  steps.append(item);
}

/** Every field the phone sent, in order; what the phone typed is text, never HTML. */
function showSubmission(data) {
  for (const [key, value] of Object.entries(data)) {
    const term = document.createElement('dt');
    term.textContent = key;
    const detail = document.createElement('dd');
    detail.dataset.field = key;
    detail.textContent = String(value);
    result.append(term, detail);
  }
}

async function main() {
  const base = new URLSearchParams(location.search).get('tandem') ?? root.dataset.tandem;
  let client;
  try {
    client = await import(new URL('/js/tandem-client.js', base).href);
  } catch (cause) {
    // A Tandem that does not list this origin sends no Access-Control-Allow-Origin: the browser refuses the module.
    fail(`Could not load the Tandem client from ${base} (is this origin in cors.allowedOrigins?)`);
    console.error(cause);
    return;
  }
  let pairing;
  try {
    pairing = await client.createPairing({ baseURL: base, lang: 'en' });
  } catch (cause) {
    fail(`Tandem refused to start a pairing: ${cause.code} ${cause.message}`);
    return;
  }
  qrSlot.append(pairing.qrElement());
  phoneURL.textContent = pairing.phoneURL;
  setStatus('waiting');
  const ticker = setInterval(() => {
    const seconds = Math.ceil(pairing.timeLeft() / 1000);
    countdown.textContent = `${String(Math.floor(seconds / 60)).padStart(2, '0')}:${String(seconds % 60).padStart(2, '0')}`;
  }, 250);
  addEventListener('pagehide', () => pairing.cancel().catch(() => {}));

  for await (const event of pairing.events()) {
    switch (event.type) {
      case 'qr':
        phoneURL.textContent = event.data.phoneURL;
        break;
      case 'connected':
        code.textContent = event.data.code ?? '-';
        step(event.type);
        setStatus('connected');
        break;
      case 'input-started':
        step(event.type);
        setStatus('input-started');
        break;
      case 'complete':
        step(event.type);
        showSubmission(event.data);
        setStatus('complete');
        break;
      case 'cancelled':
      case 'expired':
        step(event.type);
        setStatus(event.type);
        break;
      case 'phone-left':
      case 'phone-returned':
        step(event.type);
        break;
      case 'link':
        link.textContent = event.data.state === 'reconnecting' ? 'Connection lost, reconnecting…' : '';
        break;
      case 'error':
        fail(`The pairing failed: ${event.data.code}`);
        break;
      default:
        break;
    }
  }
  clearInterval(ticker);
}

main();
