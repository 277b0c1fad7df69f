// GraphQL over HTTP: POST /graphql with the bearer token. Every failure becomes an ApiError
// with a `code`, whether it came as a query error (`extensions.code`), as a typed mutation
// error (a union member implementing `Error`), or from the network.

import config from "../config.js";
import { ApiError } from "./errors.js";
import { session } from "./session.js";

const ACCEPT = "application/graphql-response+json, application/json;q=0.9";

/**
 * Run a query or mutation and return its `data`. Throws ApiError.
 * `token` overrides the session's token (the sign-in screen checks a token before keeping it).
 */
export async function graphql(query, variables = {}, { token, signal } = {}) {
  const bearer = token ?? session.token;
  const headers = { "Content-Type": "application/json", Accept: ACCEPT };
  if (bearer) headers.Authorization = `Bearer ${bearer}`;
  let response;
  try {
    response = await fetch(config.graphqlPath, {
      method: "POST",
      headers,
      body: JSON.stringify({ query, variables }),
      signal,
    });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError({ code: "NETWORK", message: String(error.message || error) });
  }
  let body;
  try {
    body = await response.json();
  } catch {
    throw new ApiError({ code: response.status === 400 ? "BAD_REQUEST" : "INTERNAL", message: `HTTP ${response.status}` });
  }
  if (body.errors?.length) {
    const first = body.errors[0];
    const code = first.extensions?.code ?? (body.data === undefined ? "BAD_REQUEST" : "INTERNAL");
    const error = new ApiError({ code, message: first.message, field: first.extensions?.field ?? null });
    if (code === "UNAUTHENTICATED" && token === undefined) session.expire(error);
    throw error;
  }
  return body.data;
}

/**
 * A mutation result is a union of its success type and typed errors: return the success,
 * throw the error.
 */
export function unwrap(result, successType) {
  if (result && result.__typename === successType) return result;
  const error = new ApiError({
    code: result?.code ?? "INTERNAL",
    message: result?.message ?? "",
    field: result?.field ?? null,
    line: result?.line ?? null,
  });
  if (error.code === "UNAUTHENTICATED") session.expire(error);
  throw error;
}

/**
 * The selection every union result needs to report its error. (`line` is asked for only where
 * the union holds TemplateSyntaxError or TemplateRenderError: elsewhere the fragment is invalid.)
 */
export const ERROR_FIELDS = "... on Error { code message field }";
