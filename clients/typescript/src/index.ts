// Herald's typed client for Node services. The operations and their types are generated from
// Herald's schema (src/generated/graphql.ts, by GraphQL Code Generator); this adds a bearer token
// or API key, retries on RATE_LIMITED (after retryAfterSeconds) and UNAVAILABLE, and an
// idempotency key on every event that has none, so a retried send is delivered once.
import type { TypedDocumentNode } from "@graphql-typed-document-node/core";
import { randomUUID } from "node:crypto";
import { print } from "graphql";

import * as ops from "./generated/graphql.js";

export * from "./generated/graphql.js";

export type Token = string | (() => string | Promise<string>);

export interface HeraldClientOptions {
  /** Herald's base URL (`https://herald.example.com`) or its `/graphql` endpoint. */
  url: string;
  /** A bearer token or API key, or a function returning a fresh one for every request. */
  token: Token;
  /** Attempts per call, the first included (5). */
  maxAttempts?: number;
  /** Backoff when Herald gives no retryAfterSeconds: base·2^(attempt-1) s, capped, jittered. */
  backoffBaseSeconds?: number;
  backoffCapSeconds?: number;
  /** Per-request timeout in seconds (10). */
  timeoutSeconds?: number;
  fetch?: typeof fetch;
}

/** A transport failure or an answer that is not GraphQL: typed errors come back as results. */
export class HeraldRequestError extends Error {
  constructor(
    message: string,
    readonly status?: number,
    readonly errors?: unknown[],
  ) {
    super(message);
    this.name = "HeraldRequestError";
  }
}

const RETRIED_CODES = new Set(["RATE_LIMITED", "UNAVAILABLE"]);
const RETRIED_STATUSES = new Set([429, 502, 503, 504]);

type Json = Record<string, unknown>;

function* retriedErrors(value: unknown): Generator<Json> {
  if (value === null || typeof value !== "object") return;
  const result = value as Json;
  if (typeof result.code === "string" && RETRIED_CODES.has(result.code)) yield result;
  if (Array.isArray(result.results)) for (const item of result.results) yield* retriedErrors(item);
}

const sleep = (seconds: number) => new Promise((resolve) => setTimeout(resolve, seconds * 1000));

export class HeraldClient {
  readonly endpoint: string;
  private readonly token: Token;
  private readonly maxAttempts: number;
  private readonly base: number;
  private readonly cap: number;
  private readonly timeout: number;
  private readonly fetch: typeof fetch;
  private readonly printed = new WeakMap<object, string>();

  constructor(options: HeraldClientOptions) {
    const url = options.url.replace(/\/+$/, "");
    this.endpoint = url.endsWith("/graphql") ? url : `${url}/graphql`;
    this.token = options.token;
    this.maxAttempts = options.maxAttempts ?? 5;
    if (this.maxAttempts < 1) throw new RangeError("maxAttempts must be at least 1");
    this.base = options.backoffBaseSeconds ?? 0.5;
    this.cap = options.backoffCapSeconds ?? 30;
    this.timeout = options.timeoutSeconds ?? 10;
    this.fetch = options.fetch ?? globalThis.fetch;
  }

  /** Run any generated document; retried as the class describes. */
  async request<Result, Variables>(
    document: TypedDocumentNode<Result, Variables>,
    variables: Variables,
  ): Promise<Result> {
    let query = this.printed.get(document);
    if (query === undefined) {
      query = print(document);
      this.printed.set(document, query);
    }
    const body = JSON.stringify({ query, variables });
    for (let attempt = 1; ; attempt++) {
      const last = attempt >= this.maxAttempts;
      let response: Response;
      try {
        response = await this.fetch(this.endpoint, {
          method: "POST",
          headers: {
            "Content-Type": "application/json",
            Accept: "application/graphql-response+json, application/json",
            Authorization: `Bearer ${typeof this.token === "function" ? await this.token() : this.token}`,
          },
          body,
          signal: AbortSignal.timeout(this.timeout * 1000),
        });
      } catch (error) {
        // A connection never opened sent nothing: as safe to repeat as an UNAVAILABLE answer.
        const refused = (error as { cause?: { code?: string } }).cause?.code === "ECONNREFUSED";
        if (!refused || last) throw new HeraldRequestError(`cannot reach Herald: ${error}`);
        await sleep(this.backoff(attempt));
        continue;
      }
      if (RETRIED_STATUSES.has(response.status) && !last) {
        const after = Number(response.headers.get("retry-after"));
        await sleep(Number.isFinite(after) && after > 0 ? after : this.backoff(attempt));
        continue;
      }
      let answer: { data?: Json | null; errors?: unknown[] };
      try {
        answer = (await response.json()) as typeof answer;
      } catch {
        throw new HeraldRequestError(`Herald answered ${response.status} without JSON`, response.status);
      }
      if (answer.errors?.length || !answer.data) {
        throw new HeraldRequestError(
          `Herald refused the request (${response.status})`,
          response.status,
          answer.errors,
        );
      }
      const retried = Object.values(answer.data).flatMap((value) => [...retriedErrors(value)]);
      if (!retried.length || last) return answer.data as Result;
      const waits = retried
        .map((error) => error.retryAfterSeconds)
        .filter((wait): wait is number => typeof wait === "number");
      await sleep(waits.length ? Math.max(...waits) : this.backoff(attempt));
    }
  }

  private backoff(attempt: number): number {
    return Math.min(this.cap, this.base * 2 ** (attempt - 1)) * (0.5 + Math.random() / 2);
  }

  /** Send one event; an idempotency key is added when the input has none. */
  async sendEvent(input: ops.EventInput): Promise<ops.SendEventMutation["sendEvent"]> {
    const keyed = { ...input, idempotencyKey: input.idempotencyKey ?? randomUUID() };
    return (await this.request(ops.SendEventDocument, { input: keyed })).sendEvent;
  }

  /** Send a batch of events, each with an idempotency key. */
  async sendEvents(inputs: ops.EventInput[]): Promise<ops.SendEventsMutation["sendEvents"]> {
    const keyed = inputs.map((input) => ({ ...input, idempotencyKey: input.idempotencyKey ?? randomUUID() }));
    return (await this.request(ops.SendEventsDocument, { inputs: keyed })).sendEvents;
  }

  async createTemplate(input: ops.CreateTemplateInput) {
    return (await this.request(ops.CreateTemplateDocument, { input })).createTemplate;
  }

  async updateTemplate(slug: string, input: ops.UpdateTemplateInput) {
    return (await this.request(ops.UpdateTemplateDocument, { slug, input })).updateTemplate;
  }

  async template(slug: string) {
    return (await this.request(ops.GetTemplateDocument, { slug })).template;
  }

  async createCampaign(input: ops.CampaignInput) {
    return (await this.request(ops.CreateCampaignDocument, { input })).createCampaign;
  }

  async pauseCampaign(id: string) {
    return (await this.request(ops.PauseCampaignDocument, { id })).pauseCampaign;
  }

  async resumeCampaign(id: string) {
    return (await this.request(ops.ResumeCampaignDocument, { id })).resumeCampaign;
  }

  async cancelCampaign(id: string) {
    return (await this.request(ops.CancelCampaignDocument, { id })).cancelCampaign;
  }

  async campaign(id: string) {
    return (await this.request(ops.GetCampaignDocument, { id })).campaign;
  }
}
