// Jobs: the status column follows the server every two seconds while any job is unfinished.
"use strict";
const FINISHED = ["succeeded", "failed", "cancelled"];
async function refreshStatuses() {
  const response = await fetch("/ui/jobs/statuses", { credentials: "same-origin" });
  if (!response.ok) return false;
  let active = false;
  for (const job of await response.json()) {
    const row = document.querySelector(`tr[data-job="${CSS.escape(job.id)}"]`);
    if (!row) { active = true; continue; }
    const status = row.querySelector("[data-status]");
    status.textContent = job.status;
    status.className = `status status-${job.status}`;
    row.querySelector("[data-model]").textContent = job.fine_tuned_model || "";
    if (!FINISHED.includes(job.status)) active = true;
  }
  return active;
}
document.addEventListener("DOMContentLoaded", () => {
  if (!document.getElementById("jobs")) return;
  const tick = async () => { if (await refreshStatuses()) setTimeout(tick, 2000); };
  setTimeout(tick, 2000);
});
