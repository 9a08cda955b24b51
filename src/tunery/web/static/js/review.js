// A blind review: save a vote per item (A, B, tie, both bad, a note); the owner closes it or runs the
// judge; while answers are generated the page polls the review's status (which names no model).
"use strict";
const reviewEl = () => document.getElementById("review");
const reviewUrl = () => `/ui/reviews/${reviewEl().dataset.review}`;

function showError(error) {
  const el = document.getElementById("action-error");
  el.textContent = error.message;
  el.hidden = false;
}

async function saveVote(form) {
  const choice = form.querySelector("input[name=choice]:checked");
  const saved = form.querySelector(".saved");
  if (!choice) { saved.textContent = "Pick A, B, tie or both bad first"; return; }
  saved.textContent = "Saving…";
  const note = form.querySelector("textarea[name=note]").value;
  const answer = await window.tunery.postJSON(`${reviewUrl()}/votes`, { item_id: form.dataset.item, choice: choice.value, note });
  if (!answer.ok) { saved.textContent = ""; showError(window.tunery.errorOf(answer.body, answer.status)); return; }
  saved.textContent = "Saved";
  form.closest(".review-item").dataset.choice = answer.body.choice;
  const done = document.querySelectorAll('.review-item:not([data-choice=""])').length;
  document.getElementById("your-votes").textContent = `${done} of ${document.querySelectorAll(".review-item").length}`;
}

async function post(path, payload, then) {
  const answer = await window.tunery.postJSON(`${reviewUrl()}${path}`, payload);
  if (!answer.ok) { showError(window.tunery.errorOf(answer.body, answer.status)); return; }
  then(answer.body);
}

async function pollWhileGenerating() {
  const response = await fetch(reviewUrl(), { credentials: "same-origin" });
  if (!response.ok) return;
  const review = await response.json();
  document.getElementById("answers-done").textContent = review.progress.answers_done;
  if (review.status !== "generating") { window.location.reload(); return; }
  setTimeout(pollWhileGenerating, 1000);
}

async function pollJudge() {
  const response = await fetch(reviewUrl(), { credentials: "same-origin" });
  if (!response.ok) return;
  const judge = (await response.json()).judge;
  const el = document.getElementById("judge-status");
  el.textContent = judge ? `${judge.status}: ${judge.done} of ${judge.total}${judge.error ? ` (${judge.error})` : ""}` : "";
  if (judge && judge.status === "running") setTimeout(pollJudge, 1000);
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("form.vote").forEach((form) => {
    form.addEventListener("submit", (event) => { event.preventDefault(); saveVote(form); });
  });
  const close = document.getElementById("close");
  if (close) {
    close.addEventListener("click", () => {
      if (!window.confirm("Close the review? Voting ends and the results name the models.")) return;
      post("/close", {}, () => window.location.assign(`/reviews/${reviewEl().dataset.review}/results`));
    });
  }
  const retry = document.getElementById("retry");
  if (retry) retry.addEventListener("click", () => post("/generate", {}, () => window.location.reload()));
  const judge = document.getElementById("judge-form");
  if (judge) {
    judge.addEventListener("submit", (event) => {
      event.preventDefault();
      const value = (name) => judge.querySelector(`[name=${name}]`).value.trim();
      const body = { base_url: value("base_url"), model: value("model") };
      if (value("api_key")) body.api_key = value("api_key");
      post("/judge", body, () => pollJudge());
    });
  }
  if (reviewEl().dataset.status === "generating") setTimeout(pollWhileGenerating, 1000);
});
