// The pages' words in Japanese (the article's wording) and English. The language follows the browser
// (navigator.language): Japanese for ja-*, English otherwise. Requests send the same language in
// Accept-Language so that the server's messages match the page.

export const lang = (navigator.language || 'ja').toLowerCase().startsWith('ja') ? 'ja' : 'en';

const words = {
  ja: {
    pcTitle: 'Tandem - クロスデバイス連携',
    pcHeading: 'スマートフォンでQRコードを読み取ってください',
    pcLead: 'スマートフォンで入力した内容が、この画面にリアルタイムで表示されます。',
    qrAlt: 'スマートフォンで開くページのQRコード',
    timeLeft: '残り時間',
    phoneUrl: 'スマートフォンで開くURL:',
    newSession: '新しいセッション',
    statusCreating: 'セッションを作成しています...',
    statusWaiting: 'サブデバイスの接続を待っています...',
    statusConnected: 'サブデバイスで接続中...',
    statusInputStarted: 'サブデバイスで入力中...',
    statusCompleted: 'サブデバイスで入力完了',
    reconnecting: 'サーバーとの接続が切れました。再接続しています...',
    statusExpired: 'セッションの有効期限が切れました。新しいQRコードを作成しています...',
    statusCreateFailed: 'セッションを作成できませんでした。再試行しています...',
    completeTitle: 'サブデバイスでの入力が完了しました',
    nameLabel: 'お名前',
    phoneLabel: '電話番号',
    ok: 'OK',
    phoneTitle: 'Tandem - 情報入力',
    phoneHeading: '情報入力',
    phoneLead: 'お名前と電話番号を入力して送信してください。',
    checking: 'セッションを確認しています...',
    namePlaceholder: '山田太郎',
    phonePlaceholder: '090-1234-5678',
    submit: '送信',
    submitting: '送信中...',
    doneHeading: '送信が完了しました',
    doneText: 'メインデバイスの画面をご確認ください。',
    nameRequired: 'お名前を入力してください',
    nameTooLong: 'お名前は20文字以内で入力してください',
    phoneRequired: '電話番号を入力してください',
    phoneTooLong: '電話番号は15文字以内で入力してください',
    sessionInvalid: 'このセッションは無効です。メインデバイスのQRコード画面が更新された可能性があります。',
    sessionExpired: 'セッションの有効期限が切れました。メインデバイスのQRコード画面を更新して、再度QRコードをスキャンしてください。',
    sessionCompleted: 'このセッションは既に送信済みです。',
    networkError: 'ネットワークエラーが発生しました。もう一度お試しください。',
    submitFailed: '送信に失敗しました。もう一度お試しください。',
  },
  en: {
    pcTitle: 'Tandem - cross-device handoff',
    pcHeading: 'Scan the QR code with your phone',
    pcLead: 'What you enter on the phone shows up on this screen in real time.',
    qrAlt: 'QR code of the page to open on the phone',
    timeLeft: 'Time left',
    phoneUrl: 'URL to open on the phone:',
    newSession: 'New session',
    statusCreating: 'Creating a session...',
    statusWaiting: 'Waiting for the phone to connect...',
    statusConnected: 'Phone connected...',
    statusInputStarted: 'Typing on the phone...',
    statusCompleted: 'Input on the phone complete',
    reconnecting: 'Lost the connection to the server. Reconnecting...',
    statusExpired: 'The session has expired. Making a new QR code...',
    statusCreateFailed: 'Could not create a session. Retrying...',
    completeTitle: 'Input on the phone is complete',
    nameLabel: 'Name',
    phoneLabel: 'Phone number',
    ok: 'OK',
    phoneTitle: 'Tandem - your details',
    phoneHeading: 'Your details',
    phoneLead: 'Enter your name and phone number, then send them.',
    checking: 'Checking the session...',
    namePlaceholder: 'Taro Yamada',
    phonePlaceholder: '090-1234-5678',
    submit: 'Send',
    submitting: 'Sending...',
    doneHeading: 'Sent',
    doneText: 'Have a look at the main device.',
    nameRequired: 'Please enter your name',
    nameTooLong: 'Your name must be at most 20 characters',
    phoneRequired: 'Please enter your phone number',
    phoneTooLong: 'Your phone number must be at most 15 characters',
    sessionInvalid: 'This session is not valid. The QR code screen on the main device may have been refreshed.',
    sessionExpired: 'The session has expired. Refresh the QR code screen on the main device and scan the QR code again.',
    sessionCompleted: 'This session has already been submitted.',
    networkError: 'A network error occurred. Please try again.',
    submitFailed: 'Sending failed. Please try again.',
  },
};

/** The word for `key` in the page's language. */
export function t(key) {
  return words[lang][key] ?? words.ja[key] ?? key;
}

/** Sets the page's language and fills every element marked data-i18n (text) or data-i18n-placeholder. */
export function translatePage(titleKey) {
  document.documentElement.lang = lang;
  document.title = t(titleKey);
  for (const element of document.querySelectorAll('[data-i18n]')) element.textContent = t(element.dataset.i18n);
  for (const element of document.querySelectorAll('[data-i18n-placeholder]')) {
    element.placeholder = t(element.dataset.i18nPlaceholder);
  }
}

/** Headers for the API: JSON, in the page's language. */
export function apiHeaders(extra = {}) {
  return { Accept: 'application/json', 'Accept-Language': lang, ...extra };
}
