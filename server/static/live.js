// Live pages over /live/alerts (Server-Sent Events): the alert list puts changed rows in place;
// an alert's own page refreshes its content when that alert changes.
(function () {
  "use strict";
  if (!window.EventSource) { return; }
  var table = document.getElementById("alerts");
  var detail = document.querySelector("[data-alert-page]");
  if (!table && !detail) { return; }
  var status = document.getElementById("live-status");

  function setStatus(ok) {
    if (!status) { return; }
    status.textContent = status.getAttribute(ok ? "data-ok" : "data-down");
    status.className = ok ? "muted" : "down";
  }

  function parse(html) {
    var tpl = document.createElement("template");
    tpl.innerHTML = html.trim();
    return tpl.content;
  }

  function get(url, then) {
    fetch(url, {credentials: "same-origin"})
      .then(function (resp) { return resp.ok ? resp.text() : null; })
      .then(function (html) { if (html) { then(parse(html)); } });
  }

  // --- the list -------------------------------------------------------------------------
  var body = table ? table.tBodies[0] : null;
  var filter = table ? (table.getAttribute("data-filter") || "") : "";

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

  function resync() {  // after a lost connection: the whole list again
    get(window.location.href, function (doc) {
      var fresh = doc.querySelector("#alerts tbody");
      if (fresh) { body.replaceWith(fresh); body = fresh; }
    });
  }

  // --- one alert ------------------------------------------------------------------------
  var alertId = detail ? detail.getAttribute("data-alert-page") : null;

  function refreshDetail() {
    get(window.location.pathname + window.location.search, function (doc) {
      var fresh = doc.querySelector("[data-alert-page]");
      if (fresh) { detail.replaceWith(fresh); detail = fresh; }
    });
  }

  var lost = false;
  var source = new EventSource("/live/alerts");
  source.onopen = function () {
    setStatus(true);
    if (lost) { if (body) { resync(); } else { refreshDetail(); } }
    lost = false;
  };
  source.onerror = function () { setStatus(false); lost = true; };
  source.addEventListener("resync", function () {  // too many changes at once: fetch all
    if (body) { resync(); } else { refreshDetail(); }
  });
  source.addEventListener("logout", function () {  // the session ended elsewhere
    source.close();
    window.location.href = "/login";
  });
  source.addEventListener("alert", function (ev) {
    var id;
    try { id = String(JSON.parse(ev.data).id); } catch (e) { return; }
    if (body) {
      get("/alerts/" + encodeURIComponent(id) + "/row", function (doc) {
        var row = doc.querySelector("tr");
        if (row) { place(row); }
      });
    } else if (id === alertId) {
      refreshDetail();
    }
  });
})();
