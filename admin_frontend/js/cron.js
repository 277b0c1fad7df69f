// 5-field cron expressions (minute hour day-of-month month day-of-week) in the browser: parse,
// say in words, and find the next times in an IANA time zone. The server (croniter) decides
// what a campaign does; this module only echoes it back to the person typing, so it covers the
// common patterns (numbers, names, *, lists, ranges, steps) and says so when it cannot.
//
// Wall-clock times in a zone come from Intl.DateTimeFormat, so no zone data ships with the page.

export class CronError extends Error {
  constructor(message) {
    super(message);
    this.name = "CronError";
  }
}

const DAY_NAMES = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];
const MONTH_NAMES = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];
const DAY_ABBR = DAY_NAMES.map((d) => d.slice(0, 3).toLowerCase());
const MONTH_ABBR = MONTH_NAMES.map((m) => m.slice(0, 3).toLowerCase());

const FIELDS = [
  { key: "minute", label: "minute", min: 0, max: 59 },
  { key: "hour", label: "hour", min: 0, max: 23 },
  { key: "day", label: "day of the month", min: 1, max: 31 },
  { key: "month", label: "month", min: 1, max: 12, names: MONTH_ABBR, base: 1 },
  { key: "weekday", label: "day of the week", min: 0, max: 7, names: DAY_ABBR, base: 0 },
];

function parseValue(text, field) {
  const lower = text.toLowerCase();
  if (field.names) {
    const index = field.names.indexOf(lower);
    if (index >= 0) return index + field.base;
  }
  if (!/^\d+$/.test(text)) throw new CronError(`“${text}” is not a ${field.label}.`);
  const value = Number(text);
  if (value < field.min || value > field.max) {
    throw new CronError(`The ${field.label} ${value} is out of range (${field.min}-${field.max}).`);
  }
  return value;
}

/** One field: its parts ({start, end, step, any}) and the sorted values they allow. */
function parseField(text, field) {
  const parts = [];
  const values = new Set();
  for (const piece of text.split(",")) {
    if (!piece) throw new CronError(`The ${field.label} list has an empty item.`);
    const [range, stepText, extra] = piece.split("/");
    if (extra !== undefined) throw new CronError(`The ${field.label} “${piece}” has more than one step.`);
    let step = 1;
    if (stepText !== undefined) {
      if (!/^\d+$/.test(stepText) || Number(stepText) < 1) throw new CronError(`The ${field.label} step “${stepText}” is not a whole number of 1 or more.`);
      step = Number(stepText);
    }
    let start;
    let end;
    const any = range === "*";
    if (any) {
      start = field.min;
      end = field.key === "weekday" ? 6 : field.max;
    } else if (range.includes("-")) {
      const [a, b, more] = range.split("-");
      if (more !== undefined || !a || !b) throw new CronError(`“${range}” is not a ${field.label} range.`);
      start = parseValue(a, field);
      end = parseValue(b, field);
      if (start > end) throw new CronError(`The ${field.label} range ${range} runs backwards.`);
    } else {
      start = parseValue(range, field);
      // "5/15" means from 5 to the end, every 15.
      end = stepText !== undefined ? field.max : start;
    }
    parts.push({ start, end, step, any, single: !any && start === end });
    for (let v = start; v <= end; v += step) values.add(field.key === "weekday" && v === 7 ? 0 : v);
  }
  return { text, parts, any: text === "*", values: [...values].sort((a, b) => a - b) };
}

/** Parse "m h dom mon dow"; throws CronError with a sentence for a person. */
export function parseCron(expression) {
  const text = String(expression ?? "").trim();
  const pieces = text.split(/\s+/).filter(Boolean);
  if (pieces.length !== 5) {
    throw new CronError(`A cron expression has 5 fields (minute hour day month weekday); this one has ${pieces.length}.`);
  }
  const cron = { text: pieces.join(" ") };
  FIELDS.forEach((field, i) => (cron[field.key] = parseField(pieces[i], field)));
  return cron;
}

// --- in words --------------------------------------------------------------------------------

const pad = (n) => String(n).padStart(2, "0");
const clock = (hour, minute) => `${pad(hour)}:${pad(minute)}`;

export function capitalize(text) {
  return text ? text[0].toUpperCase() + text.slice(1) : text;
}

/** "a", "a and b", "a, b and c" */
export function joinWords(words) {
  if (words.length <= 1) return words.join("");
  return `${words.slice(0, -1).join(", ")} and ${words[words.length - 1]}`;
}

function ordinal(n) {
  const tens = n % 100;
  if (tens >= 11 && tens <= 13) return `${n}th`;
  return `${n}${{ 1: "st", 2: "nd", 3: "rd" }[n % 10] || "th"}`;
}

