// One native <dialog> per page, themed like the article's SweetAlert2 modals. Everything shown is set through
// textContent: what a phone submitted is never parsed as HTML.
//
// A "locked" dialog cannot be dismissed (the article's unrecoverable errors): it has no button, closedby="none"
// (no Escape, no light dismiss), its `cancel` is prevented for browsers without closedby, and should it close
// anyway (Chromium lets a second Escape without user activation through) it is opened again at once.

import { t } from './i18n.js';

const dialog = document.getElementById('dialog');
const icon = dialog.querySelector('.dialog-icon');
const title = dialog.querySelector('.dialog-title');
const body = dialog.querySelector('.dialog-body');
const confirm = dialog.querySelector('.dialog-confirm');

let current = null; // { locked, onClose }

dialog.addEventListener('cancel', (event) => {
  if (current?.locked) event.preventDefault();
});

dialog.addEventListener('close', () => {
  // `close` is queued: the dialog may already be showing the next message.
  if (dialog.open || current === null) return;
  if (current.locked) {
    dialog.showModal();
    return;
  }
  const { onClose } = current;
  current = null;
  onClose?.();
});

confirm.addEventListener('click', () => {
  if (!current?.locked) dialog.close();
});

/**
 * Shows a modal dialog, replacing whatever it showed before.
 * @param {object} options
 * @param {'success'|'error'} options.kind the icon
 * @param {string} [options.heading] a title line
 * @param {string|Node[]} options.content a message, or nodes built by the caller (with textContent)
 * @param {boolean} [options.locked] cannot be dismissed: no button, Escape does nothing
 * @param {() => void} [options.onClose] called once the user has closed it
 */
export function showDialog({ kind, heading = '', content, locked = false, onClose }) {
  current = null; // whatever was shown is replaced, without its onClose
  if (dialog.open) dialog.close();
  dialog.dataset.kind = kind;
  dialog.dataset.locked = String(locked);
  icon.textContent = kind === 'success' ? '\u2713' : '!';
  title.textContent = heading;
  title.hidden = heading === '';
  if (typeof content === 'string') {
    const paragraph = document.createElement('p');
    paragraph.className = 'dialog-message';
    paragraph.textContent = content;
    body.replaceChildren(paragraph);
  } else {
    body.replaceChildren(...content);
  }
  confirm.textContent = t('ok');
  confirm.hidden = locked;
  if (locked) dialog.setAttribute('closedby', 'none');
  else dialog.removeAttribute('closedby');
  current = { locked, onClose };
  dialog.showModal();
  if (!locked) confirm.focus();
}

/** Whether a locked dialog is showing (nothing else may replace it). */
export function lockedDialogShowing() {
  return dialog.open && current?.locked === true;
}
