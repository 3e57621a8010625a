// The registry's web UI: progressive only, every page works without it.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  // Search as you type: hide the shown rows whose name does not match.
  for (const input of document.querySelectorAll("input[data-filter]")) {
    const table = document.querySelector(input.dataset.filter);
    if (!table) continue;
    input.addEventListener("input", () => {
      const q = input.value.trim().toLowerCase();
      for (const row of table.querySelectorAll("tbody tr")) {
        row.hidden = q !== "" && !(row.dataset.name || "").includes(q);
      }
    });
  }
  // Copy to clipboard.
  for (const button of document.querySelectorAll("button[data-copy]")) {
    button.addEventListener("click", async () => {
      const text = button.dataset.copy;
      try {
        await navigator.clipboard.writeText(text);
      } catch (_) {
        const area = document.createElement("textarea");
        area.value = text;
        document.body.appendChild(area);
        area.select();
        document.execCommand("copy");
        area.remove();
      }
      const before = button.textContent;
      button.textContent = "Copied";
      setTimeout(() => { button.textContent = before; }, 1500);
    });
  }
});
