// Sign in: through the company's identity provider (config.oidc, single sign-on), with a login
// and password at the auth service (config.authService), by pasting a token (config.tokenPaste,
// development only), or (in development) by picking a demo user from the auth-service stand-in.

import config from "../../config.js";
import { graphql } from "../api.js";
import { h, pageTitle, setChildren, spinner, withProgress } from "../dom.js";
import { ApiError, describeError, showFieldError } from "../errors.js";
import { Session, session } from "../session.js";
import { AuthServiceError, authServiceEnabled, logIn } from "../auth_service.js";
import { beginSignIn, oidcEnabled } from "../oidc.js";

const VIEWER = "query Viewer { viewer { id roles tokenExpiresAt } }";

/** Check a token with the API and keep it; returns an error sentence or null. */
async function trySignIn(token, { refreshToken = null, method = "token" } = {}) {
  let data;
  try {
    data = await graphql(VIEWER, {}, { token });
  } catch (error) {
    if (error.code === "UNAUTHENTICATED") {
      return `This token was not accepted: ${error.detail || "it is not valid"}. Check that you copied all of it, or get a new one.`;
    }
    return describeError(error);
  }
  const refusal = Session.refusal(data.viewer);
  if (refusal) return refusal;
  session.start(token, data.viewer, { refreshToken, method });
  return null;
}

function loginForm(onSignedIn) {
  const loginInput = h("input", { id: "login", name: "username", autocomplete: "username", spellcheck: "false", "aria-describedby": "login-error" });
  const passwordInput = h("input", { id: "password", name: "password", type: "password", autocomplete: "current-password", "aria-describedby": "login-error" });
  const error = h("p", { id: "login-error", class: "field-error", role: "alert", hidden: true });
  const submit = h("button", { type: "submit", class: "btn primary" }, "Sign in");
  const form = h(
    "form",
    { id: "login-form", class: "stack", novalidate: true },
    h("h2", { class: "signin-heading" }, "Sign in with the auth service"),
    h("label", { for: "login" }, "Login"),
    loginInput,
    h("label", { for: "password" }, "Password"),
    passwordInput,
    error,
    h("div", { class: "actions" }, submit),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const login = loginInput.value.trim();
    if (!login || !passwordInput.value) {
      showFieldError(error, "Enter your login and password.", login ? passwordInput : loginInput);
      (login ? passwordInput : loginInput).focus();
      return;
    }
    showFieldError(error, "", loginInput);
    passwordInput.removeAttribute("aria-invalid");
    const problem = await withProgress(submit, "Signing in…", async () => {
      let pair;
      try {
        pair = await logIn(login, passwordInput.value);
      } catch (failure) {
        if (failure instanceof AuthServiceError && failure.kind === "refused") return "The login or password is not right.";
        return "The auth service is not answering; try again in a moment.";
      }
      return trySignIn(pair.accessToken, { refreshToken: pair.refreshToken, method: "auth-service" });
    });
    if (problem) {
      passwordInput.value = "";
      showFieldError(error, problem, passwordInput);
      passwordInput.focus();
    } else {
      onSignedIn();
    }
  });
  return form;
}

function singleSignOn(next) {
  const label = config.oidc.label || "single sign-on";
  const button = h("button", { type: "button", id: "sso-sign-in", class: "btn primary", "aria-describedby": "sso-help" }, `Sign in with ${label}`);
  const error = h("p", { id: "sso-error", class: "field-error", role: "alert", hidden: true });
  button.addEventListener("click", async () => {
    showFieldError(error, "");
    const problem = await withProgress(button, "Opening the sign-in page…", async () => {
      try {
        await beginSignIn(next);
        return null;
      } catch {
        return "The identity provider is not answering; try again in a moment.";
      }
    });
    if (problem) showFieldError(error, problem);
  });
  const help = h("p", { id: "sso-help", class: "help" }, `You sign in on ${label}'s own page, which then sends you back here.`);
  return h("div", { id: "sso", class: "stack" }, h("div", { class: "actions" }, button), help, error);
}

