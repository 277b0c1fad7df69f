// The admin page: sign-in, the router between screens, the header with its connection
// indicator, and toasts. Each screen is a module in views/ exporting
// `render(root, {params, query, ctx})`, which may return a cleanup function.

import config from "../config.js";
import { graphql } from "./api.js";
import { h, setChildren } from "./dom.js";
import { openDialog } from "./dialog.js";
import { describeError } from "./errors.js";
import { Session, session } from "./session.js";
import { authServiceEnabled, logOut, refresh } from "./auth_service.js";
import * as oidc from "./oidc.js";
import { GraphQLWsClient, websocketUrl } from "./ws.js";
import * as signin from "./views/signin.js";
import * as overview from "./views/overview.js";
import * as templates from "./views/templates.js";
import * as editor from "./views/editor.js";
import * as send from "./views/send.js";
import * as historyView from "./views/history.js";
import * as deadLetters from "./views/dead_letters.js";
import * as live from "./views/live.js";
import * as campaigns from "./views/campaigns.js";
import * as campaign from "./views/campaign.js";
import * as topics from "./views/topics.js";
import * as topic from "./views/topic.js";
import * as recipients from "./views/recipients.js";
import * as suppressions from "./views/suppressions.js";
import * as apiKeys from "./views/api_keys.js";
import * as webhooks from "./views/webhooks.js";
import * as tenants from "./views/tenants.js";
import * as workflows from "./views/workflows.js";
import * as workflow from "./views/workflow.js";

const ROUTES = [
  { pattern: /^\/overview$/, view: overview, nav: "overview", title: "Overview" },
  { pattern: /^\/templates\/new$/, view: editor, nav: "templates", title: "New template" },
  { pattern: /^\/templates\/edit\/([^/]+)$/, view: editor, nav: "templates", title: "Edit template", keys: ["slug"] },
  { pattern: /^\/templates$/, view: templates, nav: "templates", title: "Templates" },
  { pattern: /^\/send$/, view: send, nav: "send", title: "Send a message" },
  { pattern: /^\/history$/, view: historyView, nav: "history", title: "History" },
  { pattern: /^\/dead-letters$/, view: deadLetters, nav: "dead-letters", title: "Dead letters" },
  { pattern: /^\/live$/, view: live, nav: "live", title: "Live feed" },
  { pattern: /^\/campaigns$/, view: campaigns, nav: "campaigns", title: "Campaigns" },
  { pattern: /^\/campaigns\/([^/]+)$/, view: campaign, nav: "campaigns", title: "Campaign", keys: ["id"] },
  { pattern: /^\/topics$/, view: topics, nav: "topics", title: "Topics" },
  { pattern: /^\/topics\/([^/]+)$/, view: topic, nav: "topics", title: "Topic", keys: ["key"] },
  { pattern: /^\/recipients$/, view: recipients, nav: "recipients", title: "Recipients" },
  { pattern: /^\/recipients\/([^/]+)$/, view: recipients.detail, nav: "recipients", title: "Recipient", keys: ["userId"] },
  { pattern: /^\/suppressions$/, view: suppressions, nav: "recipients", title: "Email suppressions" },
  { pattern: /^\/api-keys$/, view: apiKeys, nav: "api-keys", title: "API keys" },
  { pattern: /^\/webhooks$/, view: webhooks, nav: "webhooks", title: "Webhooks" },
  { pattern: /^\/tenants$/, view: tenants, nav: "tenants", title: "Tenants" },
  { pattern: /^\/workflows$/, view: workflows, nav: "workflows", title: "Workflows" },
  { pattern: /^\/workflows\/([^/]+)$/, view: workflow, nav: "workflows", title: "Workflow", keys: ["eventType"] },
  { pattern: /^\/workflow-runs\/([^/]+)$/, view: { render: workflow.runView }, nav: "workflows", title: "Workflow run", keys: ["id"] },
];
const HOME = "#/overview";

const main = document.getElementById("main");
const appEl = document.getElementById("app");
let cleanup = null;
let ws = null;
let signInMessage = null;

// --- toasts -------------------------------------------------------------------------------
function toast(text, kind = "success") {
  const box = document.getElementById("toasts");
  const item = h("div", { class: `toast toast-${kind}`, role: kind === "error" ? "alert" : "status" }, text);
  box.append(item);
  setTimeout(() => item.remove(), kind === "error" ? 8000 : 4500);
}

function navigate(hash, { replace = false } = {}) {
  if (replace) {
    history.replaceState(null, "", hash);
    route();
  } else if (window.location.hash === hash) {
    route();
  } else {
    window.location.hash = hash;
  }
}

// --- the live connection (heartbeat) -------------------------------------------------------
const conn = document.getElementById("conn");
const connLabel = conn.querySelector(".conn-label");
let lastTick = null;
let staleTimer = null;

function showConnection(state, label, title = "") {
  conn.dataset.state = state;
  connLabel.textContent = label;
  conn.title = title;
}

