// Who is signed in. The token lives in sessionStorage: it survives a reload but not the tab,
// which suits a shared office computer better than localStorage.

const STORAGE_KEY = "herald.admin.token";
const ADMIN_ROLES = ["admin", "manager"];

class Session {
  constructor() {
    this.token = null;
    this.viewer = null;
    this.listeners = new Set();
    this.expiryTimer = null;
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

  start(token, viewer) {
    this.token = token;
    this.viewer = viewer;
    try {
      sessionStorage.setItem(STORAGE_KEY, token);
    } catch {
      // Private mode without storage: the session lasts until reload.
    }
    clearTimeout(this.expiryTimer);
    if (viewer.tokenExpiresAt) {
      const ms = new Date(viewer.tokenExpiresAt).getTime() - Date.now();
      // setTimeout holds at most ~24.8 days.
      if (ms > 0 && ms < 2 ** 31 - 1) {
        this.expiryTimer = setTimeout(() => this.end("Your sign-in has expired. Please sign in again."), ms);
      }
    }
    this.emit({ type: "signed-in" });
  }

  end(message = null) {
    const was = this.signedIn;
    this.token = null;
    this.viewer = null;
    clearTimeout(this.expiryTimer);
    try {
      sessionStorage.removeItem(STORAGE_KEY);
    } catch {
      // nothing kept
    }
    if (was || message) this.emit({ type: "signed-out", message });
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
