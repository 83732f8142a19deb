// The EMR sidebar: load or paste an encounter, stream a draft section by section with its
// unsupported claims highlighted, edit/accept/copy it, and run QC on the current text.
// Model output and QC evidence are inserted as text nodes only (never innerHTML).

import { SignedOut, errorFrom, request } from "./api.js";
import { readEvents } from "./sse.js";
import { element, locate, renderSpans } from "./text.js";

const DEFAULT_NOTE_TYPES = [{ id: "soap", label: "SOAP note", sections: [] }];
// A SOAP/brief note is a progress note to the QC rules, unless the note-types API says otherwise.
const DEFAULT_DOCUMENT_TYPE = "progress_note";
const QC_DOCUMENT_ID = "sidebar-note";
const SEVERITY_ORDER = { critical: 0, major: 1, minor: 2 };
const METRIC_PAINT_MS = 250;

const $ = (id) => document.getElementById(id);
const ui = {
  sample: $("sample"), transcript: $("transcript"), recordBox: $("record-box"), useRecord: $("use-record"),
  recordSummary: $("record-summary"), noteType: $("note-type"), sectionsFieldset: $("sections-fieldset"),
  sectionOptions: $("section-options"), draftBtn: $("draft-btn"), stopBtn: $("stop-btn"), status: $("status"),
  error: $("error"), errorText: $("error-text"), retryBtn: $("retry-btn"), noteCard: $("note-card"),
  tps: $("m-tps"), ttft: $("m-ttft"), tokens: $("m-tokens"), elapsed: $("m-elapsed"), metrics: $("metrics"),
  tabReview: $("tab-review"), tabEdit: $("tab-edit"), panelReview: $("panel-review"), panelEdit: $("panel-edit"),
  noteEmpty: $("note-empty"), editedBanner: $("edited-banner"), sections: $("note-sections"), editor: $("note-editor"),
  unsupportedBox: $("unsupported-box"), unsupportedCount: $("unsupported-count"), unsupportedList: $("unsupported-list"),
  citationsBox: $("citations-box"), citationsCount: $("citations-count"), citationsList: $("citations-list"),
  acceptBtn: $("accept-btn"), copyBtn: $("copy-btn"), acceptState: $("accept-state"),
  qcBtn: $("qc-btn"), qcSummary: $("qc-summary"), findings: $("findings"),
};

const state = {
  role: document.body.dataset.role || "",
  noteTypes: DEFAULT_NOTE_TYPES,
  sample: null,
  controller: null,
  retry: null,
  blocks: new Map(),  // section id -> {id, title, text, unsupported, node, textNode, done}
  draftedText: "",
  live: { started: 0, firstToken: null, events: 0, painted: 0 },
  accepted: null,
  qcText: null,
  qcBusy: false,
};

// ---------------------------------------------------------------- requests

// Turn a non-2xx answer into a clear, actionable message.
async function failed(response, what, retry) {
  const message = await errorFrom(response);
  if (response.status === 503) {
    const after = response.headers.get("Retry-After");
    showError(`${what}: the model is busy (${message}). Try again${after ? ` in ${after} s` : " shortly"}.`, retry);
  } else if (response.status === 403) {
    showError(`${what} is not allowed for your role (${state.role}): ${message}`);
  } else if (response.status >= 500) {
    showError(`${what} failed on the server: ${message}`, retry);
  } else {
    showError(`${what}: ${message}`);
  }
}

// ---------------------------------------------------------------- messages

function say(message) {
  ui.status.textContent = message;
}

function showError(message, retry = null) {
  ui.errorText.textContent = message;
  ui.error.hidden = false;
  state.retry = retry;
  ui.retryBtn.hidden = !retry;
  say("");
}

function clearError() {
  ui.error.hidden = true;
  ui.errorText.textContent = "";
  ui.retryBtn.hidden = true;
  state.retry = null;
}

function titleCase(text) {
  if (text !== text.toUpperCase() || text === text.toLowerCase()) return text;
  const lower = text.toLowerCase();
  return lower.charAt(0).toUpperCase() + lower.slice(1);
}

// ---------------------------------------------------------------- encounter input

async function loadSamples() {
  try {
    const response = await request("/api/samples");
    if (!response.ok) throw new Error(await errorFrom(response));
    const { samples } = await response.json();
    for (const sample of samples) ui.sample.append(element("option", { text: sample.title, attrs: { value: sample.id } }));
  } catch (error) {
    if (!(error instanceof SignedOut)) showError(`Could not load the sample encounters: ${error.message}`);
  }
}