function startLiveConnection() {
  stopLiveConnection();
  ws = new GraphQLWsClient({
    url: websocketUrl(config.graphqlPath),
    connectionParams: () => ({ authorization: `Bearer ${session.token}` }),
  });
  ws.onStatus((status, detail) => {
    if (status === "connecting") showConnection("connecting", "Connecting…");
    else if (status === "reconnecting") showConnection("connecting", "Reconnecting…", detail);
    else if (status === "rejected") showConnection("down", "Live updates off", detail);
    else if (status === "connected" && !lastTick) showConnection("connecting", "Connecting…");
  });
  const interval = config.heartbeatSeconds;
  ws.subscribe(
    { query: "subscription Heartbeat($s: Int!) { heartbeat(intervalSeconds: $s) { at } }", variables: { s: interval } },
    {
      next(payload) {
        if (!payload.data?.heartbeat) return;
        lastTick = new Date();
        showConnection("live", "Live", `Connected; last heartbeat at ${lastTick.toLocaleTimeString()}.`);
        clearTimeout(staleTimer);
        staleTimer = setTimeout(
          () => showConnection("connecting", "Connection quiet…", "No heartbeat for a while; the connection may be lost."),
          (interval * 2 + 5) * 1000,
        );
      },
      error(errors) {
        showConnection("down", "Live updates off", errors?.[0]?.message ?? "The heartbeat subscription failed.");
      },
    },
  );
}

function stopLiveConnection() {
  clearTimeout(staleTimer);
  lastTick = null;
  ws?.close();
  ws = null;
  showConnection("off", "Offline");
}

// --- sign-in state --------------------------------------------------------------------------
function renderSessionHeader() {
  appEl.dataset.signedIn = String(session.signedIn);
  // Screens for one role only (API keys: admins) are left out of the others' navigation.
  document.querySelectorAll(".nav a[data-role]").forEach((a) => (a.hidden = !session.hasRole(a.dataset.role)));
  const who = document.getElementById("who");
  if (session.signedIn) {
    setChildren(who, h("span", { class: "who-id" }, session.viewer.id), h("span", { class: "who-roles" }, session.viewer.roles.join(", ")));
  } else {
    setChildren(who);
  }
}

const VIEWER = "query Viewer { viewer { id roles tokenExpiresAt } }";

if (authServiceEnabled()) {
  session.renewers["auth-service"] = async (refreshToken) => {
    const pair = await refresh(refreshToken);
    const data = await graphql(VIEWER, {}, { token: pair.accessToken });
    if (Session.refusal(data.viewer)) throw new Error("no longer an admin or a manager");
    return { token: pair.accessToken, viewer: data.viewer, refreshToken: pair.refreshToken };
  };
}
if (oidc.oidcEnabled()) {
  session.renewers.oidc = async () => {
    const user = await oidc.renew();
    const data = await graphql(VIEWER, {}, { token: user.access_token });
    if (Session.refusal(data.viewer)) throw new Error("no longer an admin or a manager");
    return { token: user.access_token, viewer: data.viewer, refreshToken: null };
  };
}

session.subscribe((event) => {
  renderSessionHeader();
  // A renewed token: the socket already open stays; a reconnect sends the new token.
  if (event.type === "renewed") return;
  if (event.type === "signed-in") {
    startLiveConnection();
  } else {
    leaveGuard = null;
    stopLiveConnection();
    // Ended by expiry or a refusal (not the sign-out button, which ends the provider's session
    // with them): the provider's tokens kept for this tab go too.
    if (event.method === "oidc" && event.message) oidc.forget();
    signInMessage = event.message;
    const back = window.location.hash.startsWith("#/signin") ? "" : window.location.hash;
    navigate(`#/signin${back ? `?next=${encodeURIComponent(back)}` : ""}`);
  }
});

document.getElementById("sign-out").addEventListener("click", () => {
  const { method, refreshToken } = session;
  session.end();
  // Single sign-on: the provider's session ends too (its end-session page comes back here).
  if (method === "oidc") oidc.endSession();
  // The auth service's form: its refresh token must not outlive the session.
  if (method === "auth-service") logOut(refreshToken);
});

// The router owns the URL hash, so the skip link moves focus itself instead of jumping to #main.
document.querySelector(".skip-link").addEventListener("click", (event) => {
  event.preventDefault();
  main.focus();
});

