// Starts Swagger UI on /api/docs. "Try it out" calls go out with the
// browser's session cookie; unsafe methods also need the session's CSRF
// token, which the page carries in <meta name="csrf-token">.
(function () {
  // Swagger UI leaves some controls without an accessible name (the
  // toggles of nested fields, the body editor, parameter inputs); name
  // them from what they stand beside as they are rendered.
  function text(el) { return el ? el.textContent.replace(/\s+/g, " ").trim() : ""; }
  function label(root) {
    root.querySelectorAll("button.model-box-control:not([aria-label])").forEach(function (b) {
      if (text(b)) return; // its visible text names it
      var row = b.closest("tr");
      var field = row ? text(row.querySelector("td")) : "";
      b.setAttribute("aria-label", "Show or hide the fields" + (field ? " of " + field : ""));
    });
    root.querySelectorAll("textarea.body-param__text:not([aria-label])").forEach(function (t) {
      t.setAttribute("aria-label", "Request body");
    });
    root.querySelectorAll("tr.parameters input:not([aria-label]), tr.parameters select:not([aria-label]), tr.parameters textarea:not([aria-label])").forEach(function (i) {
      var name = text(i.closest("tr").querySelector(".parameter__name"));
      if (name) i.setAttribute("aria-label", name.replace(/\s*\*\s*required$/, ""));
    });
    root.querySelectorAll("select#servers:not([aria-label])").forEach(function (s) {
      s.setAttribute("aria-label", "Server");
    });
    root.querySelectorAll("select:not([aria-label]):not([id])").forEach(function (s) {
      var cls = s.className || "";
      s.setAttribute("aria-label", /content-type/.test(cls) ? "Content type" : "Choose");
    });
  }
  function start() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    var csrf = meta ? meta.getAttribute("content") : "";
    var root = document.getElementById("swagger-ui");
    new MutationObserver(function () { label(root); }).observe(root, {childList: true, subtree: true});
    window.opsflowAPIDocs = SwaggerUIBundle({
      url: "/api/openapi.json",
      dom_id: "#swagger-ui",
      // Deep links would put a link inside each operation's toggle button
      // (nested interactive controls, which screen readers cannot reach).
      deepLinking: false,
      layout: "BaseLayout",
      presets: [SwaggerUIBundle.presets.apis],
      // Request bodies show their fields (the model), not only an example.
      defaultModelRendering: "model",
      defaultModelExpandDepth: 3,
      defaultModelsExpandDepth: 0,
      docExpansion: "list",
      filter: true,
      // Generated clients name their methods after these.
      displayOperationId: true,
      displayRequestDuration: true,
      // The highlighter's themes colour some tokens below 4.5:1 on their
      // background (numbers in agate: 3.45:1); plain text reads at 12:1.
      syntaxHighlight: false,
      // No call to the public validator: nothing leaves this origin.
      validatorUrl: null,
      requestInterceptor: function (req) {
        var m = (req.method || "GET").toUpperCase();
        if (csrf && m !== "GET" && m !== "HEAD" && m !== "OPTIONS") {
          req.headers["X-CSRF-Token"] = csrf;
        }
        req.credentials = "same-origin";
        return req;
      }
    });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start); else start();
})();
