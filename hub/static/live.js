// The settings page's live progress: while a run works, poll the JSON API and update each pill and progress line
// in place (no reload). Progressive enhancement: without this file the page still shows what was true on load.
(function () {
  "use strict";
  var INTERVAL_MS = 1000;

  function progressText(run, kind) {
    if (!run) { return ""; }
    if (run.status === "waiting") { return "Waiting to try again: " + (run.error || "").replace("will retry: ", ""); }
    var done = run.progress.done, total = run.progress.total;
    if (!done && !total) { return "Starting\u2026"; }
    return done + (total ? " of " + total : "") + " " + kind + " so far";
  }

  function setPill(key, pill) {
    var el = document.querySelector('[data-pill="' + key + '"]');
    if (el && pill) {
      el.textContent = pill.words;
      el.className = "pill pill-" + pill.key;
    }
  }

  function show(connections) {
    var working = false;
    connections.forEach(function (c) {
      setPill(c.id, c.pill);
      Object.keys(c.records).forEach(function (kind) {
        var link = document.querySelector('[data-records="' + c.id + "/" + kind + '"]');
        if (link) { link.textContent = c.records[kind] + " " + kind; }
      });
      c.capabilities.forEach(function (cap) {
        var key = c.id + "/" + cap.name;
        setPill(key, cap.pill);
        var line = document.querySelector('[data-progress="' + key + '"]');
        if (line) { line.textContent = progressText(cap.current_run, cap.records.kind); }
        if (cap.current_run) { working = true; }
      });
    });
    return working;
  }

  function poll() {
    fetch("/api/v1/connections", { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (answer) { return answer.ok ? answer.json() : null; })
      .then(function (body) {
        if (body && show(body.connections)) { window.setTimeout(poll, INTERVAL_MS); }
      })
      .catch(function () { window.setTimeout(poll, INTERVAL_MS * 5); });
  }

  if (document.querySelector(".pill-syncing")) { window.setTimeout(poll, INTERVAL_MS); }
})();
