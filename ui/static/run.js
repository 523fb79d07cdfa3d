// Live discovery progress: polls the run (GET /api/v1/runs/:id) once a
// second while it runs and updates the host counters and the status; at
// the end the summary replaces the counters. It never reloads the page by itself.
(function () {
  var box = document.getElementById("discovery-progress");
  if (!box) return;
  var src = box.dataset.poll, status = document.getElementById("run-status");
  function set(elID, v) {
    var el = document.getElementById(elID);
    if (el && v !== undefined && el.textContent !== String(v)) el.textContent = String(v);
  }
  function tick() {
    fetch(src, {credentials: "same-origin"})
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
      .then(function (run) {
        var p = run.live && run.live.progress;
        if (p) {
          set("d-done", p.done); set("d-total", p.total); set("d-discovered", p.discovered); set("d-failed", p.failed);
        }
        if (status && status.textContent !== run.status) { status.textContent = run.status; status.className = "status " + run.status; }
        if (run.status !== "running") {
          if (run.summary) {
            set("run-summary", run.summary);
            document.getElementById("run-summary").hidden = false;
            document.getElementById("run-summary-label").hidden = false;
          }
          // The summary has the final counts; the last poll's may be behind.
          box.textContent = run.summary || ("Run " + run.status + ".");
          return;
        }
        setTimeout(tick, 1000);
      })
      .catch(function () { setTimeout(tick, 3000); });
  }
  setTimeout(tick, 1000);
})();
