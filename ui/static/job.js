// The job page follows its job live: status, counts per state, progress,
// the controls valid in the current state, the per-host grid and the
// host table. The grid comes as one digit per host (data-states on
// #grid, the index of the host's state in STATES) and is drawn here, a
// square per host, so a 10,000-host page carries 10 KB for it. While
// hosts change state, the server's rendering of the grid and the host
// table is fetched and swapped in; when the job ends, the summary and
// controls are too, so the page never needs a manual reload.
(function () {
  var live = document.getElementById("job-live");
  if (!live) return;
  var STATES = ["pending", "running", "succeeded", "failed", "skipped"];
  var id = live.dataset.job, status = document.getElementById("job-status");
  var lastCounts = "";
  function final(s) { return s === "succeeded" || s === "failed" || s === "aborted" || s === "rejected"; }
  function getJSON(u) {
    return fetch(u, {credentials: "same-origin"}).then(function (r) {
      if (!r.ok) throw new Error(u + ": " + r.status);
      return r.json();
    });
  }
  // draw makes the grid show digits: a square per host, created once and
  // recoloured when its state changes.
  function draw(digits, label) {
    var grid = document.getElementById("grid");
    if (!grid) return;
    var cells = grid.children, add = null;
    for (var i = 0; i < digits.length; i++) {
      var st = STATES[digits.charCodeAt(i) - 48] || "pending", c = cells[i];
      if (!c) {
        c = document.createElement("i");
        c.id = "h-" + i;
        c.dataset.idx = i;
        (add || (add = document.createDocumentFragment())).appendChild(c);
      }
      if (c.className !== "cell " + st) {
        c.className = "cell " + st;
        c.title = "host " + i + ": " + st;
      }
    }
    if (add) grid.appendChild(add);
    if (label) grid.setAttribute("aria-label", label);
  }
  var grid = document.getElementById("grid");
  if (grid) {
    draw(grid.dataset.states || "");
    grid.addEventListener("click", function (e) {
      var i = e.target.dataset && e.target.dataset.idx;
      if (i !== undefined) location.href = "/jobs/" + id + "/hosts/" + i;
    });
  }
  function showControls(s) {
    document.querySelectorAll("#controls [data-when]").forEach(function (f) {
      f.hidden = f.dataset.when.split(" ").indexOf(s) < 0;
    });
  }
  function setCounts(j) {
    var done = 0;
    STATES.forEach(function (s) {
      var n = (j.counts || {})[s] || 0, b = document.getElementById("count-" + s);
      if (b) b.textContent = n;
      if (s === "succeeded" || s === "failed" || s === "skipped") done += n;
    });
    var p = document.getElementById("progress");
    if (p) p.value = done;
  }
  // refresh fetches the server's rendering of the page and swaps in the
  // grid's states and the given parts — but not a part the user is
  // working in (a focused filter, say).
  function refresh(parts) {
    return fetch(location.pathname + location.search, {credentials: "same-origin"})
      .then(function (r) { if (!r.ok) throw new Error("page: " + r.status); return r.text(); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var g = doc.getElementById("grid");
        if (g) draw(g.dataset.states || "", g.getAttribute("aria-label"));
        parts.forEach(function (part) {
          var fresh = doc.getElementById(part), cur = document.getElementById(part);
          if (fresh && cur && !cur.contains(document.activeElement)) cur.replaceWith(fresh);
        });
      });
  }
  function tick() {
    getJSON("/api/v1/jobs/" + id).then(function (j) {
      var changed = status && status.textContent !== j.status;
      if (changed) { status.textContent = j.status; status.className = "status " + j.status; }
      setCounts(j);
      showControls(j.status);
      var sig = JSON.stringify(j.counts || {});
      if (final(j.status)) {
        return refresh(["job-live", "job-hosts"]).catch(function () {
          var note = document.getElementById("ended");
          if (note) note.hidden = false;
        });
      }
      // A new state can bring parts the page did not have, such as the
      // line linking the approval ticket the job now waits for; new
      // counts, new host states.
      var parts = changed ? ["job-live", "job-hosts"] : sig !== lastCounts ? ["job-hosts"] : null;
      lastCounts = sig;
      var work = parts ? refresh(parts).catch(function () {}) : Promise.resolve();
      return work.then(function () { setTimeout(tick, 1000); });
    }).catch(function () { setTimeout(tick, 3000); });
  }
  if (status && !final(status.textContent)) setTimeout(tick, 500);
})();