/** The values when the field is a plain list of numbers (no ranges or steps), else null. */
function plainValues(field) {
  return field.parts.every((p) => p.single) ? field.values : null;
}

function onlyPart(field) {
  return field.parts.length === 1 ? field.parts[0] : null;
}

function weekdayWords(field) {
  const days = [...field.values].sort((a, b) => ((a + 6) % 7) - ((b + 6) % 7)); // Monday first
  const names = days.map((d) => DAY_NAMES[d]);
  const key = days.join(",");
  if (key === "1,2,3,4,5") return { every: "every weekday (Monday to Friday)", on: "on weekdays (Monday to Friday)" };
  if (key === "6,0") return { every: "every Saturday and Sunday", on: "at weekends" };
  const part = onlyPart(field);
  if (part && !part.any && !part.single && part.step === 1 && part.end !== 7) {
    const range = `${DAY_NAMES[part.start]} to ${DAY_NAMES[part.end]}`;
    return { every: `every day from ${range}`, on: `from ${range}` };
  }
  return { every: `every ${joinWords(names)}`, on: `on ${joinWords(names.map((n) => `${n}s`))}` };
}

function dayWords(field, monthSuffix) {
  const part = onlyPart(field);
  if (part && !part.single && part.step > 1 && (part.any || part.end === 31)) {
    return `every ${part.step} days from the ${ordinal(part.start)} ${monthSuffix}`;
  }
  if (part && !part.any && !part.single && part.step === 1) {
    return `from the ${ordinal(part.start)} to the ${ordinal(part.end)} ${monthSuffix}`;
  }
  return `on the ${joinWords(field.values.map(ordinal))} ${monthSuffix}`;
}

function monthWords(field) {
  const part = onlyPart(field);
  if (part && !part.any && !part.single && part.step === 1) return `from ${MONTH_NAMES[part.start - 1]} to ${MONTH_NAMES[part.end - 1]}`;
  return `in ${joinWords(field.values.map((m) => MONTH_NAMES[m - 1]))}`;
}

/** "at 09:00", "every hour at :30", "every 15 minutes from 09:00 to 17:45"... */
function timeWords(cron) {
  const { minute, hour } = cron;
  const minutes = plainValues(minute);
  const hours = plainValues(hour);
  if (minutes && hours && minutes.length * hours.length <= 6) {
    const times = hours.flatMap((h) => minutes.map((m) => clock(h, m)));
    return { fixed: true, text: `at ${joinWords(times)}` };
  }
  const first = minute.values[0];
  const last = minute.values[minute.values.length - 1];
  const hourPart = onlyPart(hour);
  if (minutes && minutes.length === 1) {
    const m = minutes[0];
    if (hour.any) return { fixed: false, text: m === 0 ? "every hour, on the hour" : `every hour at :${pad(m)}` };
    if (hourPart && !hourPart.single) {
      const lastHour = hour.values[hour.values.length - 1];
      const every = hourPart.step === 1 ? "every hour" : `every ${hourPart.step} hours`;
      return { fixed: false, text: `${every} from ${clock(hourPart.start, m)} to ${clock(lastHour, m)}` };
    }
    return { fixed: false, text: `at :${pad(m)} past ${joinWords(hour.values.map((h) => clock(h, 0)))}` };
  }
  let text;
  const minutePart = onlyPart(minute);
  if (minute.any) text = "every minute";
  else if (minutePart && !minutePart.single && (minutePart.any || (minutePart.start === 0 && minutePart.end === 59))) text = `every ${minutePart.step} minutes`;
  else if (minutePart && !minutePart.single) text = `every ${minutePart.step === 1 ? "" : `${minutePart.step} `}minute${minutePart.step === 1 ? "" : "s"} from :${pad(minutePart.start)} to :${pad(last)}`;
  else text = `at minutes ${joinWords(minute.values.map(String))}`;
  if (hour.any) {
    if (!minute.any && !(minutePart && minutePart.any) && !(minutePart && minutePart.start === 0 && minutePart.end === 59)) text += " of every hour";
    return { fixed: false, text };
  }
  if (hourPart && hourPart.single) return { fixed: false, text: `${text} from ${clock(hourPart.start, first)} to ${clock(hourPart.start, last)}` };
  if (hourPart && hourPart.step === 1) return { fixed: false, text: `${text} from ${clock(hourPart.start, first)} to ${clock(hourPart.end, last)}` };
  return { fixed: false, text: `${text} during the hours starting ${joinWords(hour.values.map((h) => clock(h, 0)))}` };
}

/**
 * The expression in words, lower-case: "every Monday at 09:00", "every 15 minutes on
 * weekdays (Monday to Friday)". Throws CronError for an expression it cannot read.
 */
