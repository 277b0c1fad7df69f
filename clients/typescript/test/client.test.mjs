// The TypeScript client against a live Herald (HERALD_URL, HERALD_TOKEN: a service and manager
// token; tests/clients/test_typescript_client.py starts the API with a rate limit of two events
// at once, then two a second) and against a stand-in that answers UNAVAILABLE, then 503.
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { randomUUID } from "node:crypto";
import { test } from "node:test";

import { HeraldClient } from "../dist/index.js";

const url = process.env.HERALD_URL;
const token = process.env.HERALD_TOKEN;
if (!url || !token) throw new Error("HERALD_URL and HERALD_TOKEN name the live API and its token");
const slug = () => `ts-client-${randomUUID().slice(0, 8)}`;

function recording() {
  const bodies = [];
  const recorder = async (input, init) => {
    bodies.push(JSON.parse(init.body));
    return fetch(input, init);
  };
  return { bodies, fetch: recorder };
}

test("events get their own keys and wait out the rate limit", async () => {
  const sent = recording();
  const herald = new HeraldClient({ url, token, fetch: sent.fetch });
  const template = slug();
  const created = await herald.createTemplate({
    slug: template,
    name: "Welcome",
    content: [{ channel: "IN_APP", title: "Hi", body: "Hello {{ user.first_name }}" }],
  });
  assert.equal(created.__typename, "Template");
  assert.deepEqual(created.__typename === "Template" && created.variables, ["user.first_name"]);

  const event = { type: "ts_client_test", userIds: ["u-1"], templateSlug: template, channels: ["IN_APP"] };
  const started = performance.now();
  const results = [];
  for (let i = 0; i < 3; i++) results.push(await herald.sendEvent(event));
  const waited = (performance.now() - started) / 1000;

  assert.deepEqual(results.map((r) => r.__typename), ["EventAccepted", "EventAccepted", "EventAccepted"]);
  assert.equal(new Set(results.map((r) => r.__typename === "EventAccepted" && r.eventId)).size, 3);
  const keys = sent.bodies
    .filter((body) => body.query.includes("mutation SendEvent("))
    .map((body) => body.variables.input.idempotencyKey);
  // The third was refused once (RATE_LIMITED) and sent again with the same key.
  assert.equal(keys.length, 4, JSON.stringify(keys));
  assert.equal(new Set(keys).size, 3);
  assert.equal(keys[2], keys[3]);
  assert.ok(waited >= 0.3, `waited ${waited} s`);
});

test("a given key is kept and the duplicate reported; errors are typed results", async () => {
  const herald = new HeraldClient({ url, token: () => token });
  const missing = await herald.sendEvent({ type: "ts_client_test", userIds: ["u-2"], templateSlug: slug(), channels: ["IN_APP"] });
  assert.equal(missing.__typename, "NotFoundError");
  assert.equal(missing.__typename === "NotFoundError" && missing.code, "NOT_FOUND");

  const template = slug();
  await herald.createTemplate({ slug: template, name: "Order", content: [{ channel: "IN_APP", title: "Order", body: "Paid" }] });
  const event = {
    type: "ts_client_test",
    userIds: ["u-2"],
    templateSlug: template,
    channels: ["IN_APP"],
    idempotencyKey: `order-${randomUUID()}`,
  };
  const first = await herald.sendEvent(event);
  const again = await herald.sendEvent(event);
  assert.equal(first.__typename === "EventAccepted" && first.duplicate, false);
  assert.equal(again.__typename === "EventAccepted" && again.duplicate, true);
  assert.equal(again.__typename === "EventAccepted" && again.eventId, first.__typename === "EventAccepted" && first.eventId);
});

test("campaigns: a draft created, read and cancelled", async () => {
  const herald = new HeraldClient({ url, token });
  const template = slug();
  await herald.createTemplate({ slug: template, name: "News", content: [{ channel: "IN_APP", title: "News", body: "Hi" }] });
  const created = await herald.createCampaign({
    name: "TS client test",
    templateSlug: template,
    channels: ["IN_APP"],
    audience: { userIds: ["u-1", "u-2"] },
    draft: true,
  });
  assert.equal(created.__typename, "Campaign");
  if (created.__typename !== "Campaign") return;
  assert.equal(created.status, "DRAFT");
  assert.equal((await herald.campaign(created.id))?.templateSlug, template);
  const cancelled = await herald.cancelCampaign(created.id);
  assert.equal(cancelled.__typename === "Campaign" && cancelled.status, "CANCELLED");
});

test("UNAVAILABLE and a proxy's 503 are retried with the same key", async () => {
  const bodies = [];
  const answers = [
    [200, { data: { sendEvent: { __typename: "UnavailableError", code: "UNAVAILABLE", message: "broker down", field: null } } }],
    [503, { error: "upstream" }],
    [200, { data: { sendEvent: { __typename: "EventAccepted", eventId: "ev-1", duplicate: false, scheduledFor: null } } }],
  ];
  const server = createServer((request, response) => {
    let body = "";
    request.on("data", (chunk) => (body += chunk));
    request.on("end", () => {
      bodies.push(JSON.parse(body));
      const [status, answer] = answers[Math.min(bodies.length, 3) - 1];
      response.writeHead(status, { "Content-Type": "application/json" });
      response.end(JSON.stringify(answer));
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  try {
    const herald = new HeraldClient({ url: `http://127.0.0.1:${server.address().port}`, token: "t", backoffBaseSeconds: 0.05 });
    const result = await herald.sendEvent({ type: "t", userIds: ["u"] });
    assert.equal(result.__typename, "EventAccepted");
    assert.equal(bodies.length, 3);
    assert.equal(new Set(bodies.map((body) => body.variables.input.idempotencyKey)).size, 1);
    assert.ok(bodies[0].variables.input.idempotencyKey);

    const once = new HeraldClient({ url: `http://127.0.0.1:${server.address().port}`, token: "t", maxAttempts: 1 });
    bodies.length = 0;
    assert.equal((await once.sendEvent({ type: "t", userIds: ["u"] })).__typename, "UnavailableError");
    assert.equal(bodies.length, 1);
  } finally {
    server.close();
  }
});
