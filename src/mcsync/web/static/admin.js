// The operator's page (`mcsync web` /admin): every user's sync at a glance, one user in depth.
// Plain DOM, no framework. Data is only ever written with textContent, never as HTML.
// The operator's JWT is kept in sessionStorage (this tab) and sent as a Bearer header.

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "mcsync-operator-token";
const view = { state: "", search: "", sort: "backlog", page: 1, pages: 1, user: null };

function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

function say(text, isError = false) {
  const box = $("message");
  box.textContent = text;
  box.classList.toggle("error", isError);
}

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${token()}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = {};
  try { data = await response.json(); } catch (e) { /* empty body */ }
  if (response.status === 401) { signOut("Your sign-in has expired or is not valid. Sign in again."); }
  if (response.status === 403) { showOnly("signin"); }
  if (!response.ok) {
    const detail = typeof data.detail === "string" ? data.detail : `Request failed (${response.status}).`;
    throw Object.assign(new Error(detail), { status: response.status });
  }
  return data;
}

function showOnly(id) {
  for (const section of ["signin", "overview", "user"]) $(section).hidden = section !== id;
  $("sign-out").hidden = id === "signin";
}

function ago(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  const s = Math.round(seconds);
  if (s < 90) return `${s} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  if (s < 172800) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86400)} d`;
}

function when(iso) {
  if (!iso) return "—";
  return `${new Date(iso).toLocaleString()} (${ago((Date.now() - new Date(iso).getTime()) / 1000)} ago)`;
}

function since(iso) {
  return iso ? `${ago((Date.now() - new Date(iso).getTime()) / 1000)} ago` : "—";
}

// A state with its reason when it has one (sql/009): "paused (token_undecryptable)".
function stateText(c) {
  return c.status_reason ? `${c.sync_status} (${c.status_reason})` : c.sync_status;
}

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined || text === "" ? "—" : String(text);
  if (className) td.className = className;
  row.appendChild(td);
  return td;
}

function facts(dl, pairs) {
  dl.replaceChildren();
  for (const [label, value] of pairs) {
    const box = document.createElement("div");
    const dt = document.createElement("dt");
    const dd = document.createElement("dd");
    dt.textContent = label;
    dd.textContent = value === null || value === undefined ? "—" : String(value);
    box.append(dt, dd);
    dl.appendChild(box);
  }
}

// --- the overview ---------------------------------------------------------------------

async function loadOverview() {
  const params = new URLSearchParams({ sort: view.sort, page: String(view.page) });
  if (view.state) params.set("state", view.state);
  if (view.search) params.set("search", view.search);
  const data = await api("GET", `/admin/api/overview?${params}`);
  const t = data.totals;
  facts($("totals"), [
    ["Connected users", t.connections], ["Active", t.active], ["Paused", t.paused],
    ["Error", t.error], ["Contacts pending", t.pending],
    ["Oldest pending", ago(t.oldest_pending_seconds)], ["Rejected contacts", t.rejected],
    ["Sync Now running", t.sync_now_running],
  ]);
  const body = $("connections").tBodies[0];
  body.replaceChildren();
  for (const r of data.rows) {
    const tr = document.createElement("tr");
    const first = document.createElement("td");
    const open = document.createElement("a");
    open.href = `#user=${r.user_id}`;
    open.className = "userlink";
    open.textContent = r.user_id;
    open.setAttribute("aria-label", `Open user ${r.user_id}`);
    first.appendChild(open);
    tr.appendChild(first);
    cell(tr, r.account_name);
    cell(tr, r.audience_name);
    cell(tr, stateText(r), `state-${r.sync_status}`);
    cell(tr, since(r.state_since)).title = r.state_since ? new Date(r.state_since).toLocaleString() : "";
    cell(tr, r.backlog, "num");
    cell(tr, ago(r.oldest_pending_seconds), "num");
    cell(tr, r.last_sync_at ? since(r.last_sync_at) : "never").title = r.last_sync_at ? new Date(r.last_sync_at).toLocaleString() : "";
    cell(tr, r.last_error);
    cell(tr, r.rejected, "num");
    body.appendChild(tr);
  }
  if (!data.rows.length) {
    const tr = document.createElement("tr");
    cell(tr, "No connection matches.").colSpan = 10;
    body.appendChild(tr);
  }
  view.pages = data.pages;
  $("page-info").textContent = `Page ${data.page} of ${data.pages} (${data.matched} matching)`;
  $("prev").disabled = data.page <= 1;
  $("next").disabled = data.page >= data.pages;
  showOnly("overview");
}

// --- one user -------------------------------------------------------------------------

function fill(tableId, rows, columns) {
  const body = $(tableId).tBodies[0];
  body.replaceChildren();
  for (const r of rows) {
    const tr = document.createElement("tr");
    for (const col of columns) cell(tr, col(r));
    body.appendChild(tr);
  }
  if (!rows.length) {
    const tr = document.createElement("tr");
    cell(tr, "None.").colSpan = columns.length;
    body.appendChild(tr);
  }
}

