/** `<herald-inbox>`: a bell with the unread count, a feed (unread, all, archived) with
 * infinite scroll, toasts for live items, and read state kept in step across the user's tabs. */

import { InboxApi, LiveStream, type LiveUpdate } from "./api";
import { STYLES } from "./styles";
import type { ConnectionState, InboxNotification, InboxTab, TokenProvider } from "./types";

const TABS: readonly { id: InboxTab; label: string; empty: string }[] = [
  { id: "unread", label: "Unread", empty: "You are all caught up." },
  { id: "all", label: "All", empty: "No notifications yet." },
  { id: "archived", label: "Archived", empty: "Nothing archived." },
];

const BELL_ICON =
  "M12 22a2.5 2.5 0 0 0 2.45-2h-4.9A2.5 2.5 0 0 0 12 22Zm7-6V11a7 7 0 0 0-5.5-6.84V3.5a1.5 1.5 0 0 0-3 0v.66A7 7 0 0 0 5 11v5l-2 2v1h18v-1l-2-2Z";
const ARCHIVE_ICON =
  "M20.5 5.2 19.1 3.5A1.5 1.5 0 0 0 18 3H6a1.5 1.5 0 0 0-1.1.5L3.5 5.2A1.9 1.9 0 0 0 3 6.5V19a2 2 0 0 0 2 2h14a2 2 0 0 0 2-2V6.5c0-.5-.2-.9-.5-1.3ZM12 17.5 6.5 12H10v-2h4v2h3.5L12 17.5ZM5.1 5l.8-1h12l.9 1H5.1Z";

const RELATIVE_UNITS: readonly [Intl.RelativeTimeFormatUnit, number][] = [
  ["year", 31_536_000],
  ["month", 2_592_000],
  ["week", 604_800],
  ["day", 86_400],
  ["hour", 3_600],
  ["minute", 60],
  ["second", 1],
];

let sheet: CSSStyleSheet | null = null;

/** One stylesheet shared by every instance, adopted (not a `<style>` element), so a page whose
 * Content-Security-Policy refuses inline styles can still use the element. */
function styleSheet(): CSSStyleSheet {
  if (sheet === null) {
    sheet = new CSSStyleSheet();
    sheet.replaceSync(STYLES);
  }
  return sheet;
}

function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attributes: Record<string, string> = {},
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, value);
  element.append(...children);
  return element;
}

function icon(path: string): SVGSVGElement {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  const shape = document.createElementNS(ns, "path");
  shape.setAttribute("d", path);
  svg.append(shape);
  return svg;
}

let instances = 0;

// Links an action may open: a web page, or a path of the app (not "//host", which leaves it).
const SAFE_URL = /^(https?:\/\/|\/(?!\/))/i;

export class HeraldInbox extends HTMLElement {
  static readonly observedAttributes = ["token", "endpoint", "locale", "open"];

  #tokenProvider: TokenProvider | null = null;
  #api: InboxApi | null = null;
  #stream: LiveStream | null = null;
  #started = false;
  #retryStart: ReturnType<typeof setTimeout> | null = null;
  #startFailures = 0;

  #tab: InboxTab = "unread";
  #items: InboxNotification[] = [];
  #hasNextPage = false;
  #endCursor: string | null = null;
  #loading = false;
  #loaded = false;
  #loadGeneration = 0;
  #unread = 0;
  #connection: ConnectionState = "connecting";
  #error: string | null = null;
  /** Every item this element has shown or been sent: a live item is toasted once. */
  #seen = new Set<string>();
  #countRefresh: ReturnType<typeof setTimeout> | null = null;
  #viewed = new Set<string>();
  #viewedTimer: ReturnType<typeof setTimeout> | null = null;
  #clock: ReturnType<typeof setInterval> | null = null;

