// The alert list follows /live/alerts (Server-Sent Events): changed rows are fetched and put in place.
(function () {
  "use strict";
  var table = document.getElementById("alerts");
  if (!table || !window.EventSource) { return; }
  var body = table.tBodies[0];
  var status = document.getElementById("live-status");
  var filter = table.getAttribute("data-filter") || "";

  function setStatus(ok) {
    if (!status) { return; }
    status.textContent = status.getAttribute(ok ? "data-ok" : "data-down");
    status.className = ok ? "muted" : "down";
  }

  function wanted(row) {
    var state = row.getAttribute("data-state");
    if (filter === "active") { return state !== "resolved"; }
    return !filter || filter === state;
  }

  function place(row) {
    var id = row.getAttribute("data-alert-id");
    var old = body.querySelector('tr[data-alert-id="' + id + '"]');
    if (old) { old.remove(); }
    if (!wanted(row)) { return; }
    // open ones first, each group newest first
    var resolved = row.getAttribute("data-state") === "resolved";
    var rows = body.querySelectorAll("tr[data-alert-id]");
    var before = null;
    for (var i = 0; i < rows.length; i++) {
      var r = rows[i], rResolved = r.getAttribute("data-state") === "resolved";
      var newer = Number(id) > Number(r.getAttribute("data-alert-id"));
      if ((!resolved && rResolved) || (resolved === rResolved && newer)) { before = r; break; }
    }
    body.insertBefore(row, before);
    row.classList.add("fresh");
    var none = document.getElementById("no-alerts");
    if (none) { none.hidden = true; }
  }

  function refresh(id) {
    fetch("/alerts/" + encodeURIComponent(id) + "/row", {credentials: "same-origin"})
      .then(function (resp) { return resp.ok ? resp.text() : null; })
      .then(function (html) {
        if (!html) { return; }
        var tpl = document.createElement("template");
        tpl.innerHTML = html.trim();
        var row = tpl.content.querySelector("tr");
        if (row) { place(row); }
      });
  }

  var source = new EventSource(table.getAttribute("data-live"));
  source.onopen = function () { setStatus(true); };
  source.onerror = function () { setStatus(false); };
  source.addEventListener("alert", function (ev) {
    try { refresh(JSON.parse(ev.data).id); } catch (e) { /* a malformed frame is skipped */ }
  });
})();
