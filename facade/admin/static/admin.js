// cursorgate admin page: plain JS over /cursor/admin/api, charts drawn by uPlot (served from
// /cursor/admin/vendor, see `make vendor`). The admin key stays in this tab's sessionStorage.
// Data is written with textContent only (never innerHTML), so nothing an account or a license
// name contains can run as code.
"use strict";

const API = "/cursor/admin/api";
const KEY = "cursorgate.adminKey";
const $ = (id) => document.getElementById(id);

function adminKey() { return sessionStorage.getItem(KEY) || ""; }

function setStatus(text, isError) {
  const node = $("status");
  node.textContent = text;
  node.className = isError ? "error" : "";
}

async function api(method, path, body) {
  const init = { method, headers: { Authorization: "Bearer " + adminKey() } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(API + path, init);
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const message = (data.error && data.error.message) || ("HTTP " + response.status);
    throw new Error(message);
  }
  return data;
}

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function cell(row, content, className) {
  const td = el("td", undefined, className);
  if (content instanceof Node) td.appendChild(content); else td.textContent = content == null ? "" : String(content);
  row.appendChild(td);
  return td;
}

function button(label, onClick) {
  const b = el("button", label);
  b.type = "button";
  b.addEventListener("click", onClick);
  return b;
}

function when(ts) { return ts ? new Date(ts).toLocaleString() : ""; }

// A datetime-local input's value is local time; the API wants an ISO instant.
function isoFromInput(value) { return value ? new Date(value).toISOString() : ""; }

function inputFromIso(ts) {
  if (!ts) return "";
  const d = new Date(ts);
  const pad = (n) => String(n).padStart(2, "0");
  return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + "T" + pad(d.getHours()) + ":" + pad(d.getMinutes());
}

// int64 fields arrive as JSON strings (proto3 JSON mapping); absent optional ones as undefined.
function num(value) { return value === undefined || value === null || value === "" ? null : Number(value); }

async function action(label, fn) {
  setStatus(label + "…", false);
  try {
    await fn();
    setStatus(label + ": done.", false);
    await loadAll();
  } catch (err) {
    setStatus(label + " failed: " + err.message, true);
  }
}

// --- usage charts ---

const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"];
const MAX_SERIES = PALETTE.length;
const METRICS = {
  requests: (b) => num(b.requests) || 0,
  tokens: (b) => (num(b.prompt_tokens) || 0) + (num(b.completion_tokens) || 0),
  errors: (b) => num(b.errors) || 0,
  // No first token in a bucket: a gap, not a zero.
  ttft: (b) => (b.ttft_ms_mean ? b.ttft_ms_mean : null),
};
const charts = {};

function groupLabel(usage, series) {
  if (series.group) return series.label || series.group;
  // Only calls refused before a license was found have none; calls that ended before an
  // account was picked (refused, invalid, no account free) have no account.
  return { model: "(no model)", license: "(no license: rejected)", account: "(no account)" }[usage.group_by] || "(none)";
}