async function chooseSample() {
  clearError();
  const id = ui.sample.value;
  if (!id) {
    if (state.sample && ui.transcript.value === state.sample.transcript) ui.transcript.value = "";
    state.sample = null;
    showRecord(null);
    say("Paste a transcript, one line per turn.");
    return;
  }
  try {
    const response = await request(`/api/samples/${encodeURIComponent(id)}`);
    if (!response.ok) throw new Error(await errorFrom(response));
    const sample = await response.json();
    if (ui.sample.value !== id) return;  // the user picked another one meanwhile
    state.sample = sample;
    ui.transcript.value = sample.transcript;
    showRecord(sample.record || null);
    if (sample.note_type && state.noteTypes.some((t) => t.id === sample.note_type)) {
      ui.noteType.value = sample.note_type;
      renderSectionOptions();
    }
    say(`Loaded sample: ${sample.title}.`);
  } catch (error) {
    if (!(error instanceof SignedOut)) showError(`Could not load that sample: ${error.message}`);
  }
}

function showRecord(record) {
  ui.recordBox.hidden = !record;
  if (!record) return;
  const patient = record.patient || {};
  const who = [patient.sex, patient.age != null ? `${patient.age} y` : null].filter(Boolean).join(", ");
  const allergies = (patient.allergies || []).join(", ") || "none recorded";
  const medications = (record.medications || []).map((m) => m.name).join(", ") || "none";
  ui.recordSummary.textContent = `Record ${record.id}${who ? ` (${who})` : ""} · allergies: ${allergies} · medications: ${medications}. `
    + "Sent with the draft and the QC check.";
}

function currentRecord() {
  return state.sample && state.sample.record && ui.useRecord.checked ? state.sample.record : null;
}

function normalizeNoteTypes(body) {
  let list = [];
  if (Array.isArray(body)) list = body;
  else if (body && Array.isArray(body.note_types)) list = body.note_types;
  else if (body && typeof body === "object") list = Object.entries(body).map(([id, spec]) => ({ id, ...spec }));
  return list.map((item) => (typeof item === "string" ? { id: item, label: item, sections: [] } : {
    id: String(item.id || ""),
    label: item.label || item.title || item.name || item.id,
    documentType: item.document_type || null,
    sections: (item.sections || []).map((s) => (typeof s === "string" ? { id: s, title: s }
      : { id: s.id, title: s.title || s.name || s.id })),
  })).filter((type) => type.id);
}

async function loadNoteTypes() {
  let types = DEFAULT_NOTE_TYPES;
  try {
    const response = await request("/api/draft/note-types");
    if (response.ok) {
      const found = normalizeNoteTypes(await response.json());
      if (found.length) types = found;
    }
  } catch (error) {
    if (error instanceof SignedOut) return;
  }
  state.noteTypes = types;
  ui.noteType.replaceChildren(...types.map((t) => element("option", { text: t.label, attrs: { value: t.id } })));
  const preferred = [state.sample?.note_type, DEFAULT_NOTE_TYPES[0].id].find((id) => types.some((t) => t.id === id));
  if (preferred) ui.noteType.value = preferred;
  renderSectionOptions();
}

function currentNoteType() {
  return state.noteTypes.find((t) => t.id === ui.noteType.value) || state.noteTypes[0];
}

function renderSectionOptions() {
  const type = currentNoteType();
  const sections = type?.sections || [];
  ui.sectionsFieldset.hidden = sections.length === 0;
  ui.sectionOptions.replaceChildren(...sections.map((section) => {
    const id = `section-${type.id}-${section.id}`;
    return element("div", { className: "check" },
      element("input", { attrs: { type: "checkbox", id, value: section.id } }),
      element("label", { text: titleCase(section.title), attrs: { for: id } }));
  }));
}

function draftRequest() {
  const transcript = ui.transcript.value.trim();
  const record = currentRecord();
  if (!transcript && !record) return null;
  const body = { note_type: ui.noteType.value || DEFAULT_NOTE_TYPES[0].id };
  if (transcript) body.transcript = transcript;
  if (record) body.record = record;
  const ticked = [...ui.sectionOptions.querySelectorAll("input:checked")].map((input) => input.value);
  if (ticked.length) body.sections = ticked;
  return body;
}

