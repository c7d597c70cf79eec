/**
 * Targeting rules beyond the conformance cases: the JS specifics (a boolean is never a number,
 * numeric strings as doubles, undefined as missing), the context refused, and `attributeErrors`
 * with the Python SDK's messages.
 */
import assert from "node:assert/strict";
import { test } from "node:test";

import { attributeErrors, contextAttributes, firstMatch, isNumericString } from "../../src/rules.js";
import type { Attributes, Condition, Rule } from "../../src/rules.js";

const rule = (...when: Condition[]): Rule => ({ id: "r", when });
const holds = (condition: Condition, attributes: Record<string, unknown>, subject: string | null = null): boolean =>
  firstMatch([rule(condition)], subject, attributes as Attributes) !== null;

test("numeric strings: the contract's pattern, nothing before or after", () => {
  for (const text of ["0", "-0", "40", "4e1", "1.5", "-1.5E-3", "1e400"]) assert.ok(isNumericString(text), text);
  for (const text of ["+1", "01", " 1", "1.", ".5", "1\n", "", "NaN", "Infinity", "0x1", "١"]) assert.ok(!isNumericString(text), text);
});

test("numbers and numeric strings compare as doubles", () => {
  assert.ok(holds({ attribute: "seats", op: "eq", value: 40 }, { seats: "4e1" }));
  assert.ok(holds({ attribute: "seats", op: "eq", value: 0 }, { seats: "-0" }));
  assert.ok(holds({ attribute: "big", op: "gt", value: 1e308 }, { big: "1e400" })); // Infinity
  assert.ok(holds({ attribute: "tiny", op: "eq", value: 0 }, { tiny: "1e-400" }));
  assert.ok(!holds({ attribute: "n", op: "eq", value: NaN }, { n: NaN }));
  assert.ok(!holds({ attribute: "n", op: "gte", value: 0 }, { n: NaN }));
  assert.ok(!holds({ attribute: "seats", op: "gt", value: 1 }, { seats: "01" }));
  assert.ok(!holds({ attribute: "seats", op: "eq", value: "40" }, { seats: 40 })); // a string value: identical strings only
});

test("a boolean is never a number", () => {
  assert.ok(!holds({ attribute: "beta", op: "eq", value: 1 }, { beta: true }));
  assert.ok(!holds({ attribute: "n", op: "eq", value: true }, { n: 1 }));
  assert.ok(!holds({ attribute: "n", op: "gte", value: false as unknown as number }, { n: 1 }));
  assert.ok(holds({ attribute: "beta", op: "eq", value: true }, { beta: "true" }));
  assert.ok(holds({ attribute: "beta", op: "in", values: [1, true] }, { beta: "true" }));
  assert.ok(!holds({ attribute: "beta", op: "in", values: [1] }, { beta: true }));
});

test("missing attributes, malformed conditions and unknown ops", () => {
  assert.ok(holds({ attribute: "plan", op: "not_exists" }, {}));
  assert.ok(holds({ attribute: "plan", op: "not_exists" }, { plan: undefined })); // left out, as on the wire
  assert.ok(!holds({ attribute: "plan", op: "neq", value: "pro" }, {}));
  assert.ok(holds({ attribute: "plan", op: "neq", value: "pro" }, { plan: "free" }));
  assert.ok(!holds({ attribute: "plan", op: "in", values: [] }, { plan: "pro" }));
  assert.ok(!holds({ attribute: "plan", op: "not_in", values: "pro" as unknown as string[] }, { plan: "x" }));
  assert.ok(!holds({ attribute: "plan", op: "eq" }, { plan: "pro" }));
  assert.ok(!holds({ attribute: "plan", op: "matches", value: ".*" }, { plan: "pro" }));
  assert.ok(!holds({ attribute: "plan", op: "not_exists" }, { plan: "pro" }));
  assert.equal(firstMatch([{ id: "empty", when: [] }], null, {}), null); // no conditions: holds for nothing
  assert.equal(firstMatch([{ id: "bad", when: [null] } as unknown as Rule], null, {}), null);
});

test("the subject is the attribute `subject`, and the very rule object is returned", () => {
  const rules = [rule({ attribute: "subject", op: "starts_with", value: "internal-" }), rule({ attribute: "subject", op: "exists" })];
  assert.equal(firstMatch(rules, "internal-7", {}), rules[0]);
  assert.equal(firstMatch(rules, "user-7"), rules[1]);
  assert.equal(firstMatch(rules, null, {}), null);
  assert.equal(firstMatch(rules), null);
});

test("a context the API would refuse throws", () => {
  assert.throws(() => firstMatch([], null, { subject: "x" }), RangeError);
  assert.throws(() => firstMatch([], null, { plan: null } as unknown as Attributes), TypeError);
  assert.throws(() => firstMatch([], 7 as unknown as string, {}), TypeError);
  assert.deepEqual(contextAttributes("u", { plan: "pro", gone: undefined } as unknown as Attributes), { plan: "pro", subject: "u" });
});

test("attributeErrors: the service's limits, with the Python SDK's messages", () => {
  assert.deepEqual(attributeErrors(null), []);
  assert.deepEqual(attributeErrors({ plan: "pro", seats: 40, beta: true, "a.b-c_9": "x".repeat(1024) }), []);
  assert.deepEqual(
    attributeErrors({
      subject: "u",
      "bad name": 1,
      ["x".repeat(65)]: 1,
      inf: Infinity,
      long: "x".repeat(1025),
      emoji: "😀".repeat(1024), // 1,024 characters, 2,048 UTF-16 units: taken
      nil: null as unknown as string,
    }),
    [
      { param: "attributes.subject", message: "'subject' cannot be an attribute: pass it as the subject" },
      { param: "attributes.bad name", message: "a name is 1-64 characters of A-Z, a-z, 0-9, _ . -" },
      { param: `attributes.${"x".repeat(65)}`, message: "a name is 1-64 characters of A-Z, a-z, 0-9, _ . -" },
      { param: "attributes.inf", message: "must be a finite number" },
      { param: "attributes.long", message: "must be at most 1024 characters" },
      { param: "attributes.nil", message: "must be a string, a number or a boolean, not null" },
    ],
  );
  const many = Object.fromEntries(Array.from({ length: 51 }, (_, i) => [`k${i}`, i]));
  assert.deepEqual(attributeErrors(many), [{ param: "attributes", message: "at most 50 attributes, not 51" }]);
});
