/** `<herald-inbox>`: Herald's in-app inbox as a standard Web Component. Importing this module
 * defines the element (once). */

import { HeraldInbox } from "./element";
import type { HeraldInboxEventMap } from "./types";

export { HeraldInbox } from "./element";
export { InboxError } from "./api";
export type {
  ConnectionState,
  HeraldInboxEventMap,
  InboxNotification,
  InboxTab,
  ReadStateChange,
  TokenProvider,
} from "./types";

if (!customElements.get("herald-inbox")) customElements.define("herald-inbox", HeraldInbox);

declare global {
  interface HTMLElementTagNameMap {
    "herald-inbox": HeraldInbox;
  }
  interface HTMLElementEventMap extends HeraldInboxEventMap {}
}
