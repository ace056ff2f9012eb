// mcsync widgets: <mcsync-settings> and <mcsync-notice>. Dependency-free web components.
//
//   <script type="module" src="https://MCSYNC_HOST/static/mcsync.js"></script>
//   <mcsync-settings api-base="https://MCSYNC_HOST"></mcsync-settings>
//   <mcsync-notice api-base="https://MCSYNC_HOST"></mcsync-notice>
//   el.getToken = async () => currentUserJwt;   // or: el.token = "<jwt>"
//
// Both talk to `mcsync web` with the app user's JWT as a Bearer token; neither stores it.

const DEFAULT_NOTICE = "Heads up\u2014email sync is paused right now. Your contacts are still safe.";

const BASE_CSS = `
  :host([hidden]) { display: none; }
  :host { display: block; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1f2937; }
  [hidden] { display: none !important; }
  button { font: inherit; padding: .4rem .9rem; border-radius: 6px; border: 1px solid #9ca3af;
           background: #fff; color: #111827; cursor: pointer; }
  button.primary { background: #1f2937; color: #fff; border-color: #1f2937; }
  button:disabled { opacity: .55; cursor: default; }
  button:focus-visible, select:focus-visible { outline: 3px solid #2563eb; outline-offset: 2px; }
`;

function relativeTime(iso) {
  if (!iso) return "never";
  const seconds = Math.max(0, (Date.now() - new Date(iso).getTime()) / 1000);
  if (seconds < 45) return "just now";
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `${minutes} minute${minutes === 1 ? "" : "s"} ago`;
  const hours = Math.round(minutes / 60);
  if (hours < 24) return `${hours} hour${hours === 1 ? "" : "s"} ago`;
  const days = Math.round(hours / 24);
  return `${days} day${days === 1 ? "" : "s"} ago`;
}

class McsyncBase extends HTMLElement {
  get apiBase() {
    return (this.getAttribute("api-base") || "").replace(/\/+$/, "");
  }

  get apiOrigin() {
    return new URL(this.apiBase || location.href, location.href).origin;
  }

  async authHeader() {
    const token = this.getToken ? await this.getToken() : this.token || this.getAttribute("token");
    return token ? { Authorization: `Bearer ${token}` } : {};
  }

  async api(method, path, body) {
    const headers = await this.authHeader();
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(this.apiBase + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let data = {};
    try { data = await response.json(); } catch (e) { /* empty body */ }
    return { ok: response.ok, status: response.status, data };
  }

  pollSeconds(fallback) {
    const n = Number(this.getAttribute("poll-interval"));
    return n > 0 ? n : fallback;
  }

  disconnectedCallback() {
    clearInterval(this._poll);
    clearInterval(this._tick);
  }
}

class McsyncSettings extends McsyncBase {
  connectedCallback() {
    if (!this.shadowRoot) this.render();
    this.refresh();
    this._poll = setInterval(() => this.refresh(), this.pollSeconds(30) * 1000);
    this._tick = setInterval(() => this.paintLastSynced(), 15000);
    this._onMessage = (event) => {
      if (event.origin !== this.apiOrigin || !event.data || event.data.source !== "mcsync") return;
      this.say(event.data.message || "");
      this.refresh();
    };
    window.addEventListener("message", this._onMessage);
  }

  disconnectedCallback() {
    super.disconnectedCallback();
    window.removeEventListener("message", this._onMessage);
  }

