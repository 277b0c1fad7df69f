// Who is signed in. The token lives in sessionStorage: it survives a reload but not the tab,
// which suits a shared office computer better than localStorage. The session knows how it was
// started (`method`): "token" (pasted, or a demo user), "auth-service" (the login form; the
// session also holds its refresh token) or "oidc" (single sign-on; oidc-client-ts keeps the
// provider's tokens). For the last two a renewer (`renewers[method]`, set by app.js) gets a new
// access token before the current one expires.

const STORAGE_KEY = "herald.admin.token";
const REFRESH_KEY = "herald.admin.refresh";
const METHOD_KEY = "herald.admin.method";
// Renew this long before expiry (or after three quarters of a short token's life).
const RENEW_LEAD_MS = 60_000;
const ADMIN_ROLES = ["admin", "manager"];

class Session {
  constructor() {
    this.token = null;
    this.viewer = null;
    this.listeners = new Set();
    this.expiryTimer = null;
    this.refreshToken = null;
    this.method = null;
    /** By method: `async (refreshToken) => ({token, viewer, refreshToken})`; throws when it cannot. */
    this.renewers = {};
  }

  storedMethod() {
    try {
      return sessionStorage.getItem(METHOD_KEY) || "token";
    } catch {
      return "token";
    }
  }

  /** Whether a session started by `method` with `refreshToken` can be renewed. */
  canRenew(method, refreshToken) {
    if (!this.renewers[method]) return false;
    // oidc-client-ts holds the provider's refresh token itself.
    return method === "oidc" || Boolean(refreshToken);
  }

  storedRefreshToken() {
    try {
      return sessionStorage.getItem(REFRESH_KEY);
    } catch {
      return null;
    }
  }

  /** Restore a token kept from earlier in this tab (checked by the caller with `viewer`). */
  storedToken() {
    try {
      return sessionStorage.getItem(STORAGE_KEY);
    } catch {
      return null;
    }
  }

  get signedIn() {
    return Boolean(this.token && this.viewer);
  }

  hasRole(role) {
    return Boolean(this.viewer?.roles.includes(role));
  }

  /** Why this viewer cannot use the admin page, or null when they can. */
  static refusal(viewer) {
    if (viewer.roles.some((r) => ADMIN_ROLES.includes(r))) return null;
    const roles = viewer.roles.length ? viewer.roles.join(", ") : "none";
    return `This account (${viewer.id}, roles: ${roles}) cannot use the admin page: it needs the admin or manager role.`;
  }

  start(token, viewer, { refreshToken = null, method = "token" } = {}) {
    this.method = method;
    this.keep(token, viewer, refreshToken);
    this.emit({ type: "signed-in" });
  }

  keep(token, viewer, refreshToken) {
    this.token = token;
    this.viewer = viewer;
    this.refreshToken = refreshToken;
    try {
      sessionStorage.setItem(STORAGE_KEY, token);
      sessionStorage.setItem(METHOD_KEY, this.method);
      if (refreshToken) sessionStorage.setItem(REFRESH_KEY, refreshToken);
      else sessionStorage.removeItem(REFRESH_KEY);
    } catch {
      // Private mode without storage: the session lasts until reload.
    }
    clearTimeout(this.expiryTimer);
    if (viewer.tokenExpiresAt) {
      const ms = new Date(viewer.tokenExpiresAt).getTime() - Date.now();
      const renewable = this.canRenew(this.method, refreshToken);
      const wait = renewable ? Math.max(0, ms - Math.min(RENEW_LEAD_MS, ms / 4)) : ms;
      // setTimeout holds at most ~24.8 days.
      if (ms > 0 && wait < 2 ** 31 - 1) {
        this.expiryTimer = setTimeout(
          () => (renewable ? this.renew() : this.end("Your sign-in has expired. Please sign in again.")),
          wait,
        );
      }
    }
  }

  /** Trade the refresh token for a new access token, without a sign-in screen. */
  async renew() {
    const spent = this.refreshToken;
    const was = this.token;
    let next;
    try {
      next = await this.renewers[this.method](spent);
    } catch {
      if (this.token === was) this.end("Your sign-in has expired. Please sign in again.");
      return;
    }
    // Signed out (or in again) while the refresh was on its way: keep nothing.
    if (!this.signedIn || this.token !== was) return;
    this.keep(next.token, next.viewer, next.refreshToken);
    this.emit({ type: "renewed" });
  }

  end(message = null) {
    const was = this.signedIn;
    const method = this.method;
    this.token = null;
    this.viewer = null;
    this.refreshToken = null;
    this.method = null;
    clearTimeout(this.expiryTimer);
    try {
      sessionStorage.removeItem(STORAGE_KEY);
      sessionStorage.removeItem(REFRESH_KEY);
      sessionStorage.removeItem(METHOD_KEY);
    } catch {
      // nothing kept
    }
    if (was || message) this.emit({ type: "signed-out", message, method });
  }

  /** The API said the token is no longer valid. */
  expire() {
    if (this.signedIn) this.end("Your sign-in is no longer valid (it may have expired). Please sign in again.");
  }

  subscribe(listener) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  emit(event) {
    for (const listener of this.listeners) listener(event);
  }
}

export { Session };
export const session = new Session();