function renderUsage(usage) {
  const size = usage.bucket_seconds;
  const first = Math.floor(Date.parse(usage.since) / 1000 / size) * size;
  const last = Math.floor((Date.parse(usage.until) / 1000 - 1) / size) * size;
  const xs = [];
  for (let t = first; t <= last; t += size) xs.push(t);
  const shown = usage.series.slice(0, MAX_SERIES);
  for (const figure of document.querySelectorAll(".chart")) {
    const metric = figure.dataset.metric;
    const value = METRICS[metric];
    const data = [xs];
    let total = 0;
    for (const series of shown) {
      const byStart = new Map(series.buckets.map((b) => [Date.parse(b.start) / 1000, value(b)]));
      const ys = xs.map((t) => (byStart.has(t) ? byStart.get(t) : metric === "ttft" ? null : 0));
      for (const y of ys) total += y || 0;
      data.push(ys);
    }
    figure.dataset.total = String(metric === "ttft" ? 0 : total);
    figure.dataset.groups = JSON.stringify(shown.map((s) => groupLabel(usage, s)));
    drawChart(figure, metric, data, shown.map((s, i) => ({
      label: groupLabel(usage, s),
      stroke: PALETTE[i % PALETTE.length],
      width: 2,
      points: { show: true, size: 5 },
      spanGaps: metric === "ttft",
    })));
  }
  const body = $("usage-table").tBodies[0];
  body.replaceChildren();
  for (const series of usage.series) {
    for (const b of series.buckets) {
      const row = el("tr");
      row.dataset.group = series.group;
      cell(row, when(b.start));
      cell(row, groupLabel(usage, series));
      cell(row, num(b.requests) || 0);
      cell(row, num(b.prompt_tokens) || 0);
      cell(row, num(b.completion_tokens) || 0);
      cell(row, num(b.errors) || 0);
      cell(row, b.ttft_ms_mean || "");
      body.appendChild(row);
    }
  }
  $("usage-section").dataset.series = String(usage.series.length);
}

function drawChart(figure, metric, data, series) {
  if (charts[metric]) charts[metric].destroy();
  const plot = figure.querySelector(".plot");
  plot.replaceChildren();
  if (typeof window.uPlot !== "function") {
    plot.appendChild(el("p", "The chart library did not load.", "error"));
    return;
  }
  const opts = {
    width: Math.max(320, plot.clientWidth || figure.clientWidth || 600),
    height: 200,
    series: [{}, ...series],
    axes: [{}, { size: 60 }],
    scales: { y: { range: (u, min, max) => [0, Math.max(1, max)] } },
    legend: { live: true },
  };
  charts[metric] = new window.uPlot(opts, data, plot);
}

async function loadUsage() {
  const params = new URLSearchParams({ group_by: $("usage-group").value, bucket: $("usage-bucket").value });
  renderUsage(await api("GET", "/usage?" + params));
}

// --- accounts ---

function usageSummary(account) {
  const parts = [];
  const plan = account.membership && account.membership.membershipType;
  if (plan) parts.push(plan);
  const usage = account.usage && account.usage.planUsage;
  if (usage && usage.limit) parts.push("$" + ((usage.totalSpend || 0) / 100).toFixed(2) + " of $" + (usage.limit / 100).toFixed(2) + " used");
  if (usage && typeof usage.remaining === "number") parts.push("$" + (usage.remaining / 100).toFixed(2) + " left");
  return parts.join(", ");
}

function renewalSummary(account) {
  const how = { token: "none (lapses at expiry)", refresh_token: "OAuth refresh token", api_key: "crsr_ API key" }[account.credential] || account.credential || "?";
  const parts = [how];
  if (account.renewed_at) parts.push("renewed " + when(account.renewed_at));
  return parts.join(", ");
}

function fact(parent, name, value, className) {
  if (value === undefined || value === null || value === "") return;
  const line = el("div", undefined, className);
  line.dataset.fact = name;
  line.appendChild(el("strong", name + ": "));
  line.appendChild(document.createTextNode(String(value)));
  parent.appendChild(line);
}

function detailsBox(account) {
  const box = el("div", undefined, "details");
  box.hidden = true;
  fact(box, "Id", account.id);
  fact(box, "Subject", account.subject);
  fact(box, "Client version", account.client_version || "(gateway default)");
  fact(box, "Created", when(account.created_at));
  fact(box, "Last refreshed", when(account.last_refreshed_at) || "never");
  fact(box, "Cooling down until", when(account.cooldown_until));
  fact(box, "Requests / failures (this run)", account.requests + " / " + account.failures);
  for (const probe of account.probes || []) {
    fact(box, "Probe " + probe.dialect, (probe.ok ? "ok" : "refused") + " " + when(probe.probed_at) + ": " + probe.detail);
  }
  box.appendChild(el("strong", "Models"));
  const names = (account.models || []).map((m) => m.id + (m.context_window ? " (" + m.context_window + " ctx)" : "")
    + (m.max_mode_only ? " [Max mode only]" : m.supports_max_mode ? " [Max mode" + (m.max_mode_context_window ? ": " + m.max_mode_context_window + " ctx" : "") + "]" : ""));
  box.appendChild(el("pre", account.models_known ? names.join("\n") || "(none)" : "not fetched yet", "models"));
  for (const key of ["usage", "membership"]) {
    if (account[key] && Object.keys(account[key]).length) {
      box.appendChild(el("strong", key === "usage" ? "Usage" : "Plan"));
      box.appendChild(el("pre", JSON.stringify(account[key], null, 2)));
    }
  }
  return box;
}

