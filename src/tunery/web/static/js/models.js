// Models: deleting from the registry asks first (the run directory and its adapter stay on disk).
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("form.delete-model").forEach((form) => {
    form.addEventListener("submit", (event) => {
      const id = form.querySelector("input[name=id]").value;
      if (!window.confirm(`Delete ${id} from the registry? Its run directory stays on disk.`)) event.preventDefault();
    });
  });
});
// Export GGUF: starts the background export, then polls its status until the file is ready.
document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("form.export-gguf").forEach((form) => {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const id = encodeURIComponent(form.dataset.model);
      const status = form.querySelector(".export-status"), bar = form.querySelector("progress");
      const link = form.querySelector(".export-download");
      const quant = form.querySelector("select[name=quant]").value;
      const started = await window.tunery.postJSON(`/ui/models/export-gguf?id=${id}`, { format: "gguf", quant });
      if (!started.ok) { status.textContent = window.tunery.errorOf(started.body, started.status).message; return; }
      bar.hidden = false; link.hidden = true;
      const poll = async () => {
        const response = await fetch(`/ui/models/exports/${started.body.id}?id=${id}`, { credentials: "same-origin" });
        const body = await response.json();
        if (!response.ok) { status.textContent = window.tunery.errorOf(body, response.status).message; return; }
        bar.value = body.progress; status.textContent = `${body.status}: ${body.message}`;
        if (body.status === "succeeded") {
          link.href = `/ui/models/exports/${body.id}/file?id=${id}`; link.hidden = false;
        } else if (body.status !== "failed") { setTimeout(poll, 1000); }
      };
      poll();
    });
  });
});
