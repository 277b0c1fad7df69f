/** The types `<herald-inbox>` works with: what the API sends, and what the element emits. */

/** An in-app notification, as the `inbox` query and the `notifications` subscription give it. */
export interface InboxNotification {
  /** The delivery id. */
  id: string;
  /** The item's place in the user's inbox: the subscription resumes after it (`since`). */
  cursor: string;
  eventId: string;
  eventType: string;
  title: string | null;
  body: string | null;
  /** The event's payload as the template saw it. */
  data: Record<string, unknown>;
  /** ISO 8601. */
  createdAt: string;
  read: boolean;
  readAt: string | null;
  /** Archived: only on an item replayed after a reconnection that was archived meanwhile. */
  archived: boolean;
  archivedAt: string | null;
  /** The primary and secondary action the template gave, if any. */
  actions: InboxAction[];
}

/** A button on a notification: a link (`url`: a web page or a path of the app), or a named
 * action the app handles (`name`, through the `herald-action` event). */
export interface InboxAction {
  label: string;
  url: string | null;
  name: string | null;
}

/** Items read or archived on one of the user's devices (this tab included). */
export interface ReadStateChange {
  ids: string[];
  read: boolean;
  archived: boolean;
}

/** The feed's tabs. */
export type InboxTab = "unread" | "all" | "archived";

/** The live connection: `online` once the server acknowledged it, `offline` while retrying. */
export type ConnectionState = "connecting" | "online" | "offline";

/**
 * Returns the user's access token (a JWT Herald accepts), fresh if the app's auth renews it.
 * Called before each request and each (re)connection.
 */
export type TokenProvider = () => string | null | undefined | Promise<string | null | undefined>;

/** The element's events, all `bubbles` and `composed`. */
export interface HeraldInboxEventMap {
  /** A notification arrived live (once per item, even across reconnections). */
  "herald-notification": CustomEvent<InboxNotification>;
  /** The user opened a notification in the feed (it is marked read). */
  "herald-open": CustomEvent<InboxNotification>;
  /** The user chose a named action of a notification (it is marked read). */
  "herald-action": CustomEvent<{ name: string; notification: InboxNotification }>;
  /** The unread count changed. */
  "herald-unread-change": CustomEvent<{ count: number }>;
  /** The live connection went online or offline. */
  "herald-connection": CustomEvent<{ state: ConnectionState }>;
}