// ---------------------------------------------------------------- drafting

function noteEdited() {
  return ui.editor.value.trim() !== "" && ui.editor.value !== state.draftedText;
}

async function startDraft(body = null) {
  clearError();
  body = body || draftRequest();
  if (!body) {
    showError("Paste a transcript or choose a sample encounter first.");
    ui.transcript.focus();
    return;
  }
  if (noteEdited() && !state.accepted && !window.confirm("Replace the note you edited with a new draft?")) return;
  resetNote();
  const controller = new AbortController();
  state.controller = controller;
  setDrafting(true);
  state.live = { started: performance.now(), firstToken: null, events: 0, painted: 0 };
  say("Sending the encounter to the model…");
  const outcome = { done: false, error: false };
  const retry = () => startDraft(body);
  try {
    const response = await request("/api/draft", {
      method: "POST", json: body, accept: "text/event-stream", signal: controller.signal,
    });
    if (!response.ok) {
      outcome.error = true;
      await failed(response, "Drafting", retry);
      return;
    }
    for await (const { event, data } of readEvents(response)) {
      onDraftEvent(event, data, outcome, retry);
      if (outcome.error) break;
    }
    if (!outcome.done && !outcome.error) {
      showError("The draft stream ended before the note was complete; the partial draft is kept.", retry);
    }
  } catch (error) {
    if (error instanceof SignedOut) return;
    if (error.name === "AbortError") say("Stopped. The partial draft is kept; you can edit it.");
    else showError(`Drafting failed: ${error.message}`, retry);
  } finally {
    state.controller = null;
    if (!outcome.done) keepPartial();
    setDrafting(false);
  }
}

function stopDraft() {
  if (state.controller) state.controller.abort();
}

function onDraftEvent(event, data, outcome, retry) {
  switch (event) {
    case "start":
      for (const section of data.sections || []) blockFor(section.id, section.title);
      say(`Drafting ${(data.sections || []).length} sections${data.model ? ` with ${data.model}` : ""}…`);
      break;
    case "section_start": {
      const block = blockFor(data.section, data.title);
      block.node.classList.remove("pending");
      block.node.classList.add("streaming");
      block.node.setAttribute("aria-busy", "true");
      const order = [...state.blocks.keys()].indexOf(data.section) + 1;
      say(`Drafting ${titleCase(block.title)} (${order} of ${state.blocks.size})…`);
      break;
    }
    case "token": {
      const block = blockFor(data.section);
      const box = ui.sections;
      const following = box.scrollHeight - box.scrollTop - box.clientHeight < 48;
      block.text += data.text;
      block.textNode.append(document.createTextNode(data.text));
      if (following) box.scrollTop = box.scrollHeight;
      liveMetrics();
      break;
    }
    case "section_end": {
      const block = blockFor(data.section, data.title);
      Object.assign(block, { text: data.text ?? block.text, unsupported: data.unsupported || [], done: true });
      block.node.classList.remove("streaming", "pending");
      block.node.removeAttribute("aria-busy");
      renderClaims();
      break;
    }
    case "done":
      outcome.done = true;
      finishDraft(data);
      break;
    case "error":
      outcome.error = true;
      showError(`Drafting stopped: ${data.error || "unknown error"}`, retry);
      break;
    default:
      break;  // unknown events are ignored, as SSE clients do
  }
}

function blockFor(id, title = null) {
  let block = state.blocks.get(id);
  if (!block) {
    const heading = element("h3", { text: titleCase(title || id), attrs: { id: `sec-${id}-h` } });
    const textNode = element("div", { className: "section-text", attrs: { id: `sec-${id}-text` } });
    const node = element("section", { className: "note-section pending", attrs: { "aria-labelledby": heading.id, "data-section": id } },
      heading, textNode);
    block = { id, title: title || id, text: "", unsupported: [], node, textNode, done: false };
    state.blocks.set(id, block);
    ui.sections.append(node);
    ui.sections.hidden = false;
    ui.noteEmpty.hidden = true;
  } else if (title && block.title !== title) {
    block.title = title;
    block.node.querySelector("h3").textContent = titleCase(title);
  }
  return block;
}

