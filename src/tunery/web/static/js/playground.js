// Playground: one message to up to four models at once (a base model and three fine-tuned ones),
// each answer streamed into its own panel from /ui/chat (OpenAI's chunk stream).
"use strict";
const histories = new Map(); // model -> [{role, content}]

function panelFor(model) {
  const panels = document.getElementById("panels");
  let panel = [...panels.children].find((p) => p.dataset.model === model);
  if (!panel) {
    panel = document.createElement("section");
    panel.className = "panel";
    panel.dataset.model = model;
    panel.setAttribute("aria-live", "polite");
    const title = document.createElement("h2");
    title.textContent = model;
    panel.appendChild(title);
    panels.appendChild(panel);
  }
  return panel;
}

function addTurn(panel, role, text) {
  const turn = document.createElement("p");
  turn.className = `turn ${role}`;
  turn.textContent = text;
  panel.appendChild(turn);
  return turn;
}

async function streamAnswer(model, settings, message) {
  const panel = panelFor(model);
  const history = histories.get(model) || [];
  history.push({ role: "user", content: message });
  histories.set(model, history);
  addTurn(panel, "user", message);
  const answer = addTurn(panel, "assistant", "");
  panel.dataset.state = "streaming";
  panel.dataset.chunks = "0";
  const messages = settings.system ? [{ role: "system", content: settings.system }, ...history] : history;
  const response = await fetch("/ui/chat", {
    method: "POST", credentials: "same-origin", headers: window.tunery.csrfHeaders({ "Content-Type": "application/json" }),
    body: JSON.stringify({ model, messages, stream: true, max_tokens: settings.maxTokens, temperature: settings.temperature }),
  });
  if (!response.ok) {
    const error = window.tunery.errorOf(await response.json().catch(() => null), response.status);
    answer.className = "turn error";
    answer.textContent = error.message;
    panel.dataset.state = "error";
    history.pop();
    return;
  }
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const line = buffer.slice(0, cut).trim();
      buffer = buffer.slice(cut + 2);
      if (!line.startsWith("data: ")) continue;
      const data = line.slice(6);
      if (data === "[DONE]") continue;
      const chunk = JSON.parse(data);
      if (chunk.error) { answer.className = "turn error"; answer.textContent += ` [${chunk.error.message}]`; continue; }
      const delta = chunk.choices.length ? chunk.choices[0].delta : {};
      if (delta && delta.content) {
        answer.textContent += delta.content;
        panel.dataset.chunks = String(Number(panel.dataset.chunks) + 1);
      }
    }
  }
  history.push({ role: "assistant", content: answer.textContent });
  panel.dataset.state = "done";
}

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("chat-form");
  const reset = () => { histories.clear(); document.getElementById("panels").replaceChildren(); };
  document.getElementById("reset").addEventListener("click", reset);
  form.querySelectorAll("select[name=slot]").forEach((select) => select.addEventListener("change", reset));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const prompt = document.getElementById("prompt");
    const message = prompt.value.trim();
    const models = [...new Set([...form.querySelectorAll("select[name=slot]")].map((s) => s.value).filter(Boolean))];
    if (!message || !models.length) {
      prompt.setAttribute("aria-invalid", String(!message));
      window.alert(!message ? "Write a message first." : "Pick at least one model.");
      return;
    }
    prompt.removeAttribute("aria-invalid");
    const settings = {
      system: document.getElementById("system").value.trim(),
      maxTokens: Number(document.getElementById("max_tokens").value) || 64,
      temperature: Number(document.getElementById("temperature").value) || 0,
    };
    prompt.value = "";
    const send = document.getElementById("send");
    send.disabled = true;
    await Promise.all(models.map((model) => streamAnswer(model, settings, message)));
    send.disabled = false;
  });
});
