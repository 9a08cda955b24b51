// Datasets: upload by drag-and-drop or the file picker; the server answers with the rendered report.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("upload-form");
  if (form) {
    const input = document.getElementById("upload-file");
    const result = document.getElementById("upload-result");
    const upload = async (file) => {
      const data = new FormData();
      data.append("file", file, file.name);
      result.innerHTML = `<p role="status">Checking ${file.name.replace(/[<>&"]/g, "")}…</p>`;
      const response = await fetch("/ui/files", {
        method: "POST", body: data, credentials: "same-origin", headers: window.tunery.csrfHeaders(),
      });
      result.innerHTML = await response.text(); // server-rendered (escaped) report fragment
      result.dataset.state = response.ok ? "accepted" : "refused";
      if (response.status === 401) window.location.assign("/signin?next=/datasets");
    };
    input.addEventListener("change", () => { if (input.files.length) upload(input.files[0]); input.value = ""; });
    form.addEventListener("submit", (event) => event.preventDefault());
    ["dragenter", "dragover"].forEach((name) => form.addEventListener(name, (event) => {
      event.preventDefault(); form.classList.add("over");
    }));
    ["dragleave", "drop"].forEach((name) => form.addEventListener(name, () => form.classList.remove("over")));
    form.addEventListener("drop", (event) => {
      event.preventDefault();
      if (event.dataTransfer && event.dataTransfer.files.length) upload(event.dataTransfer.files[0]);
    });
  }
  const lengths = document.getElementById("lengths-form");
  if (lengths) {
    lengths.addEventListener("submit", async (event) => {
      event.preventDefault();
      const target = document.getElementById("lengths");
      const query = new URLSearchParams(new FormData(lengths));
      target.innerHTML = '<p role="status">Counting tokens…</p>';
      const response = await fetch(`${lengths.dataset.url}?${query}`, { credentials: "same-origin" });
      if (response.ok) { target.innerHTML = await response.text(); return; }
      const error = window.tunery.errorOf(await response.json().catch(() => null), response.status);
      target.textContent = "";
      const p = document.createElement("p"); p.className = "error"; p.setAttribute("role", "alert");
      p.textContent = error.message; target.appendChild(p);
    });
  }
  // Mask preview: shown for the first rows as soon as the page opens; the form redraws it for another model.
  const preview = document.getElementById("preview-form");
  if (preview) {
    let pending = null; // the request on its way; a newer one cancels it, so an old answer never lands last
    const show = async () => {
      const target = document.getElementById("preview");
      const query = new URLSearchParams(new FormData(preview));
      if (pending) pending.abort();
      const mine = pending = new AbortController();
      target.innerHTML = '<p role="status">Tokenising the first rows…</p>';
      let response;
      try {
        response = await fetch(`${preview.dataset.url}?${query}`, { credentials: "same-origin", signal: mine.signal });
      } catch (error) {
        if (mine.signal.aborted) return;
        throw error;
      }
      if (mine !== pending) return;
      if (response.ok) { target.innerHTML = await response.text(); return; } // server-rendered, escaped
      const error = window.tunery.errorOf(await response.json().catch(() => null), response.status);
      target.textContent = "";
      const p = document.createElement("p"); p.className = "error"; p.setAttribute("role", "alert");
      p.textContent = error.message; target.appendChild(p);
    };
    preview.addEventListener("submit", (event) => { event.preventDefault(); show(); });
    show();
  }
});
