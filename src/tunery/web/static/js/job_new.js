// New job: the form becomes the body of POST /v1/fine_tuning/jobs and is checked by the same code;
// the API's error is shown next to the field it names.
"use strict";
const form = () => document.getElementById("job-form");
const estimates = {};

function setNested(target, dotted, value) {
  const keys = dotted.split(".");
  let node = target;
  for (const key of keys.slice(0, -1)) node = node[key] = node[key] || {};
  node[keys[keys.length - 1]] = value;
}

function deepMerge(base, extra) {
  for (const [key, value] of Object.entries(extra)) {
    if (value && typeof value === "object" && !Array.isArray(value) && base[key] && typeof base[key] === "object") {
      deepMerge(base[key], value);
    } else {
      base[key] = value;
    }
  }
  return base;
}

function numberOf(input) {
  if (input.validity.badInput) throw { message: `${input.labels[0].textContent}: not a number`, field: input };
  return input.value === "" ? null : Number(input.value);
}

// The job request, exactly as the OpenAI client would send it (tunery's keys under `tunery`).
function buildRequest(el) {
  const value = (id) => el.querySelector(`#${id}`).value.trim();
  const request = { model: value("model"), training_file: value("training_file") };
  if (value("validation_file")) request.validation_file = value("validation_file");
  if (value("suffix")) request.suffix = value("suffix");
  const seed = numberOf(el.querySelector("#seed"));
  if (seed !== null) request.seed = seed;
  const hyper = {};
  for (const [id, key] of [["n_epochs", "n_epochs"], ["batch_size", "batch_size"], ["lr_mult", "learning_rate_multiplier"]]) {
    const n = numberOf(el.querySelector(`#${id}`));
    if (n !== null) hyper[key] = n;
  }
  if (Object.keys(hyper).length) request.method = { type: "supervised", supervised: { hyperparameters: hyper } };
  const tunery = { method: value("method") };
  if (value("task") === "preference") {
    // dpo is OpenAI's method "dpo"; the other losses are tunery's own keys (docs/preference.md).
    const loss = value("preference-loss");
    if (loss === "dpo") request.method = { type: "dpo", dpo: { hyperparameters: hyper } };
    else { tunery.task = "preference"; tunery.preference = { loss }; }
  }
  el.querySelectorAll("input[name*='.']").forEach((input) => {
    const n = numberOf(input);
    if (n !== null && !input.closest("[hidden]")) setNested(tunery, input.name, n);
  });
  const extra = value("extra");
  if (extra) {
    let parsed;
    try { parsed = JSON.parse(extra); } catch (e) {
      throw { message: `More training config: not valid JSON (${e.message})`, field: el.querySelector("#extra") };
    }
    if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) {
      throw { message: "More training config: write a JSON object, e.g. {\"train\": {\"warmup_ratio\": 0}}", field: el.querySelector("#extra") };
    }
    deepMerge(tunery, parsed);
  }
  request.tunery = tunery;
  return request;
}

function fieldFor(el, param) {
  if (!param) return null;
  const name = param.replace(/^tunery\./, "");
  return el.querySelector(`[name="${CSS.escape(param)}"]`) || el.querySelector(`[name="${CSS.escape(name)}"]`)
    || (param.startsWith("tunery") ? el.querySelector("#extra") : null);
}

function showError(el, message, field) {
  const box = el.querySelector("#form-error");
  el.querySelectorAll("[aria-invalid]").forEach((input) => input.removeAttribute("aria-invalid"));
  box.textContent = message;
  box.hidden = false;
  if (field) { field.setAttribute("aria-invalid", "true"); field.focus(); } else { box.scrollIntoView(); }
}

function describeMethod(el) {
  const select = el.querySelector("#method");
  const option = select.selectedOptions[0];
  el.querySelector("#method-summary").textContent = option.dataset.summary;
  el.querySelectorAll("[data-for-methods]").forEach((group) => {
    group.hidden = !group.dataset.forMethods.split(" ").includes(select.value);
  });
  el.querySelectorAll("[data-for-task]").forEach((group) => {
    group.hidden = group.dataset.forTask !== el.querySelector("#task").value;
  });
  const model = el.querySelector("#model").value.trim();
  const rows = estimates[model];
  const target = el.querySelector("#method-estimate");
  if (!rows) return;
  if (rows.error) { target.textContent = rows.error; return; }
  const row = rows.find((r) => r.method === select.value);
  if (!row || row.trainable === null) { target.textContent = row && row.note ? `Estimate: ${row.note}` : ""; return; }
  target.textContent = `Trains ${row.trainable.toLocaleString()} of ${row.total.toLocaleString()} parameters ` +
    `(${row.percent.toFixed(row.percent < 1 ? 3 : 1)}%); ` +
    `${row.memory_gb < 0.01 ? "under 0.01" : `about ${row.memory_gb}`} GB for weights, gradients and optimiser state.`;
}

async function loadEstimates(el) {
  const model = el.querySelector("#model").value.trim();
  if (!model || estimates[model]) { describeMethod(el); return; }
  el.querySelector("#method-estimate").textContent = "Estimating trainable parameters…";
  const response = await fetch(`/ui/estimate?model=${encodeURIComponent(model)}`, { credentials: "same-origin" });
  const body = await response.json().catch(() => null);
  estimates[model] = response.ok ? body : { error: window.tunery.errorOf(body, response.status).message };
  describeMethod(el);
}

document.addEventListener("DOMContentLoaded", () => {
  const el = form();
  if (!el) return;
  let timer = null;
  el.querySelector("#method").addEventListener("change", () => describeMethod(el));
  el.querySelector("#task").addEventListener("change", () => describeMethod(el));
  el.querySelector("#model").addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(() => loadEstimates(el), 600); });
  describeMethod(el);
  loadEstimates(el);
  el.addEventListener("submit", async (event) => {
    event.preventDefault();
    let request;
    try { request = buildRequest(el); } catch (problem) { showError(el, problem.message, problem.field); return; }
    const button = el.querySelector("#launch");
    button.disabled = true;
    const { ok, status, body } = await window.tunery.postJSON("/ui/jobs", request);
    button.disabled = false;
    if (ok) { window.location.assign(`/jobs/${encodeURIComponent(body.id)}`); return; }
    const error = window.tunery.errorOf(body, status);
    showError(el, error.message, fieldFor(el, error.param));
  });
});
