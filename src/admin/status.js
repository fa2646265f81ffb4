// exoproxy status page: live countdowns. The page is complete without this script; it only
// rewrites the `data-expires` and `data-due` (Unix seconds) elements every second, shows
// `data-at` times in the browser's local time, and shows the copy buttons (`data-copy`). Served as /status.js (CSP default-src 'self': no
// inline script).
"use strict";
(function () {
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function left(secs) {
    if (secs <= 0) { return "expired"; }
    var h = Math.floor(secs / 3600), m = Math.floor(secs / 60) % 60, s = secs % 60;
    return (h > 0 ? h + "h " + pad(m) + "m " : m + "m ") + pad(s) + "s";
  }
  function tick() {
    var now = Math.floor(Date.now() / 1000);
    var items = document.querySelectorAll("[data-expires]");
    for (var i = 0; i < items.length; i++) {
      items[i].textContent = left(parseInt(items[i].getAttribute("data-expires"), 10) - now);
    }
    // The next background renewal: a countdown, then "now" until the page is reloaded.
    var due = document.querySelectorAll("[data-due]");
    for (var j = 0; j < due.length; j++) {
      var secs = parseInt(due[j].getAttribute("data-due"), 10) - now;
      due[j].textContent = secs > 0 ? left(secs) : "now";
    }
  }
  function localTimes() {
    var items = document.querySelectorAll("[data-at]");
    for (var i = 0; i < items.length; i++) {
      var at = parseInt(items[i].getAttribute("data-at"), 10);
      items[i].textContent = new Date(at * 1000).toLocaleString();
    }
  }
  // Copy buttons (the sign-in code): hidden without this script, shown where the clipboard works.
  function copyButtons() {
    if (!navigator.clipboard) { return; }
    var buttons = document.querySelectorAll("button[data-copy]");
    for (var i = 0; i < buttons.length; i++) {
      buttons[i].hidden = false;
      buttons[i].addEventListener("click", function (event) {
        var button = event.currentTarget;
        navigator.clipboard.writeText(button.getAttribute("data-copy")).then(function () {
          button.textContent = "Copied";
        });
      });
    }
  }
  document.addEventListener("DOMContentLoaded", function () {
    copyButtons();
    localTimes();
    tick();
    setInterval(tick, 1000);
  });
})();
