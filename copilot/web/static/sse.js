// Server-Sent Events over fetch(): EventSource cannot POST, so the drafting stream is read from
// response.body and split into frames here. Frames may arrive split across chunks (and a CRLF
// pair across two chunks); only complete frames are yielded.

export function parseFrame(frame) {
  let event = "message";
  const data = [];
  for (const line of frame.split("\n")) {
    if (line === "" || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") event = value;
    else if (field === "data") data.push(value);
  }
  return data.length ? { event, data: data.join("\n") } : null;
}

export class FrameSplitter {
  constructor() {
    this.buffer = "";
    this.pendingCR = false;
  }

  // Feed decoded text; returns the complete frames it closes.
  push(text) {
    if (this.pendingCR) {
      text = "\r" + text;
      this.pendingCR = false;
    }
    if (text.endsWith("\r")) {
      this.pendingCR = true;
      text = text.slice(0, -1);
    }
    this.buffer += text.replace(/\r\n?/g, "\n");
    const frames = [];
    let cut;
    while ((cut = this.buffer.indexOf("\n\n")) >= 0) {
      const frame = parseFrame(this.buffer.slice(0, cut));
      this.buffer = this.buffer.slice(cut + 2);
      if (frame) frames.push(frame);
    }
    return frames;
  }

  // The stream ended: a last frame without its blank line still counts.
  end() {
    const rest = this.buffer + (this.pendingCR ? "\n" : "");
    this.buffer = "";
    this.pendingCR = false;
    const frame = rest.trim() ? parseFrame(rest.replace(/\n+$/, "")) : null;
    return frame ? [frame] : [];
  }
}

// Yields {event, data} with data parsed as JSON (an unparsable payload is a protocol error).
export async function* readEvents(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  const splitter = new FrameSplitter();
  let finished = false;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      for (const frame of splitter.push(decoder.decode(value, { stream: true }))) yield decode(frame);
    }
    finished = true;
    for (const frame of splitter.push(decoder.decode())) yield decode(frame);
    for (const frame of splitter.end()) yield decode(frame);
  } finally {
    if (finished) reader.releaseLock();
    else reader.cancel().catch(() => {});  // the consumer stopped early: close the connection
  }
}

function decode(frame) {
  try {
    return { event: frame.event, data: JSON.parse(frame.data) };
  } catch {
    throw new Error(`the server sent a malformed ${frame.event} event`);
  }
}