export function describeCron(expression) {
  const cron = typeof expression === "string" ? parseCron(expression) : expression;
  const time = timeWords(cron);
  const { day, month, weekday } = cron;
  const months = month.any ? null : monthWords(month);
  const monthSuffix = month.any ? "of every month" : `of ${joinWords(month.values.map((m) => MONTH_NAMES[m - 1]))}`;
  const days = [];
  if (!day.any) days.push(dayWords(day, monthSuffix));
  if (!weekday.any) days.push(time.fixed && day.any ? weekdayWords(weekday).every : weekdayWords(weekday).on);
  // With both restricted, cron runs on either (Vixie cron, croniter): "on the 1st ... and on Mondays".
  const dayText = days.length === 2 ? `${days[0]} and ${weekdayWords(weekday).on}` : days[0];
  const inMonths = day.any && months ? ` ${months}` : "";
  if (time.fixed) {
    if (!dayText) return `every day${inMonths} ${time.text}`;
    return `${dayText}${weekday.any ? "" : inMonths} ${time.text}`;
  }
  return [time.text, dayText, day.any ? months : null].filter(Boolean).join(", ");
}

// --- next times in a zone ------------------------------------------------------------------

const formatters = new Map();

function wallFormatter(zone) {
  let formatter = formatters.get(zone);
  if (!formatter) {
    formatter = new Intl.DateTimeFormat("en-US", {
      timeZone: zone,
      hourCycle: "h23",
      year: "numeric",
      month: "numeric",
      day: "numeric",
      hour: "numeric",
      minute: "numeric",
      second: "numeric",
    });
    formatters.set(zone, formatter);
  }
  return formatter;
}

/** True when the browser knows the IANA zone. */
export function isTimeZone(zone) {
  if (!zone || typeof zone !== "string") return false;
  try {
    wallFormatter(zone);
    return true;
  } catch {
    return false;
  }
}

/** The wall clock in `zone` at instant `ms`: {year, month, day, hour, minute, second}. */
export function wallClock(ms, zone) {
  const out = {};
  for (const { type, value } of wallFormatter(zone).formatToParts(new Date(ms))) {
    if (type !== "literal") out[type] = Number(value);
  }
  return out;
}

function offsetAt(ms, zone) {
  const w = wallClock(ms, zone);
  return Date.UTC(w.year, w.month - 1, w.day, w.hour, w.minute, w.second) - Math.floor(ms / 1000) * 1000;
}

/** The instant a wall-clock time in `zone` happens, or null in a daylight-saving gap. */
export function zonedTime(year, month, day, hour, minute, zone) {
  const guess = Date.UTC(year, month - 1, day, hour, minute);
  let ms = guess - offsetAt(guess, zone);
  const second = offsetAt(ms, zone);
  if (guess - second !== ms) ms = guess - second;
  const w = wallClock(ms, zone);
  if (w.year !== year || w.month !== month || w.day !== day || w.hour !== hour || w.minute !== minute) return null;
  return ms;
}

/**
 * The next `count` times after `from` (a Date) that the expression matches, read in `zone`,
 * as Dates; fewer (or none) if it matches nothing within `years` years (31 February).
 */
export function nextTimes(expression, zone, { from = new Date(), count = 1, years = 5 } = {}) {
  const cron = typeof expression === "string" ? parseCron(expression) : expression;
  if (!isTimeZone(zone)) throw new CronError(`“${zone}” is not a time zone.`);
  const after = from.getTime();
  const now = wallClock(after, zone);
  const months = new Set(cron.month.values);
  const days = new Set(cron.day.values);
  const weekdays = new Set(cron.weekday.values);
  const either = !cron.day.any && !cron.weekday.any;
  const found = [];
  for (let offset = 0; offset <= years * 366 && found.length < count; offset++) {
    const date = new Date(Date.UTC(now.year, now.month - 1, now.day + offset));
    const year = date.getUTCFullYear();
    const month = date.getUTCMonth() + 1;
    const day = date.getUTCDate();
    if (!months.has(month)) continue;
    const byDay = days.has(day);
    const byWeekday = weekdays.has(date.getUTCDay());
    if (either ? !(byDay || byWeekday) : !(byDay && byWeekday)) continue;
    for (const hour of cron.hour.values) {
      if (offset === 0 && hour < now.hour) continue;
      for (const minute of cron.minute.values) {
        if (offset === 0 && hour === now.hour && minute <= now.minute) continue;
        const ms = zonedTime(year, month, day, hour, minute, zone);
        if (ms === null || ms <= after) continue;
        found.push(new Date(ms));
        if (found.length === count) return found;
      }
    }
  }
  return found;
}
