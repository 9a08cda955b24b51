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