// Re-render every finished section with its unsupported spans, numbered in note order, and the
// list of claims with their reasons (the legend).
function renderClaims() {
  const items = [];
  for (const block of state.blocks.values()) {
    if (!block.done) continue;
    const spans = [];
    for (const claim of block.unsupported) {
      const where = locate(block.text, claim);
      if (!where) continue;
      const number = items.length + 1;
      const span = { ...claim, start: where[0], end: where[1], number };
      spans.push(span);
      items.push({ span, block, text: block.text.slice(where[0], where[1]) });
    }
    renderSpans(block.textNode, block.text, spans, markClaim);
  }
  ui.unsupportedList.replaceChildren(...items.map(({ span, block, text }) => element("li", { attrs: { id: `claim-note-${span.number}` } },
    element("a", { className: "claim-quote", text: `“${text}”`, attrs: { href: `#claim-${span.number}` } }),
    element("span", { className: "claim-section", text: ` in ${titleCase(block.title)}` }),
    element("span", { className: "claim-reason", text: span.reason || "not found in the source" }))));
  ui.unsupportedCount.textContent = String(items.length);
  ui.unsupportedBox.hidden = items.length === 0;
}

function markClaim(span, text) {
  const reason = span.reason || "not found in the transcript or record";
  const fragment = document.createDocumentFragment();
  fragment.append(
    element("mark", { className: "unsupported", text, attrs: { id: `claim-${span.number}`, title: `Unsupported: ${reason}`, "data-kind": span.kind, "data-reason": reason, tabindex: "-1" } }),
    element("sup", { className: "claim-ref" },
      element("a", { text: String(span.number), attrs: { href: `#claim-note-${span.number}`, "aria-label": `Unsupported claim ${span.number}: ${reason}` } })));
  return fragment;
}

function finishDraft(data) {
  for (const section of data.sections || []) {
    const block = blockFor(section.id, section.title);
    Object.assign(block, { text: section.text ?? block.text, unsupported: section.unsupported || block.unsupported, done: true });
    block.node.classList.remove("streaming", "pending");
    block.node.removeAttribute("aria-busy");
  }
  settleBlocks();
  renderClaims();
  showMetrics(data.metrics || {});
  showCitations(data.citations || []);
  state.draftedText = typeof data.note === "string" ? data.note : composeNote();
  ui.editor.value = state.draftedText;
  ui.editedBanner.hidden = true;
  const claims = ui.unsupportedList.children.length;
  const drafted = [...state.blocks.values()].filter((b) => b.text.trim()).length;
  const sections = drafted === state.blocks.size ? `${drafted} section${drafted === 1 ? "" : "s"}`
    : `${drafted} of ${state.blocks.size} sections drafted`;
  say(`Draft ready: ${sections}, ${claims} unsupported claim${claims === 1 ? "" : "s"} highlighted.`
    + (data.audit_seq ? ` Audit entry #${data.audit_seq}.` : ""));
}

function composeNote() {
  return [...state.blocks.values()].filter((b) => b.text.trim())
    .map((b) => `${b.title}\n\n${b.text.trim()}`).join("\n\n");
}

// Sections the stream ended without (stopped, cancelled or failed) say so instead of "waiting".
function settleBlocks() {
  for (const block of state.blocks.values()) {
    block.node.classList.remove("streaming", "pending");
    block.node.removeAttribute("aria-busy");
    block.node.classList.toggle("empty", !block.text.trim());
  }
}

function keepPartial() {
  settleBlocks();
  const partial = composeNote();
  if (partial) {
    state.draftedText = partial;
    ui.editor.value = partial;
  }
}

function resetNote() {
  state.blocks.clear();
  state.draftedText = "";
  state.accepted = null;
  ui.sections.replaceChildren();
  ui.sections.hidden = true;
  ui.sections.scrollTop = 0;
  ui.noteEmpty.hidden = false;
  ui.editedBanner.hidden = true;
  ui.unsupportedList.replaceChildren();
  ui.unsupportedBox.hidden = true;
  ui.citationsList.replaceChildren();
  ui.citationsBox.hidden = true;
  ui.editor.value = "";
  for (const node of [ui.tps, ui.ttft, ui.tokens, ui.elapsed]) node.textContent = "–";
  ui.metrics.classList.remove("final");
  showAccepted();
  clearFindings();
  selectTab("review");
}

function setDrafting(on) {
  ui.draftBtn.textContent = on ? "Drafting…" : "Draft";
  ui.noteCard.setAttribute("aria-busy", on ? "true" : "false");
  ui.editor.readOnly = on;
  updateButtons();
}

