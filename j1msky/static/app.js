// J1MSKY console: live refresh and copy buttons. Every page works without this file.
"use strict";

// Elements with data-live="fragment url" data-target="id": re-fetch the fragment whenever
// the events stream (data-events) says something happened, and every 10 s for the vitals;
// if the stream cannot be opened, poll every 2 s instead. The label says "updated N s ago",
// or "reconnecting" while the stream or a fetch is failing: stale data is never silent.
function startLive(panel) {
  const target = document.getElementById(panel.dataset.target);
  const label = panel.querySelector(".live-status");
  let updatedAt = Date.now();
  let failing = false;
  let finished = false;
  let timer = null;
  let source = null;

  function show() {
    if (finished) return;
    const seconds = Math.round((Date.now() - updatedAt) / 1000);
    label.textContent = failing ? "reconnecting… (updated " + seconds + " s ago)"
                                : "updated " + seconds + " s ago";
    panel.classList.toggle("stale", failing);
  }

  function schedule(delay) {
    clearTimeout(timer);
    if (!finished) timer = setTimeout(refresh, delay);
  }

  async function refresh() {
    try {
      const response = await fetch(panel.dataset.live, {credentials: "same-origin"});
      if (response.status === 401) {
        window.location.reload();  // signed out: the page sends us to sign in
        return;
      }
      if (!response.ok) throw new Error(response.status);
      target.innerHTML = await response.text();  // server-rendered, escaped HTML
      updatedAt = Date.now();
      failing = source !== null && source.readyState !== EventSource.OPEN;
      bindCopyButtons(target);
      const agent = target.querySelector("[data-status]");
      if (agent && !["spawning", "running"].includes(agent.dataset.status)) {
        finished = true;
        label.textContent = "finished";
        panel.classList.remove("stale");
        if (source) source.close();
        return;
      }
    } catch (error) {
      failing = true;
    }
    show();
    schedule(source && source.readyState === EventSource.OPEN ? 10000 : 2000);
  }

  function listen() {
    if (!panel.dataset.events || !window.EventSource) return;
    source = new EventSource(panel.dataset.events);
    source.onopen = function () { failing = false; refresh(); };
    source.onmessage = function () { schedule(100); };
    source.onerror = function () {
      if (source.readyState === EventSource.CLOSED) {  // refused (busy, signed out): poll
        source = null;
        schedule(2000);
        return;
      }
      failing = true;  // the browser retries by itself
      show();
    };
    // Named events (event: agent.completed, ...) do not reach onmessage: listen to each.
    for (const type of (panel.dataset.eventTypes || "").split(",")) {
      if (type) source.addEventListener(type, function () { schedule(100); });
    }
  }

  setInterval(show, 1000);
  show();
  listen();
  schedule(2000);
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
