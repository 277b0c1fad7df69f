// Send a message: a template (or an event type), channels, recipients, a payload, and when.

import { ERROR_FIELDS, graphql, unwrap } from "../api.js";
import { CHANNELS, channelLabel, formatDateTime, fromLocalInput, h, localTimeZone, pageTitle, setChildren, spinner, withProgress } from "../dom.js";
import { ApiError, describeError, setBanner, showFieldError } from "../errors.js";

const OPTIONS = `query SendOptions {
  templates(first: 100) { edges { node { slug name variables content { channel locale } } } pageInfo { hasNextPage } }
  eventTypes { name description templateSlug channels critical builtin }
}`;
const SEND = `mutation SendEvent($input: EventInput!) {
  sendEvent(input: $input) { __typename ... on EventAccepted { eventId duplicate scheduledFor } ${ERROR_FIELDS} }
}`;

// Events sent from a template are recorded in history under this type unless changed.
const DEFAULT_TYPE = "admin_message";

function comingWithCampaigns() {
  return h("span", { class: "badge soon" }, "coming with campaigns");
}

function radio(name, value, label, { checked = false, disabled = false, id } = {}) {
  const input = h("input", { type: "radio", name, value, id: id || `${name}-${value}`, checked, disabled });
  return { input, el: h("label", { class: ["choice", disabled && "disabled"], for: input.id }, input, label) };
}

function fieldError(id) {
  return h("p", { id, class: "field-error", role: "alert", hidden: true });
}