// --- the router -----------------------------------------------------------------------------
function parseHash() {
  const raw = window.location.hash.replace(/^#/, "") || "/";
  const [path, query = ""] = raw.split("?");
  return { path, query };
}

// A screen with unsaved work (the template editor) registers a guard: leaving it then asks first.
let leaveGuard = null;
let currentHash = null;

function confirmLeave(reason, leave) {
  const stay = h("button", { type: "button", class: "btn primary" }, "Stay");
  const go = h("button", { type: "button", class: "btn danger-ghost", id: "leave-anyway" }, "Leave without saving");
  const { close } = openDialog({ id: "leave-dialog", title: "Leave this page?", body: h("p", {}, reason), actions: [go, stay] });
  stay.addEventListener("click", close);
  go.addEventListener("click", () => {
    close();
    leave();
  });
  stay.focus();
}

function route() {
  const target = window.location.hash;
  if (leaveGuard && session.signedIn && target !== currentHash) {
    const reason = leaveGuard();
    if (reason) {
      // Put the address back (without another hashchange) until the person decides.
      history.replaceState(null, "", currentHash || "#/");
      confirmLeave(reason, () => {
        leaveGuard = null;
        navigate(target);
      });
      return;
    }
  }
  leaveGuard = null;
  currentHash = target;
  const { path, query } = parseHash();
  cleanup?.();
  cleanup = null;
  document.querySelectorAll(".nav a").forEach((a) => a.removeAttribute("aria-current"));

  if (!session.signedIn || path === "/signin") {
    if (session.signedIn) {
      navigate(HOME, { replace: true });
      return;
    }
    document.title = "Sign in · Herald admin";
    const params = new URLSearchParams(query);
    const message = signInMessage;
    signInMessage = null;
    const next = params.get("next") || (path !== "/signin" && path !== "/" ? `#${path}${query ? `?${query}` : ""}` : HOME);
    cleanup = signin.render(main, { message, next, onSignedIn: () => navigate(next, { replace: true }) });
    return;
  }
  const match = ROUTES.map((r) => ({ r, m: r.pattern.exec(path) })).find((x) => x.m);
  if (!match) {
    navigate(HOME, { replace: true });
    return;
  }
  const { r, m } = match;
  const params = {};
  (r.keys || []).forEach((key, i) => (params[key] = decodeURIComponent(m[i + 1])));
  document.title = `${r.title} · Herald admin`;
  const current = document.querySelector(`.nav a[data-nav="${r.nav}"]`);
  current?.setAttribute("aria-current", "page");
  // The navigation scrolls sideways when its links do not fit: keep the current one in sight.
  current?.scrollIntoView({ block: "nearest", inline: "nearest" });
  main.replaceChildren();
  const ctx = {
    toast,
    navigate,
    ws,
    /** `guard()` returns why leaving now would lose work, or null. */
    setLeaveGuard: (guard) => (leaveGuard = guard),
  };
  cleanup = r.view.render(main, { params, query: Object.fromEntries(new URLSearchParams(query)), ctx }) || null;
  // Keyboard and screen-reader users start at the new screen's heading.
  main.querySelector(".page-title")?.focus({ preventScroll: true });
}

window.addEventListener("hashchange", route);
// Reloading or closing the tab with unsaved work: the browser's own prompt.
window.addEventListener("beforeunload", (event) => {
  if (leaveGuard?.()) event.preventDefault();
});

// --- start ----------------------------------------------------------------------------------
/** Back from the identity provider: trade the code, check the account, start the session. */
async function completeSingleSignOn() {
  let user;
  let next;
  try {
    ({ user, next } = await oidc.completeSignIn());
  } catch (error) {
    signInMessage = oidc.describeFailure(error);
    return;
  }
  let data;
  try {
    data = await graphql(VIEWER, {}, { token: user.access_token });
  } catch (error) {
    await oidc.forget();
    signInMessage =
      error.code === "UNAUTHENTICATED"
        ? `Herald did not accept the identity provider's token: ${error.detail || "it is not valid"}.`
        : describeError(error);
    return;
  }
  const refusal = Session.refusal(data.viewer);
  if (refusal) {
    await oidc.forget();
    signInMessage = refusal;
    return;
  }
  session.start(user.access_token, data.viewer, { method: "oidc" });
  if (next && next.startsWith("#/")) history.replaceState(null, "", next);
}

async function start() {
  if (oidc.oidcEnabled() && oidc.isCallback()) await completeSingleSignOn();
  const stored = session.signedIn ? null : session.storedToken();
  const storedRefresh = session.storedRefreshToken();
  const method = session.storedMethod();
  if (stored) {
    try {
      const data = await graphql(VIEWER, {}, { token: stored });
      if (!Session.refusal(data.viewer)) {
        session.start(stored, data.viewer, { refreshToken: storedRefresh, method });
      } else {
        session.end();
      }
    } catch (error) {
      let renewed = null;
      if (error.code === "UNAUTHENTICATED" && session.canRenew(method, storedRefresh)) {
        // The access token expired while the tab was away: the refresh token may still do.
        renewed = await session.renewers[method](storedRefresh).catch(() => null);
      }
      if (renewed) {
        session.start(renewed.token, renewed.viewer, { refreshToken: renewed.refreshToken, method });
      } else {
        session.end();
        signInMessage =
          error.code === "UNAUTHENTICATED" ? "Your sign-in has expired. Please sign in again." : describeError(error);
      }
    }
  }
  renderSessionHeader();
  route();
  appEl.dataset.ready = "true";
}

start();
