// glue: a stand-in for SweetAlert2's Swal.fire, enough for the article's calls. It shows the title and the text
// (or the html, as SweetAlert2 would) in #swal and keeps every call's options in window.swalCalls for the test.
window.swalCalls = [];
window.Swal = {
  fire(options) {
    window.swalCalls.push(options);
    const box = document.getElementById('swal');
    box.hidden = false;
    box.dataset.icon = options.icon || '';
    box.innerHTML = '';
    const title = document.createElement('h2');
    title.className = 'swal-title';
    title.textContent = options.title || '';
    const content = document.createElement('div');
    content.className = 'swal-content';
    if (options.html !== undefined) content.innerHTML = options.html;
    else content.textContent = options.text || '';
    box.append(title, content);
    return Promise.resolve({ isConfirmed: true });
  },
};
