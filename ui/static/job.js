// Live per-host grid: polls the job's hosts (one request for up to 2,000
// hosts) and recolours the cells; stops when the job ends. It never
// reloads the page by itself.
(function () {
  var grid = document.getElementById("grid");
  if (!grid) return;
  var id = grid.dataset.job, status = document.getElementById("job-status");
  var progress = document.getElementById("progress");
  function final(s) { return s === "succeeded" || s === "failed" || s === "aborted" || s === "rejected"; }
  function tick() {
    fetch("/api/v1/jobs/" + id + "/hosts?limit=2000", {credentials: "same-origin"})
      .then(function (r) { return r.json(); })
      .then(function (page) {
        var done = 0;
        (page.items || []).forEach(function (h) {
          var c = document.getElementById("h-" + h.idx);
          if (c && c.className !== "cell " + h.state) { c.className = "cell " + h.state; c.title = h.address + ": " + h.state; }
          if (h.state === "succeeded" || h.state === "failed" || h.state === "skipped") done++;
        });
        if (progress) progress.value = done;
        return fetch("/api/v1/jobs/" + id, {credentials: "same-origin"});
      })
      .then(function (r) { return r.json(); })
      .then(function (j) {
        if (status && status.textContent !== j.status) { status.textContent = j.status; status.className = "status " + j.status; }
        if (final(j.status)) {
          // Ended: the controls no longer apply; the summary and "retry
          // failed" come with a fresh load of the page.
          var ctl = document.querySelector(".controls");
          if (ctl) ctl.style.display = "none";
          var note = document.getElementById("ended");
          if (note) note.style.display = "";
          return;
        }
        setTimeout(tick, 1000);
      })
      .catch(function () { setTimeout(tick, 3000); });
  }
  if (status && !final(status.textContent)) setTimeout(tick, 500);
})();
