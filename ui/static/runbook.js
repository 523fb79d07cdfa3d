// Runbook pages. The editor checks its text as its user types (a
// debounced POST to /api/v1/runbooks/validate) and lists the errors with
// their line:column, marking their lines in the gutter. The run form
// previews how many hosts a selector input matches. A run's page polls the
// run (GET /api/v1/runs/:id) and updates each step's state, timing, error,
// outputs and link, and which controls show. Without JavaScript every
// page still works: the server checks on save and renders the state.
(function () {
  "use strict";
  var meta = document.querySelector('meta[name="csrf-token"]');
  var csrf = meta ? meta.getAttribute("content") : "";

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // --- editor ---------------------------------------------------------
  var src = document.getElementById("rb-source");
  if (src && src.tagName === "TEXTAREA") {
    var gutter = document.getElementById("rb-gutter");
    var list = document.getElementById("rb-errors");
    var status = document.getElementById("rb-status");
    var bad = {};
    var timer = null, seq = 0;

    var drawGutter = function () {
      var n = src.value.split("\n").length;
      var frag = document.createDocumentFragment();
      for (var i = 1; i <= n; i++) {
        var s = el("span", bad[i] ? {"class": "bad"} : {}, String(i));
        frag.appendChild(s);
        frag.appendChild(document.createTextNode("\n"));
      }
      gutter.textContent = "";
      gutter.appendChild(frag);
      gutter.scrollTop = src.scrollTop;
    };
    var goTo = function (line, col) {
      var lines = src.value.split("\n"), at = 0;
      for (var i = 0; i < line - 1 && i < lines.length; i++) at += lines[i].length + 1;
      var end = at + (lines[line - 1] || "").length;
      src.focus();
      src.setSelectionRange(Math.min(at + Math.max(col - 1, 0), end), end);
    };
    var show = function (errors, message) {
      bad = {};
      list.textContent = "";
      (errors || []).forEach(function (e) {
        bad[e.line] = true;
        var li = el("li");
        var a = el("a", {href: "#rb-source", "data-line": e.line, "data-col": e.column}, "line " + e.line + ":" + e.column);
        li.appendChild(a);
        li.appendChild(document.createTextNode(" "));
        if (e.path) { li.appendChild(el("code", {}, e.path)); li.appendChild(document.createTextNode(" ")); }
        li.appendChild(document.createTextNode(e.reason));
        list.appendChild(li);
      });
      status.textContent = message;
      if (errors && errors.length) src.setAttribute("aria-invalid", "true"); else src.removeAttribute("aria-invalid");
      drawGutter();
    };
    var check = function () {
      var mine = ++seq;
      fetch("/api/v1/runbooks/validate", {method: "POST", credentials: "same-origin",
        headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf}, body: JSON.stringify({source: src.value})})
        .then(function (r) { return r.json().then(function (b) { return {ok: r.ok, status: r.status, body: b}; }); })
        .then(function (r) {
          if (mine !== seq) return; // a later check is on its way
          if (r.ok) { show([], "Valid: " + r.body.steps + " step(s)."); return; }
          var err = r.body.error || {};
          var errs = (err.details && err.details.errors) || [];
          if (!errs.length && err.fields) {
            for (var f in err.fields) errs.push({line: 1, column: 1, path: f, reason: err.fields[f]});
          }
          show(errs, errs.length ? errs.length + " error(s):" : (err.message || "Not checked (" + r.status + ")."));
        })
        .catch(function () { if (mine === seq) status.textContent = "Not checked: the server did not answer."; });
    };
    src.addEventListener("input", function () {
      drawGutter();
      clearTimeout(timer);
      timer = setTimeout(check, 400);
    });
    src.addEventListener("scroll", function () { gutter.scrollTop = src.scrollTop; });
    list.addEventListener("click", function (ev) {
      var a = ev.target.closest("a[data-line]");
      if (!a) return;
      ev.preventDefault();
      goTo(+a.getAttribute("data-line"), +a.getAttribute("data-col"));
    });
    list.querySelectorAll("li a[data-line]").forEach(function (a) { bad[+a.getAttribute("data-line")] = true; });
  }

  // --- run form: selector preview ---------------------------------------
  document.querySelectorAll("input[data-selector-preview]").forEach(function (input) {
    var out = document.getElementById(input.getAttribute("data-selector-preview"));
    var t = null;
    var preview = function () {
      var sel = input.value.trim();
      if (!sel) { out.textContent = ""; return; }
      fetch("/api/v1/cmdb/cis?type=host&limit=1&selector=" + encodeURIComponent(sel), {credentials: "same-origin"})
        .then(function (r) { return r.json().then(function (b) { return {ok: r.ok, body: b}; }); })
        .then(function (r) {
          if (input.value.trim() !== sel) return;
          out.textContent = r.ok ? "matches " + r.body.total + " host(s)" : ((r.body.error && r.body.error.message) || "not a selector");
        })
        .catch(function () { out.textContent = ""; });
    };
    input.addEventListener("input", function () { clearTimeout(t); t = setTimeout(preview, 400); });
    preview();
  });

  // --- run page --------------------------------------------------------
  var box = document.getElementById("rb-run");
  if (!box || box.getAttribute("data-ended") === "true") return;
  var words = {running: ["Running", "running"], succeeded: ["Succeeded", "ok"], completed: ["Succeeded", "ok"],
    failed: ["Failed", "bad"], timed_out: ["Timed out", "bad"], terminated: ["Terminated", "bad"], skipped: ["Skipped", "stopped"],
    canceled: ["Cancelled", "stopped"], pending: ["Not started", "other"], awaiting_retry: ["Awaiting retry", "waiting"]};
  function badge(status) {
    var w = words[status] || [status, "other"];
    return el("span", {"class": "status " + status + " st-" + w[1], title: status}, w[0]);
  }
  function setBadge(holder, status) {
    if (!holder) return;
    var cur = holder.querySelector(".status");
    if (cur && cur.getAttribute("title") === status) return;
    holder.textContent = "";
    holder.appendChild(badge(status));
  }
  function fmt(t) {
    if (!t) return "";
    var d = new Date(t);
    return isNaN(d) ? t : d.toLocaleString();
  }
  function setText(id, text) {
    var e = document.getElementById(id);
    if (e && e.textContent !== text) e.textContent = text;
    return e;
  }
  function stepLink(s) {
    var o = s.outputs || {};
    if (s.kind === "script" && o.job_id !== undefined) return ["/jobs/" + o.job_id, "Job #" + o.job_id];
    if (s.kind === "approval" && o.ticket_id !== undefined) return ["/approvals/" + o.ticket_id, "Approval #" + o.ticket_id];
    if (s.child && s.child.indexOf("runbook:") === 0) return ["/runs/" + encodeURIComponent(s.child), "Child run"];
    return null;
  }
  function update(run) {
    var counts = {};
    (run.steps || []).forEach(function (s) {
      if (s.path.indexOf("[") >= 0) {
        var k = s.path.replace(/\[\d+\]/g, "[]");
        counts[k] = counts[k] || {};
        counts[k][s.status] = (counts[k][s.status] || 0) + 1;
        return;
      }
      var step = document.getElementById("step-" + s.path);
      if (!step) return;
      step.className = step.className.replace(/\bst-\S+/g, "").trim() + " st-" + s.status;
      setBadge(document.getElementById("state-" + s.path), s.status);
      var m = s.attempts ? "attempt " + s.attempts : "";
      if (s.started_at) m += " · started " + fmt(s.started_at);
      if (s.ended_at) m += " · ended " + fmt(s.ended_at);
      setText("meta-" + s.path, m);
      var err = setText("error-" + s.path, s.error || "");
      if (err) err.hidden = !s.error;
      var out = document.getElementById("outputs-" + s.path);
      if (out && s.outputs && Object.keys(s.outputs).length) {
        out.hidden = false;
        var pre = out.querySelector("pre"), text = JSON.stringify(s.outputs, null, 2);
        if (pre.textContent !== text) pre.textContent = text;
      }
      var link = stepLink(s), holder = document.getElementById("link-" + s.path);
      if (holder && link && !holder.querySelector("a")) {
        holder.appendChild(el("a", {href: link[0]}, link[1]));
        holder.hidden = false;
      }
    });
    for (var k in counts) {
      var parts = [];
      for (var st in counts[k]) parts.push(counts[k][st] + " " + (words[st] || [st])[0]);
      parts.sort();
      setText("counts-" + k, parts.join(" · "));
    }
    setBadge(document.getElementById("run-state"), run.status);
    var paused = document.getElementById("run-paused");
    if (paused) paused.hidden = !run.paused;
    var failed = document.getElementById("run-failed");
    if (failed) {
      failed.textContent = "";
      if (run.failed_step) failed.appendChild(el("code", {}, run.failed_step)); else failed.textContent = "none";
    }
    setText("run-summary", run.summary || "");
    var ended = !!run.ended_at;
    if (ended) setText("run-ended", fmt(run.ended_at));
    var show = function (id, on) { var f = document.getElementById(id); if (f) f.hidden = !on; };
    show("pause-form", !ended && !run.paused && !run.failed_step);
    show("resume-form", !ended && run.paused);
    show("retry-form", !ended && !!run.failed_step);
    show("cancel-form", !ended);
    if (run.failed_step) {
      var rs = document.getElementById("retry-step");
      if (rs) rs.value = run.failed_step;
      setText("retry-step-name", run.failed_step);
    }
    return ended;
  }
  var src2 = box.getAttribute("data-poll"), live = document.getElementById("rb-live");
  function tick() {
    fetch(src2, {credentials: "same-origin"})
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
      .then(function (run) {
        if (update(run)) { if (live) live.textContent = "The run has ended."; return; }
        setTimeout(tick, 1000);
      })
      .catch(function () { setTimeout(tick, 3000); });
  }
  setTimeout(tick, 1000);
})();