// ---------------------------------------------------------------- metrics and sources

function liveMetrics() {
  const live = state.live;
  const now = performance.now();
  live.events += 1;
  if (live.firstToken === null) {
    live.firstToken = now;
    ui.ttft.textContent = `${Math.round(now - live.started)} ms`;
  }
  if (now - live.painted < METRIC_PAINT_MS) return;
  live.painted = now;
  const seconds = (now - live.firstToken) / 1000;
  if (seconds > 0.3) ui.tps.textContent = `≈${(live.events / seconds).toFixed(1)}`;
  ui.tokens.textContent = `≈${live.events}`;
  ui.elapsed.textContent = `${((now - live.started) / 1000).toFixed(1)} s`;
}

function showMetrics(metrics) {
  const number = (value, digits) => (typeof value === "number" ? value.toFixed(digits) : "–");
  ui.tps.textContent = number(metrics.tokens_per_s, 1);
  ui.ttft.textContent = typeof metrics.ttft_ms === "number" ? `${Math.round(metrics.ttft_ms)} ms` : "–";
  ui.tokens.textContent = typeof metrics.tokens === "number" ? String(metrics.tokens) : "–";
  ui.elapsed.textContent = typeof metrics.elapsed_ms === "number" ? `${(metrics.elapsed_ms / 1000).toFixed(1)} s` : "–";
  ui.metrics.classList.add("final");
}

function sourceLabel(item) {
  const source = item.source || {};
  const title = source.title || item.title || item.id;
  const issuer = source.issuer || source.publisher || "";
  return `${issuer ? `${issuer}: ` : ""}${title}${item.version ? ` (version ${item.version})` : ""}`;
}

function showCitations(citations) {
  ui.citationsList.replaceChildren(...citations.map((c) => element("li", {},
    element("span", { className: `badge badge-${c.kind === "knowledge" ? "knowledge" : "patient"}`, text: c.kind || "source" }),
    document.createTextNode(" "),
    element("span", { text: c.kind === "knowledge" ? sourceLabel(c) : (c.title || c.id) }))));
  ui.citationsCount.textContent = String(citations.length);
  ui.citationsBox.hidden = citations.length === 0;
}

// ---------------------------------------------------------------- edit, accept, copy

function selectTab(name, focus = false) {
  for (const [tab, panel, key] of [[ui.tabReview, ui.panelReview, "review"], [ui.tabEdit, ui.panelEdit, "edit"]]) {
    const on = key === name;
    tab.setAttribute("aria-selected", String(on));
    tab.tabIndex = on ? 0 : -1;
    panel.hidden = !on;
    if (on && focus) tab.focus();
  }
}

function onTabKey(event) {
  const keys = { ArrowRight: "edit", ArrowLeft: "review", Home: "review", End: "edit" };
  if (!(event.key in keys)) return;
  event.preventDefault();
  selectTab(keys[event.key], true);
}

function onEdit() {
  if (state.accepted) {
    state.accepted = null;
    showAccepted("Edited after acceptance: review it and accept again.");
  }
  ui.editedBanner.hidden = !state.draftedText || ui.editor.value === state.draftedText;
  if (state.qcText !== null && ui.editor.value !== state.qcText) {
    ui.qcSummary.dataset.stale = "true";
    ui.findings.classList.add("stale");
  }
  updateButtons();
}

function toggleAccept() {
  if (state.accepted) {
    state.accepted = null;
    showAccepted("Acceptance withdrawn.");
    return;
  }
  state.accepted = { text: ui.editor.value, at: new Date() };
  showAccepted();
}

function showAccepted(message = "") {
  const accepted = state.accepted;
  ui.acceptBtn.setAttribute("aria-pressed", accepted ? "true" : "false");
  ui.acceptBtn.textContent = accepted ? "Accepted ✓" : "Accept";
  ui.acceptState.classList.toggle("ok", Boolean(accepted));
  ui.acceptState.textContent = accepted
    ? `Accepted at ${accepted.at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })} (in this page only): copy it into the EHR to file it.`
    : message;
}

