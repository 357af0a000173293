// cursorgate admin page: plain JS over /cursor/admin/api. The admin key stays in this tab's
// sessionStorage. Data is written with textContent only (never innerHTML), so nothing an
// account or a license name contains can run as code.
"use strict";

const API = "/cursor/admin/api";
const KEY = "cursorgate.adminKey";
const $ = (id) => document.getElementById(id);

function adminKey() { return sessionStorage.getItem(KEY) || ""; }

function setStatus(text, isError) {
  const el = $("status");
  el.textContent = text;
  el.className = isError ? "error" : "";
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

// --- accounts ---

function usageSummary(account) {
  const parts = [];
  const plan = account.membership && account.membership.membershipType;
  if (plan) parts.push(plan);
  const usage = account.usage && account.usage.planUsage;
  if (usage && usage.limit) parts.push("$" + ((usage.totalSpend || 0) / 100).toFixed(2) + " of $" + (usage.limit / 100).toFixed(2));
  return parts.join(", ");
}

function detailsRow(account) {
  const row = el("tr", undefined, "details");
  row.hidden = true;
  const td = cell(row, "");
  td.colSpan = 7;
  const facts = [
    ["Id", account.id], ["Subject", account.subject], ["Token expires", when(account.token_expires_at)],
    ["Client version", account.client_version || "(gateway default)"], ["Created", when(account.created_at)],
    ["Last refreshed", when(account.last_refreshed_at) || "never"], ["Cooling down until", when(account.cooldown_until)],
    ["Disabled because", account.disabled_reason], ["Requests / failures (this run)", account.requests + " / " + account.failures],
    ["Dialect", (account.dialect || "auto") + (account.active_dialect ? " (speaking " + account.active_dialect + ")" : "")],
  ];
  for (const probe of account.probes || []) {
    facts.push(["Probe " + probe.dialect, (probe.ok ? "ok" : "refused") + " " + when(probe.probed_at) + ": " + probe.detail]);
  }
  for (const [name, value] of facts) {
    if (!value) continue;
    const p = el("div");
    p.appendChild(el("strong", name + ": "));
    p.appendChild(document.createTextNode(value));
    td.appendChild(p);
  }
  td.appendChild(el("strong", "Models"));
  const names = (account.models || []).map((m) => m.id + (m.context_window ? " (" + m.context_window + " ctx)" : "")
    + (m.max_mode_only ? " [Max mode only]" : m.supports_max_mode ? " [Max mode" + (m.max_mode_context_window ? ": " + m.max_mode_context_window + " ctx" : "") + "]" : ""));
  td.appendChild(el("pre", account.models_known ? names.join("\n") || "(none)" : "not fetched yet", "models"));
  for (const key of ["usage", "membership"]) {
    if (account[key] && Object.keys(account[key]).length) {
      td.appendChild(el("strong", key === "usage" ? "Usage" : "Plan"));
      td.appendChild(el("pre", JSON.stringify(account[key], null, 2)));
    }
  }
  return row;
}

function renderAccounts(accounts) {
  const body = $("accounts").tBodies[0];
  body.replaceChildren();
  if (!accounts.length) {
    const row = el("tr");
    cell(row, "No accounts yet.", "muted").colSpan = 7;
    body.appendChild(row);
  }
  for (const account of accounts) {
    try {
      renderAccount(body, account);
    } catch (err) {
      const row = el("tr");
      cell(row, (account && account.id) || "?");
      cell(row, "This account could not be shown: " + err.message, "muted").colSpan = 6;
      body.appendChild(row);
    }
  }
}

function renderAccount(body, account) {
  const row = el("tr");
  row.dataset.accountId = account.id;
  cell(row, account.label || account.id);
  cell(row, account.token_masked);
  const status = cell(row, el("span", account.status.replace("_", " "), "badge " + account.status));
  status.appendChild(el("span", " " + (account.active_dialect || "?"), "muted dialect"));
  cell(row, account.models_known ? String((account.models || []).length) : "?");
  cell(row, usageSummary(account));
  cell(row, account.last_error);
  const details = detailsRow(account);
  const actions = cell(row, "");
  actions.appendChild(button("Details", () => { details.hidden = !details.hidden; }));
  actions.appendChild(account.enabled
    ? button("Disable", () => action("Disable", () => api("PATCH", "/accounts/" + encodeURIComponent(account.id), { enabled: false })))
    : button("Enable", () => action("Enable", () => api("PATCH", "/accounts/" + encodeURIComponent(account.id), { enabled: true }))));
  actions.appendChild(button("Refresh", () => action("Refresh", () => api("POST", "/accounts/" + encodeURIComponent(account.id) + "/refresh"))));
  actions.appendChild(button("Probe", () => action("Probe", () => api("POST", "/accounts/" + encodeURIComponent(account.id) + "/probe"))));
  const pin = el("select", undefined, "dialect-pin");
  pin.title = "Cursor chat protocol for this account";
  for (const name of ["auto", "inference", "agent", "legacy"]) {
    const option = el("option", name);
    option.value = name;
    option.selected = (account.dialect || "auto") === name;
    pin.appendChild(option);
  }
  pin.addEventListener("change", () => action("Dialect", () => api("PATCH", "/accounts/" + encodeURIComponent(account.id), { dialect: pin.value })));
  actions.appendChild(pin);
  actions.appendChild(button("Remove", () => {
    if (confirm("Remove account " + (account.label || account.id) + "?")) {
      action("Remove", () => api("DELETE", "/accounts/" + encodeURIComponent(account.id)));
    }
  }));
  body.appendChild(row);
  body.appendChild(details);
}

// --- licenses ---

function renderLicenses(licenses) {
  const body = $("licenses").tBodies[0];
  body.replaceChildren();
  for (const lic of licenses) {
    const row = el("tr");
    row.dataset.licenseId = lic.id;
    cell(row, lic.name || lic.id);
    cell(row, lic.key_prefix + "…");
    cell(row, when(lic.created_at));
    cell(row, when(lic.expires_at) || "never");
    cell(row, (lic.allowed_models || []).join(", ") || "all");
    cell(row, lic.requests_used + (lic.request_quota !== undefined ? " / " + lic.request_quota : ""));
    cell(row, el("span", lic.revoked ? "revoked" : "active", "badge " + (lic.revoked ? "revoked" : "active")));
    const actions = cell(row, "");
    if (!lic.revoked) {
      actions.appendChild(button("Revoke", () => {
        if (confirm("Revoke license " + (lic.name || lic.id) + "? Callers using it get 401 at once.")) {
          action("Revoke", () => api("POST", "/licenses/" + encodeURIComponent(lic.id) + "/revoke"));
        }
      }));
    }
    body.appendChild(row);
  }
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

function renderRequests(requests) {
  const body = $("requests").tBodies[0];
  body.replaceChildren();
  for (const r of requests) {
    const row = el("tr");
    cell(row, when(r.time));
    cell(row, r.license_name || r.license_id);
    cell(row, r.requested_model ? r.requested_model + " \u2192 " + r.model : r.model);
    cell(row, r.account_id);
    cell(row, r.latency_ms + " ms");
    cell(row, r.prompt_tokens + " / " + r.completion_tokens);
    cell(row, r.outcome, r.outcome === "ok" ? "" : "badge disabled");
    body.appendChild(row);
  }
}

// Each section loads and renders on its own: one that fails (a row core cannot render, a
// timeout) says so in its own place and never hides the others.
const SECTIONS = [
  { id: "accounts", path: "/accounts", key: "accounts", render: renderAccounts },
  { id: "licenses", path: "/licenses", key: "licenses", render: renderLicenses },
  { id: "aliases", path: "/aliases", key: "aliases", render: renderAliases },
  { id: "requests", path: "/requests?limit=100", key: "requests", render: renderRequests },
];

function sectionStatus(id, text) {
  const node = $(id + "-status");
  node.textContent = text;
  node.hidden = !text;
}

async function loadSection(section) {
  try {
    const data = await api("GET", section.path);
    section.render(data[section.key] || []);
    sectionStatus(section.id, "");
    return true;
  } catch (err) {
    sectionStatus(section.id, "Could not load: " + err.message);
    return false;
  }
}

async function loadAll() {
  if (!adminKey()) {
    setStatus("Enter the admin key to start.", false);
    return;
  }
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

  $("account-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const body = { token: $("account-token").value.trim(), label: $("account-label").value.trim() };
    const version = $("account-client-version").value.trim();
    if (version) body.client_version = version;
    action("Add account", async () => {
      await api("POST", "/accounts", body);
      $("account-form").reset();
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

  loadAll();
}

init();
