// What an API error means, in words a manager understands. The API gives every error a
// machine-readable `code` (and, for input errors, the `field`); this module turns codes into
// sentences and field paths into the names the page shows.

import { h, setChildren } from "./dom.js";

export class ApiError extends Error {
  constructor({ code = "INTERNAL", message = "", field = null, line = null } = {}) {
    super(message || code);
    this.name = "ApiError";
    this.code = code;
    this.detail = message;
    this.field = field;
    this.line = line;
  }
}

const SUMMARY = {
  UNAUTHENTICATED: "Your sign-in is no longer valid (it may have expired). Please sign in again.",
  FORBIDDEN: "Your account is not allowed to do this.",
  VALIDATION: "Something in the form needs fixing.",
  TEMPLATE_SYNTAX: "The template has a mistake in its wording.",
  TEMPLATE_RENDER: "The template could not be filled in.",
  WORKFLOW_STEP: "A workflow step needs fixing.",
  NOT_FOUND: "We couldn't find it: it may have been deleted or renamed.",
  CONFLICT: "This clashes with something that already exists or is in use.",
  UNAVAILABLE: "Herald can't reach one of its services right now. Nothing was changed; please try again in a minute.",
  INTERNAL: "Something went wrong on the server. Please try again; if it keeps happening, tell the developers.",
  NETWORK: "The Herald server is not answering. Check your connection and try again.",
  BAD_REQUEST: "The page sent a request the server did not understand. Reload the page and try again.",
};

const ROLE_NAMES = { admin: "an administrator", manager: "a manager", service: "a service", user: "a user" };

/** One or two sentences for a person: what happened and, where useful, what to do. */
export function describeError(error) {
  if (!(error instanceof ApiError)) {
    return SUMMARY.INTERNAL;
  }
  const detail = error.detail || "";
  switch (error.code) {
    case "FORBIDDEN": {
      const roles = /roles?: ([\w, ]+)/.exec(detail);
      if (roles) {
        const names = roles[1].split(",").map((r) => ROLE_NAMES[r.trim()] ?? r.trim());
        return `Your account is not allowed to do this: it needs to be ${names.join(" or ")}. Ask an administrator for access.`;
      }
      return detail ? `Your account is not allowed to do this. ${detail}` : SUMMARY.FORBIDDEN;
    }
    case "VALIDATION":
    case "NOT_FOUND":
    case "CONFLICT":
      // These messages are written for people by the API ("A template with slug 'x' already exists").
      return humanizeMessage(detail) || SUMMARY[error.code];
    case "TEMPLATE_SYNTAX": {
      const at = /at line \d+: (.*)$/s.exec(detail);
      const what = at ? at[1] : detail;
      return error.line ? `Line ${error.line}: ${what}` : what || SUMMARY.TEMPLATE_SYNTAX;
    }
    case "TEMPLATE_RENDER":
      return humanizeMessage(detail) || SUMMARY.TEMPLATE_RENDER;
    case "WORKFLOW_STEP":
      // The API's words name the step and what is wrong with it ("Syntax error in if: …").
      return detail || SUMMARY.WORKFLOW_STEP;
    default:
      return SUMMARY[error.code] ?? SUMMARY.INTERNAL;
  }
}

// The API names fields by their input path (`content[0].subject`, `payload.movie`); people
// know them by their label.
const FIELD_WORDS = {
  slug: "Slug",
  name: "Name",
  description: "Description",
  userIds: "Recipients",
  templateSlug: "Template",
  channels: "Channels",
  sendAt: "Send at",
  type: "Event type",
  locale: "Locale",
  everySeconds: "The interval",
  maxRuns: "Max runs",
  endAt: "The end date",
  testUserId: "The test user id",
};

// Campaign messages that name the API's input shape; said the way the form asks.
const PHRASES = [
  [/^Give the audience as userIds, allUsers: true or topics \(one of them\)$/, "Give the recipients' user ids, choose All users, or name topics."],
  [/^Give at most one of at, cron and everySeconds$/, "Choose one way to schedule it: at a time, on a cron schedule, or every N seconds."],
  [/^endAt and maxRuns apply to recurring schedules \(cron or everySeconds\)$/, "An end date and a maximum number of runs apply to recurring sends only."],
  [/^The time to send is in the past$/, "That time has passed: pick one in the future, or send now."],
  [/^everySeconds is at least (\d+)$/, "The interval is at least $1 second(s)."],
];

function humanizeMessage(message) {
  if (!message) return "";
  // JSON Schema wording from an event type's payload schema.
  const required = /^payload((?:\.[\w-]+|\[\d+\])*): '([^']+)' is a required property$/.exec(message);
  if (required) {
    const path = required[1].replace(/^\./, "");
    return `The payload needs ${path ? `${path}.` : ""}${required[2]}.`;
  }
  for (const [pattern, words] of PHRASES) if (pattern.test(message)) return message.replace(pattern, words);
  return message
    .replace(/\bcontent\[\d+\]\./g, "")
    .replace(/\b(userIds|templateSlug|sendAt|everySeconds|maxRuns|endAt|testUserId)\b/g, (m) => FIELD_WORDS[m] ?? m);
}

/** Fill an error slot (a <p class="field-error">) next to a field; empty text hides it. */
export function showFieldError(slot, text, input) {
  if (!slot) return;
  if (!text) {
    slot.hidden = true;
    setChildren(slot);
    input?.removeAttribute("aria-invalid");
    return;
  }
  slot.hidden = false;
  setChildren(slot, text);
  input?.setAttribute("aria-invalid", "true");
}

/**
 * A form's failed save: a typed API error at the field it names (`fields[name]` holds the
 * field's `{error, input}`), focused, or else in the form's `banner`. Anything that is not an
 * API error is thrown again.
 */
export function showFormError(error, fields, banner) {
  if (!(error instanceof ApiError)) throw error;
  const at = fields[error.field];
  if (at) {
    showFieldError(at.error, describeError(error), at.input);
    at.input.focus();
  } else {
    setBanner(banner, error);
  }
}

/** A banner for errors that belong to a whole form or screen. */
export function errorBanner(error, { retry } = {}) {
  const text = typeof error === "string" ? error : describeError(error);
  return h(
    "div",
    { class: "alert alert-error", role: "alert" },
    h("p", {}, text),
    retry ? h("button", { type: "button", class: "btn small", onclick: retry }, "Try again") : null,
  );
}

export function setBanner(slot, error, options) {
  if (!error) {
    slot.hidden = true;
    setChildren(slot);
    return;
  }
  slot.hidden = false;
  setChildren(slot, errorBanner(error, options));
}
