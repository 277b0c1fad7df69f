// Send a message: a template (or an event type), channels, recipients, a payload, and when:
// now, at a time, or recurring. A one-off send to listed users is an event (`sendEvent`);
// a recurring send, a send to all users, or one kept "as a campaign" is a campaign
// (`createCampaign`), which the Campaigns screen lists with its runs.

import { ERROR_FIELDS, graphql, unwrap } from "../api.js";
import { CHANNELS, campaignBadge, channelLabel, debounce, formatDateTime, fromLocalInput, h, localTimeZone, pageTitle, setChildren, spinner, splitIds, withProgress } from "../dom.js";
import { ApiError, describeError, setBanner, showFieldError } from "../errors.js";
import { CronError } from "../cron.js";
import { capitalize, cronWords, describeSchedule, formatInZone, isTimeZone, upcoming } from "../schedule.js";

const TEMPLATE_FIELDS = "slug name variables content { channel locale }";
const OPTIONS = `query SendOptions {
  templates(first: 100) { edges { node { ${TEMPLATE_FIELDS} } } pageInfo { hasNextPage } }
  eventTypes { name description templateSlug channels critical builtin }
  topics(first: 20) { edges { node { key name memberCount } } pageInfo { hasNextPage } }
}`;
// Past the first 100 templates: those whose slug or name contains what is typed in the search.
const TEMPLATE_SEARCH = `query SendTemplates($search: String) {
  templates(search: $search, first: 100) { edges { node { ${TEMPLATE_FIELDS} } } pageInfo { hasNextPage } }
}`;
// A template named in the address (a link, a bookmark), wherever it sorts.
const TEMPLATE = `query SendTemplate($slug: String!) { template(slug: $slug) { ${TEMPLATE_FIELDS} } }`;
// The topics whose key or name contains what is being typed, for the suggestions under the field.
const TOPIC_SEARCH = `query SendTopics($search: String) {
  topics(search: $search, first: 20) { edges { node { key name memberCount } } pageInfo { hasNextPage } }
}`;
const SEND = `mutation SendEvent($input: EventInput!) {
  sendEvent(input: $input) { __typename ... on EventAccepted { eventId duplicate scheduledFor } ${ERROR_FIELDS} }
}`;
const CREATE_CAMPAIGN = `mutation CreateCampaign($input: CampaignInput!) {
  createCampaign(input: $input) {
    __typename
    ... on Campaign { id name status nextRunAt schedule { at cron timezone everySeconds endAt maxRuns description } }
    ${ERROR_FIELDS}
  }
}`;

// Events sent from a template are recorded in history under this type unless changed.
const DEFAULT_TYPE = "admin_message";
const DEFAULT_CATEGORY = "campaign";

const CRON_EXAMPLES = [
  ["0 9 * * 1", "Mondays 09:00"],
  ["0 9 * * 1-5", "Weekdays 09:00"],
  ["0 9 * * *", "Every day 09:00"],
  ["0 9 1 * *", "1st of the month"],
  ["0 * * * *", "Every hour"],
];

function radio(name, value, label, { checked = false, disabled = false, id } = {}) {
  const input = h("input", { type: "radio", name, value, id: id || `${name}-${value}`, checked, disabled });
  return { input, el: h("label", { class: ["choice", disabled && "disabled"], for: input.id }, input, label) };
}

function fieldError(id) {
  return h("p", { id, class: "field-error", role: "alert", hidden: true });
}

function timeZones() {
  const zones = typeof Intl.supportedValuesOf === "function" ? Intl.supportedValuesOf("timeZone") : [];
  return zones.includes("UTC") ? zones : ["UTC", ...zones];
}

function validationError(message, field) {
  return new ApiError({ code: "VALIDATION", message, field });
}

