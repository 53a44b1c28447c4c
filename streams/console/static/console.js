// Keeps the overview live: every 5 s the page is fetched again (same session cookie) and its
// live sections swapped in, unless the operator is typing in one of them.
(function () {
  "use strict";
  if (document.body.dataset.page !== "overview") return;
  function busy() {
    var el = document.activeElement;
    return el && el.tagName === "INPUT" && el.value !== "";
  }
  function refresh() {
    if (busy()) return;
    fetch(window.location.pathname, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (text) {
        if (!text || busy()) return;
        var doc = new DOMParser().parseFromString(text, "text/html");
        document.querySelectorAll("[data-live]").forEach(function (el) {
          var fresh = doc.getElementById(el.id);
          if (fresh) el.replaceWith(fresh);
        });
      })
      .catch(function () {});
  }
  setInterval(refresh, 5000);
})();
