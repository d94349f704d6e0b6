// The article's main-device (PC) code, section 1, moved from an inline <script> into this file.

// glue: not shown in the article.
function updateStatus(text, busy, className) {
  const status = document.getElementById('status');
  status.textContent = text;
  status.className = className;
  status.dataset.busy = String(busy);
}
function escapeHtml(text) {
  const div = document.createElement('div');
  div.textContent = text;
  return div.innerHTML;
}

// article: セッションIDを生成（ブラウザ側で生成）
const sessionId = 'sess_' + Math.random().toString(36).substring(2, 15) +
                   Math.random().toString(36).substring(2, 15);

// glue: the article draws a QR code of the phone URL; this page shows the URL.
document.getElementById('phone-url').textContent = `${location.origin}/phone.html?session=${sessionId}`;

// article: SSE接続を開始
const eventSource = new EventSource(`/api/events?session=${sessionId}`);

// article: セッション情報受信
eventSource.addEventListener('message', (event) => {
  const data = JSON.parse(event.data);
  if (data.type === 'session-info') {
    // 有効期限を表示
    console.log(`セッション有効期限: ${data.expiryTime}`);
    window.sessionInfo = data; // glue: for the test
  }
});

// article: サブデバイス接続検知
eventSource.addEventListener('connected', (event) => {
  updateStatus('サブデバイスで接続中...', true, 'status-connected');
});

// article: 入力開始検知
eventSource.addEventListener('input-started', (event) => {
  updateStatus('サブデバイスで入力中...', true, 'status-input-started');
});

// article: 完了検知
eventSource.addEventListener('complete', (event) => {
  const data = JSON.parse(event.data);

  // ステータス更新
  updateStatus('サブデバイスで入力完了', false, 'status-completed');

  // SweetAlert2モーダル表示
  Swal.fire({
    icon: 'success',
    title: 'サブデバイスでの入力が完了しました',
    html: `
      <div style="text-align: left; margin: 20px 0;">
        <p><strong>お名前:</strong> ${escapeHtml(data.name)}</p>
        <p><strong>電話番号:</strong> ${escapeHtml(data.phone)}</p>
      </div>
    `,
    confirmButtonColor: '#0066cc',
    background: '#061560',
    color: '#e6f0ff'
  });

  // SSE接続を閉じる
  eventSource.close();
});

// article: エラーハンドリング
eventSource.addEventListener('error', (event) => {
  console.error('SSE connection error:', event);
  eventSource.close();
});
