// The pages' words in Japanese (the article's wording) and English. The language is the one chosen with the
// page's ja/en switch, remembered on the device (localStorage); until one is chosen it follows the browser
// (navigator.language): Japanese for ja-*, English otherwise. Requests send the same language in
// Accept-Language so that the server's messages match the page.

const STORAGE_KEY = 'tandem.lang';
const LANGUAGES = ['ja', 'en'];

function remembered() {
  try {
    const value = localStorage.getItem(STORAGE_KEY);
    return LANGUAGES.includes(value) ? value : null;
  } catch {
    return null; // storage disabled: the browser's language
  }
}

/** The page's language, 'ja' or 'en' (a live binding: it changes with the switch). */
export let lang = remembered() ?? ((navigator.language || 'ja').toLowerCase().startsWith('ja') ? 'ja' : 'en');

const listeners = [];

const words = {
  ja: {
    opsTitle: 'Tandem - 運用状況',
    opsHeading: '運用状況',
    opsTokenLabel: '運用トークン',
    opsSignIn: '表示する',
    opsSignOut: 'トークンを消す',
    opsTokenWrong: 'トークンが正しくありません。',
    opsOff: 'このサーバーでは運用ページが無効です。',
    opsConnecting: '接続しています...',
    opsReconnecting: '接続が切れました。再接続しています...',
    opsTooManyTries: 'このアドレスから誤ったトークンが多すぎます。{seconds} 秒後に再試行します。',
    opsLive: 'ライブ更新中（ノード {count} 台）',
    opsBrokerUnreachable: 'ブローカーに接続できません。このノードの値だけを表示しています。',
    opsSummary: '待機中 {waiting}、接続済み {connected}、入力中 {inputting}、完了 {completed}、取消 {cancelled}',
    opsNone: 'なし',
    opsPairings: 'ペアリング（状態別）',
    opsWaiting: '待機中',
    opsConnected: '接続済み',
    opsInputting: '入力中',
    opsCompleted: '完了',
    opsCancelled: '取消',
    opsOldestWaiting: '最も古い待機中のペアリング（経過秒）',
    opsNodes: 'ノード',
    opsNode: 'ノード',
    opsVersion: '版',
    opsUptime: '稼働時間',
    opsPairingsNote: '完了と取消は、セッションの有効期間（{minutes} 分）内のものを数えています。',
    opsDuration: '{h} 時間 {m} 分 {s} 秒',
    opsDurationShort: '{m} 分 {s} 秒',
    opsPcStreams: 'PCの接続',
    opsPhoneStreams: 'スマートフォンの接続',
    opsSessions: 'セッション',
    opsEventsPerSecond: 'イベント/秒',
    opsBrokerP99: 'ブローカー往復 p99（ms）',
    opsReportAge: '報告からの秒数',
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
    statusPhoneAway: 'サブデバイスが戻るのを待っています...',
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
    errorTitle: 'エラー',
    limitReached: '{field}は上限の{max}文字に達しました',
    fieldRequired: '「{field}」を入力してください',
    yes: 'はい',
    phoneLeadForm: 'フォームに入力して送信してください。',
    no: 'いいえ',
    fieldTooLong: '「{field}」は{max}文字以内で入力してください',
    fieldMustBeChecked: '「{field}」にチェックを入れてください',
    fieldChoose: '「{field}」を選んでください',
    choosePlaceholder: '選択してください',
    languageSwitch: '表示言語 / Language',
    pairingCodeLabel: '確認コード',
    pairingCodeHintPhone: 'PCの画面に表示されている確認コードと同じか確かめてください。',
    pairingCodeHintPc: 'スマートフォンに表示されている確認コードと同じか確かめてください。',
    notMyPhone: '自分のスマートフォンではない',
    phoneLeft: 'スマートフォンとの接続が切れました',
    qrUsedAlt: 'スマートフォンで開くページのQRコード（読み取り済み）',
    alreadyClaimed: 'このQRコードは別の端末ですでに使われています。',
    qrStale: 'このQRコードは古くなっています。PCに表示されている最新のQRコードを読み取ってください。',
    phoneRejected: 'PCでこのスマートフォンとの接続が拒否されました。',
  },
  en: {
    opsTitle: 'Tandem - Operations',
    opsHeading: 'Operations',
    opsTokenLabel: 'Operators\' token',
    opsSignIn: 'Show',
    opsSignOut: 'Forget the token',
    opsTokenWrong: 'The token is wrong.',
    opsOff: 'The operators\' page is off on this server.',
    opsConnecting: 'Connecting...',
    opsReconnecting: 'The connection was lost. Reconnecting...',
    opsTooManyTries: 'Too many wrong tokens from this address; retrying in {seconds} s.',
    opsLive: 'Live ({count} nodes)',
    opsBrokerUnreachable: 'The broker is unreachable; only this node is shown.',
    opsSummary: 'Waiting {waiting}, connected {connected}, inputting {inputting}, completed {completed}, cancelled {cancelled}',
    opsNone: 'none',
    opsPairings: 'Pairings by state',
    opsWaiting: 'Waiting',
    opsConnected: 'Connected',
    opsInputting: 'Inputting',
    opsCompleted: 'Completed',
    opsCancelled: 'Cancelled',
    opsOldestWaiting: 'Oldest waiting pairings (seconds)',
    opsNodes: 'Nodes',
    opsNode: 'Node',
    opsVersion: 'Version',
    opsUptime: 'Uptime',
    opsPairingsNote: 'Completed and cancelled: those within the session TTL ({minutes} min).',
    opsDuration: '{h} h {m} min {s} s',
    opsDurationShort: '{m} min {s} s',
    opsPcStreams: 'PC streams',
    opsPhoneStreams: 'Phone streams',
    opsSessions: 'Sessions',
    opsEventsPerSecond: 'Events/s',
    opsBrokerP99: 'Broker round trip p99 (ms)',
    opsReportAge: 'Report age (s)',
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
    statusPhoneAway: 'Waiting for the phone to come back...',
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
    phoneLead: 'Enter your name and phone number, then submit them.',
    checking: 'Checking the session...',
    namePlaceholder: 'Taro Yamada',
    phonePlaceholder: '090-1234-5678',
    submit: 'Submit',
    submitting: 'Submitting...',
    doneHeading: 'Submitted',
    doneText: 'Have a look at the main device.',
    nameRequired: 'Please enter your name',
    nameTooLong: 'Your name must be at most 20 characters',
    phoneRequired: 'Please enter your phone number',
    phoneTooLong: 'Your phone number must be at most 15 characters',
    sessionInvalid: 'This session is not valid. The QR code screen on the main device may have been refreshed.',
    sessionExpired: 'The session has expired. Refresh the QR code screen on the main device and scan the QR code again.',
    sessionCompleted: 'This session has already been submitted.',
    networkError: 'A network error occurred. Please try again.',
    submitFailed: 'Submission failed. Please try again.',
    errorTitle: 'Error',
    limitReached: '{field}: the limit of {max} characters is reached',
    fieldRequired: 'Please enter {field}',
    yes: 'Yes',
    phoneLeadForm: 'Fill in the form and send it.',
    no: 'No',
    fieldTooLong: '{field} must be at most {max} characters',
    fieldMustBeChecked: 'Please check {field}',
    fieldChoose: 'Please choose {field}',
    choosePlaceholder: 'Choose…',
    languageSwitch: 'Language / 表示言語',
    pairingCodeLabel: 'Pairing code',
    pairingCodeHintPhone: 'Check that it matches the pairing code on the PC.',
    pairingCodeHintPc: 'Check that it matches the pairing code on your phone.',
    notMyPhone: 'Not my phone',
    phoneLeft: 'The phone has disconnected',
    qrUsedAlt: 'QR code of the page to open on the phone (already scanned)',
    alreadyClaimed: 'This QR code has already been used on another device.',
    qrStale: 'This QR code is out of date. Scan the code the PC shows now.',
    phoneRejected: 'The PC refused the connection with this phone.',
  },
};

