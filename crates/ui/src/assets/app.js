// Burrow agent web UI: no framework, no build step, nothing fetched from
// elsewhere. Every change sends the session's CSRF token.
"use strict";
(() => {
  const $ = (s) => document.querySelector(s);
  let csrf = "";
  let events = null;
  let logStream = null;
  let trafficPage = { offset: 0, limit: 50, more: false };
  let allMappings = [];
  let synced = null;
  let inspectHost = "";

  const text = (el, s) => { el.textContent = s == null ? "" : String(s); };
  const cell = (tr, s) => { const td = document.createElement("td"); text(td, s); tr.appendChild(td); return td; };
  const when = (us) => us ? new Date(us / 1000).toLocaleString() : "";
  const bytes = (n) => n < 1024 ? n + " B" : n < 1048576 ? (n / 1024).toFixed(1) + " KiB" : (n / 1048576).toFixed(1) + " MiB";

  async function api(method, path, body) {
    const opts = { method, headers: {}, credentials: "same-origin" };
    if (method !== "GET") opts.headers["X-CSRF-Token"] = csrf;
    if (body !== undefined) { opts.headers["Content-Type"] = "application/json"; opts.body = JSON.stringify(body); }
    const r = await fetch(path, opts);
    let data = {};
    try { data = await r.json(); } catch (_) { data = {}; }
    if (r.status === 401 && path !== "/api/login") { showLogin("Your session ended: log in again."); }
    return { ok: r.ok, status: r.status, data };
  }

  function showLogin(message) {
    stopStreams();
    $("#nav").hidden = true;
    document.querySelectorAll(".page").forEach((p) => { p.hidden = true; });
    $("#login").hidden = false;
    text($("#login-error"), message || "");
    $("#password").focus();
  }

  function stopStreams() {
    if (events) { events.close(); events = null; }
    if (logStream) { logStream.close(); logStream = null; }
  }

  async function start() {
    const s = await api("GET", "/api/session");
    if (!s.ok) return showLogin("");
    csrf = s.data.csrf;
    $("#login").hidden = true;
    $("#nav").hidden = false;
    route();
  }

  $("#login-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const r = await api("POST", "/api/login", { password: $("#password").value });
    $("#password").value = "";
    if (!r.ok) return text($("#login-error"), r.data.error || "Login failed");
    csrf = r.data.csrf;
    text($("#login-error"), "");
    if (!location.hash || location.hash === "#/") location.hash = "#/dashboard";
    start();
  });

  $("#logout").addEventListener("click", async () => {
    await api("POST", "/api/logout");
    csrf = "";
    showLogin("Logged out.");
  });

  const pages = ["dashboard", "mappings", "traffic", "logs", "inspect", "settings", "caddy"];
  function route() {
    stopStreams();
    const name = (location.hash.replace(/^#\//, "") || "dashboard");
    const page = pages.includes(name) ? name : "dashboard";
    pages.forEach((p) => { $("#page-" + p).hidden = p !== page; });
    document.querySelectorAll("nav a").forEach((a) => {
      if (a.getAttribute("href") === "#/" + page) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
    });
    ({ dashboard, mappings, traffic, logs, inspect, settings, caddy })[page]();
  }
  window.addEventListener("hashchange", () => { if (csrf) route(); });

  // Dashboard: live over server-sent events.
  function dashboard() {
    events = new EventSource("/api/events");
    events.onmessage = (m) => renderStatus(JSON.parse(m.data));
    events.onerror = async () => { const s = await api("GET", "/api/session"); if (!s.ok && events) { events.close(); } };
  }
  function renderStatus(s) {
    const dl = $("#dash-facts");
    dl.replaceChildren();
    const g = s.gateway || {};
    const link = (s.links || []).find((l) => l.gateway_thumbprint) || {};
    const facts = [
      ["Agent", g.agent_name || s.agent.name || "(its registered name)"],
      ["Agent version", s.agent.version],
      ["Gateway", s.gateway_url],
      ["Gateway thumbprint", link.gateway_thumbprint || "—"],
      ["Gateway version", g.version || link.gateway_version || "—"],
      ["Gateway uptime", g.uptime_seconds != null ? Math.floor(g.uptime_seconds / 60) + " min" : "—"],
      ["Public domain", g.public_domain || "—"],
    ];
    if (g.error) facts.push(["Gateway", g.error]);
    for (const [k, v] of facts) { const dt = document.createElement("dt"); text(dt, k); const dd = document.createElement("dd"); text(dd, v); dl.append(dt, dd); }
    const tb = $("#links tbody");
    tb.replaceChildren();
    for (const l of s.links || []) {
      const tr = document.createElement("tr");
      cell(tr, l.index + 1);
      cell(tr, l.state).className = "state-" + l.state;
      cell(tr, when(l.since));
      cell(tr, l.rtt_ms != null ? l.rtt_ms.toFixed(1) + " ms" : "—");
      cell(tr, l.open_streams);
      cell(tr, bytes(l.bytes_in));
      cell(tr, bytes(l.bytes_out));
      cell(tr, l.reconnects);
      cell(tr, l.state === "reconnecting" ? (l.last_failure || "") + (l.next_retry_at ? " — retry at " + new Date(l.next_retry_at / 1000).toLocaleTimeString() : "") : "");
      tb.appendChild(tr);
    }
  }
  $("#reconnect").addEventListener("click", () => api("POST", "/api/reconnect"));

  // Mappings.
  async function mappings() {
    const r = await api("GET", "/api/mappings");
    if (!r.ok) return text($("#map-message"), r.data.error);
    allMappings = r.data.mappings;
    synced = r.data.synced;
    renderMappings();
  }
  function problemOf(host) {
    const s = synced && synced.mappings.find((m) => m.hostname === host);
    return s ? s : null;
  }
  function renderMappings() {
    const q = $("#map-search").value.toLowerCase();
    const f = $("#map-filter").value;
    const tb = $("#mappings tbody");
    tb.replaceChildren();
    for (const m of allMappings) {
      const st = problemOf(m.hostname);
      if (q && !(m.hostname + " " + m.target).toLowerCase().includes(q)) continue;
      if (f === "enabled" && !m.enabled) continue;
      if (f === "disabled" && m.enabled) continue;
      if (f === "problem" && !(st && st.problem)) continue;
      const tr = document.createElement("tr");
      cell(tr, m.hostname);
      cell(tr, m.target);
      cell(tr, [m.ignore_certificate_errors ? "ignore cert errors" : "", m.proxy_protocol ? "PROXY protocol" : ""].filter(Boolean).join(", "));
      cell(tr, !m.enabled ? "disabled" : st ? (st.published ? "published" : "refused: " + st.problem) : "not sent yet");
      const td = cell(tr, "");
      const b = (label, fn) => { const x = document.createElement("button"); x.type = "button"; text(x, label); x.setAttribute("aria-label", label + " " + m.hostname); x.addEventListener("click", fn); td.appendChild(x); };
      b("Edit", () => edit(m));
      b("Inspect", () => { inspectHost = m.hostname; location.hash = "#/inspect"; });
      b(m.enabled ? "Disable" : "Enable", () => save(Object.assign({}, m, { enabled: !m.enabled }), m.hostname));
      b("Delete", async () => {
        if (!confirm("Delete the mapping for " + m.hostname + "?")) return;
        const r = await api("DELETE", "/api/mappings/" + encodeURIComponent(m.hostname));
        report(r, "Deleted " + m.hostname + ".");
        mappings();
      });
      tb.appendChild(tr);
    }
  }
  $("#map-search").addEventListener("input", renderMappings);
  $("#map-filter").addEventListener("change", renderMappings);
  function edit(m) {
    $("#map-form").hidden = false;
    text($("#map-form-title"), m ? "Edit " + m.hostname : "New mapping");
    $("#m-replacing").value = m ? m.hostname : "";
    $("#m-hostname").value = m ? m.hostname : "";
    $("#m-target").value = m ? m.target : "";
    $("#m-insecure").checked = m ? m.ignore_certificate_errors : false;
    $("#m-proxy").checked = m ? m.proxy_protocol : false;
    $("#m-enabled").checked = m ? m.enabled : true;
    ["hostname", "target", "ignore_certificate_errors"].forEach((f) => text($("#e-" + f), ""));
    $("#m-hostname").focus();
  }
  $("#map-new").addEventListener("click", () => edit(null));
  $("#m-cancel").addEventListener("click", () => { $("#map-form").hidden = true; });
  function report(r, okText) {
    const g = r.data.gateway || {};
    text($("#map-message"), !r.ok ? r.data.error : g.error ? g.error : okText);
  }
  async function save(m, replacing) {
    const path = replacing ? "/api/mappings/" + encodeURIComponent(replacing) : "/api/mappings";
    const r = await api(replacing ? "PUT" : "POST", path, m);
    if (!r.ok && r.data.field) {
      const el = $("#e-" + r.data.field);
      if (el) { text(el, r.data.error); $("#map-form").hidden = false; return false; }
    }
    report(r, "Saved " + m.hostname + ".");
    await mappings();
    return r.ok;
  }
  $("#map-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    ["hostname", "target", "ignore_certificate_errors"].forEach((f) => text($("#e-" + f), ""));
    const m = {
      hostname: $("#m-hostname").value, target: $("#m-target").value,
      ignore_certificate_errors: $("#m-insecure").checked, proxy_protocol: $("#m-proxy").checked, enabled: $("#m-enabled").checked,
    };
    if (await save(m, $("#m-replacing").value || null)) $("#map-form").hidden = true;
  });
  $("#map-import").addEventListener("change", async (e) => {
    const f = e.target.files[0];
    if (!f) return;
    let data;
    try { data = JSON.parse(await f.text()); } catch (_) { return text($("#map-message"), "That file is not JSON."); }
    const r = await api("POST", "/api/mappings-import", { mappings: data.mappings || data });
    report(r, "Imported " + (r.data.imported || 0) + " mappings.");
    e.target.value = "";
    mappings();
  });

  // Traffic.
  async function traffic() {
    const p = new URLSearchParams({ limit: trafficPage.limit, offset: trafficPage.offset });
    const host = $("#t-host").value.trim(); if (host) p.set("host", host);
    const status = $("#t-status").value.trim(); if (status) p.set("status", status);
    const since = $("#t-since").value; if (since) p.set("since", new Date(since).getTime() * 1000);
    const until = $("#t-until").value; if (until) p.set("until", new Date(until).getTime() * 1000);
    const r = await api("GET", "/api/traffic?" + p);
    const tb = $("#traffic tbody");
    tb.replaceChildren();
    if (!r.ok) return text($("#traffic-message"), r.data.error);
    trafficPage.more = r.data.more;
    text($("#traffic-message"), r.data.records.length ? "" : "No records match.");
    for (const t of r.data.records) {
      const tr = document.createElement("tr");
      if (t.error) tr.title = t.error;
      [when(t.at), t.kind, t.method, t.host, t.path, t.status || "", t.client, t.duration_ms, bytes(t.bytes_in), bytes(t.bytes_out)].forEach((v) => cell(tr, v));
      tb.appendChild(tr);
    }
    $("#t-older").disabled = !trafficPage.more;
    $("#t-newer").disabled = trafficPage.offset === 0;
  }
  $("#traffic-form").addEventListener("submit", (e) => { e.preventDefault(); trafficPage.offset = 0; traffic(); });
  $("#t-older").addEventListener("click", () => { trafficPage.offset += trafficPage.limit; traffic(); });
  $("#t-newer").addEventListener("click", () => { trafficPage.offset = Math.max(0, trafficPage.offset - trafficPage.limit); traffic(); });

  // Logs.
  function logLine(l) {
    const f = Object.entries(l.fields || {}).map(([k, v]) => k + "=" + (typeof v === "string" ? v : JSON.stringify(v))).join(" ");
    // File lines carry their own time stamp; live ones microseconds.
    const t = l.time ? l.time.replace("T", " ").replace(/\.\d+Z$/, "Z") : new Date(l.at / 1000).toLocaleTimeString();
    return t + " " + l.level + " " + l.message + (f ? " " + f : "");
  }
  function addLines(lines) {
    const pre = $("#log-lines");
    pre.textContent += lines.map(logLine).join("\n") + (lines.length ? "\n" : "");
    const max = 2000;
    const all = pre.textContent.split("\n");
    if (all.length > max) pre.textContent = all.slice(-max).join("\n");
    pre.scrollTop = pre.scrollHeight;
  }
  async function logs() {
    if (logStream) { logStream.close(); logStream = null; }
    $("#log-lines").textContent = "";
    const level = $("#l-level").value, q = $("#l-search").value.trim();
    const p = new URLSearchParams({ level }); if (q) p.set("q", q);
    const gateway = $("#l-source").value === "gateway";
    text($("#logs-source"), gateway ? "The gateway's log lines about this agent, live." : "");
    if (!gateway) {
      const r = await api("GET", "/api/logs?" + p);
      if (!r.ok) return text($("#logs-source"), r.data.error);
      text($("#logs-source"), r.data.source === "file"
        ? "From the agent's log files, newest last" + (r.data.cut ? " (older lines are further back than this page reads)." : ".")
        : "Lines since the agent started (it writes no log file: set --log-file or Logging__FilePath to keep them).");
      addLines(r.data.lines);
    }
    if ($("#l-follow").checked || gateway) {
      logStream = new EventSource((gateway ? "/api/gateway-logs/follow?" : "/api/logs/follow?") + p);
      logStream.onmessage = (m) => {
        const l = JSON.parse(m.data);
        if (l.error) return addLines([{ at: Date.now() * 1000, level: "ERROR", message: l.error }]);
        if (l.missed) return addLines([{ at: Date.now() * 1000, level: "WARN", message: l.missed + " lines missed" }]);
        if (gateway && q && !logLine(l).toLowerCase().includes(q.toLowerCase())) return;
        addLines([l]);
      };
    }
  }
  ["#l-source", "#l-level", "#l-follow"].forEach((s) => $(s).addEventListener("change", logs));
  $("#l-search").addEventListener("change", logs);

  // Request inspector: one request through the edge and straight from the
  // agent; differences marked (≠ and a colour, so not by colour alone).
  async function inspect() {
    const r = await api("GET", "/api/mappings");
    if (!r.ok) return text($("#inspect-message"), r.data.error);
    const sel = $("#i-host");
    const keep = inspectHost || sel.value;
    sel.replaceChildren();
    for (const m of r.data.mappings) {
      const o = document.createElement("option");
      o.value = m.hostname; text(o, m.hostname + (m.enabled ? "" : " (disabled)"));
      sel.appendChild(o);
    }
    if (keep) sel.value = keep;
    inspectHost = "";
    text($("#inspect-message"), r.data.mappings.length ? "" : "No mappings yet: add one on the Mappings page.");
  }
  const decode = (b64) => Uint8Array.from(atob(b64 || ""), (c) => c.charCodeAt(0));
  function bodyText(f, raw) {
    if (f.error) return "";
    try { return new TextDecoder("utf-8", { fatal: true }).decode(raw, { stream: f.truncated }) + (f.truncated ? "\n… (only the first 128 KiB kept)" : ""); }
    catch (_) { return "(binary, " + raw.length + " bytes" + (f.truncated ? ", cut at 128 KiB" : "") + ")"; }
  }
  function renderInspect(edge, direct) {
    $("#inspect-result").hidden = false;
    const rows = (tb, list) => {
      tb.replaceChildren();
      for (const [name, a, b, compare = true] of list) {
        const tr = document.createElement("tr");
        if (compare && a !== b) tr.className = "diff";
        [name, a, b].forEach((v) => cell(tr, v));
        tb.appendChild(tr);
      }
    };
    const ms = (f, k) => f.error && k === "head_ms" ? "—" : f[k].toFixed(1) + " ms";
    rows($("#inspect-summary tbody"), [
      ["From", edge.via, direct.via, false],
      ["Status", edge.error ? "no answer: " + edge.error : String(edge.status), direct.error ? "no answer: " + direct.error : String(direct.status)],
      ["Time to headers", ms(edge, "head_ms"), ms(direct, "head_ms"), false],
      ["Time to body", ms(edge, "total_ms"), ms(direct, "total_ms"), false],
    ]);
    const heads = (f) => { const m = new Map(); for (const [k, v] of f.headers) m.set(k, m.has(k) ? m.get(k) + ", " + v : v); return m; };
    const he = heads(edge), hd = heads(direct);
    const names = [...new Set([...he.keys(), ...hd.keys()])].sort();
    rows($("#inspect-headers tbody"), names.map((n) => [n, he.has(n) ? he.get(n) : "(absent)", hd.has(n) ? hd.get(n) : "(absent)"]));
    const be = decode(edge.body_base64), bd = decode(direct.body_base64);
    text($("#inspect-body-edge"), bodyText(edge, be));
    text($("#inspect-body-direct"), bodyText(direct, bd));
    let at = -1;
    for (let i = 0; i < Math.max(be.length, bd.length); i++) { if (be[i] !== bd[i]) { at = i; break; } }
    text($("#inspect-body-diff"), edge.error || direct.error ? "" : at < 0 ? "The bodies are the same (" + be.length + " bytes kept)." : "≠ The bodies differ from byte " + at + " (" + be.length + " and " + bd.length + " bytes kept).");
  }
  $("#inspect-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    text($("#e-path"), "");
    text($("#inspect-message"), "Sending…");
    const r = await api("POST", "/api/inspect", { method: $("#i-method").value, hostname: $("#i-host").value, path: $("#i-path").value });
    if (!r.ok) {
      text($("#inspect-message"), "");
      if (r.data.field === "path") return text($("#e-path"), r.data.error);
      return text($("#inspect-message"), r.data.error);
    }
    text($("#inspect-message"), "Done.");
    renderInspect(r.data.edge, r.data.direct);
  });

  // Settings: the landing page, backup.
  let defaultLanding = "";
  async function settings() {
    const r = await api("GET", "/api/landing");
    if (!r.ok) return text($("#landing-message"), r.data.error);
    defaultLanding = r.data.default_html;
    $("#landing-html").value = r.data.html || r.data.default_html;
    text($("#landing-domain"), r.data.domain ? "Shown for unknown hosts under " + r.data.domain + "." : "No landing domain yet: set Agent__GatewayFqdn (GATEWAY_FQDN).");
    preview();
  }
  function preview() { $("#landing-frame").srcdoc = $("#landing-html").value; }
  $("#landing-preview").addEventListener("click", preview);
  $("#landing-save").addEventListener("click", async () => {
    const r = await api("PUT", "/api/landing", { html: $("#landing-html").value });
    text($("#landing-message"), r.ok ? "Saved." : r.data.error);
  });
  $("#landing-reset").addEventListener("click", async () => {
    const r = await api("DELETE", "/api/landing");
    text($("#landing-message"), r.ok ? "Back to the gateway's page." : r.data.error);
    if (r.ok) { $("#landing-html").value = defaultLanding; preview(); }
  });

  // Caddy.
  async function caddy() {
    const r = await api("GET", "/api/caddy");
    if (!r.ok) return text($("#caddy-message"), r.data.error);
    text($("#caddy-message"), !r.data.enabled ? "The gateway does not run in Caddy mode." : r.data.problem ? r.data.problem : r.data.routes.length + " routes in Caddy at " + r.data.admin_url + ".");
    text($("#caddy-routes"), r.data.enabled ? JSON.stringify(r.data.routes, null, 2) : "");
  }

  start();
})();
