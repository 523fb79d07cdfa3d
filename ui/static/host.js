// Live host output: while the host runs, append its output as it arrives.
// Control characters (escape codes included) show as escapes, as on the
// server-rendered page (showBytes), instead of acting on the page.
(function () {
  var pre = document.getElementById("output"), state = document.getElementById("host-state");
  if (!pre || !state || !(state.textContent === "running" || state.textContent === "pending")) return;
  var job = pre.dataset.job, idx = pre.dataset.idx, after = "0";
  function hex(c) { return ("0" + c.charCodeAt(0).toString(16)).slice(-2); }
  function show(s) {
    return s.replace(/[\u0000-\u0008\u000b-\u001f\u007f]/g, function (c) { return c === "\u0000" ? "\\0" : "\\x" + hex(c); })
      .replace(/[\u0080-\u009f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069\u061c]/g, function (c) { return "\\u" + ("000" + c.charCodeAt(0).toString(16)).slice(-4); });
  }
  pre.textContent = "";
  function tick() {
    fetch("/api/v1/jobs/" + job + "/output?host=" + idx + "&after=" + after, {credentials: "same-origin"})
      .then(function (r) { return r.json(); })
      .then(function (page) {
        (page.items || []).forEach(function (o) { pre.textContent += show(o.data); });
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
