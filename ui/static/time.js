// Shows every <time datetime> in the viewer's time zone, on a 24-hour clock like
// the UTC time the server wrote, which stays in the title (on hover). Forms that take a date or
// time carry the viewer's zone in a hidden tz field, so what is typed is
// read in that zone; their labels name it.
(function () {
  function local() {
    var fmt;
    try {
      fmt = new Intl.DateTimeFormat(undefined, {year: "numeric", month: "2-digit", day: "2-digit",
        hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23", timeZoneName: "short"});
    } catch (e) { return; }
    document.querySelectorAll("time[datetime]").forEach(function (t) {
      if (t.dataset.local) return;
      var d = new Date(t.getAttribute("datetime"));
      if (isNaN(d)) return;
      t.textContent = fmt.format(d);
      t.dataset.local = "1";
    });
    var zone;
    try { zone = Intl.DateTimeFormat().resolvedOptions().timeZone; } catch (e) { return; }
    if (!zone) return;
    document.querySelectorAll('input[type=hidden][name=tz]').forEach(function (i) { i.value = zone; });
    document.querySelectorAll(".tz-name").forEach(function (s) { s.textContent = zone; });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", local); else local();
  window.opsflowLocalTimes = local;
})();