function renderAccounts(accounts) {
  const body = $("accounts");
  body.replaceChildren();
  if (!accounts.length) body.appendChild(el("p", "No accounts yet.", "muted"));
  for (const account of accounts) {
    try {
      renderAccount(body, account);
    } catch (err) {
      const card = el("article", undefined, "card");
      card.appendChild(el("h3", (account && account.id) || "?"));
      card.appendChild(el("p", "This account could not be shown: " + err.message, "muted"));
      body.appendChild(card);
    }
  }
  fillSelect($("filter-account"), accounts.map((a) => [a.id, a.label || a.id]));
}

function renderAccount(body, account) {
  const card = el("article", undefined, "card");
  card.dataset.accountId = account.id;
  const title = el("h3", account.label || account.id, "card-title");
  card.appendChild(title);
  const head = el("div");
  head.appendChild(el("span", account.status.replace("_", " "), "badge " + account.status));
  head.appendChild(el("span", " " + account.token_masked, "muted token"));
  card.appendChild(head);
  fact(card, "Dialect", (account.dialect || "auto") + (account.active_dialect ? " (speaking " + account.active_dialect + ")" : ""), "dialect");
  fact(card, "Token expires", when(account.token_expires_at) || "unknown");
  fact(card, "Renewal", renewalSummary(account));
  fact(card, "Renewal failed", account.renewal_error, "error");
  fact(card, "Proxy", account.proxy || "(gateway default)");
  if (account.proxy_down_until && new Date(account.proxy_down_until) > new Date()) {
    fact(card, "Proxy down until", when(account.proxy_down_until) + (account.proxy_error ? ": " + account.proxy_error : ""), "error");
  }
  fact(card, "Plan", usageSummary(account) + (account.near_limit ? " (near its limit: used last)" : ""));
  if (typeof account.remaining_credit === "number") {
    // Core reports the plan's unit, cents.
    fact(card, "Remaining credit", "$" + (account.remaining_credit / 100).toFixed(2), "credit");
  }
  fact(card, "Models", account.models_known ? String((account.models || []).length) : "not fetched yet");
  fact(card, "Disabled because", account.disabled_reason, "error");
  fact(card, "Last error", account.last_error, "error");
  const details = detailsBox(account);
  const actions = el("div", undefined, "actions");
  actions.appendChild(button("Details", () => { details.hidden = !details.hidden; }));
  const path = "/accounts/" + encodeURIComponent(account.id);
  actions.appendChild(account.enabled
    ? button("Disable", () => action("Disable", () => api("PATCH", path, { enabled: false })))
    : button("Enable", () => action("Enable", () => api("PATCH", path, { enabled: true }))));
  actions.appendChild(button("Refresh", () => action("Refresh", () => api("POST", path + "/refresh"))));
  actions.appendChild(button("Probe", () => action("Probe", () => api("POST", path + "/probe"))));
  actions.appendChild(button("Proxy", () => {
    // The stored URL is never sent back to the page (it may hold credentials): ask for a new one.
    const url = prompt("Proxy URL for " + (account.label || account.id) + " (empty: the gateway's route)", "");
    if (url !== null) action("Proxy", () => api("PATCH", path, { proxy: url.trim() }));
  }));
  const pin = el("select", undefined, "dialect-pin");
  pin.title = "Cursor chat protocol for this account";
  for (const name of ["auto", "inference", "agent", "legacy"]) {
    const option = el("option", name);
    option.value = name;
    option.selected = (account.dialect || "auto") === name;
    pin.appendChild(option);
  }
  pin.addEventListener("change", () => action("Dialect", () => api("PATCH", path, { dialect: pin.value })));
  actions.appendChild(pin);
  actions.appendChild(button("Remove", () => {
    if (confirm("Remove account " + (account.label || account.id) + "?")) {
      action("Remove", () => api("DELETE", path));
    }
  }));
  card.appendChild(actions);
  card.appendChild(details);
  body.appendChild(card);
}