async function loadUser(userId) {
  const u = await api("GET", `/admin/api/users/${encodeURIComponent(userId)}`);
  view.user = u.user_id;
  $("user-title").textContent = `User ${u.user_id}`;
  facts($("user-facts"), [
    ["State", stateText(u)], ["Account", u.account_name], ["Audience", u.audience_name],
    ["Failures in a row", u.consecutive_failures], ["Times throttled", u.throttled_count],
    ["Next probe", when(u.next_probe_at)], ["Connected", when(u.connected_at)],
    ["Last sync", when(u.last_sync_at)], ["Last full sync", when(u.last_full_sync_at)],
    ["Sync Now", u.sync_now ? (u.sync_now.running ? "running" : `finished ${when(u.sync_now.finished_at)}`) : "never run"],
    ["Last error", u.last_error], ["Notice shown to the user", u.notice],
  ]);
  fill("health", u.health, [
    (e) => when(e.at), (e) => (e.repeats > 1 ? `${e.kind} ×${e.repeats}` : e.kind),
    (e) => e.by, (e) => e.detail,
  ]);
  fill("rejected", u.rejected, [
    (r) => r.contact_id, (r) => r.email, (r) => r.severity,
    (r) => (r.field ? `${r.reason} (${r.field})` : r.reason), (r) => when(r.rejected_at),
  ]);
  fill("pending", u.pending, [
    (p) => p.kind, (p) => p.contacts, (p) => p.retrying, (p) => p.waiting,
    (p) => ago(p.oldest_seconds),
  ]);
  $("resume").disabled = u.sync_status === "active";
  $("retry").disabled = !u.rejected.some((r) => r.severity === "error");
  showOnly("user");
}

function hideAudit() {
  for (const id of ["audit-title", "audit-summary", "audit"]) $(id).hidden = true;
}

async function action(button, work) {
  button.disabled = true;
  say("Working…");
  try {
    say(await work());
  } catch (error) {
    say(error.message, true);
  } finally {
    button.disabled = false;
    if (view.user) await loadUser(view.user).catch(() => {});
  }
}

const userPath = (suffix) => `/admin/api/users/${encodeURIComponent(view.user)}/${suffix}`;

async function runAudit() {
  const result = await api("POST", userPath("verify"));
  $("audit-title").hidden = false;
  const summary = $("audit-summary");
  summary.hidden = false;
  summary.textContent = result.in_sync
    ? "In sync: the audience mirrors the contacts."
    : `${result.count} difference(s) between the contacts and the audience.`;
  $("audit").hidden = result.in_sync;
  fill("audit", result.differences, [(d) => d.kind, (d) => d.email, (d) => d.detail]);
  return result.in_sync ? "Audit done: in sync." : "Audit done: differences found.";
}

// --- wiring ---------------------------------------------------------------------------

function signOut(text) {
  sessionStorage.removeItem(TOKEN_KEY);
  showOnly("signin");
  say(text || "Signed out.");
}

async function route() {
  const match = /^#user=([0-9a-fA-F-]{36})$/.exec(location.hash);
  try {
    if (match) await loadUser(match[1]);
    else await loadOverview();
  } catch (error) {
    if (error.status === 403) say("This page is for the app's operators. Your account is not one.", true);
    else if (error.status !== 401) say(error.message, true);
  }
}

function start() {
  // A token handed over in the fragment (`/admin#token=...`) is taken and wiped from the URL.
  const handed = /^#token=([A-Za-z0-9._-]+)$/.exec(location.hash);
  if (handed) {
    sessionStorage.setItem(TOKEN_KEY, handed[1]);
    history.replaceState(null, "", location.pathname);
  }
  $("signin-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    $("token").value = "";
    say("");
    route();
  });
  $("sign-out").addEventListener("click", () => signOut());
  $("filters").addEventListener("submit", (event) => {
    event.preventDefault();
    Object.assign(view, {
      state: $("state").value, search: $("search").value.trim(), sort: $("sort").value, page: 1,
    });
    loadOverview().catch((error) => say(error.message, true));
  });
  $("prev").addEventListener("click", () => { view.page -= 1; loadOverview().catch((e) => say(e.message, true)); });
  $("next").addEventListener("click", () => { view.page += 1; loadOverview().catch((e) => say(e.message, true)); });
  $("back").addEventListener("click", () => { location.hash = ""; });
  window.addEventListener("hashchange", () => { hideAudit(); say(""); route(); });

  $("resume").addEventListener("click", (e) => action(e.currentTarget, async () => (await api("POST", userPath("resume"))).detail));
  $("sync-now").addEventListener("click", (e) => action(e.currentTarget, async () => (await api("POST", userPath("sync-now"))).detail));
  $("retry").addEventListener("click", (e) => action(e.currentTarget, async () => `${(await api("POST", userPath("retry-rejected"))).queued} contact(s) queued again.`));
  $("verify").addEventListener("click", (e) => action(e.currentTarget, runAudit));

  const dialog = $("confirm-dialog");
  $("disconnect").addEventListener("click", () => { $("confirm-id").value = ""; dialog.showModal(); });
  $("confirm-cancel").addEventListener("click", () => dialog.close());
  $("confirm-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const typed = $("confirm-id").value.trim();
    if (typed.toLowerCase() !== view.user) {
      say("The id you typed is not this user's; nothing was changed.", true);
      dialog.close();
      return;
    }
    dialog.close();
    action($("disconnect"), async () => {
      await api("POST", userPath("disconnect"), { confirm: typed });
      view.user = null;
      location.hash = "";
      return "Disconnected. Their audience in Mailchimp is left as it is.";
    });
  });

  if (token()) route();
  else showOnly("signin");
}

start();