  readonly #root: ShadowRoot;
  readonly #uid = `herald-inbox-${++instances}`;
  readonly #bell: HTMLButtonElement;
  readonly #badge: HTMLSpanElement;
  readonly #bellLabel: HTMLSpanElement;
  readonly #panel: HTMLElement;
  readonly #markAll: HTMLButtonElement;
  readonly #tabs: HTMLButtonElement[];
  readonly #connectionLine: HTMLParagraphElement;
  readonly #errorLine: HTMLParagraphElement;
  readonly #feed: HTMLDivElement;
  readonly #list: HTMLUListElement;
  readonly #state: HTMLParagraphElement;
  readonly #more: HTMLButtonElement;
  readonly #toasts: HTMLDivElement;
  readonly #moreObserver: IntersectionObserver;
  readonly #viewObserver: IntersectionObserver;

  constructor() {
    super();
    this.#root = this.attachShadow({ mode: "open", delegatesFocus: false });
    this.#root.adoptedStyleSheets = [styleSheet()];
    const id = this.#uid;

    this.#badge = h("span", { class: "badge", part: "badge", "aria-hidden": "true", hidden: "" });
    this.#bellLabel = h("span", { class: "sr-only" }, "Notifications");
    this.#bell = h(
      "button",
      {
        type: "button",
        class: "bell",
        part: "bell",
        "aria-expanded": "false",
        "aria-controls": `${id}-panel`,
      },
      icon(BELL_ICON),
      this.#bellLabel,
      this.#badge,
    );

