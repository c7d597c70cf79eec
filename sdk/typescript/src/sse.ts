/**
 * Server-Sent Events, read from a `fetch` body (the HTML standard's "event stream
 * interpretation"), with no dependency: `eventsource-parser` needs Node 22, and the SDK
 * supports 18.
 *
 * `SseParser` takes text as it comes (`push`, any split: a chunk may end inside a line or
 * between a CR and its LF) and dispatches an event at each blank line: `event:` names it
 * (`message` by default), `data:` lines join with `\n`, `id:` sets the last event id (which
 * carries over to later events, as the standard says). A field's value loses one leading
 * space; a line without a colon is a field with an empty value; an event with no `data` is
 * not dispatched. Comment lines (`: keepalive`) dispatch nothing but still count as lines:
 * the watch takes every line as word from the service. `readEvents` decodes UTF-8 across
 * chunk boundaries (a character split between two chunks) and feeds a parser.
 */

export interface ServerSentEvent {
  /** The `event:` field, `message` when the event named none. */
  event: string;
  /** The `data:` lines, joined with `\n`. */
  data: string;
  /** The last event id seen on the stream (this event's `id:`, or an earlier one's), or "". */
  id: string;
}

export interface ParserHandlers {
  onEvent: (event: ServerSentEvent) => void;
  /** Called for every complete line, blank lines and comments included. */
  onLine?: () => void;
  /** The `retry:` field, in milliseconds. */
  onRetry?: (ms: number) => void;
}

/** An incremental event-stream parser: `push` text in any pieces, then `end`. */
export class SseParser {
  private readonly handlers: ParserHandlers;
  private buffer = "";
  // A chunk that ended with CR: an LF at the start of the next one belongs to it (CRLF).
  private afterCR = false;
  private first = true;
  private event = "";
  private data = "";
  private hasData = false;
  private lastId = "";

  constructor(handlers: ParserHandlers) {
    this.handlers = handlers;
  }

  push(text: string): void {
    if (this.first && text.length) {
      this.first = false;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1); // one BOM at the start is not content
    }
    let start = 0;
    if (this.afterCR && text.charCodeAt(0) === 10) start = 1;
    this.afterCR = false;
    const length = text.length;
    let i = start;
    while (i < length) {
      const c = text.charCodeAt(i);
      if (c === 10 || c === 13) {
        const line = this.buffer + text.slice(start, i);
        this.buffer = "";
        if (c === 13) {
          if (i + 1 < length) {
            if (text.charCodeAt(i + 1) === 10) i++;
          } else {
            this.afterCR = true;
          }
        }
        this.line(line);
        start = i + 1;
      }
      i++;
    }
    if (start < length) this.buffer += text.slice(start);
  }

  /** The stream ended: an incomplete line and an undispatched event are discarded (the standard). */
  end(): void {
    this.buffer = "";
    this.afterCR = false;
    this.event = "";
    this.data = "";
    this.hasData = false;
  }

  private line(line: string): void {
    this.handlers.onLine?.();
    if (line === "") {
      this.dispatch();
      return;
    }
    const colon = line.indexOf(":");
    if (colon === 0) return; // a comment
    let field: string;
    let value: string;
    if (colon < 0) {
      field = line;
      value = "";
    } else {
      field = line.slice(0, colon);
      value = line.charCodeAt(colon + 1) === 32 ? line.slice(colon + 2) : line.slice(colon + 1);
    }
    switch (field) {
      case "event":
        this.event = value;
        break;
      case "data":
        this.data = this.hasData ? this.data + "\n" + value : value;
        this.hasData = true;
        break;
      case "id":
        if (!value.includes("\0")) this.lastId = value;
        break;
      case "retry":
        if (/^[0-9]+$/.test(value)) this.handlers.onRetry?.(Number(value));
        break;
      default:
        break; // unknown fields are ignored
    }
  }

  private dispatch(): void {
    if (!this.hasData) {
      this.event = "";
      return;
    }
    const event: ServerSentEvent = { event: this.event || "message", data: this.data, id: this.lastId };
    this.event = "";
    this.data = "";
    this.hasData = false;
    this.handlers.onEvent(event);
  }
}

/**
 * Read `body` to its end, feeding its text to a parser with these handlers. `onChunk` is
 * called for every chunk read (before parsing it), so a caller can reset a silence timer on
 * any byte. Rejects when the read fails (an aborted request, a reset connection).
 */
export async function readEvents(
  body: ReadableStream<Uint8Array>,
  handlers: ParserHandlers & { onChunk?: () => void },
): Promise<void> {
  const parser = new SseParser(handlers);
  const decoder = new TextDecoder("utf-8");
  const reader = body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      handlers.onChunk?.();
      // `stream: true` keeps a multi-byte character cut by the chunk boundary for the next read.
      const text = decoder.decode(value, { stream: true });
      if (text) parser.push(text);
    }
    const rest = decoder.decode();
    if (rest) parser.push(rest);
    parser.end();
  } finally {
    // Releases the connection whether the stream ended, failed or a handler threw.
    reader.cancel().catch(() => undefined);
  }
}
