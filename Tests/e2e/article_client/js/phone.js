// The article's sub-device (phone) code, moved from an inline <script> into this file. Section 6 (the 5 s
// expiry check) is the article's; the rest follows its error cases and API, which it describes but does not print.

const sessionId = new URLSearchParams(location.search).get('session'); // glue
const form = document.getElementById('info-form');
let inputStarted = false; // glue

// glue: error case 1, checked on load.
async function checkOnLoad() {
  try {
    const response = await fetch(`/api/validate-session?session=${sessionId}`);
    const result = await response.json();
    if (!result.valid) {
      Swal.fire({
        icon: 'error',
        html: 'このセッションは無効です。メインデバイスのQRコード画面が更新された可能性があります。',
        allowOutsideClick: false,
        allowEscapeKey: false,
        showConfirmButton: false
      });
      return false;
    }
    form.hidden = false;
    return true;
  } catch (error) {
    Swal.fire({ icon: 'error', html: 'ネットワークエラーが発生しました。<br>もう一度お試しください。' });
    return false;
  }
}

// glue: the first input tells the main device (POST /api/input-started).
form.addEventListener('input', async () => {
  if (inputStarted) return;
  inputStarted = true;
  await fetch('/api/input-started', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ sessionId })
  });
});

// glue: submit (POST /api/submit), error cases 3 and 4.
form.addEventListener('submit', async (event) => {
  event.preventDefault();
  const button = document.getElementById('submit');
  button.disabled = true;
  try {
    const response = await fetch('/api/submit', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({
        sessionId,
        name: document.getElementById('name').value,
        phone: document.getElementById('phone').value
      })
    });
    const result = await response.json();
    if (result.success) {
      Swal.fire({ icon: 'success', title: result.message, confirmButtonColor: '#4f46e5' });
      form.hidden = true;
    } else {
      Swal.fire({ icon: 'error', text: result.message, confirmButtonColor: '#4f46e5' });
      button.disabled = false;
    }
  } catch (error) {
    Swal.fire({ icon: 'error', html: 'ネットワークエラーが発生しました。<br>もう一度お試しください。' });
    button.disabled = false;
  }
});

checkOnLoad().then((valid) => {
  if (!valid) return;
  // article: 5秒ごとにセッション有効性をチェック
  const SESSION_CHECK_INTERVAL = 5000;
  const sessionCheckInterval = setInterval(async () => {
    try {
      const response = await fetch(`/api/validate-session?session=${sessionId}`);
      const result = await response.json();

      if (!result.valid) {
        // セッション期限切れ
        clearInterval(sessionCheckInterval);

        // フォーム無効化
        const form = document.getElementById('info-form');
        form.querySelectorAll('input, button').forEach(el => {
          el.disabled = true;
        });

        // エラーモーダル表示（閉じられない）
        Swal.fire({
          icon: 'error',
          html: 'セッションの有効期限が切れました。<br>QRコード画面を更新して、再度QRコードをスキャンしてください。',
          confirmButtonColor: '#4f46e5',
          background: '#061560',
          color: '#e6f0ff',
          allowOutsideClick: false,
          allowEscapeKey: false,
          showConfirmButton: false
        });
      }
    } catch (error) {
      console.error('Session check error:', error);
      // ネットワークエラーは無視（オフライン対応）
    }
  }, SESSION_CHECK_INTERVAL);
});