    this.#markAll = h(
      "button",
      { type: "button", class: "link", part: "mark-all-read", disabled: "" },
      "Mark all read",
    );
    this.#tabs = TABS.map((tab) =>
      h(
        "button",
        {
          type: "button",
          role: "tab",
          class: "tab",
          part: "tab",
          id: `${id}-tab-${tab.id}`,
          "aria-controls": `${id}-feed`,
          "data-tab": tab.id,
        },
        tab.label,
      ),
    );
    this.#connectionLine = h("p", { class: "connection", part: "connection", hidden: "" });
    this.#errorLine = h("p", { class: "error", part: "error", role: "alert", hidden: "" });
    this.#list = h("ul", { class: "list", part: "list" });
    this.#state = h("p", { class: "state", part: "state", role: "status" });
    this.#more = h(
      "button",
      { type: "button", class: "more", part: "load-more", hidden: "" },
      "Load more",
    );
    this.#feed = h(
      "div",
      { class: "feed", part: "feed", role: "tabpanel", id: `${id}-feed`, tabindex: "-1" },
      this.#list,
      this.#state,
      this.#more,
    );
    this.#panel = h(
      "section",
      {
        class: "panel",
        part: "panel",
        id: `${id}-panel`,
        role: "dialog",
        "aria-labelledby": `${id}-heading`,
        hidden: "",
      },
      h(
        "div",
        { class: "header", part: "header" },
        h("h2", { id: `${id}-heading` }, "Notifications"),
        this.#markAll,
      ),
      h("div", { class: "tabs", part: "tabs", role: "tablist", "aria-label": "Show" }, ...this.#tabs),
      this.#connectionLine,
      this.#errorLine,
      this.#feed,
    );
    this.#toasts = h("div", {
      class: "toasts",
      part: "toasts",
      role: "region",
      "aria-label": "New notifications",
      "aria-live": "polite",
    });
    this.#root.append(this.#bell, this.#panel, this.#toasts);

    this.#bell.addEventListener("click", () => this.toggleAttribute("open"));
    this.#markAll.addEventListener("click", () => void this.markAllRead());
    for (const tab of this.#tabs) {
      tab.addEventListener("click", () => this.#selectTab(tab.dataset.tab as InboxTab));
      tab.addEventListener("keydown", (event) => this.#tabKey(event));
    }
    this.#panel.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        event.stopPropagation();
        this.removeAttribute("open");
        this.#bell.focus();
      }
    });
    this.#more.addEventListener("click", () => void this.#loadMore());
    this.#list.addEventListener("click", (event) => this.#itemClick(event));
    this.#moreObserver = new IntersectionObserver(
      (entries) => {
        if (entries.some((e) => e.isIntersecting)) void this.#loadMore();
      },
      { root: this.#feed },
    );
    this.#viewObserver = new IntersectionObserver((entries) => this.#itemsInView(entries), {
      root: this.#feed,
      threshold: 0.9,
    });
    // Nothing on the host itself yet: an element the parser creates must have no attributes
    // of its own when its constructor returns.
    this.#renderTabs();
  }

  // --- public API --------------------------------------------------------------------------

  /** The user's access token. Prefer `tokenProvider` when the app's auth renews tokens. */
  get token(): string | null {
    return this.getAttribute("token");
  }

  set token(value: string | null) {
    if (value === null) this.removeAttribute("token");
    else this.setAttribute("token", value);
  }

  /** A function returning a fresh token, called before each request and each connection. */
  get tokenProvider(): TokenProvider | null {
    return this.#tokenProvider;
  }

  set tokenProvider(provider: TokenProvider | null) {
    this.#tokenProvider = provider;
    this.#restart();
  }

  /** Herald's GraphQL endpoint (HTTP; the WebSocket is the same URL). Default `/graphql`. */
  get endpoint(): string {
    return this.getAttribute("endpoint") || "/graphql";
  }

  set endpoint(value: string) {
    this.setAttribute("endpoint", value);
  }

  /** The unread, unarchived count the bell shows. */
  get unreadCount(): number {
    return this.#unread;
  }

  get connectionState(): ConnectionState {
    return this.#connection;
  }

  /** The items the feed holds now, newest first. */
  get items(): readonly InboxNotification[] {
    return this.#items;
  }

  async markRead(ids: string[]): Promise<void> {
    const unread = ids.filter((id) => this.#items.find((i) => i.id === id)?.read !== true);
    if (unread.length === 0) return;
    this.#applyRead(unread);
    await this.#mutate((api) => api.markRead(unread));
  }

  async markAllRead(): Promise<void> {
    this.#applyRead(this.#items.map((i) => i.id));
    await this.#mutate((api) => api.markAllRead());
  }

  async archive(ids: string[]): Promise<void> {
    this.#applyArchived(ids);
    await this.#mutate((api) => api.archive(ids));
  }

  // --- lifecycle ---------------------------------------------------------------------------

  connectedCallback(): void {
    window.addEventListener("online", this.#onOnline);
    this.#clock = setInterval(() => this.#refreshTimes(), 30_000);
    this.#renderFeed();
    this.#start();
  }

  disconnectedCallback(): void {
    window.removeEventListener("online", this.#onOnline);
    if (this.#clock !== null) clearInterval(this.#clock);
    this.#stop();
  }

  attributeChangedCallback(name: string, previous: string | null, value: string | null): void {
    if (previous === value) return;
    if (name === "open") {
      const open = value !== null;
      this.#panel.hidden = !open;
      this.#bell.setAttribute("aria-expanded", String(open));
      if (open) {
        this.#tabs[TABS.findIndex((t) => t.id === this.#tab)].focus();
        this.#observeItems();
      }
    } else if (name === "locale") {
      this.#refreshTimes();
    } else if (name === "endpoint" || (name === "token" && (previous === null || value === null))) {
      this.#restart();
    }
    // A new token replacing an old one is simply used from the next request on.
  }

  readonly #onOnline = (): void => {
    this.#stream?.nudge();
    if (!this.#started) this.#start();
  };

  #restart(): void {
    this.#stop();
    this.#start();
  }

  #stop(): void {
    this.#stream?.stop();
    this.#stream = null;
    this.#api = null;
    this.#started = false;
    if (this.#retryStart !== null) clearTimeout(this.#retryStart);
    this.#retryStart = null;
  }

  async #currentToken(): Promise<string | null> {
    if (this.#tokenProvider) return (await this.#tokenProvider()) ?? null;
    return this.token;
  }

  #start(): void {
    if (this.#started || !this.isConnected) return;
    if (this.#tokenProvider === null && !this.token) return;
    this.#started = true;
    const endpoint = new URL(this.endpoint, document.baseURI);
    const api = new InboxApi(endpoint.href, () => this.#currentToken());
    this.#api = api;
    this.#setConnection("connecting");
    void this.#load(true).then((position) => {
      if (api !== this.#api) return;
      if (position === null) {
        // Not reachable (or refused): try again, as the stream would.
        this.#setConnection("offline");
        const seconds = Math.min(10, 0.5 * 2 ** this.#startFailures++);
        this.#retryStart = setTimeout(() => {
          this.#started = false;
          this.#start();
        }, seconds * 1000);
        return;
      }
      this.#startFailures = 0;
      const socketUrl = new URL(endpoint.href);
      socketUrl.protocol = endpoint.protocol === "https:" ? "wss:" : "ws:";
      this.#stream = new LiveStream(socketUrl.href, () => this.#currentToken(), {
        update: (update) => this.#onUpdate(update),
        online: (again) => {
          this.#setConnection("online");
          if (again) void this.#resync();
        },
        offline: () => this.#setConnection("offline"),
      });
      this.#stream.start(position);
    });
  }

  // --- data --------------------------------------------------------------------------------

  /** Read the current tab's first page (``reset``) or its next one; the inbox's position on
   * success, null on failure. */
  async #load(reset: boolean): Promise<string | null> {
    const api = this.#api;
    if (api === null) return null;
    const generation = reset ? ++this.#loadGeneration : this.#loadGeneration;
    const tab = this.#tab;
    if (reset) {
      this.#items = [];
      this.#hasNextPage = false;
      this.#endCursor = null;
      this.#loaded = false;
    }
    this.#loading = true;
    this.#renderFeed();
    try {
      const page = await api.page(tab, this.#pageSize(), reset ? null : this.#endCursor);
      if (generation !== this.#loadGeneration || api !== this.#api) return page.position;
      const known = new Set(this.#items.map((i) => i.id));
      for (const item of page.items) {
        this.#seen.add(item.id);
        if (!known.has(item.id)) this.#items.push(item);
      }
      this.#hasNextPage = page.hasNextPage;
      this.#endCursor = page.endCursor;
      this.#loaded = true;
      this.#setError(null);
      this.#setUnread(page.unreadCount);
      return page.position;
    } catch (error) {
      if (generation === this.#loadGeneration) this.#setError(this.#describe(error));
      return null;
    } finally {
      if (generation === this.#loadGeneration) {
        this.#loading = false;
        this.#renderFeed();
      }
    }
  }

  async #loadMore(): Promise<void> {
    if (this.#loading || !this.#hasNextPage) return;
    await this.#load(false);
  }

  /** After a reconnection: what changed while offline other than new items (those are
   * replayed by the stream): read and archived state and the count. */
  async #resync(): Promise<void> {
    const api = this.#api;
    if (api === null) return;
    try {
      const page = await api.page(this.#tab, Math.max(this.#items.length, this.#pageSize()), null);
      if (api !== this.#api) return;
      const current = new Map(page.items.map((i) => [i.id, i]));
      // When the listing is the whole tab, an item missing from it was archived (or, in the
      // unread tab, read) elsewhere while this page was offline.
      const complete = !page.hasNextPage;
      this.#items = this.#items.flatMap((item) => {
        const fresh = current.get(item.id);
        if (fresh) return [{ ...item, read: fresh.read, readAt: fresh.readAt }];
        if (!complete) return [item];
        return this.#tab === "unread" ? [{ ...item, read: true }] : [];
      });
      this.#setUnread(page.unreadCount);
      this.#setError(null);
      this.#renderFeed();
    } catch {
      // The stream is back; the next change brings the count again.
    }
  }

  #onUpdate(update: LiveUpdate): void {
    if (update.__typename === "ReadStateChange") {
      if (update.archived) this.#applyArchived(update.ids);
      else if (update.read) this.#applyRead(update.ids);
      this.#scheduleCountRefresh();
      return;
    }
    const { __typename: _, ...item } = update;
    if (this.#seen.has(item.id)) {
      const known = this.#items.find((i) => i.id === item.id);
      if (known && item.archived && this.#tab !== "archived") this.#applyArchived([item.id]);
      else if (known && item.read && !known.read) this.#applyRead([item.id]);
      return;
    }
    this.#seen.add(item.id);
    // A replayed item (after a reconnection) comes with what happened to it meanwhile: one
    // archived on another device goes to the Archived tab only, one read there is no news.
    const shelf = item.archived ? this.#tab === "archived" : this.#tab !== "archived";
    if (this.#loaded && shelf && !(this.#tab === "unread" && item.read)) {
      this.#items.unshift(item);
      this.#renderFeed();
    }
    if (item.archived) return;
    if (!item.read) {
      this.#setUnread(this.#unread + 1);
      this.#scheduleCountRefresh();
      this.#toast(item);
    }
    this.#emit("herald-notification", item);
  }

  async #mutate(
    change: (api: InboxApi) => Promise<{ unreadCount: number }>,
  ): Promise<void> {
    const api = this.#api;
    if (api === null) return;
    try {
      const result = await change(api);
      this.#setUnread(result.unreadCount);
      this.#setError(null);
    } catch (error) {
      this.#setError(this.#describe(error));
      this.#scheduleCountRefresh();
    }
  }

  #scheduleCountRefresh(): void {
    if (this.#countRefresh !== null) clearTimeout(this.#countRefresh);
    this.#countRefresh = setTimeout(async () => {
      this.#countRefresh = null;
      try {
        if (this.#api) this.#setUnread(await this.#api.unreadCount());
      } catch {
        // Offline: the resync after the reconnection reads it again.
      }
    }, 300);
  }

  #applyRead(ids: string[]): void {
    const wanted = new Set(ids);
    let changed = false;
    this.#items = this.#items.map((item) => {
      if (!wanted.has(item.id) || item.read) return item;
      changed = true;
      return { ...item, read: true, readAt: new Date().toISOString() };
    });
    if (changed) this.#renderFeed();
  }

  #applyArchived(ids: string[]): void {
    if (this.#tab === "archived") return;
    const gone = new Set(ids);
    const before = this.#items.length;
    this.#items = this.#items.filter((item) => !gone.has(item.id));
    if (this.#items.length !== before) this.#renderFeed();
  }

  // --- interaction -------------------------------------------------------------------------

  #selectTab(tab: InboxTab, focus = false): void {
    if (focus) this.#tabs[TABS.findIndex((t) => t.id === tab)].focus();
    if (tab === this.#tab) return;
    this.#tab = tab;
    this.#renderTabs();
    void this.#load(true);
  }

  #tabKey(event: KeyboardEvent): void {
    const index = TABS.findIndex((t) => t.id === this.#tab);
    const moves: Record<string, number> = {
      ArrowRight: (index + 1) % TABS.length,
      ArrowLeft: (index - 1 + TABS.length) % TABS.length,
      Home: 0,
      End: TABS.length - 1,
    };
    if (!(event.key in moves)) return;
    event.preventDefault();
    this.#selectTab(TABS[moves[event.key]].id, true);
  }

  #itemClick(event: Event): void {
    const target = event.target as Element;
    const button = target.closest("button");
    const link = target.closest<HTMLAnchorElement>("a.action");
    const row = target.closest<HTMLLIElement>("li[data-id]");
    if ((!button && !link) || !row) return;
    const item = this.#items.find((i) => i.id === row.dataset.id);
    if (!item) return;
    if (link) {
      // The browser follows the link; the item counts as read.
      if (!item.read) void this.markRead([item.id]);
      return;
    }
    if (!button) return;
    if (button.classList.contains("action")) {
      const action = item.actions[Number(button.dataset.index)];
      if (!action?.name) return;
      if (!item.read) void this.markRead([item.id]);
      this.#emit("herald-action", { name: action.name, notification: item });
      return;
    }
    if (button.classList.contains("archive")) {
      const neighbour = (row.nextElementSibling ?? row.previousElementSibling) as HTMLElement | null;
      void this.archive([item.id]);
      // Keep the keyboard user in the list: the neighbour's archive button (the rows are
      // rebuilt, so found again by id), else the feed.
      const id = neighbour?.dataset.id;
      const focusTarget = id
        ? this.#list.querySelector<HTMLButtonElement>(`li[data-id="${CSS.escape(id)}"] .archive`)
        : null;
      (focusTarget ?? this.#feed).focus();
    } else {
      if (!item.read) void this.markRead([item.id]);
      this.#emit("herald-open", item);
    }
  }

  #itemsInView(entries: IntersectionObserverEntry[]): void {
    if (!this.hasAttribute("mark-read-on-view") || !this.hasAttribute("open")) return;
    for (const entry of entries) {
      const id = (entry.target as HTMLElement).dataset.id;
      if (entry.isIntersecting && id && entry.target.getAttribute("data-read") === "false") {
        this.#viewed.add(id);
      }
    }
    if (this.#viewed.size === 0 || this.#viewedTimer !== null) return;
    // Seen for a moment, not scrolled past: marked read together after a second.
    this.#viewedTimer = setTimeout(() => {
      this.#viewedTimer = null;
      const ids = [...this.#viewed];
      this.#viewed.clear();
      void this.markRead(ids);
    }, 1000);
  }

  #observeItems(): void {
    this.#viewObserver.disconnect();
    if (!this.hasAttribute("mark-read-on-view")) return;
    for (const row of this.#list.children) this.#viewObserver.observe(row);
  }

  // --- rendering ---------------------------------------------------------------------------

  #pageSize(): number {
    const size = Number(this.getAttribute("page-size"));
    return Number.isInteger(size) && size >= 1 && size <= 100 ? size : 20;
  }

  #locale(): string | undefined {
    return (
      this.getAttribute("locale") ||
      this.closest("[lang]")?.getAttribute("lang") ||
      navigator.language ||
      undefined
    );
  }

  #relative(iso: string): string {
    const seconds = (new Date(iso).getTime() - Date.now()) / 1000;
    const format = new Intl.RelativeTimeFormat(this.#locale(), { numeric: "auto" });
    for (const [unit, size] of RELATIVE_UNITS) {
      if (Math.abs(seconds) >= size || unit === "second") {
        return format.format(Math.round(seconds / size), unit);
      }
    }
    return format.format(0, "second");
  }

  #refreshTimes(): void {
    for (const time of this.#root.querySelectorAll<HTMLTimeElement>("time[datetime]")) {
      time.textContent = this.#relative(time.dateTime);
    }
  }

  #setUnread(count: number): void {
    const changed = count !== this.#unread;
    this.#unread = count;
    this.#badge.textContent = count > 99 ? "99+" : String(count);
    this.#badge.hidden = count === 0;
    this.#bellLabel.textContent = count === 0 ? "Notifications" : `Notifications, ${count} unread`;
    this.#markAll.disabled = count === 0;
    this.setAttribute("unread-count", String(count));
    if (changed) this.#emit("herald-unread-change", { count });
  }

  #setConnection(state: ConnectionState): void {
    const changed = state !== this.#connection;
    this.#connection = state;
    this.setAttribute("connection", state);
    this.#connectionLine.hidden = state !== "offline";
    this.#connectionLine.textContent =
      state === "offline" ? "Offline: reconnecting. New notifications will follow." : "";
    if (changed) this.#emit("herald-connection", { state });
  }

  #setError(message: string | null): void {
    this.#error = message;
    this.#errorLine.hidden = message === null;
    this.#errorLine.textContent = message ?? "";
  }

  #describe(error: unknown): string {
    if (error instanceof TypeError) return "Cannot reach the notification service.";
    return error instanceof Error ? error.message : String(error);
  }

  #renderTabs(): void {
    for (const tab of this.#tabs) {
      const selected = tab.dataset.tab === this.#tab;
      tab.setAttribute("aria-selected", String(selected));
      tab.tabIndex = selected ? 0 : -1;
      if (selected) this.#feed.setAttribute("aria-labelledby", tab.id);
    }
  }

  #renderFeed(): void {
    // Rebuilt each time; the focused control is found again by item and role.
    const active = this.#root.activeElement;
    const activeRow = active?.closest<HTMLLIElement>("li[data-id]");
    const activeKind = active?.classList.contains("archive") ? ".archive" : ".open";
    const rows = this.#items.map((item) => this.#row(item));
    this.#list.replaceChildren(...rows);
    if (activeRow) {
      const again = this.#list.querySelector<HTMLElement>(
        `li[data-id="${CSS.escape(activeRow.dataset.id ?? "")}"] ${activeKind}`,
      );
      again?.focus();
    }
    const tab = TABS.find((t) => t.id === this.#tab);
    let state = "";
    if (this.#loading && this.#items.length === 0) state = "Loading notifications…";
    else if (this.#loading) state = "Loading more…";
    else if (!this.#loaded && this.#error !== null) state = "Notifications are unavailable.";
    else if (this.#loaded && this.#items.length === 0) state = tab?.empty ?? "";
    this.#state.textContent = state;
    this.#state.hidden = state === "";
    this.setAttribute("feed-state", this.#loading ? "loading" : this.#loaded ? "ready" : "error");
    const more = this.#hasNextPage && !this.#loading;
    this.#more.hidden = !more;
    this.#moreObserver.disconnect();
    if (more) this.#moreObserver.observe(this.#more);
    if (this.hasAttribute("open")) this.#observeItems();
  }

  #row(item: InboxNotification): HTMLLIElement {
    const title = item.title ?? item.eventType;
    const time = h("time", { class: "time", part: "time", datetime: item.createdAt });
    time.textContent = this.#relative(item.createdAt);
    time.title = new Date(item.createdAt).toLocaleString(this.#locale());
    const open = h(
      "button",
      { type: "button", class: "open", part: "item-open" },
      h(
        "span",
        { class: "title", part: "title" },
        h("span", { class: "dot", part: "unread-dot", "aria-hidden": "true" }),
        h("span", { class: "sr-only" }, item.read ? "" : "Unread: "),
        title,
      ),
    );
    if (item.body) open.append(h("span", { class: "body", part: "body" }, item.body));
    open.append(time);
    const content = h("div", { class: "content" }, open);
    const actions = this.#actions(item);
    if (actions) content.append(actions);
    const row = h(
      "li",
      {
        class: "item",
        part: item.read ? "item item-read" : "item item-unread",
        "data-id": item.id,
        "data-read": String(item.read),
      },
      content,
    );
    if (this.#tab !== "archived") {
      row.append(
        h(
          "button",
          {
            type: "button",
            class: "archive",
            part: "archive",
            "aria-label": `Archive: ${title}`,
            title: "Archive",
          },
          icon(ARCHIVE_ICON),
        ),
      );
    }
    return row;
  }

  /** The item's actions: links for URLs (a web page or a path of the app, nothing else),
   * buttons for named actions; the first is the primary one. */
  #actions(item: InboxNotification): HTMLElement | null {
    const buttons = (item.actions ?? []).flatMap((action, index): HTMLElement[] => {
      const part = `action ${index === 0 ? "action-primary" : "action-secondary"}`;
      const kind = index === 0 ? "action primary" : "action";
      if (action.url && SAFE_URL.test(action.url)) {
        return [h("a", { class: kind, part, href: action.url }, action.label)];
      }
      if (action.name) {
        return [h("button", { type: "button", class: kind, part, "data-index": String(index) }, action.label)];
      }
      return [];
    });
    return buttons.length ? h("div", { class: "actions", part: "actions" }, ...buttons) : null;
  }

  #toast(item: InboxNotification): void {
    const seconds = Number(this.getAttribute("toast-seconds") ?? 6);
    if (!(seconds > 0)) return;
    const dismiss = h(
      "button",
      { type: "button", class: "dismiss", part: "toast-dismiss", "aria-label": "Dismiss" },
      "×",
    );
    const text = h(
      "div",
      { class: "text" },
      h("strong", { part: "toast-title" }, item.title ?? item.eventType),
    );
    if (item.body) text.append(h("span", { part: "toast-body" }, item.body));
    const toast = h("div", { class: "toast", part: "toast", "data-id": item.id }, text, dismiss);
    const remove = (): void => toast.remove();
    dismiss.addEventListener("click", remove);
    setTimeout(remove, seconds * 1000);
    this.#toasts.append(toast);
  }

  #emit<T>(type: string, detail: T): void {
    this.dispatchEvent(new CustomEvent(type, { detail, bubbles: true, composed: true }));
  }
}