/** The word for `key` in the page's language; `{name}` in it is replaced by values[name]. */
export function t(key, values = {}) {
  const text = words[lang][key] ?? words.ja[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (whole, name) => (name in values ? String(values[name]) : whole));
}

/**
 * Sets the page's language and fills every element marked data-i18n (text), data-i18n-placeholder or
 * data-i18n-alt. Text that changes while the page runs is marked the same way (see setText), so switching the
 * language later translates it too.
 */
export function translatePage(titleKey = document.documentElement.dataset.titleKey) {
  document.documentElement.dataset.titleKey = titleKey;
  document.documentElement.lang = lang;
  document.title = t(titleKey);
  for (const element of document.querySelectorAll('[data-i18n]')) element.textContent = t(element.dataset.i18n);
  for (const element of document.querySelectorAll('[data-i18n-placeholder]')) {
    element.placeholder = t(element.dataset.i18nPlaceholder);
  }
  for (const element of document.querySelectorAll('[data-i18n-alt]')) element.alt = t(element.dataset.i18nAlt);
  for (const element of document.querySelectorAll('[data-i18n-label]')) {
    element.setAttribute('aria-label', t(element.dataset.i18nLabel));
  }
  for (const button of document.querySelectorAll('.lang-switch [data-lang]')) {
    button.setAttribute('aria-pressed', String(button.dataset.lang === lang));
  }
}

/** Shows the word for `key` in `element`, and keeps it translated when the language changes. */
export function setText(element, key) {
  element.dataset.i18n = key;
  element.textContent = t(key);
}

/** Shows text that is not one of the page's words (the server's, or the user's) in `element`. */
export function setLiteral(element, text) {
  delete element.dataset.i18n;
  element.textContent = text;
}

/** Calls `listener` after every change of language (the page has been translated by then). */
export function onLanguageChange(listener) {
  listeners.push(listener);
}

/** Switches the page to `next` ('ja' or 'en'), remembers it on this device, and translates everything. */
export function setLanguage(next) {
  if (!LANGUAGES.includes(next)) return;
  try {
    localStorage.setItem(STORAGE_KEY, next);
  } catch {
    // storage disabled: the choice lasts as long as the page
  }
  if (next === lang) return;
  lang = next;
  translatePage();
  for (const listener of listeners) listener(lang);
}

/** Wires every ja/en switch on the page (buttons with data-lang inside .lang-switch). */
export function bindLanguageSwitches() {
  for (const button of document.querySelectorAll('.lang-switch [data-lang]')) {
    button.addEventListener('click', () => setLanguage(button.dataset.lang));
  }
}

/** Headers for the API: JSON, in the page's language (the one the switch shows). */
export function apiHeaders(extra = {}) {
  return { Accept: 'application/json', 'Accept-Language': lang, ...extra };
}
