// proactived console: the one script. Every page reads fine without it;
// it only refreshes the page's content in place every few seconds
// (body[data-refresh]), pausing while the tab is hidden or a form field has
// the focus. The choice is remembered per browser (localStorage).
(function () {
  "use strict";
  var every = parseInt(document.body.getAttribute("data-refresh") || "0", 10);
  var box = document.getElementById("autorefresh");
  if (!every || !box || !window.fetch || !window.DOMParser) {
    return;
  }
  var key = "proactived.autorefresh";
  box.parentElement.hidden = false;
  box.checked = localStorage.getItem(key) !== "off";
  box.addEventListener("change", function () {
    localStorage.setItem(key, box.checked ? "on" : "off");
  });
  var busy = false;
  function refresh() {
    var focused = document.activeElement && /^(INPUT|SELECT|TEXTAREA)$/.test(document.activeElement.tagName);
    if (!box.checked || busy || document.hidden || focused) {
      return;
    }
    busy = true;
    fetch(location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) {
          return;
        }
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("main");
        var stamp = doc.getElementById("stamp");
        // Keep open <details> open across the swap.
        var open = {};
        document.querySelectorAll("main details[open] > summary").forEach(function (s, i) { open[i] = true; });
        if (fresh) {
          document.getElementById("main").replaceWith(fresh);
          fresh.querySelectorAll("details > summary").forEach(function (s, i) {
            if (open[i]) { s.parentElement.open = true; }
          });
        }
        if (stamp) {
          document.getElementById("stamp").replaceWith(stamp);
        }
      })
      .catch(function () { /* offline for a moment: try again next time */ })
      .then(function () { busy = false; });
  }
  setInterval(refresh, every * 1000);
})();
