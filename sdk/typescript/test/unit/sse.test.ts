import assert from "node:assert/strict";
import { test } from "node:test";

import fc from "fast-check";

import { SseParser, readEvents } from "../../src/sse.js";
import type { ServerSentEvent } from "../../src/sse.js";

/** A stream that yields `bytes` cut at `cuts` (byte offsets, anywhere: inside a character too). */
function streamOf(bytes: Uint8Array, cuts: number[]): ReadableStream<Uint8Array> {
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const pieces: Uint8Array[] = [];
  let last = 0;
  for (const p of [...points, bytes.length]) {
    if (p > last) pieces.push(bytes.slice(last, p));
    last = p;
  }
  return new ReadableStream({
    pull(controller) {
      const next = pieces.shift();
      if (next === undefined) controller.close();
      else controller.enqueue(next);
    },
  });
}

async function parse(bytes: Uint8Array, cuts: number[]): Promise<{ events: ServerSentEvent[]; lines: number }> {
  const events: ServerSentEvent[] = [];
  let lines = 0;
  await readEvents(streamOf(bytes, cuts), { onEvent: (e) => events.push(e), onLine: () => lines++ });
  return { events, lines };
}

const encoder = new TextEncoder();

// Field values: any text without line breaks, multi-byte characters and emoji included.
const value = fc
  .array(fc.oneof(fc.constantFrom("a", "é", "€", "😀", " ", ":", "x"), fc.string({ unit: "binary", minLength: 1, maxLength: 1 })), {
    maxLength: 12,
  })
  .map((parts) => parts.join("").replace(/[\r\n]/g, ""));
const name = fc.stringMatching(/^[a-z]{1,8}$/);
const eol = fc.constantFrom("\n", "\r", "\r\n");

interface Spec {
  event: string | null;
  data: string[];
  id: string | null;
  comment: boolean;
}

const spec: fc.Arbitrary<Spec> = fc.record({
  event: fc.option(name, { nil: null }),
  data: fc.array(value, { minLength: 1, maxLength: 4 }),
  id: fc.option(value.map((v) => v.replace(/\0/g, "")), { nil: null }),
  comment: fc.boolean(),
});

test("events come out whole and in order, whatever the chunks, line ends and characters", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(spec, { maxLength: 6 }),
      fc.array(eol, { minLength: 1, maxLength: 8 }),
      fc.array(fc.nat(), { maxLength: 12 }),
      async (specs, eols, cuts) => {
        let n = 0;
        let text = "";
        // A CR then an LF is one line end (CRLF): after a CR, the next end must not begin with LF.
        const end = (): string => {
          const next = eols[n++ % eols.length]!;
          return text.endsWith("\r") && next === "\n" ? "\r\n" : next;
        };
        const expected: ServerSentEvent[] = [];
        let lastId = "";
        for (const s of specs) {
          if (s.comment) text += ": keepalive" + end();
          if (s.event !== null) text += `event: ${s.event}` + end();
          for (const d of s.data) text += `data: ${d}` + end();
          if (s.id !== null) {
            text += `id: ${s.id}` + end();
            lastId = s.id;
          }
          text += end();
          expected.push({ event: s.event || "message", data: s.data.join("\n"), id: lastId });
        }
        const { events } = await parse(encoder.encode(text), cuts);
        assert.deepEqual(events, expected);
      },
    ),
    { numRuns: 500 },
  );
});

test("a CR at the end of one chunk and its LF at the start of the next are one line end", () => {
  const events: ServerSentEvent[] = [];
  let lines = 0;
  const parser = new SseParser({ onEvent: (e) => events.push(e), onLine: () => lines++ });
  parser.push("data: a\r");
  parser.push("\ndata: b\r");
  parser.push("\n\r");
  parser.push("\n");
  assert.deepEqual(events, [{ event: "message", data: "a\nb", id: "" }]);
  assert.equal(lines, 3);
});

test("comments count as lines, dispatch nothing; no data means no event; the field rules", async () => {
  const text =
    "\uFEFF: keepalive\n\nevent: deleted\n\nevent: bundle\nid: e1\ndata:{\"x\":1}\n\n" +
    "data\n\nretry: 5\ndata:  two spaces\nfoo: bar\n\nid: a\0b\ndata: z\n\nincomplete: yes\ndata: cut";
  const { events, lines } = await parse(encoder.encode(text), []);
  assert.deepEqual(events, [
    { event: "bundle", data: '{"x":1}', id: "e1" },
    { event: "message", data: "", id: "e1" },
    { event: "message", data: " two spaces", id: "e1" },
    { event: "message", data: "z", id: "e1" }, // an id with NUL is ignored
  ]);
  assert.equal(lines, 18);
});

test("a character split between chunks decodes once", async () => {
  const bytes = encoder.encode("data: 😀€\n\n");
  for (let cut = 0; cut <= bytes.length; cut++) {
    const { events } = await parse(bytes, [cut]);
    assert.deepEqual(events, [{ event: "message", data: "😀€", id: "" }], `cut at ${cut}`);
  }
});

test("a handler's error stops the read and releases the stream", async () => {
  let cancelled = false;
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(encoder.encode("event: deleted\ndata: {}\n\n"));
    },
    cancel() {
      cancelled = true;
    },
  });
  await assert.rejects(
    readEvents(body, {
      onEvent: () => {
        throw new Error("gone");
      },
    }),
    /gone/,
  );
  assert.ok(cancelled);
});
