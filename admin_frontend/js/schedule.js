// A campaign's schedule in words and times, the same on the send form (as it is typed) and on
// the campaign screens (as the API stored it): {at, cron, timezone, everySeconds, endAt, maxRuns}.

import { CronError, capitalize, describeCron, isTimeZone, joinWords, nextTimes, parseCron } from "./cron.js";

export { capitalize, isTimeZone };

const zonedFormats = new Map();

/** "Mon, Jun 2, 2025, 09:00 GMT+3": a time as the clock reads in `zone` (the browser's by default). */
export function formatInZone(value, zone) {
  if (!value) return "—";
  const date = value instanceof Date ? value : new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  const key = zone || "";
  let format = zonedFormats.get(key);
  if (!format) {
    const options = { weekday: "short", year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", timeZoneName: "short" };
    if (zone) options.timeZone = zone;
    format = new Intl.DateTimeFormat(undefined, options);
    zonedFormats.set(key, format);
  }
  return format.format(date);
}

const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
const UNITS = [
  ["year", 365 * 86400],
  ["month", 30 * 86400],
  ["week", 7 * 86400],
  ["day", 86400],
  ["hour", 3600],
  ["minute", 60],
  ["second", 1],
];

/** "in 3 days", "2 hours ago" */
export function fromNow(value, now = Date.now()) {
  const date = value instanceof Date ? value : new Date(value);
  const seconds = (date.getTime() - now) / 1000;
  for (const [unit, size] of UNITS) {
    if (Math.abs(seconds) >= size || unit === "second") return relative.format(Math.round(seconds / size), unit);
  }
  return "";
}

/** 90 -> "1 minute 30 seconds", 3600 -> "hour", 7200 -> "2 hours" (after "every"). */
export function everyWords(seconds) {
  const n = Number(seconds);
  const parts = [];
  let rest = n;
  for (const [unit, size] of [["day", 86400], ["hour", 3600], ["minute", 60], ["second", 1]]) {
    const count = Math.floor(rest / size);
    if (count) parts.push(`${count} ${unit}${count === 1 ? "" : "s"}`);
    rest -= count * size;
  }
  if (parts.length === 1 && parts[0].startsWith("1 ")) return parts[0].slice(2);
  return joinWords(parts);
}

/** The cron expression in words, or null when the page cannot read it (the API may). */
export function cronWords(cron) {
  try {
    return describeCron(cron);
  } catch (error) {
    if (error instanceof CronError) return null;
    throw error;
  }
}

/** What goes after the schedule: ", until Jun 1, 2027, at most 10 runs". */
function boundsWords(schedule, zone) {
  const bounds = [];
  if (schedule.endAt) bounds.push(`until ${formatInZone(schedule.endAt, zone)}`);
  if (schedule.maxRuns) bounds.push(`at most ${schedule.maxRuns} run${schedule.maxRuns === 1 ? "" : "s"}`);
  return bounds.length ? `, ${bounds.join(", ")}` : "";
}

/** A stored (or typed) schedule in one sentence, capitalised; a draft runs once when started. */
export function describeSchedule(schedule, { status } = {}) {
  const once = status === "DRAFT" ? "Once, when it is started" : "Once, right away";
  if (!schedule) return once;
  if (schedule.cron) {
    const zone = schedule.timezone || "UTC";
    const words = cronWords(schedule.cron);
    const what = words ? `${capitalize(words)}, ${zone} time` : `On the cron schedule “${schedule.cron}”, ${zone} time`;
    return what + boundsWords(schedule, zone);
  }
  if (schedule.everySeconds) return `Every ${everyWords(schedule.everySeconds)}${boundsWords(schedule)}`;
  if (schedule.at) return `Once, at ${formatInZone(schedule.at)}`;
  return once;
}

/**
 * The next times of a recurring schedule as typed, computed in the browser: {times, note}
 * where `note` explains an empty list. Throws CronError for what cannot be read.
 */
export function upcoming(schedule, { count = 3, now = new Date() } = {}) {
  let times;
  if (schedule.cron) {
    times = nextTimes(parseCron(schedule.cron), schedule.timezone || "UTC", { from: now, count });
  } else if (schedule.everySeconds) {
    // Counted from when the campaign starts, that is from the moment it is created.
    times = Array.from({ length: count }, (_, i) => new Date(now.getTime() + (i + 1) * schedule.everySeconds * 1000));
  } else {
    return { times: [], note: "" };
  }
  let note = times.length ? "" : "It matches no date in the next five years.";
  if (schedule.endAt) {
    const end = new Date(schedule.endAt).getTime();
    const before = times.filter((t) => t.getTime() <= end);
    if (!before.length && times.length) note = "The end date comes before the first run: it would never run.";
    times = before;
  }
  if (schedule.maxRuns) times = times.slice(0, schedule.maxRuns);
  return { times, note };
}
