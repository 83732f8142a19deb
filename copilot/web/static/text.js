// Spans from the server index Python strings (code points); JS strings index UTF-16 code units.
// Everything here builds DOM nodes from text: model output never goes through innerHTML.

export function unitOffset(text, codePoints) {
  if (!/[\uD800-\uDFFF]/.test(text)) return codePoints;
  let units = 0;
  for (let seen = 0; seen < codePoints && units < text.length; seen++) {
    const code = text.charCodeAt(units);
    units += code >= 0xd800 && code <= 0xdbff && units + 1 < text.length ? 2 : 1;
  }
  return units;
}

// [start, end) of a server span in `text` (UTF-16 units), or null when it cannot be found.
// When the text changed since the span was computed, the occurrence of span.text nearest to the
// original place is used.
export function locate(text, span) {
  const wanted = typeof span.text === "string" && span.text ? span.text : null;
  if (Number.isInteger(span.start) && Number.isInteger(span.end) && span.end > span.start) {
    const start = unitOffset(text, span.start);
    const end = unitOffset(text, span.end);
    if (end <= text.length && (wanted === null || text.slice(start, end) === wanted)) return [start, end];
  }
  if (wanted === null) return null;
  const near = Number.isInteger(span.start) ? unitOffset(text, span.start) : 0;
  let best = null;
  for (let at = text.indexOf(wanted); at >= 0; at = text.indexOf(wanted, at + 1)) {
    if (best === null || Math.abs(at - near) < Math.abs(best - near)) best = at;
  }
  return best === null ? null : [best, best + wanted.length];
}

// Fill `container` with `text`, wrapping each span ({start, end} in UTF-16 units, sorted, and
// not overlapping; overlaps are skipped) in the element `wrap(span, slice)` returns.
export function renderSpans(container, text, spans, wrap) {
  container.replaceChildren();
  let position = 0;
  for (const span of [...spans].sort((a, b) => a.start - b.start)) {
    if (span.start < position || span.end <= span.start) continue;
    if (span.start > position) container.append(document.createTextNode(text.slice(position, span.start)));
    container.append(wrap(span, text.slice(span.start, span.end)));
    position = span.end;
  }
  if (position < text.length) container.append(document.createTextNode(text.slice(position)));
}

export function element(tag, { className, text, attrs } = {}, ...children) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value !== undefined && value !== null && value !== false) node.setAttribute(name, value === true ? "" : String(value));
  }
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}