export function render(root, { query, ctx }) {
  let disposed = false;
  let options = { templates: [], eventTypes: [], more: false, loaded: false };

  const banner = h("div", { class: "banner-slot", hidden: true });
  const result = h("div", { id: "send-result", "aria-live": "polite" });

  // What
  const byTemplate = radio("what", "template", "A template", { checked: !query.eventType });
  const byEventType = radio("what", "event-type", "An event type", { checked: Boolean(query.eventType) });
  const templateSelect = h("select", { id: "send-template", "aria-describedby": "send-template-help send-template-error" }, h("option", { value: "" }, "Loading…"));
  const templateHelp = h("p", { id: "send-template-help", class: "help" });
  const templateError = fieldError("send-template-error");
  const eventTypeSelect = h("select", { id: "send-event-type", "aria-describedby": "send-event-type-help send-event-type-error" }, h("option", { value: "" }, "Loading…"));
  const eventTypeHelp = h("p", { id: "send-event-type-help", class: "help" });
  const eventTypeError = fieldError("send-event-type-error");
  const templateBlock = h("div", { class: "field" }, h("label", { for: "send-template" }, "Template"), templateSelect, templateHelp, templateError);
  const eventTypeBlock = h("div", { class: "field" }, h("label", { for: "send-event-type" }, "Event type"), eventTypeSelect, eventTypeHelp, eventTypeError);

  // Channels
  const channelBoxes = CHANNELS.map(({ value, label }) => {
    const input = h("input", { type: "checkbox", name: "channels", value, id: `send-channel-${value}` });
    return { value, input, el: h("label", { class: "choice", for: input.id }, input, label) };
  });
  const channelsHelp = h("p", { id: "send-channels-help", class: "help" });
  const channelsError = fieldError("send-channels-error");

  // Recipients
  const recipientsInput = h("textarea", {
    id: "send-recipients",
    rows: "3",
    spellcheck: "false",
    placeholder: "user ids, separated by commas or new lines",
    "aria-describedby": "send-recipients-help send-recipients-error",
  });
  const recipientsError = fieldError("send-recipients-error");
  const someUsers = radio("recipients", "some", "These users", { checked: true });
  const allUsers = radio("recipients", "all", h("span", {}, "All users ", comingWithCampaigns()), { disabled: true });

  // Payload
  const payloadInput = h("textarea", { id: "send-payload", rows: "6", spellcheck: "false", "aria-describedby": "send-payload-help send-payload-error" });
  payloadInput.value = "{}";
  let payloadEdited = false;
  payloadInput.addEventListener("input", () => (payloadEdited = true));
  const payloadError = fieldError("send-payload-error");

  // When
  const now = radio("when", "now", "Now", { checked: true });
  const later = radio("when", "later", "At a time");
  const recurring = radio("when", "recurring", h("span", {}, "Recurring ", comingWithCampaigns()), { disabled: true });
  const sendAtInput = h("input", { type: "datetime-local", id: "send-at", "aria-describedby": "send-at-help send-at-error", disabled: true });
  const sendAtError = fieldError("send-at-error");
  const sendAtBlock = h(
    "div",
    { hidden: true },
    h("div", { class: "field inline" }, h("label", { for: "send-at" }, "Send at"), sendAtInput),
    h("p", { id: "send-at-help", class: "help" }, `In your time zone, ${localTimeZone()}.`),
    sendAtError,
  );

  // Advanced
  const typeInput = h("input", { id: "send-type", value: DEFAULT_TYPE, autocomplete: "off", spellcheck: "false", "aria-describedby": "send-type-help send-type-error" });
  const typeError = fieldError("send-type-error");
  const localeInput = h("input", { id: "send-locale", autocomplete: "off", placeholder: "each user's own", size: "10", "aria-describedby": "send-locale-error" });
  const localeError = fieldError("send-locale-error");

  const submit = h("button", { type: "submit", class: "btn primary", id: "send-submit" }, "Send now");

  const form = h(
    "form",
    { id: "send-form", class: "send-form", novalidate: true },
    banner,
    h(
      "div",
      { class: "send-columns" },
      h(
        "div",
        { class: "send-column" },
        h("fieldset", { class: "card" }, h("legend", {}, "What to send"), h("div", { class: "choices" }, byTemplate.el, byEventType.el), templateBlock, eventTypeBlock),
        h("fieldset", { class: "card" }, h("legend", {}, "Channels"), h("div", { class: "choices", role: "group", "aria-describedby": "send-channels-help send-channels-error" }, channelBoxes.map((b) => b.el)), channelsHelp, channelsError),
        h(
          "fieldset",
          { class: "card" },
          h("legend", {}, "Recipients"),
          h("div", { class: "choices" }, someUsers.el, allUsers.el),
          h("label", { for: "send-recipients", class: "visually-hidden" }, "Recipient user ids"),
          recipientsInput,
          h("p", { id: "send-recipients-help", class: "help" }, "The ids your auth service gives users, e.g. demo-manager. Up to 1,000; use a campaign for everyone."),
          recipientsError,
        ),
      ),
      h(
        "div",
        { class: "send-column" },
        h(
          "fieldset",
          { class: "card" },
          h("legend", {}, "Variables"),
          h("label", { for: "send-payload" }, "Payload (JSON)"),
          h("p", { id: "send-payload-help", class: "help" }, "What the template reads as ", h("code", {}, "payload"), ", e.g. ", h("code", {}, '{"movie": {"title": "Dune"}}'), "."),
          payloadInput,
          payloadError,
        ),
        h(
          "fieldset",
          { class: "card" },
          h("legend", {}, "When"),
          h("div", { class: "choices" }, now.el, later.el, recurring.el),
          sendAtBlock,
        ),
        h(
          "details",
          { class: "card advanced" },
          h("summary", {}, "Advanced"),
          h(
            "div",
            { class: "grid-2" },
            h(
              "div",
              { class: "field" },
              h("label", { for: "send-type" }, "Recorded as event type"),
              typeInput,
              h("p", { id: "send-type-help", class: "help" }, "For a template: the name history shows for this send."),
              typeError,
            ),
            h("div", { class: "field" }, h("label", { for: "send-locale" }, "Force a locale"), localeInput, localeError),
          ),
        ),
      ),
    ),
    h("div", { class: "actions" }, submit),
    result,
  );

  setChildren(root, h("div", { class: "page-head" }, pageTitle("Send a message")), form);

  // --- behaviour ------------------------------------------------------------------------
  const mode = () => (byEventType.input.checked ? "event-type" : "template");

  function selectedTemplate() {
    return options.templates.find((t) => t.slug === templateSelect.value) || null;
  }

  function selectedEventType() {
    return options.eventTypes.find((t) => t.name === eventTypeSelect.value) || null;
  }

  function refresh() {
    templateBlock.hidden = mode() !== "template";
    eventTypeBlock.hidden = mode() !== "event-type";
    if (mode() === "template") {
      const t = selectedTemplate();
      const available = new Set(t ? t.content.map((c) => c.channel) : []);
      for (const box of channelBoxes) {
        box.input.disabled = Boolean(t) && !available.has(box.value);
        if (box.input.disabled) box.input.checked = false;
      }
      if (t) templateHelp.textContent = `Has content for ${[...available].map(channelLabel).join(", ")}.`;
      else if (options.loaded) templateHelp.textContent = options.templates.length ? "" : "No templates yet: create one first.";
      channelsHelp.textContent = "Pick one or more of the template's channels.";
      if (t && !payloadEdited) {
        payloadInput.value = JSON.stringify(samplePayload(t.variables), null, 2);
      }
    } else {
      const e = selectedEventType();
      for (const box of channelBoxes) box.input.disabled = false;
      eventTypeHelp.textContent = e ? `${e.description || "No description."} Template: ${e.templateSlug ?? "none"}.${e.critical ? " Critical: ignores opt-outs and quiet hours." : ""}` : "";
      channelsHelp.textContent = e ? `Leave as is to use the type's channels (${e.channels.map(channelLabel).join(", ")}), or change them for this send.` : "";
    }
    sendAtInput.disabled = !later.input.checked;
    sendAtBlock.hidden = !later.input.checked;
    submit.textContent = later.input.checked ? "Schedule" : "Send now";
  }

  function samplePayload(paths) {
    const payload = {};
    for (const path of paths) {
      const parts = path.split(".");
      if (parts[0] !== "payload" || parts.length < 2) continue;
      let node = payload;
      parts.slice(1, -1).forEach((p) => (node = node[p] = typeof node[p] === "object" ? node[p] : {}));
      node[parts[parts.length - 1]] = "";
    }
    return payload;
  }

  function checkEventTypeChannels() {
    const e = selectedEventType();
    if (!e) return;
    for (const box of channelBoxes) box.input.checked = e.channels.includes(box.value);
  }

  for (const r of [byTemplate, byEventType, now, later]) r.input.addEventListener("change", () => {
    if (r === byEventType) checkEventTypeChannels();
    refresh();
  });
  templateSelect.addEventListener("change", () => {
    payloadEdited = payloadEdited && payloadInput.value.trim() !== "{}";
    refresh();
  });
  eventTypeSelect.addEventListener("change", () => {
    checkEventTypeChannels();
    refresh();
  });

  async function loadOptions() {
    try {
      const data = await graphql(OPTIONS);
      if (disposed) return;
      options = {
        templates: data.templates.edges.map((e) => e.node),
        more: data.templates.pageInfo.hasNextPage,
        eventTypes: data.eventTypes,
        loaded: true,
      };
    } catch (error) {
      if (disposed) return;
      setBanner(banner, error, { retry: loadOptions });
      return;
    }
    setBanner(banner, null);
    setChildren(
      templateSelect,
      h("option", { value: "" }, options.templates.length ? "Choose a template…" : "No templates yet"),
      options.templates.map((t) => h("option", { value: t.slug, selected: t.slug === query.template }, `${t.name} (${t.slug})`)),
    );
    setChildren(
      eventTypeSelect,
      h("option", { value: "" }, "Choose an event type…"),
      options.eventTypes.map((e) => h("option", { value: e.name, selected: e.name === query.eventType }, e.name)),
    );
    checkEventTypeChannels();
    refresh();
  }

  function clearErrors() {
    setBanner(banner, null);
    for (const [slot, input] of [
      [templateError, templateSelect],
      [eventTypeError, eventTypeSelect],
      [channelsError, null],
      [recipientsError, recipientsInput],
      [payloadError, payloadInput],
      [sendAtError, sendAtInput],
      [typeError, typeInput],
      [localeError, localeInput],
    ]) {
      showFieldError(slot, "", input);
    }
  }

  /** Put an error next to its field; returns false when it belongs to no field. */
  function placeError(error) {
    const field = error.field || "";
    const text = describeError(error);
    const place = (slot, input) => {
      showFieldError(slot, text, input);
      if (input && !input.disabled) input.focus();
      else slot.scrollIntoView({ block: "nearest" });
      return true;
    };
    if (field === "type") {
      if (mode() === "event-type") return place(eventTypeError, eventTypeSelect);
      form.querySelector("details.advanced").open = true;
      return place(typeError, typeInput);
    }
    if (field === "templateSlug") return mode() === "template" ? place(templateError, templateSelect) : place(eventTypeError, eventTypeSelect);
    if (field === "channels") return place(channelsError, channelBoxes.find((b) => !b.input.disabled)?.input);
    if (field === "userIds") return place(recipientsError, recipientsInput);
    if (field === "payload" || field.startsWith("payload.") || field.startsWith("payload[")) return place(payloadError, payloadInput);
    if (field === "sendAt") return place(sendAtError, sendAtInput);
    if (field === "locale") {
      form.querySelector("details.advanced").open = true;
      return place(localeError, localeInput);
    }
    return false;
  }

  /** The EventInput from the form; throws ApiError (with `field`) for what the page can check itself. */
  function readInput() {
    const input = {};
    if (mode() === "template") {
      if (!templateSelect.value) throw new ApiError({ code: "VALIDATION", message: "Choose a template to send.", field: "templateSlug" });
      input.type = typeInput.value.trim();
      input.templateSlug = templateSelect.value;
      input.channels = channelBoxes.filter((b) => b.input.checked).map((b) => b.value);
      if (!input.channels.length) throw new ApiError({ code: "VALIDATION", message: "Pick at least one channel.", field: "channels" });
    } else {
      const e = selectedEventType();
      if (!e) throw new ApiError({ code: "VALIDATION", message: "Choose an event type to send.", field: "type" });
      input.type = e.name;
      const picked = channelBoxes.filter((b) => b.input.checked).map((b) => b.value);
      if (!picked.length) throw new ApiError({ code: "VALIDATION", message: "Pick at least one channel.", field: "channels" });
      const same = picked.length === e.channels.length && picked.every((c) => e.channels.includes(c));
      if (!same) input.channels = picked;
    }
    input.userIds = recipientsInput.value.split(/[\s,;]+/).filter(Boolean);
    const text = payloadInput.value.trim();
    if (text) {
      let payload;
      try {
        payload = JSON.parse(text);
      } catch (error) {
        throw new ApiError({ code: "VALIDATION", message: `The payload is not valid JSON: ${error.message}`, field: "payload" });
      }
      if (typeof payload !== "object" || payload === null || Array.isArray(payload)) {
        throw new ApiError({ code: "VALIDATION", message: 'The payload must be a JSON object, like {"name": "value"}.', field: "payload" });
      }
      input.payload = payload;
    }
    if (later.input.checked) {
      const at = fromLocalInput(sendAtInput.value);
      if (!at) throw new ApiError({ code: "VALIDATION", message: "Pick the date and time to send at.", field: "sendAt" });
      if (new Date(at).getTime() < Date.now()) throw new ApiError({ code: "VALIDATION", message: "That time has passed: pick one in the future, or send now.", field: "sendAt" });
      input.sendAt = at;
    }
    if (localeInput.value.trim()) input.locale = localeInput.value.trim();
    return input;
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors();
    setChildren(result);
    let input;
    try {
      input = readInput();
    } catch (error) {
      placeError(error);
      return;
    }
    await withProgress(submit, input.sendAt ? "Scheduling…" : "Sending…", async () => {
      try {
        const accepted = unwrap((await graphql(SEND, { input })).sendEvent, "EventAccepted");
        showAccepted(accepted, input);
      } catch (error) {
        if (!(error instanceof ApiError)) throw error;
        if (!placeError(error)) setBanner(banner, error);
      }
    });
  });

  function showAccepted(accepted, input) {
    const count = input.userIds.length;
    const who = `${count} recipient${count === 1 ? "" : "s"}`;
    const text = accepted.scheduledFor
      ? `Scheduled for ${formatDateTime(accepted.scheduledFor)} to ${who}.`
      : accepted.duplicate
        ? "Already sent: this is the same event as before, so nothing new was sent."
        : `Accepted for delivery to ${who}.`;
    setChildren(
      result,
      h(
        "div",
        { class: "alert alert-success", role: "status" },
        h("p", {}, h("strong", {}, text), " Event id: ", h("code", { id: "sent-event-id" }, accepted.eventId)),
        h(
          "p",
          { class: "actions" },
          h("a", { class: "btn small", href: `#/history?eventId=${encodeURIComponent(accepted.eventId)}`, id: "sent-history-link" }, "See it in history"),
          h("a", { class: "btn small", href: "#/live" }, "Watch the live feed"),
        ),
      ),
    );
    ctx.toast(accepted.scheduledFor ? "Scheduled." : "Sent.");
  }

  refresh();
  templateHelp.replaceChildren(spinner("Loading templates and event types…"));
  loadOptions();
  return () => {
    disposed = true;
  };
}
