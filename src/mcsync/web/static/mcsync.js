// mcsync widgets: <mcsync-settings> and <mcsync-notice>. Dependency-free web components.
//
//   <script type="module" src="https://MCSYNC_HOST/static/mcsync.js"></script>
//   <mcsync-settings api-base="https://MCSYNC_HOST"></mcsync-settings>
//   <mcsync-notice api-base="https://MCSYNC_HOST"></mcsync-notice>
//   el.getToken = async () => currentUserJwt;   // or: el.token = "<jwt>"
//
// Both talk to `mcsync web` with the app user's JWT as a Bearer token; neither stores it.
// Neither calls before it has a way to get that token: an element upgraded before the app sets
// `getToken` (the usual order when both scripts are modules) waits for it instead of asking
// anonymously and showing "Sign in again".

const DEFAULT_NOTICE = "Heads up\u2014email sync is paused right now. Your contacts are still safe.";

const BASE_CSS = `
  :host([hidden]) { display: none; }
  :host { display: block; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1f2937; }
  [hidden] { display: none !important; }
  button { font: inherit; padding: .4rem .9rem; border-radius: 6px; border: 1px solid #9ca3af;
           background: #fff; color: #111827; cursor: pointer; }
  button.primary { background: #1f2937; color: #fff; border-color: #1f2937; }
  button:disabled, button[aria-disabled="true"] { opacity: .55; cursor: default; }
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
  static get observedAttributes() { return ["token"]; }

  // The token sources are accessors, so setting one after the element started refreshes it.
  get getToken() { return this._getToken; }
  set getToken(fn) { this._getToken = fn; this.credentialsChanged(); }
  get token() { return this._token; }
  set token(value) { this._token = value; this.credentialsChanged(); }

  attributeChangedCallback(name, before, after) {
    if (name === "token" && before !== after) this.credentialsChanged();
  }

  // A property set on the element before this class upgraded it is an own property that hides
  // the accessor; take it over (the usual custom-elements "lazy property" pattern).
  upgradeProperties() {
    for (const name of ["getToken", "token"]) {
      if (Object.prototype.hasOwnProperty.call(this, name)) {
        const value = this[name];
        delete this[name];
        this[name] = value;
      }
    }
  }

  hasCredentials() {
    return typeof this._getToken === "function" || !!this._token || this.hasAttribute("token");
  }

  credentialsChanged() {
    if (this._started && this.isConnected && this.hasCredentials()) this.refresh();
  }

  // Start: render, take over early properties, refresh once there is a token, then poll.
  start(pollFallback) {
    if (!this.shadowRoot) this.render();
    this.upgradeProperties();
    this._started = true;
    if (this.hasCredentials()) this.refresh();
    clearInterval(this._poll);
    this._poll = setInterval(() => {
      if (this.hasCredentials()) this.refresh();
    }, this.pollSeconds(pollFallback) * 1000);
  }

  get apiBase() {
    return (this.getAttribute("api-base") || "").replace(/\/+$/, "");
  }

  get apiOrigin() {
    return new URL(this.apiBase || location.href, location.href).origin;
  }

  async authHeader() {
    const token = this._getToken ? await this._getToken() : this._token || this.getAttribute("token");
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
    this._started = false;
    clearInterval(this._poll);
    clearInterval(this._tick);
  }
}

// A button that is busy says so (aria-disabled) but keeps keyboard focus: a `disabled` button
// drops the focus to <body>, and a keyboard or screen-reader user loses their place.
async function whileBusy(button, work) {
  if (button.getAttribute("aria-disabled") === "true") return;
  button.setAttribute("aria-disabled", "true");
  try {
    await work();
  } finally {
    button.removeAttribute("aria-disabled");
  }
}

function shown(el) {
  return !!el && !el.hidden && el.getClientRects().length > 0;
}

class McsyncSettings extends McsyncBase {
  connectedCallback() {
    this.start(30);
    clearInterval(this._tick);
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
        /* #6b7280 on white is 4.8:1 (non-text contrast asks 3:1) */
        .dot { width: .65rem; height: .65rem; border-radius: 50%; background: #6b7280; flex: none; }
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
    this.el.sync.addEventListener("click", () => whileBusy(this.el.sync, () => this.syncNow()));
    this.el.use.addEventListener("click", () => whileBusy(this.el.use, () => this.chooseAudience()));
    this.el.disconnect.addEventListener("click", () => {
      this.el.confirm.hidden = false;
      this.el.yes.focus();
    });
    this.el.no.addEventListener("click", () => this.cancelDisconnect());
    this.el.confirm.addEventListener("keydown", (event) => {
      if (event.key === "Escape") { event.preventDefault(); this.cancelDisconnect(); }
    });
    this.el.yes.addEventListener("click", () => whileBusy(this.el.yes, () => this.disconnect()));
  }

  cancelDisconnect() {
    this.el.confirm.hidden = true;
    this.el.disconnect.focus();
  }

  say(text) {
    this.el.message.textContent = text;
  }

  // A refresh that failed says why; the next one that succeeds takes that back.
  sayProblem(text) {
    this._problem = text;
    this.say(text);
    if (!this.status) this.el.state.textContent = "Not available right now";
  }

  clearProblem() {
    if (this._problem && this.el.message.textContent === this._problem) this.say("");
    this._problem = "";
  }

  // Where the keyboard goes once a step is done: the first of `candidates` on screen.
  focusFirst(...candidates) {
    const target = candidates.find(shown);
    if (target) target.focus();
  }

  async refresh() {
    let result;
    try {
      result = await this.api("GET", "/api/status");
    } catch (e) {
      this.sayProblem("Email sync settings can't be reached right now.");
      return;
    }
    if (!result.ok) {
      this.sayProblem(result.data.detail || "Email sync settings can't be shown right now.");
      return;
    }
    this.clearProblem();
    this.status = result.data;
    this.paint();
    this.dispatchEvent(new CustomEvent("mcsync-change", { detail: this.status, bubbles: true }));
    // Listing audiences asks Mailchimp, so only when the connection or its audience changed.
    const key = this.status.connected ? `${this.status.connected_at}|${this.status.audience_id}` : "";
    if (!key) this._audiencesFor = "";
    if (key && key !== this._audiencesFor) {
      this._audiencesFor = key;
      this._audiencesLoaded = this.loadAudiences().catch(() => { this._audiencesFor = ""; });
    }
    // A refresh that overlaps the one listing the audiences waits for that list too, so what
    // follows (the focus after a connect) sees the picker as it will be.
    await this._audiencesLoaded;
    if (this._connecting && this.status.connected) {
      // Connected: the Connect button is gone; take the keyboard to the next step.
      this._connecting = false;
      const e = this.el;
      this.focusFirst(e.picker.hidden ? null : e.select, e.sync, e.disconnect);
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
    // "Nothing to do" is true only while syncing works; paused, the notice says what is going on.
    e.note.hidden = !s.connected || !s.audience_id || s.sync_status !== "active";
    if (!s.connected) {
      e.confirm.hidden = true;
      e.picker.hidden = true;
      e.select.replaceChildren();
    }
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
    // The select always shows what the server says is in use (after a reconnect too), or the
    // placeholder when nothing is chosen yet: never a pick left over from an earlier connection.
    const select = this.el.select;
    const inUse = this.status.audience_id || "";
    select.replaceChildren();
    if (!inUse) select.append(new Option("Choose an audience\u2026", "", true, true));
    for (const a of audiences) {
      const selected = a.id === inUse;
      select.append(new Option(a.name, a.id, selected, selected));
    }
    select.value = inUse;
  }

  async chooseAudience() {
    const id = this.el.select.value;
    if (!id) { this.say("Choose an audience first."); this.el.select.focus(); return; }
    if (this.status && id === this.status.audience_id) { this.say("That audience is already in use."); return; }
    const result = await this.api("PUT", "/api/audience", { audience_id: id });
    this.say(result.ok ? `Contacts will sync to \u201c${result.data.audience_name}\u201d.`
                       : result.data.detail || "That audience couldn't be chosen.");
    await this.refresh();
    // The button stays focused when it is still there (several audiences); else the next step.
    this.focusFirst(this.el.use, this.el.sync);
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
    this._connecting = true;  // the refresh that sees the connection moves the focus on
    const watch = setInterval(async () => {
      if (!popup.closed) return;
      clearInterval(watch);
      await this.refresh();
      if (this._connecting) {  // closed without connecting: back to where the user was
        this._connecting = false;
        this.focusFirst(this.el.connect);
      }
    }, 500);
  }

  async syncNow() {
    const result = await this.api("POST", "/api/sync-now");
    this.say(result.data.detail || (result.ok ? "Sync started." : "Sync Now didn't start."));
    if (result.ok) setTimeout(() => this.refresh(), 1500);
  }

  async disconnect() {
    const result = await this.api("DELETE", "/api/connection");
    this.el.confirm.hidden = true;
    this.say(result.ok ? "Mailchimp is disconnected. Nothing in Mailchimp was changed."
                       : result.data.detail || "Mailchimp couldn't be disconnected.");
    await this.refresh();
    this.focusFirst(this.el.connect, this.el.disconnect);
  }
}

class McsyncNotice extends McsyncBase {
  connectedCallback() {
    this.start(60);
    // The settings panel on the same page reports every status it reads (after Disconnect, at
    // once): no waiting for this element's own, slower poll.
    this._onChange = (event) => {
      if (event.target && event.target.apiBase === this.apiBase && event.detail) this.show(event.detail);
    };
    document.addEventListener("mcsync-change", this._onChange);
  }

  disconnectedCallback() {
    super.disconnectedCallback();
    document.removeEventListener("mcsync-change", this._onChange);
  }

  render() {
    const root = this.attachShadow({ mode: "open" });
    // The live region (.text) is in the page from the start, empty and visually collapsed, and is
    // filled only after it is on screen: a region revealed and filled in one step is often not
    // announced, so a pause arriving while the page is open could go unheard.
    root.innerHTML = `
      <style>${BASE_CSS}
        .notice { display: flex; gap: .75rem; align-items: flex-start; padding: .75rem 1rem;
                  background: #fffbeb; border: 1px solid #f59e0b; border-radius: 8px; }
        .notice:not(.open) { position: absolute; width: 1px; height: 1px; padding: 0; border: 0;
                             overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
        .text { flex: 1; margin: 0; }
        button { border: none; background: transparent; font-size: 1.2rem; line-height: 1;
                 padding: .1rem .4rem; }
      </style>
      <div class="notice">
        <p class="text" role="status" aria-live="polite" aria-atomic="true"></p>
        <button type="button" class="close" aria-label="Dismiss" hidden>\u00d7</button>
      </div>`;
    this.box = root.querySelector(".notice");
    this.text = root.querySelector(".text");
    this.close = root.querySelector(".close");
    this.close.addEventListener("click", () => this.dismiss());
  }

  async refresh() {
    let result;
    try { result = await this.api("GET", "/api/status"); } catch (e) { return; }
    if (result.ok) this.show(result.data);
  }

  show(status) {
    const paused = !!status.connected && status.sync_status === "paused";
    if (!paused) this.dismissed = false; // the next pause shows again
    this.setOpen(paused && !this.dismissed, status.notice || DEFAULT_NOTICE);
  }

  setOpen(open, message) {
    if (!open) {
      this.box.classList.remove("open");
      this.close.hidden = true;
      this.text.textContent = "";
      this.removeAttribute("paused");
      return;
    }
    const wasOpen = this.box.classList.contains("open");
    this.box.classList.add("open");
    this.close.hidden = false;
    this.setAttribute("paused", "");
    if (wasOpen) {
      if (this.text.textContent !== message) this.text.textContent = message;
      return;
    }
    // Fill the (already present) live region a moment after it is shown, so it is announced.
    clearTimeout(this._fill);
    this._fill = setTimeout(() => {
      if (this.box.classList.contains("open")) this.text.textContent = message;
    }, 150);
  }

  dismiss() {
    this.dismissed = true;
    const event = new CustomEvent("mcsync-dismiss", { bubbles: true, cancelable: true });
    const appHandlesFocus = !this.dispatchEvent(event);
    this.setOpen(false);
    if (!appHandlesFocus) this.focusNearby();
  }

  // The Dismiss button is gone; put the keyboard on the next focusable thing in the page (else
  // the previous one, else this element's container) instead of letting it fall to <body>.
  focusNearby() {
    const focusable = [...document.querySelectorAll(
      'a[href], button, input, select, textarea, summary, [tabindex]:not([tabindex="-1"])')]
      .filter((el) => !el.disabled && !this.contains(el) && el.getClientRects().length > 0);
    const after = (el) => this.compareDocumentPosition(el) & Node.DOCUMENT_POSITION_FOLLOWING;
    const target = focusable.find(after) || focusable.filter((el) => !after(el)).pop();
    if (target) { target.focus(); return; }
    const container = this.parentElement || document.body;
    if (!container.hasAttribute("tabindex")) container.setAttribute("tabindex", "-1");
    container.focus();
  }
}

if (!customElements.get("mcsync-settings")) customElements.define("mcsync-settings", McsyncSettings);
if (!customElements.get("mcsync-notice")) customElements.define("mcsync-notice", McsyncNotice);
