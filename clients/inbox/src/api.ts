/** Herald's GraphQL API as the inbox uses it: queries and mutations over HTTP (fetch), the
 * `notifications` subscription over graphql-transport-ws (the graphql-ws client). */

import { createClient, type Client } from "graphql-ws/client";

import type { InboxNotification, InboxTab, ReadStateChange } from "./types";

const NOTIFICATION_FIELDS =
  "id cursor eventId eventType title body data createdAt read readAt archived archivedAt actions { label url name }";

const INBOX = `query HeraldInbox($first: Int!, $after: String, $unreadOnly: Boolean!, $archived: Boolean!) {
  unreadCount
  inbox(first: $first, after: $after, unreadOnly: $unreadOnly, archived: $archived) {
    position
    pageInfo { hasNextPage endCursor }
    edges { node { ${NOTIFICATION_FIELDS} } }
  }
}`;

const UNREAD_COUNT = "query HeraldUnreadCount { unreadCount }";

const CHANGE_RESULT = `__typename
  ... on InboxChange { ids unreadCount }
  ... on Error { code message }`;

const MARK_READ = `mutation HeraldMarkRead($ids: [ID!]!) { result: markRead(ids: $ids) { ${CHANGE_RESULT} } }`;
const MARK_ALL_READ = `mutation HeraldMarkAllRead { result: markAllRead { ${CHANGE_RESULT} } }`;
const ARCHIVE = `mutation HeraldArchive($ids: [ID!]!) { result: archive(ids: $ids) { ${CHANGE_RESULT} } }`;

const NOTIFICATIONS = `subscription HeraldNotifications($since: String) {
  notifications(since: $since) {
    __typename
    ... on Notification { ${NOTIFICATION_FIELDS} }
    ... on ReadStateChange { ids read archived }
  }
}`;

export interface InboxPage {
  unreadCount: number;
  position: string;
  hasNextPage: boolean;
  endCursor: string | null;
  items: InboxNotification[];
}

export interface InboxChange {
  ids: string[];
  unreadCount: number;
}

export type LiveUpdate =
  | ({ __typename: "Notification" } & InboxNotification)
  | ({ __typename: "ReadStateChange" } & ReadStateChange);

/** A request that reached the server and was refused, with the API's error code. */
export class InboxError extends Error {
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
    this.name = "InboxError";
  }
}

export class InboxApi {
  constructor(
    private readonly endpoint: string,
    private readonly token: () => Promise<string | null>,
  ) {}

  async page(tab: InboxTab, first: number, after: string | null): Promise<InboxPage> {
    const data = await this.request<{
      unreadCount: number;
      inbox: {
        position: string;
        pageInfo: { hasNextPage: boolean; endCursor: string | null };
        edges: { node: InboxNotification }[];
      };
    }>(INBOX, { first, after, unreadOnly: tab === "unread", archived: tab === "archived" });
    return {
      unreadCount: data.unreadCount,
      position: data.inbox.position,
      hasNextPage: data.inbox.pageInfo.hasNextPage,
      endCursor: data.inbox.pageInfo.endCursor,
      items: data.inbox.edges.map((edge) => edge.node),
    };
  }

  async unreadCount(): Promise<number> {
    return (await this.request<{ unreadCount: number }>(UNREAD_COUNT, {})).unreadCount;
  }

  markRead(ids: string[]): Promise<InboxChange> {
    return this.change(MARK_READ, { ids });
  }

  markAllRead(): Promise<InboxChange> {
    return this.change(MARK_ALL_READ, {});
  }

  archive(ids: string[]): Promise<InboxChange> {
    return this.change(ARCHIVE, { ids });
  }

  private async change(query: string, variables: Record<string, unknown>): Promise<InboxChange> {
    const { result } = await this.request<{
      result: InboxChange & { __typename: string; code?: string; message?: string };
    }>(query, variables);
    if (result.__typename !== "InboxChange") {
      throw new InboxError(result.message ?? "refused", result.code ?? "UNKNOWN");
    }
    return { ids: result.ids, unreadCount: result.unreadCount };
  }

  private async request<T>(query: string, variables: Record<string, unknown>): Promise<T> {
    const token = await this.token();
    const response = await fetch(this.endpoint, {
      method: "POST",
      headers: {
        "Content-Type": "application/json",
        Accept: "application/graphql-response+json, application/json",
        ...(token ? { Authorization: `Bearer ${token}` } : {}),
      },
      body: JSON.stringify({ query, variables }),
    });
    const body = (await response.json().catch(() => null)) as {
      data?: T;
      errors?: { message: string; extensions?: { code?: string } }[];
    } | null;
    if (body?.errors?.length) {
      const [first] = body.errors;
      throw new InboxError(first.message, first.extensions?.code ?? String(response.status));
    }
    if (!response.ok || !body?.data) {
      throw new InboxError(`HTTP ${response.status}`, String(response.status));
    }
    return body.data;
  }
}

export interface StreamHandlers {
  update(update: LiveUpdate): void;
  /** The server acknowledged a connection; `again` when it is not the first one. */
  online(again: boolean): void;
  offline(): void;
}

/**
 * The `notifications` subscription, kept open: after a network drop, a server restart or any
 * close, it subscribes again with `since` = the cursor of the last item received, so the
 * server replays exactly what was missed (none lost, none doubled).
 *
 * The retries are ours, not graphql-ws's: its retries send the first subscription's
 * variables again, and each new subscription needs the latest `since`.
 */
export class LiveStream {
  private client: Client | null = null;
  private unsubscribe: (() => void) | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private failures = 0;
  private connections = 0;
  private stopped = false;
  private since: string | null = null;

  constructor(
    private readonly url: string,
    private readonly token: () => Promise<string | null>,
    private readonly handlers: StreamHandlers,
    private readonly maxRetrySeconds = 10,
  ) {}

  /** Open the stream from ``since`` (the inbox's position when the feed was read). */
  start(since: string | null): void {
    this.since = since;
    this.stopped = false;
    this.open();
  }

  /** Retry now if waiting to (the browser says the network is back). */
  nudge(): void {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
      this.failures = 0;
      this.open();
    }
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.close();
  }

  private close(): void {
    const unsubscribe = this.unsubscribe;
    const client = this.client;
    this.unsubscribe = null;
    this.client = null;
    unsubscribe?.();
    void client?.dispose();
  }

  private open(): void {
    this.close();
    const client = createClient({
      url: this.url,
      lazy: true,
      lazyCloseTimeout: 0,
      retryAttempts: 0,
      connectionParams: async () => {
        const token = await this.token();
        return token ? { authorization: `Bearer ${token}` } : {};
      },
      on: {
        connected: () => {
          if (client !== this.client) return;
          this.failures = 0;
          this.handlers.online(this.connections++ > 0);
        },
      },
    });
    this.client = client;
    const retry = (): void => {
      if (client !== this.client || this.stopped) return;
      this.close();
      this.handlers.offline();
      const seconds = Math.min(this.maxRetrySeconds, 0.5 * 2 ** this.failures++);
      this.timer = setTimeout(
        () => {
          this.timer = null;
          if (!this.stopped) this.open();
        },
        seconds * (0.5 + Math.random() * 0.5) * 1000,
      );
    };
    this.unsubscribe = client.subscribe<{ notifications: LiveUpdate }>(
      { query: NOTIFICATIONS, variables: { since: this.since } },
      {
        next: (result) => {
          const update = result.data?.notifications;
          if (!update || client !== this.client) return;
          if (update.__typename === "Notification") this.since = update.cursor;
          this.handlers.update(update);
        },
        error: retry,
        complete: retry,
      },
    );
  }
}
