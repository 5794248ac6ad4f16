// edgedistill dashboard: progressive enhancement only. Every page works without this file; with it,
// the jobs list and a job's page follow their server-sent events and elapsed times tick.
(function () {
  "use strict";

  var TERMINAL = { succeeded: true, failed: true, cancelled: true };

  function formatElapsed(seconds) {
    seconds = Math.max(0, Math.round(seconds));
    if (seconds < 60) return seconds + " s";
    var m = Math.floor(seconds / 60), s = seconds % 60;
    if (m < 60) return m + " min " + (s < 10 ? "0" : "") + s + " s";
    var h = Math.floor(m / 60);
    m = m % 60;
    return h + " h " + (m < 10 ? "0" : "") + m + " min";
  }

  // Elements with data-since="<ISO time>" show the time elapsed since then.
  function tick() {
    var now = Date.now();
    document.querySelectorAll("[data-since]").forEach(function (el) {
      var t = Date.parse(el.getAttribute("data-since"));
      if (!isNaN(t)) el.textContent = formatElapsed((now - t) / 1000);
    });
  }

  function setLive(on) {
    var el = document.getElementById("live-indicator");
    if (!el) return;
    el.hidden = false;
    el.textContent = on ? "Live" : "Reconnecting…";
    el.classList.toggle("offline", !on);
  }

  // ---- jobs list: rows arrive rendered by the server ------------------------------------------
  function followJobs(table) {
    var url = table.getAttribute("data-stream");
    if (!url || !window.EventSource) return;
    var tbody = table.tBodies[0];
    var empty = document.getElementById("jobs-empty");
    var source = new EventSource(url);
    source.onopen = function () { setLive(true); };
    source.onerror = function () { setLive(false); };
    source.addEventListener("job", function (ev) {
      var data = JSON.parse(ev.data);
      var tpl = document.createElement("template");
      tpl.innerHTML = data.html.trim();
      var row = tpl.content.firstElementChild;
      if (!row) return;
      var old = tbody.querySelector('tr[data-job-id="' + data.id + '"]');
      if (old) {
        if (old.getAttribute("data-status") !== data.status) row.classList.add("flash");
        old.replaceWith(row);
      } else {
        row.classList.add("flash");
        var before = tbody.rows[data.index] || null;
        tbody.insertBefore(row, before);
      }
      if (empty) empty.hidden = tbody.rows.length > 0;
      tick();
    });
    source.addEventListener("remove", function (ev) {
      var data = JSON.parse(ev.data);
      var old = tbody.querySelector('tr[data-job-id="' + data.id + '"]');
      if (old) old.remove();
      if (empty) empty.hidden = tbody.rows.length > 0;
    });
    window.addEventListener("pagehide", function () { source.close(); });
  }

  // ---- one job: events trigger a refresh of the server-rendered body --------------------------
  function followJob(root) {
    var url = root.getAttribute("data-stream");
    var fragment = root.getAttribute("data-fragment");
    if (!url || !fragment || !window.EventSource || !window.fetch) return;
    var source = new EventSource(url);
    var timer = null, inflight = false, again = false, done = false, last = 0;
    var MIN_GAP = 800;

    function refresh() {
      timer = null;
      if (inflight) { again = true; return; }
      inflight = true;
      last = Date.now();
      var focused = document.activeElement && document.activeElement.id;
      fetch(fragment, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (r) {
          if (r.status === 401) { window.location.reload(); return null; }
          if (!r.ok) throw new Error("HTTP " + r.status);
          var status = r.headers.get("X-Job-Status");
          return r.text().then(function (html) { return { html: html, status: status }; });
        })
        .then(function (res) {
          if (!res) return;
          var before = root.getAttribute("data-status");
          root.innerHTML = res.html;
          root.setAttribute("data-status", res.status || "");
          var announcer = document.getElementById("job-announcer");
          if (announcer && res.status && res.status !== before) announcer.textContent = "Job " + res.status;
          if (focused) {
            var el = document.getElementById(focused);
            if (el) el.focus({ preventScroll: true });
          }
          bindForms(root);
          tick();
          if (res.status && TERMINAL[res.status]) {
            done = true;
            source.close();
            root.removeAttribute("data-stream");
            var head = document.getElementById("job-head");
            if (head) head.setAttribute("tabindex", "-1");
          }
        })
        .catch(function () { /* the next event retries */ })
        .then(function () {
          inflight = false;
          if (again && !done) { again = false; schedule(); }
        });
    }

    function schedule() {
      if (timer || done) return;
      var wait = Math.max(0, MIN_GAP - (Date.now() - last));
      timer = setTimeout(refresh, wait);
    }

    ["status", "stage_started", "stage_finished", "progress", "epoch", "artifact", "measurement", "warning", "error"]
      .forEach(function (kind) {
        source.addEventListener(kind, function (ev) {
          var data = {};
          try { data = JSON.parse(ev.data); } catch (e) { /* keep {} */ }
          if (kind === "status" && TERMINAL[data.status]) {
            source.close();  // the stream ends here; without close() EventSource would reconnect
            if (timer) { clearTimeout(timer); timer = null; }
            refresh();
            return;
          }
          schedule();
        });
      });
    window.addEventListener("pagehide", function () { source.close(); });
  }

  // ---- forms -------------------------------------------------------------------------------------
  function bindForms(scope) {
    scope.querySelectorAll("form[data-confirm]").forEach(function (form) {
      if (form.dataset.bound) return;
      form.dataset.bound = "1";
      form.addEventListener("submit", function (ev) {
        if (!window.confirm(form.getAttribute("data-confirm"))) ev.preventDefault();
      });
    });
    scope.querySelectorAll("form[data-busy]").forEach(function (form) {
      if (form.dataset.bound) return;
      form.dataset.bound = "1";
      form.addEventListener("submit", function () {
        var button = form.querySelector('button[type="submit"]');
        if (!button) return;
        button.dataset.label = button.textContent;
        button.textContent = form.getAttribute("data-busy");
        button.setAttribute("aria-busy", "true");
        // Disable after the submission has been collected, so the button's own value still goes.
        setTimeout(function () { button.disabled = true; }, 0);
      });
    });
  }

  function studentSize() {
    var box = document.querySelector("[data-student-size]");
    if (!box) return;
    var radios = document.querySelectorAll('input[name="student_mode"]');
    function update() {
      var explicit = document.querySelector('input[name="student_mode"]:checked');
      var on = explicit && explicit.value === "explicit";
      box.setAttribute("data-disabled", on ? "false" : "true");
      box.querySelectorAll("input").forEach(function (i) { i.disabled = !on; });
    }
    radios.forEach(function (r) { r.addEventListener("change", update); });
    update();
  }

  // The method's one-line description follows the selected method.
  function methodHelp() {
    var select = document.getElementById("method");
    var hint = document.getElementById("method-hint");
    if (!select || !hint || !hint.dataset.methodHelp) return;
    var help = {};
    try { help = JSON.parse(hint.dataset.methodHelp); } catch (e) { return; }
    select.addEventListener("change", function () { hint.textContent = help[select.value] || ""; });
  }

  // Back/forward cache: a page restored after a submit must not keep a disabled button.
  window.addEventListener("pageshow", function (ev) {
    if (!ev.persisted) return;
    document.querySelectorAll('button[aria-busy="true"]').forEach(function (b) {
      b.disabled = false;
      b.removeAttribute("aria-busy");
      if (b.dataset.label) b.textContent = b.dataset.label;
    });
  });

  function init() {
    tick();
    setInterval(tick, 1000);
    bindForms(document);
    studentSize();
    methodHelp();
    var table = document.getElementById("jobs-table");
    if (table) followJobs(table);
    var job = document.getElementById("job");
    if (job && job.getAttribute("data-stream")) followJob(job);
    var summary = document.getElementById("error-summary");
    if (summary) summary.focus();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