export function render(root, { query, ctx }) {
  let disposed = false;
  let options = { templates: [], eventTypes: [], topics: [], more: false, loaded: false };
  // Every template the page has been sent (the first list, searches, the one in the address),
  // by slug: the one chosen stays known whatever the list shows now.
  const knownTemplates = new Map();

  const banner = h("div", { class: "banner-slot", hidden: true });
  const result = h("div", { id: "send-result", "aria-live": "polite" });

  // What
  const byTemplate = radio("what", "template", "A template", { checked: !query.eventType });
  const byEventType = radio("what", "event-type", "An event type", { checked: Boolean(query.eventType) });
  const templateSelect = h("select", { id: "send-template", "aria-describedby": "send-template-help send-template-error" }, h("option", { value: "" }, "Loading…"));
  const templateHelp = h("p", { id: "send-template-help", class: "help" });
  const templateError = fieldError("send-template-error");
  // Shown when there are more templates than the first list holds.
  const templateSearch = h("input", { id: "send-template-search", type: "search", autocomplete: "off", placeholder: "Part of a name or slug", "aria-describedby": "send-template-search-help" });
  const templateSearchHelp = h("p", { id: "send-template-search-help", class: "help", "aria-live": "polite" });
  const templateSearchBlock = h("div", { class: "field", hidden: true }, h("label", { for: "send-template-search" }, "Find a template"), templateSearch, templateSearchHelp);
  const eventTypeSelect = h("select", { id: "send-event-type", "aria-describedby": "send-event-type-help send-event-type-error" }, h("option", { value: "" }, "Loading…"));
  const eventTypeHelp = h("p", { id: "send-event-type-help", class: "help" });
  const eventTypeError = fieldError("send-event-type-error");
  const templateBlock = h("div", {}, templateSearchBlock, h("div", { class: "field" }, h("label", { for: "send-template" }, "Template"), templateSelect, templateHelp, templateError));
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
  const someUsers = radio("recipients", "some", "These users", { checked: !["all", "topics"].includes(query.recipients) });
  const allUsers = radio("recipients", "all", "All users", { checked: query.recipients === "all" });
  const byTopics = radio("recipients", "topics", "Topics", { checked: query.recipients === "topics" });
  const recipientsHelp = h("p", { id: "send-recipients-help", class: "help" });
  const topicsInput = h("input", {
    id: "send-topics",
    class: "mono",
    autocomplete: "off",
    spellcheck: "false",
    value: query.topics || "",
    placeholder: "topic keys, separated by commas",
    "aria-describedby": "send-recipients-help send-recipients-error",
  });
  const topicChoices = h("div", { class: "examples", role: "group", "aria-label": "Topics" });

  // Payload
  const payloadInput = h("textarea", { id: "send-payload", rows: "6", spellcheck: "false", "aria-describedby": "send-payload-help send-payload-error" });
  payloadInput.value = "{}";
  let payloadEdited = false;
  payloadInput.addEventListener("input", () => (payloadEdited = true));
  const payloadError = fieldError("send-payload-error");

  // When
  const now = radio("when", "now", "Now", { checked: !["later", "recurring"].includes(query.when) });
  const later = radio("when", "later", "At a time", { checked: query.when === "later" });
  const recurring = radio("when", "recurring", "Recurring", { checked: query.when === "recurring" });
  const scheduleError = fieldError("send-schedule-error");
  const sendAtInput = h("input", { type: "datetime-local", id: "send-at", "aria-describedby": "send-at-help send-at-error", disabled: true });
  const sendAtError = fieldError("send-at-error");
  const sendAtBlock = h(
    "div",
    { hidden: true },
    h("div", { class: "field inline" }, h("label", { for: "send-at" }, "Send at"), sendAtInput),
    h("p", { id: "send-at-help", class: "help" }, `In your time zone, ${localTimeZone()}.`),
    sendAtError,
  );

  // Recurring: cron in a zone, or every N seconds; optional end and maximum number of runs.
  const byCron = radio("repeat", "cron", "On a cron schedule", { checked: true });
  const byInterval = radio("repeat", "interval", "Every N seconds");
  const cronInput = h("input", { id: "send-cron", value: "0 9 * * 1", autocomplete: "off", spellcheck: "false", class: "mono", "aria-describedby": "send-cron-help send-cron-error" });
  const cronError = fieldError("send-cron-error");
  const examples = h(
    "div",
    { class: "examples", role: "group", "aria-label": "Examples" },
    h("span", { class: "help" }, "Examples:"),
    CRON_EXAMPLES.map(([expr, label]) =>
      h("button", { type: "button", class: "btn chip-button", "data-cron": expr, title: expr, onclick: () => {
        cronInput.value = expr;
        showFieldError(cronError, "", cronInput);
        echo();
        cronInput.focus();
      } }, label),
    ),
  );
  const zoneInput = h("input", { id: "send-timezone", value: localTimeZone(), list: "send-timezones", autocomplete: "off", spellcheck: "false", "aria-describedby": "send-timezone-help send-timezone-error" });
  const zoneError = fieldError("send-timezone-error");
  const zoneList = h("datalist", { id: "send-timezones" }, timeZones().map((z) => h("option", { value: z })));
  const cronBlock = h(
    "div",
    {},
    h(
      "div",
      { class: "grid-2" },
      h(
        "div",
        { class: "field" },
        h("label", { for: "send-cron" }, "Cron expression"),
        cronInput,
        h("p", { id: "send-cron-help", class: "help" }, "minute hour day-of-month month day-of-week"),
        cronError,
      ),
      h(
        "div",
        { class: "field" },
        h("label", { for: "send-timezone" }, "Time zone"),
        zoneInput,
        zoneList,
        h("p", { id: "send-timezone-help", class: "help" }, "The clock the expression is read on, e.g. Europe/Moscow."),
        zoneError,
      ),
    ),
    examples,
  );
  const everyInput = h("input", { id: "send-every", type: "number", min: "1", step: "1", value: "3600", inputmode: "numeric", "aria-describedby": "send-every-help send-every-error" });
  const everyError = fieldError("send-every-error");
  const everyBlock = h(
    "div",
    { class: "field", hidden: true },
    h("label", { for: "send-every" }, "Every (seconds)"),
    everyInput,
    h("p", { id: "send-every-help", class: "help" }, "Counted from when the campaign is created."),
    everyError,
  );
  const endInput = h("input", { type: "datetime-local", id: "send-end-at", "aria-describedby": "send-end-at-help send-end-at-error" });
  const endError = fieldError("send-end-at-error");
  const maxRunsInput = h("input", { type: "number", id: "send-max-runs", min: "1", step: "1", inputmode: "numeric", placeholder: "no limit", "aria-describedby": "send-max-runs-error" });
  const maxRunsError = fieldError("send-max-runs-error");
  const scheduleEcho = h("div", { id: "schedule-echo", class: "schedule-echo", "aria-live": "polite" });
  const recurringBlock = h(
    "div",
    { class: "recurring", hidden: true },
    h("div", { class: "choices" }, byCron.el, byInterval.el),
    cronBlock,
    everyBlock,
    h(
      "div",
      { class: "grid-2 bounds" },
      h("div", { class: "field" }, h("label", { for: "send-end-at" }, "End (optional)"), endInput, h("p", { id: "send-end-at-help", class: "help" }, `No run after this; in your time zone, ${localTimeZone()}.`), endError),
      h("div", { class: "field" }, h("label", { for: "send-max-runs" }, "At most this many runs (optional)"), maxRunsInput, maxRunsError),
    ),
    scheduleEcho,
  );

  // As a campaign
  const asCampaign = h("input", { type: "checkbox", id: "send-as-campaign", "aria-describedby": "send-as-campaign-help" });
  const asCampaignHelp = h("p", { id: "send-as-campaign-help", class: "help" });
  const nameInput = h("input", { id: "campaign-name", autocomplete: "off", maxlength: "200", "aria-describedby": "campaign-name-error" });
  let nameEdited = false;
  nameInput.addEventListener("input", () => (nameEdited = nameInput.value.trim() !== ""));
  const nameError = fieldError("campaign-name-error");
  const categoryInput = h("input", { id: "campaign-category", value: DEFAULT_CATEGORY, autocomplete: "off", spellcheck: "false", "aria-describedby": "campaign-category-help campaign-category-error" });
  const categoryHelp = h("p", { id: "campaign-category-help", class: "help" }, "The event type its deliveries carry: users who opted out of it are skipped.");
  const categoryError = fieldError("campaign-category-error");
  const categoryBlock = h("div", { class: "field" }, h("label", { for: "campaign-category" }, "Category"), categoryInput, categoryHelp, categoryError);
  const eventCategoryNote = h("p", { class: "help", hidden: true });
  const campaignFields = h(
    "div",
    { class: "grid-2", id: "campaign-fields" },
    h("div", { class: "field" }, h("label", { for: "campaign-name" }, "Campaign name"), nameInput, nameError),
    categoryBlock,
  );

  // Advanced
  const typeInput = h("input", { id: "send-type", value: DEFAULT_TYPE, autocomplete: "off", spellcheck: "false", "aria-describedby": "send-type-help send-type-error" });
  const typeError = fieldError("send-type-error");
  const typeBlock = h(
    "div",
    { class: "field" },
    h("label", { for: "send-type" }, "Recorded as event type"),
    typeInput,
    h("p", { id: "send-type-help", class: "help" }, "For a template: the name history shows for this send."),
    typeError,
  );
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
          h("div", { class: "choices" }, someUsers.el, allUsers.el, byTopics.el),
          h("label", { for: "send-recipients", class: "visually-hidden" }, "Recipient user ids"),
          recipientsInput,
          h("label", { for: "send-topics", class: "visually-hidden" }, "Topic keys"),
          topicsInput,
          topicChoices,
          recipientsHelp,
          recipientsError,
        ),
        h(
          "fieldset",
          { class: "card" },
          h("legend", {}, "Variables"),
          h("label", { for: "send-payload" }, "Payload (JSON)"),
          h("p", { id: "send-payload-help", class: "help" }, "What the template reads as ", h("code", {}, "payload"), ", e.g. ", h("code", {}, '{"movie": {"title": "Dune"}}'), "."),
          payloadInput,
          payloadError,
        ),
      ),
      h(
        "div",
        { class: "send-column" },
        h(
          "fieldset",
          { class: "card", id: "send-when" },
          h("legend", {}, "When"),
          h("div", { class: "choices" }, now.el, later.el, recurring.el),
          scheduleError,
          sendAtBlock,
          recurringBlock,
        ),
        h(
          "fieldset",
          { class: "card", id: "send-campaign" },
          h("legend", {}, "Campaign"),
          h("label", { class: "choice", for: "send-as-campaign" }, asCampaign, "Keep it as a campaign"),
          asCampaignHelp,
          campaignFields,
          eventCategoryNote,
        ),
        h(
          "details",
          { class: "card advanced" },
          h("summary", {}, "Advanced"),
          h("div", { class: "grid-2" }, typeBlock, h("div", { class: "field" }, h("label", { for: "send-locale" }, "Force a locale"), localeInput, localeError)),
        ),
      ),
    ),
    h("div", { class: "actions" }, submit),
    result,
  );

  setChildren(root, h("div", { class: "page-head" }, pageTitle("Send a message")), form);

  // --- behaviour ------------------------------------------------------------------------
  const mode = () => (byEventType.input.checked ? "event-type" : "template");
  const when = () => (recurring.input.checked ? "recurring" : later.input.checked ? "later" : "now");
  /** A campaign is needed for a recurring send and for all users; otherwise it is a choice. */
  const campaignRequired = () => when() === "recurring" || allUsers.input.checked;
  const isCampaign = () => campaignRequired() || asCampaign.checked;

  function selectedTemplate() {
    return knownTemplates.get(templateSelect.value) || null;
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
      else if (options.loaded) templateHelp.textContent = options.templates.length || options.more ? "" : "No templates yet: create one first.";
      channelsHelp.textContent = "Pick one or more of the template's channels.";
      if (t && !payloadEdited) {
        payloadInput.value = JSON.stringify(samplePayload(t.variables), null, 2);
      }
      if (t && !nameEdited) nameInput.value = t.name;
    } else {
      const e = selectedEventType();
      for (const box of channelBoxes) box.input.disabled = false;
      eventTypeHelp.textContent = e ? `${e.description || "No description."} Template: ${e.templateSlug ?? "none"}.${e.critical ? " Critical: ignores opt-outs and quiet hours." : ""}` : "";
      channelsHelp.textContent = e ? `Leave as is to use the type's channels (${e.channels.map(channelLabel).join(", ")}), or change them for this send.` : "";
      if (e && !nameEdited) nameInput.value = e.name;
    }

    recipientsInput.disabled = !someUsers.input.checked;
    recipientsInput.hidden = !someUsers.input.checked;
    topicsInput.disabled = !byTopics.input.checked;
    topicsInput.hidden = !byTopics.input.checked;
    topicChoices.hidden = !byTopics.input.checked || !options.topics.length;
    recipientsHelp.textContent = allUsers.input.checked
      ? "Everyone your auth service lists, fetched page by page when each run starts. Users who opted out are skipped."
      : byTopics.input.checked
        ? "The members of these topics, each once however many of the topics they are in. Users who opted out of all of them are skipped."
        : "The ids your auth service gives users, e.g. demo-manager. Up to 1,000 for a one-off send; a campaign takes up to 100,000.";

    sendAtInput.disabled = !later.input.checked;
    sendAtBlock.hidden = !later.input.checked;
    recurringBlock.hidden = when() !== "recurring";
    cronBlock.hidden = !byCron.input.checked;
    everyBlock.hidden = !byInterval.input.checked;

    const required = campaignRequired();
    if (required) asCampaign.checked = true;
    asCampaign.disabled = required;
    asCampaignHelp.textContent = required
      ? `${when() === "recurring" ? "A recurring send" : "A send to all users"} is a campaign: it is listed under Campaigns, with its runs, and can be paused or cancelled.`
      : "Optional: a campaign is listed under Campaigns with its runs and delivery counts, and can be test-sent, paused or cancelled.";
    campaignFields.hidden = !isCampaign();
    categoryBlock.hidden = mode() !== "template";
    const e = selectedEventType();
    eventCategoryNote.hidden = !isCampaign() || mode() !== "event-type";
    eventCategoryNote.textContent = e ? `Sent with the event type's template (${e.templateSlug ?? "none"}); the category is the event type, ${e.name}.` : "";
    typeBlock.hidden = isCampaign();

    submit.textContent = when() === "recurring" ? "Create campaign" : later.input.checked ? "Schedule" : "Send now";
    echo();
  }

  /** The schedule as typed, for the echo (no checks: the echo says what it cannot read). */
  function typedSchedule() {
    const schedule = {};
    if (byCron.input.checked) {
      schedule.cron = cronInput.value.trim();
      schedule.timezone = zoneInput.value.trim();
    } else {
      const every = Number(everyInput.value);
      if (Number.isInteger(every) && every >= 1) schedule.everySeconds = every;
    }
    const end = fromLocalInput(endInput.value);
    if (end) schedule.endAt = end;
    const maxRuns = Number(maxRunsInput.value);
    if (maxRunsInput.value && Number.isInteger(maxRuns) && maxRuns >= 1) schedule.maxRuns = maxRuns;
    return schedule;
  }

  /** Say the recurring schedule in words, with its next times, as it is typed. */
  function echo() {
    delete scheduleEcho.dataset.next;
    scheduleEcho.dataset.state = "";
    if (when() !== "recurring") {
      setChildren(scheduleEcho);
      return;
    }
    const schedule = typedSchedule();
    const lines = [];
    const zone = schedule.timezone;
    if (schedule.cron !== undefined) {
      if (!schedule.cron) return say("empty", h("p", {}, "Write a cron expression, or pick an example."));
      if (!isTimeZone(zone)) {
        return say("warning", h("p", {}, `“${zone}” is not a time zone this browser knows; Herald checks it when you save.`));
      }
      if (!cronWords(schedule.cron)) {
        let reason = "";
        try {
          upcoming(schedule);
        } catch (error) {
          if (error instanceof CronError) reason = error.message.replace(/^The /, "the ");
        }
        return say("warning", h("p", {}, "This page cannot read this expression", reason ? `: ${reason}` : ".", " Herald checks it when you save."));
      }
    } else if (!schedule.everySeconds) {
      return say("warning", h("p", {}, "Give the interval as a whole number of seconds, 1 or more."));
    }
    lines.push(h("p", { class: "echo-words" }, h("strong", {}, `${describeSchedule(schedule)}.`)));
    const { times, note } = upcoming(schedule);
    const local = localTimeZone();
    if (times.length) {
      scheduleEcho.dataset.next = times[0].toISOString();
      const yours = zone && zone !== local ? ` (${formatInZone(times[0])} your time)` : "";
      lines.push(h("p", { class: "echo-next" }, "Next: ", h("time", { datetime: times[0].toISOString() }, formatInZone(times[0], zone)), yours));
      if (times.length > 1) lines.push(h("p", { class: "echo-then muted" }, `Then: ${times.slice(1).map((t) => formatInZone(t, zone)).join("; ")}.`));
    }
    if (note) lines.push(h("p", { class: "echo-note" }, note));
    return say(note ? "warning" : "ok", lines);
  }

  function say(state, ...children) {
    scheduleEcho.dataset.state = state;
    setChildren(scheduleEcho, ...children);
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

  for (const r of [byTemplate, byEventType, now, later, recurring, someUsers, allUsers, byTopics, byCron, byInterval]) {
    r.input.addEventListener("change", () => {
      if (r === byEventType) checkEventTypeChannels();
      refresh();
    });
  }
  asCampaign.addEventListener("change", refresh);
  for (const input of [cronInput, zoneInput, everyInput, endInput, maxRunsInput]) input.addEventListener("input", echo);
  templateSelect.addEventListener("change", () => {
    payloadEdited = payloadEdited && payloadInput.value.trim() !== "{}";
    refresh();
  });
  eventTypeSelect.addEventListener("change", () => {
    checkEventTypeChannels();
    refresh();
  });

  // The key being typed: the text after the last separator, while the field does not end in
  // one ("rea" in "news, rea").
  function typedTopic() {
    const value = topicsInput.value;
    return /[\s,;]$/.test(value) ? "" : (splitIds(value).pop() || "");
  }

  let shownTopics = [];
  function showTopicChoices(topics, more, typed) {
    shownTopics = topics;
    setChildren(
      topicChoices,
      h("span", { class: "help" }, topics.length ? "Add:" : `No topic matches “${typed}”.`),
      topics.map((t) =>
        h("button", { type: "button", class: "btn chip-button", "data-topic": t.key, title: `${t.name}: ${t.memberCount} members`, onclick: () => {
          const keys = splitIds(topicsInput.value);
          // A key being typed is completed; otherwise the topic is added.
          if (typedTopic() && !shownTopics.some((o) => o.key === keys[keys.length - 1])) keys.pop();
          if (!keys.includes(t.key)) keys.push(t.key);
          topicsInput.value = keys.join(", ");
          topicsInput.focus();
          searchTopics();
        } }, t.key),
      ),
      more ? h("span", { class: "help" }, typed ? "More match: type more of the key." : "Type to search the others.") : null,
    );
  }

  let topicSearch = 0;
  // Suggestions follow what is typed: the API's search over every topic's key and name.
  async function searchTopics() {
    const typed = typedTopic();
    const asked = ++topicSearch;
    try {
      const data = await graphql(TOPIC_SEARCH, { search: typed || null });
      if (disposed || asked !== topicSearch) return;
      showTopicChoices(data.topics.edges.map((e) => e.node), data.topics.pageInfo.hasNextPage, typed);
    } catch {
      // The suggestions are a convenience: the keys typed are checked when the form is sent.
    }
  }
  const searchTopicsLater = debounce(searchTopics, 200);
  topicsInput.addEventListener("input", searchTopicsLater);

  function showTemplates(list, more, typed, choose) {
    for (const t of list) knownTemplates.set(t.slug, t);
    const chosen = knownTemplates.get(choose ?? templateSelect.value);
    // The template chosen stays in the list while a search shows others.
    const shown = chosen && !list.some((t) => t.slug === chosen.slug) ? [chosen, ...list] : list;
    setChildren(
      templateSelect,
      h("option", { value: "" }, shown.length ? "Choose a template…" : options.more ? "No template matches" : "No templates yet"),
      shown.map((t) => h("option", { value: t.slug, selected: t.slug === chosen?.slug }, `${t.name} (${t.slug})`)),
    );
    if (!list.length && typed) templateSearchHelp.textContent = `No template matches “${typed}”.`;
    else if (more) templateSearchHelp.textContent = typed ? `The first ${list.length} that match: type more to narrow them.` : `The first ${list.length} are listed: type to search the others.`;
    else templateSearchHelp.textContent = typed ? `${list.length} match.` : "";
  }

  let templateQuery = 0;
  async function searchTemplates() {
    const typed = templateSearch.value.trim();
    const asked = ++templateQuery;
    try {
      const data = await graphql(TEMPLATE_SEARCH, { search: typed || null });
      if (disposed || asked !== templateQuery) return;
      showTemplates(data.templates.edges.map((e) => e.node), data.templates.pageInfo.hasNextPage, typed);
      refresh();
    } catch (error) {
      if (disposed || asked !== templateQuery) return;
      templateSearchHelp.textContent = `Templates could not be searched: ${describeError(error)}`;
    }
  }
  const searchTemplatesLater = debounce(searchTemplates, 200);
  templateSearch.addEventListener("input", searchTemplatesLater);

  async function loadOptions() {
    try {
      const data = await graphql(OPTIONS);
      if (disposed) return;
      options = {
        templates: data.templates.edges.map((e) => e.node),
        more: data.templates.pageInfo.hasNextPage,
        eventTypes: data.eventTypes,
        topics: data.topics.edges.map((e) => e.node),
        moreTopics: data.topics.pageInfo.hasNextPage,
        loaded: true,
      };
    } catch (error) {
      if (disposed) return;
      setBanner(banner, error, { retry: loadOptions });
      return;
    }
    setBanner(banner, null);
    if (query.template && !options.templates.some((t) => t.slug === query.template)) {
      // Named in the address but past the first list: asked for on its own.
      try {
        const named = (await graphql(TEMPLATE, { slug: query.template })).template;
        if (disposed) return;
        if (named) knownTemplates.set(named.slug, named);
      } catch {
        // Not found or not readable: the list is shown without it, as for an unknown slug.
      }
    }
    templateSearchBlock.hidden = !options.more;
    showTemplates(options.templates, options.more, "", query.template);
    setChildren(
      eventTypeSelect,
      h("option", { value: "" }, "Choose an event type…"),
      options.eventTypes.map((e) => h("option", { value: e.name, selected: e.name === query.eventType }, e.name)),
    );
    showTopicChoices(options.topics, options.moreTopics, "");
    checkEventTypeChannels();
    refresh();
  }

  const SLOTS = [
    [templateError, templateSelect],
    [eventTypeError, eventTypeSelect],
    [channelsError, null],
    [recipientsError, recipientsInput],
    [payloadError, payloadInput],
    [scheduleError, null],
    [sendAtError, sendAtInput],
    [cronError, cronInput],
    [zoneError, zoneInput],
    [everyError, everyInput],
    [endError, endInput],
    [maxRunsError, maxRunsInput],
    [nameError, nameInput],
    [categoryError, categoryInput],
    [typeError, typeInput],
    [localeError, localeInput],
  ];

  function clearErrors() {
    setBanner(banner, null);
    for (const [slot, input] of SLOTS) showFieldError(slot, "", input);
  }

  /** Put an error next to its field; returns false when it belongs to no field. */
  function placeError(error) {
    const field = error.field || "";
    const text = describeError(error);
    const place = (slot, input) => {
      showFieldError(slot, text, input);
      if (input && !input.disabled && !input.hidden) input.focus();
      else slot.scrollIntoView({ block: "nearest" });
      return true;
    };
    const advanced = () => (form.querySelector("details.advanced").open = true);
    if (field === "type") {
      if (mode() === "event-type") return place(eventTypeError, eventTypeSelect);
      advanced();
      return place(typeError, typeInput);
    }
    if (field === "templateSlug") return mode() === "template" ? place(templateError, templateSelect) : place(eventTypeError, eventTypeSelect);
    if (field === "channels") return place(channelsError, channelBoxes.find((b) => !b.input.disabled)?.input);
    if (field === "userIds" || field === "topics" || field === "audience" || field.startsWith("audience.")) {
      return place(recipientsError, allUsers.input.checked ? allUsers.input : byTopics.input.checked ? topicsInput : recipientsInput);
    }
    if (field === "payload" || field.startsWith("payload.") || field.startsWith("payload[")) return place(payloadError, payloadInput);
    if (field === "sendAt" || field === "schedule.at") return place(sendAtError, sendAtInput);
    if (field === "schedule.cron") return place(cronError, cronInput);
    if (field === "schedule.timezone") return place(zoneError, zoneInput);
    if (field === "schedule.everySeconds") return place(everyError, everyInput);
    if (field === "schedule.endAt") return place(endError, endInput);
    if (field === "schedule.maxRuns") return place(maxRunsError, maxRunsInput);
    if (field === "schedule" || field.startsWith("schedule.")) return place(scheduleError, now.input);
    if (field === "name") return place(nameError, nameInput);
    if (field === "category") return mode() === "template" ? place(categoryError, categoryInput) : place(eventTypeError, eventTypeSelect);
    if (field === "locale") {
      advanced();
      return place(localeError, localeInput);
    }
    return false;
  }

  function readPayload() {
    const text = payloadInput.value.trim();
    if (!text) return undefined;
    let payload;
    try {
      payload = JSON.parse(text);
    } catch (error) {
      throw validationError(`The payload is not valid JSON: ${error.message}`, "payload");
    }
    if (typeof payload !== "object" || payload === null || Array.isArray(payload)) {
      throw validationError('The payload must be a JSON object, like {"name": "value"}.', "payload");
    }
    return payload;
  }

  function readChannels() {
    const picked = channelBoxes.filter((b) => b.input.checked).map((b) => b.value);
    if (!picked.length) throw validationError("Pick at least one channel.", "channels");
    return picked;
  }

  function readSendAt(field) {
    const at = fromLocalInput(sendAtInput.value);
    if (!at) throw validationError("Pick the date and time to send at.", field);
    if (new Date(at).getTime() < Date.now()) throw validationError("That time has passed: pick one in the future, or send now.", field);
    return at;
  }

  const recipientIds = () => splitIds(recipientsInput.value);

  function topicKeys() {
    const keys = splitIds(topicsInput.value);
    if (!keys.length) throw validationError("Name one or more topics, or pick them below.", "topics");
    return keys;
  }

  /** The EventInput from the form; throws ApiError (with `field`) for what the page can check itself. */
  function readEventInput() {
    const input = {};
    if (mode() === "template") {
      if (!templateSelect.value) throw validationError("Choose a template to send.", "templateSlug");
      input.type = typeInput.value.trim();
      input.templateSlug = templateSelect.value;
      input.channels = readChannels();
    } else {
      const e = selectedEventType();
      if (!e) throw validationError("Choose an event type to send.", "type");
      input.type = e.name;
      const picked = readChannels();
      const same = picked.length === e.channels.length && picked.every((c) => e.channels.includes(c));
      if (!same) input.channels = picked;
    }
    if (byTopics.input.checked) input.topics = topicKeys();
    else input.userIds = recipientIds();
    const payload = readPayload();
    if (payload !== undefined) input.payload = payload;
    if (later.input.checked) input.sendAt = readSendAt("sendAt");
    if (localeInput.value.trim()) input.locale = localeInput.value.trim();
    return input;
  }

  function readWholeNumber(input, field, what) {
    const text = input.value.trim();
    if (!text) return undefined;
    const value = Number(text);
    if (!Number.isInteger(value) || value < 1) throw validationError(`${what} is a whole number, 1 or more.`, field);
    return value;
  }

  /** The CampaignInput from the form. The API checks the rest (the cron, the zone, the audience). */
  function readCampaignInput() {
    const input = { name: nameInput.value.trim() };
    if (mode() === "template") {
      if (!templateSelect.value) throw validationError("Choose a template to send.", "templateSlug");
      input.templateSlug = templateSelect.value;
      input.category = categoryInput.value.trim() || DEFAULT_CATEGORY;
    } else {
      const e = selectedEventType();
      if (!e) throw validationError("Choose an event type to send.", "type");
      if (!e.templateSlug) throw validationError(`The event type ${e.name} has no template of its own, and a campaign sends a template: choose one under “A template”.`, "type");
      input.templateSlug = e.templateSlug;
      input.category = e.name;
    }
    input.channels = readChannels();
    input.audience = allUsers.input.checked ? { allUsers: true } : byTopics.input.checked ? { topics: topicKeys() } : { userIds: recipientIds() };
    const payload = readPayload();
    if (payload !== undefined) input.payload = payload;
    if (localeInput.value.trim()) input.locale = localeInput.value.trim();
    if (when() === "later") input.schedule = { at: readSendAt("schedule.at") };
    if (when() === "recurring") {
      const schedule = {};
      if (byCron.input.checked) {
        schedule.cron = cronInput.value.trim();
        if (!schedule.cron) throw validationError("Write a cron expression, or pick an example.", "schedule.cron");
        schedule.timezone = zoneInput.value.trim();
      } else {
        schedule.everySeconds = readWholeNumber(everyInput, "schedule.everySeconds", "The interval");
        if (schedule.everySeconds === undefined) throw validationError("Give the interval in seconds.", "schedule.everySeconds");
      }
      if (endInput.value) {
        const end = fromLocalInput(endInput.value);
        if (!end) throw validationError("Pick a date and time for the end, or leave it empty.", "schedule.endAt");
        schedule.endAt = end;
      }
      const maxRuns = readWholeNumber(maxRunsInput, "schedule.maxRuns", "The maximum number of runs");
      if (maxRuns !== undefined) schedule.maxRuns = maxRuns;
      input.schedule = schedule;
    }
    return input;
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors();
    setChildren(result);
    const campaign = isCampaign();
    let input;
    try {
      input = campaign ? readCampaignInput() : readEventInput();
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      placeError(error);
      return;
    }
    const label = campaign ? (when() === "now" ? "Starting…" : "Creating…") : input.sendAt ? "Scheduling…" : "Sending…";
    await withProgress(submit, label, async () => {
      try {
        if (campaign) {
          const created = unwrap((await graphql(CREATE_CAMPAIGN, { input })).createCampaign, "Campaign");
          if (!disposed) showCampaign(created);
        } else {
          const accepted = unwrap((await graphql(SEND, { input })).sendEvent, "EventAccepted");
          if (!disposed) showAccepted(accepted, input);
        }
      } catch (error) {
        if (!(error instanceof ApiError)) throw error;
        if (disposed) return;
        if (!placeError(error)) setBanner(banner, error);
      }
    });
  });

  function showAccepted(accepted, input) {
    const count = input.userIds?.length ?? 0;
    const who = input.topics ? `the members of ${input.topics.join(", ")}` : `${count} recipient${count === 1 ? "" : "s"}`;
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

  function showCampaign(campaign) {
    const zone = campaign.schedule.cron ? campaign.schedule.timezone : undefined;
    const state = { RUNNING: "sending now", SCHEDULED: "scheduled", COMPLETED: "completed", DRAFT: "saved as a draft" }[campaign.status] ?? campaign.status.toLowerCase();
    const next = campaign.nextRunAt
      ? h(
          "p",
          { class: "created-next" },
          "Next run, as Herald scheduled it: ",
          h("time", { id: "created-next-run", datetime: campaign.nextRunAt }, formatInZone(campaign.nextRunAt, zone)),
          zone && zone !== localTimeZone() ? ` (${formatInZone(campaign.nextRunAt)} your time)` : "",
          ".",
        )
      : h("p", { class: "created-next" }, campaign.status === "RUNNING" ? "Its run has started; follow it on the campaign's page." : "No further runs are planned.");
    setChildren(
      result,
      h(
        "div",
        { class: "alert alert-success", role: "status", id: "campaign-created", "data-campaign-id": campaign.id },
        h("p", {}, h("strong", {}, `Campaign “${campaign.name}” created: ${state}. `), campaignBadge(campaign.status)),
        h("p", {}, `${capitalize(describeSchedule(campaign.schedule))}.`),
        next,
        h(
          "p",
          { class: "actions" },
          h("a", { class: "btn small", href: `#/campaigns/${encodeURIComponent(campaign.id)}`, id: "created-campaign-link" }, "Open the campaign"),
          h("a", { class: "btn small", href: "#/campaigns" }, "All campaigns"),
        ),
      ),
    );
    ctx.toast(campaign.status === "RUNNING" ? "Campaign started." : "Campaign created.");
  }

  refresh();
  templateHelp.replaceChildren(spinner("Loading templates and event types…"));
  loadOptions();
  return () => {
    disposed = true;
    searchTopicsLater.cancel();
    searchTemplatesLater.cancel();
  };
}
