// One native <dialog> per page, themed like the article's SweetAlert2 modals. Everything shown is set through
// textContent: what a phone submitted is never parsed as HTML.
//
// A "locked" dialog cannot be dismissed (the article's unrecoverable errors): it has no button, closedby="none"
// (no Escape, no light dismiss), its `cancel` is prevented for browsers without closedby, and should it close
// anyway (Chromium lets a second Escape without user activation through) it is opened again at once.
//
// Accessibility: the dialog is named by its heading (aria-labelledby) and described by its text
// (aria-describedby). A dialog without a visible heading (the article's error modals) keeps a visually hidden one,
// so that it always has a name. Opening moves focus to the OK button, or to the heading (tabindex=-1) in a locked
// dialog; closing returns focus to where it was, or to `returnFocus`, or to the page's heading. The texts are
// given as functions, so that switching the language translates an open dialog too.

import { onLanguageChange, t } from './i18n.js';

const dialog = document.getElementById('dialog');
const icon = dialog.querySelector('.dialog-icon');
const title = dialog.querySelector('.dialog-title');
const body = dialog.querySelector('.dialog-body');
const confirm = dialog.querySelector('.dialog-confirm');

let current = null; // { locked, onClose, heading, content, returnFocus }

dialog.addEventListener('cancel', (event) => {
  if (current?.locked) event.preventDefault();
});

dialog.addEventListener('close', () => {
  // `close` is queued: the dialog may already be showing the next message.
  if (dialog.open || current === null) return;
  if (current.locked) {
    dialog.showModal();
    title.focus();
    return;
  }
  const { onClose, returnFocus } = current;
  current = null;
  onClose?.();
  restoreFocus(returnFocus);
});

confirm.addEventListener('click', () => {
  if (!current?.locked) dialog.close();
});

onLanguageChange(() => {
  if (current !== null) render();
});

function usable(element) {
  return element instanceof HTMLElement && element.isConnected && !element.disabled && element.offsetParent !== null
    && element !== document.body;
}

function restoreFocus(returnFocus) {
  if (dialog.open) return; // another dialog took over
  if (usable(returnFocus)) {
    returnFocus.focus();
    return;
  }
  const heading = document.querySelector('main h1');
  if (heading !== null) {
    heading.tabIndex = -1;
    heading.focus();
  }
}

const text = (value) => (typeof value === 'function' ? value() : value);

function render() {
  const heading = text(current.heading) ?? '';
  title.textContent = heading === '' ? t('errorTitle') : heading;
  title.classList.toggle('visually-hidden', heading === '');
  const content = text(current.content);
  if (typeof content === 'string') {
    const paragraph = document.createElement('p');
    paragraph.className = 'dialog-message';
    paragraph.textContent = content;
    body.replaceChildren(paragraph);
  } else {
    body.replaceChildren(...content);
  }
  confirm.textContent = t('ok');
}

/**
 * Shows a modal dialog, replacing whatever it showed before.
 * @param {object} options
 * @param {'success'|'error'} options.kind the icon
 * @param {string|(() => string)} [options.heading] a title line (none: a visually hidden "Error")
 * @param {string|Node[]|(() => string|Node[])} options.content a message, or nodes built by the caller (with
 *   textContent); a function is called again when the language changes
 * @param {boolean} [options.locked] cannot be dismissed: no button, Escape does nothing
 * @param {() => void} [options.onClose] called once the user has closed it
 * @param {HTMLElement} [options.returnFocus] where focus goes on close (default: where it was when opened)
 */
export function showDialog({ kind, heading = '', content, locked = false, onClose, returnFocus }) {
  const previous = current;
  current = null; // whatever was shown is replaced, without its onClose
  const focused = dialog.contains(document.activeElement) ? previous?.returnFocus : document.activeElement;
  if (dialog.open) dialog.close();
  dialog.dataset.kind = kind;
  dialog.dataset.locked = String(locked);
  icon.textContent = kind === 'success' ? '\u2713' : '!';
  confirm.hidden = locked;
  if (locked) dialog.setAttribute('closedby', 'none');
  else dialog.removeAttribute('closedby');
  current = { locked, onClose, heading, content, returnFocus: returnFocus ?? focused };
  render();
  dialog.showModal();
  if (locked) title.focus();
  else confirm.focus();
}

/** Whether a locked dialog is showing (nothing else may replace it). */
export function lockedDialogShowing() {
  return dialog.open && current?.locked === true;
}
