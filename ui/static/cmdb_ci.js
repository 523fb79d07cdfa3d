// Suggests CI names for the "add a relation" form as the user types
// (GET /api/v1/cmdb/cis?q=); the server resolves the name either way.
(function () {
  var input = document.getElementById("r-target"), list = document.getElementById("r-target-list");
  if (!input || !list) return;
  var timer, last = "";
  input.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(function () {
      var q = input.value.trim();
      if (q.length < 2 || q === last) return;
      last = q;
      fetch("/api/v1/cmdb/cis?limit=10&q=" + encodeURIComponent(q), {credentials: "same-origin"})
        .then(function (r) { return r.ok ? r.json() : {items: []}; })
        .then(function (page) {
          list.textContent = "";
          (page.items || []).forEach(function (ci) {
            var o = document.createElement("option");
            o.value = ci.name;
            o.textContent = ci.type;
            list.appendChild(o);
          });
        })
        .catch(function () {});
    }, 250);
  });
})();