async function copyNote() {
  const text = ui.editor.value;
  let copied = false;
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      copied = true;
    }
  } catch { /* blocked (e.g. an iframe without clipboard-write): fall back below */ }
  if (!copied) {
    selectTab("edit");
    ui.editor.focus();
    ui.editor.select();
    try {
      copied = document.execCommand("copy");
    } catch {
      copied = false;
    }
  }
  if (copied) say("Note copied to the clipboard.");
  else showError("Copying is blocked here. The note is selected under Edit: press Ctrl+C (⌘C on a Mac).");
}

// ---------------------------------------------------------------- QC

function clearFindings() {
  state.qcText = null;
  ui.findings.replaceChildren();
  ui.findings.classList.remove("stale");
  ui.qcSummary.textContent = "";
  delete ui.qcSummary.dataset.stale;
}

async function runQC() {
  const text = ui.editor.value;
  if (!text.trim() || state.qcBusy) return;
  clearError();
  state.qcBusy = true;
  ui.qcBtn.textContent = "Checking…";
  updateButtons();
  say("Running QC on the current note…");
  const documentType = currentNoteType()?.documentType || DEFAULT_DOCUMENT_TYPE;
  const record = currentRecord();
  const body = record
    ? { ...record, documents: [...(record.documents || []), { id: QC_DOCUMENT_ID, type: documentType, text }] }
    : { text, document_type: documentType };
  try {
    const response = await request("/api/qc", { method: "POST", json: body });
    if (!response.ok) {
      await failed(response, "QC", runQC);
      return;
    }
    const result = await response.json();
    clearFindings();
    state.qcText = text;
    renderFindings(result, Boolean(record));
  } catch (error) {
    if (!(error instanceof SignedOut)) showError(`QC failed: ${error.message}`, runQC);
  } finally {
    state.qcBusy = false;
    ui.qcBtn.textContent = "Run QC";
    updateButtons();
  }
}

function renderFindings(result, withRecord) {
  const findings = [...(result.findings || [])]
    .sort((a, b) => (SEVERITY_ORDER[a.severity] ?? 9) - (SEVERITY_ORDER[b.severity] ?? 9));
  const counts = {};
  for (const f of findings) counts[f.severity] = (counts[f.severity] || 0) + 1;
  const breakdown = Object.keys(SEVERITY_ORDER).filter((s) => counts[s]).map((s) => `${counts[s]} ${s}`).join(", ");
  ui.qcSummary.textContent = findings.length
    ? `${findings.length} finding${findings.length === 1 ? "" : "s"}: ${breakdown}.`
    : "No findings: the QC rules flagged nothing in this note.";
  ui.findings.replaceChildren(...findings.map((finding, index) => findingItem(finding, index, withRecord)));
  say(`QC done: ${ui.qcSummary.textContent}`);
}

function findingItem(finding, index, withRecord) {
  const severity = SEVERITY_ORDER[finding.severity] !== undefined ? finding.severity : "minor";
  const messageId = `finding-${index}-message`;
  const item = element("li", { className: `finding severity-${severity}`, attrs: { "data-rule": finding.rule_id } },
    element("div", { className: "finding-head" },
      element("span", { className: `badge sev sev-${severity}`, text: finding.severity || "finding" }),
      element("span", { className: "finding-category", text: (finding.category || "").replace(/_/g, " ") })),
    element("p", { className: "finding-message", text: finding.message, attrs: { id: messageId } }));
  const evidence = finding.evidence;
  const onNote = evidence && (!withRecord || evidence.document_id === QC_DOCUMENT_ID);
  if (evidence && evidence.text) {
    const before = evidence.context?.before || "";
    const after = evidence.context?.after || "";
    const cutBefore = Number.isInteger(evidence.start) && evidence.start > [...before].length;
    const cutAfter = onNote && Number.isInteger(evidence.end) && state.qcText !== null
      && evidence.end + [...after].length < [...state.qcText].length;
    item.append(element("blockquote", { className: "evidence" },
      document.createTextNode(`${cutBefore ? "…" : ""}${before}`),
      element("mark", { className: "qc-evidence", text: evidence.text }),
      document.createTextNode(`${after}${cutAfter ? "…" : ""}`)));
  }
  if (onNote) {
    const button = element("button", { className: "btn btn-small locate", text: "Show in note", attrs: { type: "button", "aria-describedby": messageId } });
    button.addEventListener("click", () => showInNote(finding, item));
    item.append(button);
    item.addEventListener("click", (event) => {
      if (!event.target.closest("button, a, summary")) showInNote(finding, item);
    });
  } else {
    item.append(element("p", { className: "hint", text: evidence
      ? `In record document ${evidence.document_id}.`
      : "About the note as a whole or the structured record (no text span)." }));
  }
  const sources = (finding.knowledge || []).map(sourceLabel);
  item.append(element("p", { className: "finding-meta" },
    element("code", { text: finding.rule_id }),
    sources.length ? element("span", { className: "finding-source", text: ` · Source: ${sources.join("; ")}` }) : null));
  return item;
}

