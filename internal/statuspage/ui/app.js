// The status page. It reads "status" and "status/lag-history", relative to
// the page so that it works wherever the daemon is mounted, and draws one
// row per database and target. Every string from the daemon reaches the
// page through textContent or setAttribute, never as markup: database paths
// and error messages come from outside.
"use strict";

(() => {
  const params = new URLSearchParams(location.search);
  const refreshMs = 1000 * Math.max(1, Number(params.get("refresh")) || 5);
  // Drawing 10,000 rows on every refresh keeps the browser busy for
  // seconds; the page draws a page of rows at a time, and the filter and
  // the sort still see every row.
  const page = 500;
  const svgNS = "http://www.w3.org/2000/svg";
  const chartW = 120;
  const chartH = 24;

  const $ = (id) => document.getElementById(id);
  const tbody = $("rows");
  const filterBox = $("filter");
  const moreButton = $("more");

  let rows = [];
  let lagHistory = new Map();
  let filter = "";
  let sortKey = null;
  let sortDesc = false;
  let limit = page;
  let filterTimer = 0;
  let refreshes = 0;

  const number = (v) => (typeof v === "number" && Number.isFinite(v) ? v : null);
  const historyKey = (db, target) => db + "\n" + target;

  function fmtInt(n) {
    return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  }

  function fmtLag(s) {
    if (s === null) return "–";
    if (s < 60) return `${s.toFixed(1)} s`;
    if (s < 3600) return `${Math.floor(s / 60)}m ${Math.floor(s % 60)}s`;
    if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
    return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
  }

  function fmtBytes(n) {
    if (n < 1024) return `${n} B`;
    const units = ["KiB", "MiB", "GiB", "TiB"];
    let v = n / 1024;
    let i = 0;
    while (v >= 1024 && i < units.length - 1) {
      v /= 1024;
      i++;
    }
    return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
  }

  function fmtTime(iso) {
    const t = new Date(iso);
    return iso && !Number.isNaN(t.getTime()) ? t.toLocaleString() : "";
  }

  function buildRows(report) {
    const out = [];
    for (const d of report.dbs || []) {
      const lags = d.lag_seconds || {};
      // A database without targets still gets a row, or it would vanish
      // from the page exactly when its configuration is wrong.
      const targets = d.targets && d.targets.length ? d.targets : [null];
      for (const t of targets) {
        const url = t ? t.url : "";
        const targetError = (t && t.last_error) || "";
        out.push({
          db: d.db,
          state: d.state || "",
          target: url,
          lag: t ? number(t.lag_seconds ?? lags[url]) : null,
          replicated: t ? number(t.replicated_txid) : null,
          txid: number(d.txid),
          synced: !t || t.synced !== false,
          stopped: Boolean(t && t.stopped),
          failing: Boolean(t && (t.failing_since || t.stopped)),
          failingSince: (t && t.failing_since) || "",
          error: targetError || d.last_error || "",
          errorOf: targetError ? "target" : d.last_error ? "db" : "",
          errorTime: (targetError ? t.last_error_time : d.last_error_time) || "",
          gaps: (d.gaps || []).filter((g) => g.target === url),
          spool: number(d.spool_bytes) ?? 0,
          segments: number(d.spool_segments) ?? 0,
          search: (d.db + "\n" + url).toLowerCase(),
          order: out.length,
        });
      }
    }
    return out;
  }

  function indexHistory(h) {
    const m = new Map();
    for (const s of h.series || []) {
      const lag = (s.lag || []).map((v) => number(v) ?? 0);
      if (lag.length > 1) m.set(historyKey(s.db, s.target), { lag, peak: Math.max(...lag) });
    }
    return m;
  }

  function summarize(report) {
    const dbs = report.dbs || [];
    let active = 0;
    let idle = 0;
    let failed = 0;
    let targets = 0;
    let failing = 0;
    let maxLag = null;
    let maxAt = "";
    for (const d of dbs) {
      if (d.state === "active") active++;
      if (d.state === "idle") idle++;
      if (d.state === "failed") failed++;
      for (const t of d.targets || []) {
        targets++;
        if (t.failing_since || t.stopped) failing++;
        const lag = number(t.lag_seconds);
        if (lag !== null && (maxLag === null || lag > maxLag)) {
          maxLag = lag;
          maxAt = `${d.db} → ${t.url}`;
        }
      }
    }
    const put = (id, text, value) => {
      const el = $(id);
      el.textContent = text;
      el.dataset.value = value;
    };
    put("sum-dbs", fmtInt(dbs.length), dbs.length);
    put("sum-active", fmtInt(active), active);
    put("sum-idle", fmtInt(idle), idle);
    put("sum-failed", fmtInt(failed), failed);
    $("sum-failed").classList.toggle("bad", failed > 0);
    put("sum-targets", fmtInt(targets), targets);
    put("sum-failing", fmtInt(failing), failing);
    $("sum-failing").classList.toggle("bad", failing > 0);
    put("sum-maxlag", fmtLag(maxLag), maxLag ?? "");
    $("sum-maxlag").title = maxAt;
  }

  function compare(a, b) {
    const x = a[sortKey];
    const y = b[sortKey];
    // Empty cells (no error, no target) go last whichever way a column
    // sorts: sorting by error is for finding the errors.
    const xEmpty = x === null || x === "";
    const yEmpty = y === null || y === "";
    if (xEmpty || yEmpty) return xEmpty - yEmpty || a.order - b.order;
    const c = x < y ? -1 : x > y ? 1 : 0;
    return (sortDesc ? -c : c) || a.order - b.order;
  }

  function cell(tr, cls, text) {
    const td = document.createElement("td");
    td.className = cls;
    td.textContent = text;
    tr.appendChild(td);
    return td;
  }

  function badge(td, text, title) {
    const span = document.createElement("span");
    span.className = `badge ${text}`;
    span.textContent = text;
    if (title) span.title = title;
    td.appendChild(span);
  }

  function chart(r) {
    const td = document.createElement("td");
    td.className = "history";
    const h = lagHistory.get(historyKey(r.db, r.target));
    // Most targets never lag; a CSS line stands for their flat chart,
    // which spares the browser thousands of SVG elements.
    if (!h) {
      td.classList.add("quiet");
      return td;
    }
    const svg = document.createElementNS(svgNS, "svg");
    svg.setAttribute("class", "spark");
    svg.setAttribute("width", chartW);
    svg.setAttribute("height", chartH);
    svg.setAttribute("viewBox", `0 0 ${chartW} ${chartH}`);
    svg.setAttribute("preserveAspectRatio", "none");
    // Below a second the chart keeps a fixed scale, so that noise does not
    // look like an outage.
    const scale = Math.max(h.peak, 1);
    const dx = chartW / (h.lag.length - 1);
    const points = h.lag
      .map((v, i) => `${(i * dx).toFixed(1)},${(chartH - 1 - ((chartH - 2) * v) / scale).toFixed(1)}`)
      .join(" ");
    const line = document.createElementNS(svgNS, "polyline");
    line.setAttribute("points", points);
    svg.appendChild(line);
    svg.dataset.peak = h.peak;
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", `peak lag ${fmtLag(h.peak)} in the last hour`);
    td.title = `peak ${fmtLag(h.peak)} in the last hour`;
    td.appendChild(svg);
    return td;
  }

  function rowElement(r) {
    const tr = document.createElement("tr");
    tr.dataset.db = r.db;
    tr.dataset.target = r.target;
    if (r.failing) tr.classList.add("failing");
    if (r.state === "idle") tr.classList.add("idle");
    if (r.state === "failed") tr.classList.add("failed");

    cell(tr, "db", r.db);

    const state = cell(tr, "state", "");
    state.dataset.value = r.state;
    const name = document.createElement("span");
    name.className = "dbstate";
    name.textContent = r.state || "–";
    state.appendChild(name);
    if (r.stopped) badge(state, "stopped", "the target stopped for good: see the error");
    else if (r.failing) badge(state, "failing", `failing since ${fmtTime(r.failingSince)}`);
    if (!r.synced) badge(state, "unsynced", "waits for a snapshot before change sets help it again");
    for (const g of r.gaps) {
      badge(state, "gap", `txids ${g.first_txid}–${g.last_txid}${g.open ? " and on" : ""} cannot be restored: ${g.reason}`);
    }

    const target = cell(tr, "target", r.target || "no target");
    if (!r.target) target.classList.add("none");

    const lag = cell(tr, "lag", fmtLag(r.lag));
    lag.dataset.value = r.lag ?? "";

    tr.appendChild(chart(r));

    const tx = cell(tr, "txid", r.replicated === null ? `– / ${r.txid}` : `${r.replicated} / ${r.txid}`);
    tx.dataset.replicated = r.replicated ?? "";
    tx.dataset.txid = r.txid ?? "";

    const err = cell(tr, "error", r.error);
    if (r.error) {
      err.dataset.of = r.errorOf;
      const when = fmtTime(r.errorTime);
      err.title = r.errorOf === "db" ? `capture error${when ? " at " + when : ""}` : when ? `at ${when}` : "";
      // A target keeps its last error after it recovers; it is history,
      // not an alarm.
      if (r.errorOf === "target" && !r.failing) err.classList.add("recovered");
    }

    const spool = cell(tr, "spool", fmtBytes(r.spool));
    spool.dataset.value = r.spool;
    spool.title = `${fmtInt(r.segments)} segments waiting for upload`;
    return tr;
  }

  function render() {
    const matching = filter ? rows.filter((r) => r.search.includes(filter)) : rows.slice();
    if (sortKey) matching.sort(compare);
    const shown = matching.slice(0, limit);
    const frag = document.createDocumentFragment();
    for (const r of shown) frag.appendChild(rowElement(r));
    tbody.replaceChildren(frag);

    const count = $("shown");
    count.dataset.shown = shown.length;
    count.dataset.matching = matching.length;
    count.dataset.total = rows.length;
    count.dataset.filter = filter;
    let text = `${fmtInt(matching.length)} rows`;
    if (shown.length < matching.length) text = `showing ${fmtInt(shown.length)} of ${fmtInt(matching.length)} rows`;
    if (filter) text += ` (${fmtInt(rows.length)} in all)`;
    count.textContent = text;
    moreButton.hidden = shown.length === matching.length;
    moreButton.textContent = `show ${fmtInt(Math.min(page, matching.length - shown.length))} more`;
  }

  function problem(text) {
    const p = $("problem");
    p.hidden = !text;
    p.textContent = text;
  }

  async function getJSON(path) {
    const res = await fetch(path, { cache: "no-store", headers: { Accept: "application/json" } });
    if (!res.ok) throw new Error(`GET ${path}: HTTP ${res.status}`);
    return res.json();
  }

  async function refresh() {
    const [status, hist] = await Promise.allSettled([getJSON("status"), getJSON("status/lag-history")]);
    // A daemon without the lag history still gets its table, without charts.
    lagHistory = hist.status === "fulfilled" ? indexHistory(hist.value) : new Map();
    if (status.status === "fulfilled") {
      rows = buildRows(status.value);
      summarize(status.value);
      problem("");
      $("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
    } else {
      problem(`Cannot read status (${status.reason.message}); the table shows the last answer.`);
    }
    render();
    refreshes++;
  }

  async function loop() {
    try {
      // A page left open in a background tab would poll a busy daemon for
      // nothing.
      if (!document.hidden || refreshes === 0) await refresh();
    } catch (e) {
      problem(`The page failed: ${e.message}`);
    }
    setTimeout(loop, refreshMs);
  }

  filterBox.addEventListener("input", () => {
    // Typing a path draws the table once, not once per key.
    clearTimeout(filterTimer);
    filterTimer = setTimeout(() => {
      filter = filterBox.value.trim().toLowerCase();
      limit = page;
      render();
    }, 150);
  });

  moreButton.addEventListener("click", () => {
    limit += page;
    render();
  });

  for (const th of document.querySelectorAll("th[data-key]")) {
    th.addEventListener("click", () => {
      const key = th.dataset.key;
      if (sortKey === key) {
        sortDesc = !sortDesc;
      } else {
        sortKey = key;
        // The largest lag or spool is the one worth seeing first.
        sortDesc = "numeric" in th.dataset;
      }
      for (const other of document.querySelectorAll("th[data-key]")) {
        other.setAttribute("aria-sort", other === th ? (sortDesc ? "descending" : "ascending") : "none");
      }
      render();
    });
  }

  filter = filterBox.value.trim().toLowerCase();
  loop();
})();