  render() {
    const root = this.attachShadow({ mode: "open" });
    root.innerHTML = `
      <style>${BASE_CSS}
        :host { max-width: 34rem; }
        section { border: 1px solid #e5e7eb; border-radius: 10px; padding: 1rem 1.25rem; }
        h2 { font-size: 1.05rem; margin: 0 0 .75rem; }
        .service { display: flex; align-items: center; gap: .5rem; flex-wrap: wrap; }
        .service strong { font-weight: 600; }
        .dot { width: .65rem; height: .65rem; border-radius: 50%; background: #9ca3af; flex: none; }
        .dot[data-state="active"] { background: #16a34a; }
        .dot[data-state="paused"] { background: #d97706; }
        .dot[data-state="error"] { background: #dc2626; }
        .muted { color: #4b5563; margin: .25rem 0 0; }
        .actions { display: flex; gap: .5rem; margin-top: .75rem; flex-wrap: wrap; }
        .picker { margin-top: .75rem; display: flex; gap: .5rem; align-items: center; flex-wrap: wrap; }
        select { font: inherit; padding: .35rem; border-radius: 6px; border: 1px solid #9ca3af; }
        .confirm { margin-top: .75rem; padding: .75rem; background: #f9fafb; border-radius: 8px; }
        .note { margin: .9rem 0 0; color: #4b5563; font-size: .92rem; }
        .message { margin: .6rem 0 0; min-height: 1.2em; }
        .warn { color: #92400e; }
      </style>
      <section aria-labelledby="mcsync-title">
        <h2 id="mcsync-title">Email Marketing</h2>
        <div class="service">
          <strong>Mailchimp</strong>
          <span class="dot" aria-hidden="true"></span>
          <span class="state">Checking\u2026</span>
        </div>
        <p class="muted last" hidden></p>
        <p class="muted warn notice" hidden></p>
        <div class="picker" hidden>
          <label for="mcsync-audience">Audience</label>
          <select id="mcsync-audience"></select>
          <button type="button" class="use">Use this audience</button>
        </div>
        <div class="actions">
          <button type="button" class="primary connect" hidden>Connect Mailchimp</button>
          <button type="button" class="primary sync" hidden>Sync Now</button>
          <button type="button" class="disconnect" hidden>Disconnect</button>
        </div>
        <div class="confirm" role="group" aria-labelledby="mcsync-confirm-text" hidden>
          <p id="mcsync-confirm-text">Disconnect Mailchimp? Your contacts stay in the app and in
            Mailchimp; syncing stops until you connect again.</p>
          <button type="button" class="yes">Yes, disconnect</button>
          <button type="button" class="no">Cancel</button>
        </div>
        <p class="note" hidden>Contacts sync automatically. You don't need to do anything.</p>
        <p class="message" role="status" aria-live="polite"></p>
      </section>`;
    const $ = (s) => root.querySelector(s);
    this.el = {
      dot: $(".dot"), state: $(".state"), last: $(".last"), notice: $(".notice"),
      picker: $(".picker"), select: $("select"), use: $(".use"), connect: $(".connect"),
      sync: $(".sync"), disconnect: $(".disconnect"), confirm: $(".confirm"), yes: $(".yes"),
      no: $(".no"), note: $(".note"), message: $(".message"),
    };
    this.el.connect.addEventListener("click", () => this.connect());
    this.el.sync.addEventListener("click", () => this.syncNow());
    this.el.use.addEventListener("click", () => this.chooseAudience());
    this.el.disconnect.addEventListener("click", () => {
      this.el.confirm.hidden = false;
      this.el.yes.focus();
    });
    this.el.no.addEventListener("click", () => {
      this.el.confirm.hidden = true;
      this.el.disconnect.focus();
    });
    this.el.yes.addEventListener("click", () => this.disconnect());
  }

  say(text) {
    this.el.message.textContent = text;
  }

  async refresh() {
    let result;
    try {
      result = await this.api("GET", "/api/status");
    } catch (e) {
      this.say("Email sync settings can't be reached right now.");
      return;
    }
    if (!result.ok) {
      this.say(result.data.detail || "Email sync settings can't be shown right now.");
      return;
    }
    this.status = result.data;
    this.paint();
    this.dispatchEvent(new CustomEvent("mcsync-change", { detail: this.status, bubbles: true }));
    // Listing audiences asks Mailchimp, so only when the connection or its audience changed.
    const key = this.status.connected ? `${this.status.connected_at}|${this.status.audience_id}` : "";
    if (key && key !== this._audiencesFor) {
      this._audiencesFor = key;
      await this.loadAudiences();
    }
  }

  paint() {
    const s = this.status || {};
    const e = this.el;
    e.dot.dataset.state = s.connected ? s.sync_status : "off";
    if (!s.connected) e.state.textContent = "Not connected";
    else if (s.audience_name) e.state.textContent = `Connected to "${s.audience_name}"`;
    else e.state.textContent = "Connected \u2014 choose an audience";
    e.connect.hidden = !!s.connected;
    e.sync.hidden = !s.connected || !s.audience_id;
    e.disconnect.hidden = !s.connected;
    e.note.hidden = !s.connected || !s.audience_id;
    if (!s.connected) { e.confirm.hidden = true; e.picker.hidden = true; }
    e.notice.hidden = !(s.connected && s.sync_status !== "active");
    e.notice.textContent = s.notice || (s.sync_status === "paused" ? DEFAULT_NOTICE : "");
    this.paintLastSynced();
  }

  paintLastSynced() {
    const s = this.status || {};
    this.el.last.hidden = !(s.connected && s.audience_id);
    this.el.last.textContent = `Last synced: ${relativeTime(s.last_synced_at)}`;
  }

  async loadAudiences() {
    const result = await this.api("GET", "/api/audiences");
    if (!result.ok) { this._audiencesFor = ""; return; }
    const audiences = result.data.audiences || [];
    const several = audiences.length > 1 || (this.status && this.status.needs_audience);
    this.el.picker.hidden = !several;
    if (!several) return;
    const select = this.el.select;
    const keep = select.value;
    select.replaceChildren();
    if (!this.status.audience_id) {
      select.append(new Option("Choose an audience\u2026", "", true, true));
    }
    for (const a of audiences) {
      select.append(new Option(a.name, a.id, false, a.selected));
    }
    if (keep && audiences.some((a) => a.id === keep)) select.value = keep;
  }