// "Add by login": Cursor's PKCE login, started and polled through core.
let loginTimer = null;

function stopLogin() {
  if (loginTimer) clearTimeout(loginTimer);
  loginTimer = null;
}

async function startLogin() {
  stopLogin();
  setStatus("Starting a login…", false);
  try {
    const login = await api("POST", "/accounts/login", {});
    const link = $("login-url");
    const url = new URL(login.url);
    // Only a web address is ever made a link (never javascript: or data:).
    if (url.protocol !== "https:" && url.protocol !== "http:") throw new Error("core answered an unexpected login URL");
    link.href = url.href;
    link.textContent = url.href;
    $("login-state").textContent = "Waiting for the login (until " + when(login.expires_at) + ")…";
    $("login-box").hidden = false;
    setStatus("Login started.", false);
    loginTimer = setTimeout(() => pollLogin(login.login_id), 2000);
  } catch (err) {
    setStatus("Add by login failed: " + err.message, true);
  }
}

async function pollLogin(loginId) {
  loginTimer = null;
  let state;
  try {
    state = await api("GET", "/accounts/login/" + encodeURIComponent(loginId));
  } catch (err) {
    $("login-state").textContent = "Could not ask about the login: " + err.message;
    return;
  }
  if (state.state === "pending") {
    loginTimer = setTimeout(() => pollLogin(loginId), 2000);
    return;
  }
  if (state.state === "done") {
    const account = state.account || {};
    $("login-state").textContent = "Logged in: account " + (account.label || account.id || "") + " added.";
    await loadAll();
  } else {
    $("login-state").textContent = "The login " + state.state + (state.error ? ": " + state.error : ".");
  }
}

function renderImport(result) {
  const box = $("import-result");
  box.replaceChildren();
  const added = result.added || [];
  box.appendChild(el("p", "Added " + added.length + " account" + (added.length === 1 ? "" : "s") + "."));
  const failed = result.failed || [];
  if (failed.length) {
    const list = el("ul", undefined, "error");
    for (const f of failed) list.appendChild(el("li", "Line " + f.line + ": " + f.error));
    box.appendChild(list);
  }
}

// --- licenses ---

let licensesById = new Map();

function limitsSummary(lic) {
  const parts = [];
  if (num(lic.rpm_limit)) parts.push(num(lic.rpm_limit) + " req/min");
  if (num(lic.tpm_limit)) parts.push(num(lic.tpm_limit) + " tok/min");
  if (num(lic.token_budget)) {
    let budget = (num(lic.budget_used) || 0) + " / " + num(lic.token_budget) + " tok per " + (lic.budget_period || "period");
    if (lic.budget_resets_at) budget += " (resets " + when(lic.budget_resets_at) + ")";
    parts.push(budget);
  }
  return parts.join("; ") || "none";
}

