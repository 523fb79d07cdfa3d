// The job page follows its job live: status, counts per state, progress,
// the controls valid in the current state, the per-host grid and the
// rows of the host table shown. When the job ends, the page's live parts
// (summary, retry control, host table) are fetched afresh and swapped in,
// so the page never needs a manual reload.
(function () {
  var live = document.getElementById("job-live");
  if (!live) return;
  var id = live.dataset.job, status = document.getElementById("job-status");
  var lastCounts = "";
  function final(s) { return s === "succeeded" || s === "failed" || s === "aborted" || s === "rejected"; }
  function getJSON(u) {
    return fetch(u, {credentials: "same-origin"}).then(function (r) {
      if (!r.ok) throw new Error(u + ": " + r.status);
      return r.json();
    });
  }
  function showControls(s) {
    document.querySelectorAll("#controls [data-when]").forEach(function (f) {
      f.hidden = f.dataset.when.split(" ").indexOf(s) < 0;
    });
  }
  function setCounts(j) {
    var done = 0;
    ["pending", "running", "succeeded", "failed", "skipped"].forEach(function (s) {
      var n = (j.counts || {})[s] || 0, b = document.getElementById("count-" + s);
      if (b) b.textContent = n;
      if (s === "succeeded" || s === "failed" || s === "skipped") done += n;
    });
    var p = document.getElementById("progress");
    if (p) p.value = done;
  }
  function setHost(h) {
    var c = document.getElementById("h-" + h.idx);
    if (c && c.className !== "cell " + h.state) {
      c.className = "cell " + h.state;
      c.title = h.address + ": " + h.state;
      c.setAttribute("aria-label", c.title);
    }
    var row = document.getElementById("row-" + h.idx);
    if (row) {
      var st = row.querySelector(".status");
      if (st && st.textContent !== h.state) { st.textContent = h.state; st.className = "status " + h.state; }
      var ex = row.querySelector(".exit");
      if (ex) ex.textContent = h.exit_code === null || h.exit_code === undefined ? "" : h.exit_code;
      var at = row.querySelector(".attempts");
      if (at) at.textContent = h.attempts;
    }
  }
  // hosts reads every host, 2,000 a request, following the cursor.
  function hosts(cursor) {
    return getJSON("/api/v1/jobs/" + id + "/hosts?limit=2000" + (cursor ? "&cursor=" + cursor : "")).then(function (page) {
      (page.items || []).forEach(setHost);
      if (page.next_cursor) return hosts(page.next_cursor);
    });
  }
  // refresh swaps in the server's rendering of the live parts; ended
  // says the job has ended (a failed fetch then says to reload).
  function refresh(ended) {
    return fetch(location.pathname + location.search, {credentials: "same-origin"})
      .then(function (r) { if (!r.ok) throw new Error("page: " + r.status); return r.text(); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        ["job-live", "job-hosts"].forEach(function (part) {
          var fresh = doc.getElementById(part), cur = document.getElementById(part);
          if (fresh && cur) cur.replaceWith(fresh);
        });
      })
      .catch(function () {
        var note = document.getElementById("ended");
        if (note && ended) note.hidden = false;
      });
  }
  function tick() {
    getJSON("/api/v1/jobs/" + id).then(function (j) {
      var changed = status && status.textContent !== j.status;
      if (changed) { status.textContent = j.status; status.className = "status " + j.status; }
      setCounts(j);
      showControls(j.status);
      var sig = JSON.stringify(j.counts || {});
      var work = sig === lastCounts && !final(j.status) ? Promise.resolve() : hosts("");
      lastCounts = sig;
      return work.then(function () {
        if (final(j.status)) return refresh(true);
        // A new state can bring parts the page did not have, such as the
        // line linking the approval ticket the job now waits for.
        return (changed ? refresh(false) : Promise.resolve()).then(function () { setTimeout(tick, 1000); });
      });
    }).catch(function () { setTimeout(tick, 3000); });
  }
  if (status && !final(status.textContent)) setTimeout(tick, 500);
})();
