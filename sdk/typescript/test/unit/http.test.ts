import assert from "node:assert/strict";
import { test } from "node:test";

import { RateLimited, Unavailable, ValidationFailed, fromResponse, secondsUntil } from "../../src/errors.js";
import { Call, etag, waitBeforeRetry } from "../../src/http.js";

const noHeaders = new Headers();

test("an If-Match value: numbers are strong ETags, tags and * pass", () => {
  assert.equal(etag(3), '"3"');
  assert.equal(etag("*"), "*");
  assert.equal(etag('W/"3"'), 'W/"3"');
  assert.equal(etag("abc"), '"abc"');
});

test("Retry-After reads seconds and HTTP dates", () => {
  assert.equal(secondsUntil("7"), 7);
  assert.equal(secondsUntil(null), null);
  assert.equal(secondsUntil("soon"), null);
  const later = new Date(Date.now() + 30_000).toUTCString();
  const seconds = secondsUntil(later)!;
  assert.ok(seconds > 25 && seconds <= 30, String(seconds));
});

test("every POST carries an idempotency key, kept across attempts", () => {
  const call = new Call("POST", "/v1/agents", { body: {} });
  assert.match(call.headers["Idempotency-Key"]!, /^sdk-[A-Za-z0-9_-]{32}$/);
  assert.equal(new Call("POST", "/x", { idempotencyKey: "mine" }).headers["Idempotency-Key"], "mine");
  assert.equal(new Call("GET", "/x").headers["Idempotency-Key"], undefined);
});

test("what is retried: never-sent anything, lost answers only when replaying is harmless", () => {
  const refused = { cause: { code: "ECONNREFUSED" } };
  const lost = new Error("socket hang up");
  const del = new Call("DELETE", "/x");
  const patchIf = new Call("PATCH", "/x", { ifMatch: 2 });
  const post = new Call("POST", "/x");
  assert.notEqual(waitBeforeRetry(del, 1, null, refused), null);
  assert.equal(waitBeforeRetry(del, 1, null, lost), null);
  assert.equal(waitBeforeRetry(patchIf, 1, null, lost), null);
  assert.notEqual(waitBeforeRetry(new Call("PATCH", "/x"), 1, null, lost), null);
  assert.notEqual(waitBeforeRetry(post, 1, null, lost), null);
  assert.equal(waitBeforeRetry(post, 4, null, refused), null, "four attempts at most");
  const status = (s: number, headers = noHeaders, code: string | null = null) => ({ status: s, headers, code });
  assert.equal(waitBeforeRetry(del, 1, status(503), null), null);
  assert.notEqual(waitBeforeRetry(del, 1, status(429), null), null);
  assert.equal(waitBeforeRetry(post, 1, status(429, new Headers({ "retry-after": "2" })), null), 2);
  assert.equal(waitBeforeRetry(post, 1, status(429, new Headers({ "retry-after": "60" })), null), null);
  assert.notEqual(waitBeforeRetry(post, 1, status(409, noHeaders, "idempotency_key_in_use"), null), null);
  assert.equal(waitBeforeRetry(post, 1, status(409, noHeaders, "conflict"), null), null);
  assert.equal(waitBeforeRetry(post, 1, status(500), null), null);
});

test("answers become typed errors that keep the problem", () => {
  const problem = { code: "validation_error", detail: "bad", errors: [{ param: "name", message: "required" }] };
  const error = fromResponse(422, problem, noHeaders);
  assert.ok(error instanceof ValidationFailed);
  assert.equal(error.code, "validation_error");
  assert.deepEqual(error.errors, problem.errors);
  assert.equal(error.message, "bad");
  const limited = fromResponse(429, null, new Headers({ "retry-after": "3" }));
  assert.ok(limited instanceof RateLimited && limited.retryAfter === 3);
  assert.ok(fromResponse(502, "<html>", noHeaders) instanceof Unavailable);
});