function renderLicenses(licenses) {
  const body = $("licenses").tBodies[0];
  body.replaceChildren();
  licensesById = new Map(licenses.map((lic) => [lic.id, lic]));
  for (const lic of licenses) {
    const row = el("tr");
    row.dataset.licenseId = lic.id;
    cell(row, lic.name || lic.id);
    cell(row, lic.key_prefix + "…");
    cell(row, when(lic.created_at));
    cell(row, when(lic.expires_at) || "never");
    cell(row, (lic.allowed_models || []).join(", ") || "all");
    cell(row, lic.requests_used + (lic.request_quota !== undefined ? " / " + lic.request_quota : ""));
    cell(row, limitsSummary(lic), "limits");
    cell(row, el("span", lic.revoked ? "revoked" : "active", "badge " + (lic.revoked ? "revoked" : "active")));
    const actions = cell(row, "");
    actions.appendChild(button("Edit", () => openLicenseEdit(lic.id)));
    if (!lic.revoked) {
      actions.appendChild(button("Revoke", () => {
        if (confirm("Revoke license " + (lic.name || lic.id) + "? Callers using it get 401 at once.")) {
          action("Revoke", () => api("POST", "/licenses/" + encodeURIComponent(lic.id) + "/revoke"));
        }
      }));
    }
    body.appendChild(row);
  }
  fillSelect($("filter-license"), licenses.map((lic) => [lic.id, lic.name || lic.id]));
}

function openLicenseEdit(id) {
  const lic = licensesById.get(id);
  if (!lic) return;
  const form = $("license-edit");
  form.dataset.licenseId = id;
  $("edit-license-id").textContent = lic.name || lic.id;
  $("edit-name").value = lic.name || "";
  $("edit-models").value = (lic.allowed_models || []).join(", ");
  $("edit-quota").value = num(lic.request_quota) === null ? "" : String(num(lic.request_quota));
  $("edit-expires").value = inputFromIso(lic.expires_at);
  $("edit-enabled").checked = !lic.revoked;
  $("edit-rpm").value = num(lic.rpm_limit) ? String(num(lic.rpm_limit)) : "";
  $("edit-tpm").value = num(lic.tpm_limit) ? String(num(lic.tpm_limit)) : "";
  $("edit-budget").value = num(lic.token_budget) ? String(num(lic.token_budget)) : "";
  $("edit-budget-period").value = lic.budget_period || "day";
  form.hidden = false;
  $("edit-name").focus();
}

// Only what changed is sent: a field left as it was stays out of the PATCH (and an emptied
// limit becomes its clear_* flag).
function licensePatch(lic) {
  const patch = {};
  const name = $("edit-name").value.trim();
  if (name !== (lic.name || "")) patch.name = name;
  const models = $("edit-models").value.split(",").map((m) => m.trim()).filter(Boolean);
  if (models.join(",") !== (lic.allowed_models || []).join(",")) patch.allowed_models = models.length ? models : null;
  const quota = $("edit-quota").value.trim();
  if ((quota === "" ? null : Number(quota)) !== num(lic.request_quota)) patch.request_quota = quota === "" ? null : Number(quota);
  const expires = $("edit-expires").value;
  if (expires !== inputFromIso(lic.expires_at)) patch.expires_at = expires ? isoFromInput(expires) : null;
  if ($("edit-enabled").checked === Boolean(lic.revoked)) patch.enabled = $("edit-enabled").checked;
  for (const [input, field] of [["edit-rpm", "rpm_limit"], ["edit-tpm", "tpm_limit"], ["edit-budget", "token_budget"]]) {
    const value = $(input).value.trim();
    const now = num(lic[field]) || null;
    if (value === "" && now !== null) patch["clear_" + field] = true;
    else if (value !== "" && Number(value) !== now) patch[field] = Number(value);
  }
  const period = $("edit-budget-period").value;
  if ((lic.budget_period || "") !== period && (num(lic.token_budget) || patch.token_budget)) patch.budget_period = period;
  return patch;
}

// --- model aliases ---

function renderAliases(aliases) {
  const body = $("aliases").tBodies[0];
  body.replaceChildren();
  for (const alias of aliases) {
    const row = el("tr");
    row.dataset.alias = alias.name;
    cell(row, alias.name);
    cell(row, (alias.targets || []).join(", "));
    cell(row, alias.resolves_to || "(no account offers a target)", alias.resolves_to ? "" : "muted");
    cell(row, el("span", alias.source, "badge " + (alias.source === "admin" ? "active" : "")));
    cell(row, alias.note);
    const actions = cell(row, "");
    if (alias.source === "admin") {
      actions.appendChild(button("Remove", () => action("Remove alias", () => api("DELETE", "/aliases/" + encodeURIComponent(alias.name)))));
    }
    body.appendChild(row);
  }
}

