// While a command waits for the node's answer, the command list is reloaded every second.
(function () {
  "use strict";
  function poll() {
    var box = document.getElementById("commands");
    if (!box || box.getAttribute("data-pending") !== "true") { return; }
    fetch(box.getAttribute("data-src"), {credentials: "same-origin"})
      .then(function (resp) { return resp.ok ? resp.text() : null; })
      .then(function (html) {
        if (html) {
          var tpl = document.createElement("template");
          tpl.innerHTML = html.trim();
          var fresh = tpl.content.getElementById("commands");
          if (fresh) { box.replaceWith(fresh); }
        }
        setTimeout(poll, 1000);
      }, function () { setTimeout(poll, 3000); });
  }
  document.addEventListener("DOMContentLoaded", function () {
    setTimeout(poll, 1000);
    // restart and re-enrol interrupt the watch: ask first
    document.querySelectorAll("button[data-confirm]").forEach(function (b) {
      b.addEventListener("click", function (ev) {
        if (!window.confirm(b.getAttribute("data-confirm"))) { ev.preventDefault(); }
      });
    });
  });
})();