function showInNote(finding, item) {
  const where = locate(ui.editor.value, finding.evidence);
  for (const other of ui.findings.querySelectorAll('[aria-current="true"]')) other.removeAttribute("aria-current");
  if (!where) {
    say("That text is no longer in the note (it was edited); run QC again.");
    return;
  }
  item.setAttribute("aria-current", "true");
  selectTab("edit");
  ui.editor.focus();
  ui.editor.setSelectionRange(where[0], where[1]);
  scrollEditorTo(where[0]);
  ui.editor.scrollIntoView({ block: "nearest" });
  say(`Selected in the note: “${ui.editor.value.slice(where[0], where[1])}”.`);
}

// Scroll the textarea so that `offset` is in view, measuring the text before it in a hidden
// copy with the same box and font.
function scrollEditorTo(offset) {
  const style = getComputedStyle(ui.editor);
  const mirror = element("div", { className: "editor-mirror", text: ui.editor.value.slice(0, offset) });
  for (const property of ["fontFamily", "fontSize", "fontWeight", "lineHeight", "letterSpacing", "paddingTop",
    "paddingRight", "paddingBottom", "paddingLeft", "borderTopWidth", "borderRightWidth", "borderBottomWidth",
    "borderLeftWidth", "boxSizing", "tabSize", "whiteSpace", "overflowWrap", "wordBreak"]) {
    mirror.style[property] = style[property];
  }
  mirror.style.width = `${ui.editor.offsetWidth}px`;
  document.body.append(mirror);
  const height = mirror.scrollHeight;
  mirror.remove();
  ui.editor.scrollTop = Math.max(0, height - ui.editor.clientHeight / 2);
}

// ---------------------------------------------------------------- wiring

function updateButtons() {
  const drafting = state.controller !== null;
  const hasText = ui.editor.value.trim() !== "";
  ui.draftBtn.disabled = drafting || state.role === "qc_staff";
  ui.stopBtn.disabled = !drafting;
  ui.qcBtn.disabled = drafting || state.qcBusy || !hasText;
  ui.acceptBtn.disabled = drafting || !hasText;
  ui.copyBtn.disabled = drafting || !hasText;
}

function init() {
  ui.sample.addEventListener("change", chooseSample);
  ui.noteType.addEventListener("change", renderSectionOptions);
  ui.draftBtn.addEventListener("click", () => startDraft());
  ui.stopBtn.addEventListener("click", stopDraft);
  ui.retryBtn.addEventListener("click", () => {
    const retry = state.retry;
    clearError();
    if (retry) retry();
  });
  ui.transcript.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && !ui.draftBtn.disabled) {
      event.preventDefault();
      startDraft();
    }
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && state.controller) stopDraft();
  });
  ui.tabReview.addEventListener("click", () => selectTab("review"));
  ui.tabEdit.addEventListener("click", () => selectTab("edit"));
  ui.tabReview.addEventListener("keydown", onTabKey);
  ui.tabEdit.addEventListener("keydown", onTabKey);
  ui.unsupportedList.addEventListener("click", (event) => {
    if (event.target.closest("a")) selectTab("review");
  });
  ui.sections.addEventListener("click", (event) => {
    if (event.target.closest(".claim-ref a")) ui.unsupportedBox.open = true;
  });
  ui.editor.addEventListener("input", onEdit);
  ui.acceptBtn.addEventListener("click", toggleAccept);
  ui.copyBtn.addEventListener("click", copyNote);
  ui.qcBtn.addEventListener("click", runQC);
  if (state.role === "qc_staff") {
    ui.draftBtn.title = "Your role can run QC but not draft notes";
    say("Your role (qc_staff) can run QC on a pasted note but cannot draft.");
  }
  updateButtons();
  loadNoteTypes().then(loadSamples).finally(() => { document.body.dataset.ready = "true"; });
}

init();