// --- request log ---

// Paging: `pages` holds the before_id of every page shown so far (0: the newest).
const logView = { pages: [0], next: 0 };

function fillSelect(select, options) {
  const chosen = select.value;
  select.replaceChildren(select.options[0]);
  for (const [value, label] of options) {
    const option = el("option", label);
    option.value = value;
    select.appendChild(option);
  }
  select.value = options.some(([value]) => value === chosen) ? chosen : "";
}

function requestFilters() {
  const params = new URLSearchParams({ limit: $("filter-limit").value });
  for (const [name, id] of [["license", "filter-license"], ["model", "filter-model"], ["account", "filter-account"], ["outcome", "filter-outcome"]]) {
    const value = $(id).value.trim();
    if (value) params.set(name, value);
  }
  for (const [name, id] of [["since", "filter-since"], ["until", "filter-until"]]) {
    if ($(id).value) params.set(name, isoFromInput($(id).value));
  }
  const before = logView.pages[logView.pages.length - 1];
  if (before) params.set("before_id", String(before));
  return params;
}

function renderRequests(data) {
  const body = $("requests").tBodies[0];
  body.replaceChildren();
  const requests = data.requests || [];
  if (!requests.length) {
    const row = el("tr");
    cell(row, "No requests match.", "muted").colSpan = 8;
    body.appendChild(row);
  }
  for (const r of requests) {
    const row = el("tr");
    row.dataset.requestId = r.id;
    cell(row, when(r.time));
    if (r.license_id) cell(row, r.license_name || r.license_id);
    else cell(row, "key " + (r.key_prefix || "(none)") + "…", "muted key-prefix");
    cell(row, r.requested_model ? r.requested_model + " \u2192 " + r.model : r.model);
    cell(row, r.account_id);
    cell(row, r.latency_ms + " ms");
    cell(row, r.ttft_ms ? r.ttft_ms + " ms" : "");
    cell(row, r.prompt_tokens + " / " + r.completion_tokens);
    cell(row, r.outcome, r.outcome === "ok" ? "" : "badge disabled");
    body.appendChild(row);
  }
  logView.next = num(data.next_before_id) || 0;
  $("page-older").disabled = !logView.next;
  $("page-newer").disabled = logView.pages.length <= 1;
  $("page-number").textContent = "Page " + logView.pages.length;
}

async function loadRequests() {
  renderRequests(await api("GET", "/requests?" + requestFilters()));
}

// Each section loads and renders on its own: one that fails (a row core cannot render, a
// timeout) says so in its own place and never hides the others.
const SECTIONS = [
  { id: "accounts", load: async () => renderAccounts((await api("GET", "/accounts")).accounts || []) },
  { id: "licenses", load: async () => renderLicenses((await api("GET", "/licenses")).licenses || []) },
  { id: "aliases", load: async () => renderAliases((await api("GET", "/aliases")).aliases || []) },
  { id: "requests", load: loadRequests },
  { id: "usage", load: loadUsage },
];

function sectionStatus(id, text) {
  const node = $(id + "-status");
  node.textContent = text;
  node.hidden = !text;
}

async function loadSection(section) {
  try {
    await section.load();
    sectionStatus(section.id, "");
    return true;
  } catch (err) {
    sectionStatus(section.id, "Could not load: " + err.message);
    return false;
  }
}

async function reloadSection(id) {
  const section = SECTIONS.find((s) => s.id === id);
  document.body.dataset.loaded = "false";
  await loadSection(section);
  document.body.dataset.loaded = "true";
}