export function render(root, { message, next = "", onSignedIn }) {
  const tokenInput = h("textarea", {
    id: "token",
    name: "token",
    rows: "4",
    spellcheck: "false",
    autocomplete: "off",
    placeholder: "eyJhbGciOi…",
    "aria-describedby": "token-help token-error",
  });
  const tokenError = h("p", { id: "token-error", class: "field-error", hidden: true });
  const submit = h("button", { type: "submit", class: "btn primary" }, "Sign in");

  const form = h(
    "form",
    { id: "token-form", class: "stack", novalidate: true },
    h("label", { for: "token" }, "Access token"),
    tokenInput,
    h(
      "p",
      { id: "token-help", class: "help" },
      "Paste a token (a JWT) from your company's sign-in service. Developers can make one with ",
      h("code", {}, "herald token --sub you --role manager"),
      ".",
    ),
    tokenError,
    h("div", { class: "actions" }, submit),
  );

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const token = tokenInput.value.trim().replace(/^Bearer\s+/i, "");
    if (!token) {
      showFieldError(tokenError, "Paste your access token first.", tokenInput);
      tokenInput.focus();
      return;
    }
    showFieldError(tokenError, "", tokenInput);
    const problem = await withProgress(submit, "Checking…", () => trySignIn(token));
    if (problem) {
      showFieldError(tokenError, problem, tokenInput);
      tokenInput.focus();
    } else {
      onSignedIn();
    }
  });

  const demo = config.authStandinUrl ? demoUsers(onSignedIn) : null;
  const sso = oidcEnabled() ? singleSignOn(next) : null;
  const login = authServiceEnabled() ? loginForm(onSignedIn) : null;
  const folded = login || sso;
  const paste = config.tokenPaste !== true ? null : folded ? h("details", { class: "paste-token" }, h("summary", {}, "Development: paste a token"), form) : form;
  const none =
    sso || login || paste || demo
      ? null
      : h("p", { id: "no-sign-in", class: "alert alert-warning", role: "alert" }, "No way to sign in is configured for this page. Ask whoever runs Herald to set up single sign-on or the auth service.");

  setChildren(
    root,
    h(
      "section",
      { class: "signin" },
      h("div", { class: "card" }, pageTitle("Sign in to Herald"), message ? h("div", { class: "alert alert-warning", role: "alert" }, message) : null, sso, sso && login ? h("p", { class: "signin-or" }, "or") : null, login, paste, demo, none),
    ),
  );
  return () => {};
}

function demoUsers(onSignedIn) {
  const list = h("div", { class: "demo-list", "aria-live": "polite" });
  const details = h(
    "details",
    { id: "demo-users", class: "demo" },
    h("summary", {}, "Development: pick a demo user"),
    h(
      "p",
      { class: "help" },
      "Signs you in with a token from the development auth-service stand-in at ",
      h("code", {}, config.authStandinUrl),
      ". There is no such service in production.",
    ),
    list,
  );
  let loaded = false;
  // Loaded only when opened, so that a page without a stand-in makes no failing request.
  details.addEventListener("toggle", () => {
    if (details.open && !loaded) {
      loaded = true;
      load();
    }
  });

  async function load() {
    setChildren(list, spinner("Loading demo users…"));
    let users;
    try {
      const response = await fetch(new URL("/api/v1/auth/dev/users", config.authStandinUrl));
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      users = await response.json();
    } catch {
      loaded = false;
      setChildren(
        list,
        h(
          "div",
          { class: "alert alert-error", role: "alert" },
          h("p", {}, `The development sign-in service at ${config.authStandinUrl} is not answering. Start it with "herald dev", or paste a token instead.`),
          h("button", { type: "button", class: "btn small", onclick: () => ((loaded = true), load()) }, "Try again"),
        ),
      );
      return;
    }
    if (!users.length) {
      setChildren(list, h("p", { class: "help" }, "The stand-in has no demo users."));
      return;
    }
    const error = h("p", { class: "field-error", role: "alert", hidden: true });
    const canUse = (user) => user.roles.some((r) => r === "admin" || r === "manager");
    const button = (user) => {
      const b = h(
        "button",
        { type: "button", class: "user-pick", disabled: !canUse(user), "data-user-id": user.id },
        h("span", { class: "user-name" }, `${user.first_name} ${user.last_name}`),
        h("span", { class: "user-meta" }, `${user.id} · ${user.roles.join(", ")}`),
      );
      b.addEventListener("click", () => pick(user, b, error));
      return h("li", {}, b);
    };
    const usable = users.filter(canUse);
    const others = users.filter((u) => !canUse(u));
    setChildren(
      list,
      usable.length
        ? h("ul", { class: "user-list" }, usable.map(button))
        : h("p", { class: "help" }, "None of the demo users is an admin or a manager."),
      error,
      others.length
        ? h(
            "details",
            { class: "demo-others" },
            h("summary", {}, `${others.length} more demo users cannot use the admin page (no admin or manager role)`),
            h("ul", { class: "user-list" }, others.map(button)),
          )
        : null,
    );
  }

  async function pick(user, button, error) {
    showFieldError(error, "");
    const problem = await withProgress(button, `Signing in as ${user.first_name}…`, async () => {
      let token;
      try {
        const response = await fetch(new URL("/api/v1/auth/dev/token", config.authStandinUrl), {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ user_id: user.id }),
        });
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        token = (await response.json()).access_token;
      } catch {
        return describeError(new ApiError({ code: "NETWORK" }));
      }
      return trySignIn(token);
    });
    if (problem) showFieldError(error, problem);
    else onSignedIn();
  }

  return details;
}
