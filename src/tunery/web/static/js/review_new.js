// New review: the form becomes the body of POST /api/reviews (sent to /ui/reviews); the API's error
// is shown above the form, and the new review's page opens when it is accepted.
"use strict";
function buildReview(form) {
  const value = (id) => form.querySelector(`#${id}`).value.trim();
  const body = {
    name: value("name") || "Blind review",
    models: [...form.querySelectorAll("input[name=models]:checked")].map((box) => box.value),
    max_tokens: Number(value("max_tokens")),
    seed: Number(value("seed") || "0"),
  };
  if (form.querySelector("#source-dataset").checked) {
    const [name, version] = value("dataset").split(/@(?=\d+$)/);
    body.dataset = { name, version: Number(version) };
    body.max_prompts = Number(value("max_prompts"));
  } else {
    body.prompts = form.querySelector("#prompts").value.split("\n");
  }
  return body;
}

function showSource(form) {
  const source = form.querySelector("input[name=source]:checked").value;
  form.querySelectorAll("[data-for-source]").forEach((el) => { el.hidden = el.dataset.forSource !== source; });
}

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("review-form");
  form.querySelectorAll("input[name=source]").forEach((radio) => radio.addEventListener("change", () => showSource(form)));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const error = document.getElementById("form-error");
    error.hidden = true;
    const answer = await window.tunery.postJSON("/ui/reviews", buildReview(form));
    if (!answer.ok) {
      const problem = window.tunery.errorOf(answer.body, answer.status);
      error.textContent = problem.param ? `${problem.param}: ${problem.message}` : problem.message;
      error.hidden = false;
      return;
    }
    window.location.assign(`/reviews/${answer.body.id}`);
  });
});