  async chooseAudience() {
    const id = this.el.select.value;
    if (!id) { this.say("Choose an audience first."); this.el.select.focus(); return; }
    if (this.status && id === this.status.audience_id) { this.say("That audience is already in use."); return; }
    this.el.use.disabled = true;
    try {
      const result = await this.api("PUT", "/api/audience", { audience_id: id });
      this.say(result.ok ? `Contacts will sync to \u201c${result.data.audience_name}\u201d.`
                         : result.data.detail || "That audience couldn't be chosen.");
      await this.refresh();
    } finally {
      this.el.use.disabled = false;
    }
  }

  async connect() {
    // Open the popup inside the click, so popup blockers let it through; point it once we know
    // where to send it.
    const name = "mcsync-oauth";
    const popup = window.open("about:blank", name, "popup,width=520,height=720");
    let result;
    try {
      result = await this.api("POST", "/api/oauth/start");
    } catch (e) {
      result = { ok: false, data: { detail: "Email sync settings can't be reached right now." } };
    }
    if (!result.ok || !popup) {
      if (popup) popup.close();
      this.say(result.data.detail || "Allow pop-ups for this site to connect Mailchimp.");
      return;
    }
    // The popup's first stop is mcsync's /oauth/begin, as a form POST from this page: it ties
    // the flow to this browser with a cookie (checked on the way back from Mailchimp), and the
    // POST's Origin header proves the flow began here, in the app, and not on some other site.
    const form = document.createElement("form");
    form.method = "POST";
    form.action = result.data.begin_url;
    form.target = name;
    form.hidden = true;
    const field = document.createElement("input");
    field.type = "hidden";
    field.name = "state";
    field.value = result.data.state;
    form.append(field);
    this.shadowRoot.append(form);
    form.submit();
    form.remove();
    this.say("Finish connecting in the Mailchimp window.");
    const watch = setInterval(() => {
      if (popup.closed) { clearInterval(watch); this.refresh(); }
    }, 500);
  }

  async syncNow() {
    this.el.sync.disabled = true;
    try {
      const result = await this.api("POST", "/api/sync-now");
      this.say(result.data.detail || (result.ok ? "Sync started." : "Sync Now didn't start."));
      if (result.ok) setTimeout(() => this.refresh(), 1500);
    } finally {
      this.el.sync.disabled = false;
    }
  }

  async disconnect() {
    this.el.yes.disabled = true;
    try {
      const result = await this.api("DELETE", "/api/connection");
      this.el.confirm.hidden = true;
      this.say(result.ok ? "Mailchimp is disconnected. Nothing in Mailchimp was changed."
                         : result.data.detail || "Mailchimp couldn't be disconnected.");
      await this.refresh();
      this.el.connect.focus();
    } finally {
      this.el.yes.disabled = false;
    }
  }
}

class McsyncNotice extends McsyncBase {
  connectedCallback() {
    if (!this.shadowRoot) this.render();
    this.hidden = true;
    this.refresh();
    this._poll = setInterval(() => this.refresh(), this.pollSeconds(60) * 1000);
  }

  render() {
    const root = this.attachShadow({ mode: "open" });
    root.innerHTML = `
      <style>${BASE_CSS}
        .notice { display: flex; gap: .75rem; align-items: flex-start; padding: .75rem 1rem;
                  background: #fffbeb; border: 1px solid #f59e0b; border-radius: 8px; }
        .text { flex: 1; margin: 0; }
        button { border: none; background: transparent; font-size: 1.2rem; line-height: 1;
                 padding: .1rem .4rem; }
      </style>
      <div class="notice" role="status">
        <p class="text"></p>
        <button type="button" class="close" aria-label="Dismiss">\u00d7</button>
      </div>`;
    this.text = root.querySelector(".text");
    root.querySelector(".close").addEventListener("click", () => {
      this.dismissed = true;
      this.hidden = true;
    });
  }

  async refresh() {
    let result;
    try { result = await this.api("GET", "/api/status"); } catch (e) { return; }
    if (!result.ok) return;
    const paused = result.data.connected && result.data.sync_status === "paused";
    if (!paused) this.dismissed = false; // the next pause shows again
    this.text.textContent = result.data.notice || DEFAULT_NOTICE;
    this.hidden = !paused || !!this.dismissed;
  }
}

if (!customElements.get("mcsync-settings")) customElements.define("mcsync-settings", McsyncSettings);
if (!customElements.get("mcsync-notice")) customElements.define("mcsync-notice", McsyncNotice);
