// Live host output: while the host runs, append its output as it arrives.
(function () {
  var pre = document.getElementById("output"), state = document.getElementById("host-state");
  if (!pre || !state || !(state.textContent === "running" || state.textContent === "pending")) return;
  var job = pre.dataset.job, idx = pre.dataset.idx, after = "0";
  pre.textContent = "";
  function tick() {
    fetch("/api/v1/jobs/" + job + "/output?host=" + idx + "&after=" + after, {credentials: "same-origin"})
      .then(function (r) { return r.json(); })
      .then(function (page) {
        (page.items || []).forEach(function (o) { pre.textContent += o.data; });
        after = page.next_cursor || after;
        return fetch("/api/v1/jobs/" + job + "/hosts/" + idx, {credentials: "same-origin"});
      })
      .then(function (r) { return r.json(); })
      .then(function (h) {
        state.textContent = h.state; state.className = "status " + h.state;
        if (h.state === "running" || h.state === "pending") setTimeout(tick, 500);
      })
      .catch(function () { setTimeout(tick, 2000); });
  }
  tick();
})();