async function loadAll() {
  if (!adminKey()) {
    setStatus("Enter the admin key to start.", false);
    return;
  }
  document.body.dataset.loaded = "false";
  const results = await Promise.all(SECTIONS.map(loadSection));
  document.body.dataset.loaded = "true";
  if (results.every(Boolean)) {
    if (!$("status").classList.contains("error")) setStatus("Connected. " + new Date().toLocaleTimeString(), false);
  } else {
    setStatus(results.some(Boolean) ? "Some sections could not load; see each." : "Could not load; see each section.", true);
  }
}

function init() {
  $("admin-key").value = adminKey();
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY, $("admin-key").value.trim());
    setStatus("", false);
    loadAll();
  });
  $("forget-key").addEventListener("click", () => {
    sessionStorage.removeItem(KEY);
    $("admin-key").value = "";
    setStatus("Key forgotten.", false);
  });
  $("reload").addEventListener("click", () => { setStatus("", false); loadAll(); });

  $("usage-form").addEventListener("submit", (event) => {
    event.preventDefault();
    reloadSection("usage");
  });

  $("account-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const body = { token: $("account-token").value.trim(), label: $("account-label").value.trim() };
    const version = $("account-client-version").value.trim();
    if (version) body.client_version = version;
    const proxy = $("account-proxy").value.trim();
    if (proxy) body.proxy = proxy;
    action("Add account", async () => {
      await api("POST", "/accounts", body);
      $("account-form").reset();
    });
  });
  $("login-account").addEventListener("click", startLogin);
  $("login-cancel").addEventListener("click", () => {
    stopLogin();
    $("login-box").hidden = true;
  });
  $("import-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const body = { tokens: $("import-tokens").value, label_prefix: $("import-label-prefix").value.trim() };
    action("Import", async () => {
      renderImport(await api("POST", "/accounts/import", body));
      $("import-tokens").value = "";
    });
  });

  $("license-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const body = { name: $("license-name").value.trim() };
    const models = $("license-models").value.split(",").map((m) => m.trim()).filter(Boolean);
    if (models.length) body.allowed_models = models;
    const quota = $("license-quota").value.trim();
    if (quota) body.request_quota = quota;
    const expires = $("license-expires").value;
    if (expires) body.expires_at = new Date(expires).toISOString();
    action("Create license", async () => {
      const created = await api("POST", "/licenses", body);
      $("new-license-key").textContent = created.key;
      $("new-license").hidden = false;
      $("license-form").reset();
    });
  });
  $("license-edit").addEventListener("submit", (event) => {
    event.preventDefault();
    const id = $("license-edit").dataset.licenseId;
    const lic = licensesById.get(id);
    if (!lic) return;
    const patch = licensePatch(lic);
    action("Save license", async () => {
      if (Object.keys(patch).length) await api("PATCH", "/licenses/" + encodeURIComponent(id), patch);
      $("license-edit").hidden = true;
    });
  });
  $("edit-cancel").addEventListener("click", () => { $("license-edit").hidden = true; });
  $("alias-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const name = $("alias-name").value.trim();
    const targets = $("alias-targets").value.split(",").map((m) => m.trim()).filter(Boolean);
    action("Set alias", async () => {
      await api("PUT", "/aliases/" + encodeURIComponent(name), { targets });
      $("alias-form").reset();
    });
  });
  $("dismiss-key").addEventListener("click", () => {
    $("new-license-key").textContent = "";
    $("new-license").hidden = true;
  });

  $("requests-filter").addEventListener("submit", (event) => {
    event.preventDefault();
    logView.pages = [0];
    reloadSection("requests");
  });
  $("filter-clear").addEventListener("click", () => {
    $("requests-filter").reset();
    logView.pages = [0];
    reloadSection("requests");
  });
  $("page-older").addEventListener("click", () => {
    if (!logView.next) return;
    logView.pages.push(logView.next);
    reloadSection("requests");
  });
  $("page-newer").addEventListener("click", () => {
    if (logView.pages.length <= 1) return;
    logView.pages.pop();
    reloadSection("requests");
  });

  loadAll();
}

init();
