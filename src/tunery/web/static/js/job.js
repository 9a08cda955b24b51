// The live job page: the job's events arrive as server-sent events and grow the charts in place.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const head = document.getElementById("job");
  const jobId = head.dataset.job;
  const fmt = window.tunery.formatNumber;
  const loss = window.tuneryChart(document.getElementById("loss-chart"), ["training loss", "validation loss"], { dashes: [undefined, [6, 4]] });
  const lr = window.tuneryChart(document.getElementById("lr-chart"), ["learning rate"]);
  const speed = window.tuneryChart(document.getElementById("speed-chart"), ["tokens/s"]);
  const log = document.getElementById("events");
  const statusEl = document.getElementById("job-status");
  const cancel = document.getElementById("cancel");
  const setText = (id, value) => { document.getElementById(id).textContent = value; };

  const showStatus = (status) => {
    statusEl.textContent = status;
    statusEl.className = `status status-${status}`;
    head.dataset.status = status;
    if (["succeeded", "failed", "cancelled"].includes(status)) cancel.hidden = true;
  };
  const addCheckpoint = (step) => {
    const body = document.querySelector("#checkpoints tbody");
    if ([...body.rows].some((row) => row.cells[0].textContent === String(step))) return;
    const row = body.insertRow(0);
    [String(step), "", "", "yes"].forEach((text) => { row.insertCell().textContent = text; });
  };
  const onEvent = (event) => {
    const item = document.createElement("li");
    item.className = event.level;
    const when = new Date(event.created_at * 1000).toLocaleTimeString();
    item.textContent = `${when} ${event.message}`;
    log.prepend(item);
    const data = event.data || {};
    if (event.type === "metrics") {
      if (data.train_loss !== undefined) { loss.add(0, data.step, data.train_loss); setText("now-loss", fmt(data.train_loss)); }
      if (data.valid_loss !== undefined) { loss.add(1, data.step, data.valid_loss); setText("now-val", fmt(data.valid_loss)); }
      if (data.lr !== undefined) { lr.add(0, data.step, data.lr); setText("now-lr", fmt(data.lr)); }
      if (data.tokens_per_s !== undefined) { speed.add(0, data.step, data.tokens_per_s); setText("now-speed", fmt(data.tokens_per_s, 0)); }
      setText("now-step", String(data.step));
    }
    if (event.level === "warn" && /overfitting/i.test(event.message)) {
      const box = document.getElementById("overfitting");
      const p = document.createElement("p");
      p.textContent = event.message;
      box.replaceChildren(p);
      box.hidden = false;
    }
    if (/^Checkpoint saved at step/.test(event.message) && data.step !== undefined) addCheckpoint(data.step);
    if (data.status) showStatus(data.status);
  };
  // Once finished: the checkpoints and evaluation as the server renders them, swapped in without a reload.
  const refreshSections = async () => {
    const response = await fetch(window.location.pathname, { credentials: "same-origin" });
    if (!response.ok) return;
    const page = new DOMParser().parseFromString(await response.text(), "text/html");
    for (const id of ["checkpoints", "evaluation", "job-model"]) {
      const fresh = page.getElementById(id);
      if (fresh) document.getElementById(id).replaceWith(fresh);
    }
  };

  const stream = new EventSource(`/ui/jobs/${encodeURIComponent(jobId)}/stream`);
  stream.addEventListener("job", (message) => {
    const payload = JSON.parse(message.data);
    onEvent(payload.event);
    showStatus(payload.status);
  });
  stream.addEventListener("end", async (message) => {
    stream.close();
    const payload = JSON.parse(message.data);
    showStatus(payload.status);
    await refreshSections();
    head.dataset.done = "true";
  });

  cancel.addEventListener("click", async () => {
    cancel.disabled = true;
    const { ok, status, body } = await window.tunery.postJSON(`/ui/jobs/${encodeURIComponent(jobId)}/cancel`, {});
    cancel.disabled = false;
    if (!ok) window.alert(window.tunery.errorOf(body, status).message);
  });
});
