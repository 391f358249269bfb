// J1MSKY console: live refresh and copy buttons. Every page works without this file.
"use strict";

// Elements with data-live="url" data-target="id": fetch the fragment every 2 s and swap it
// in, saying "updated N s ago", or "reconnecting" when a fetch fails: stale data is never silent.
function startLive(panel) {
  const target = document.getElementById(panel.dataset.target);
  const label = panel.querySelector(".live-status");
  let updatedAt = Date.now();
  let failing = false;

  function show() {
    const seconds = Math.round((Date.now() - updatedAt) / 1000);
    label.textContent = failing ? "reconnecting… (updated " + seconds + " s ago)"
                                : "updated " + seconds + " s ago";
    panel.classList.toggle("stale", failing);
  }

  async function poll() {
    try {
      const response = await fetch(panel.dataset.live, {credentials: "same-origin"});
      if (response.status === 401) {
        window.location.reload();  // signed out: the page sends us to sign in
        return;
      }
      if (!response.ok) throw new Error(response.status);
      target.innerHTML = await response.text();  // server-rendered, escaped HTML
      updatedAt = Date.now();
      failing = false;
      bindCopyButtons(target);
      const agent = target.querySelector("[data-status]");
      if (agent && !["spawning", "running"].includes(agent.dataset.status)) {
        label.textContent = "finished";
        return;  // nothing more will change
      }
    } catch (error) {
      failing = true;
    }
    show();
    setTimeout(poll, 2000);
  }

  setInterval(show, 1000);
  show();
  setTimeout(poll, 2000);
}

function bindCopyButtons(root) {
  root.querySelectorAll("button.copy[data-copy]").forEach(function (button) {
    button.hidden = false;
    button.addEventListener("click", async function () {
      const text = document.getElementById(button.dataset.copy).textContent;
      try {
        await navigator.clipboard.writeText(text);
        button.textContent = "Copied";
      } catch (error) {
        const range = document.createRange();
        range.selectNodeContents(document.getElementById(button.dataset.copy));
        window.getSelection().removeAllRanges();
        window.getSelection().addRange(range);
        button.textContent = "Selected: copy it";
      }
    });
  });
}

document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("[data-live]").forEach(startLive);
  bindCopyButtons(document);
});
