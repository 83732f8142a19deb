// The QC office's batch jobs page: upload a JSON Lines file, watch each job's progress, cancel, open the
// report, and see when its records are filed in the findings queue. Same-origin calls with the session
// cookie and the page's CSRF token; no framework, no CDN.

import { errorFrom, request } from "./api.js";

const list = document.getElementById("jobs");
const listStatus = document.getElementById("jobs-status");
const form = document.getElementById("upload");
const uploadStatus = document.getElementById("upload-status");
const POLL_MS = 1500;
let timer = null;

function csrfToken() {
  return document.querySelector('meta[name="csrf-token"]')?.content || "";
}

function element(tag, attributes = {}, text = "") {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  if (text) node.textContent = text;
  return node;
}

function when(iso) {
  return iso ? iso.slice(0, 16).replace("T", " ") : "";
}

function describe(job) {
  const parts = [`${job.done} of ${job.total} records`];
  if (job.errors) parts.push(`${job.errors} not checked`);
  if (job.status === "running" && job.eta_s != null) parts.push(`about ${Math.ceil(job.eta_s)} s left`);
  if (job.summary) parts.push(`${job.summary.findings} findings`);
  if (job.status === "done") parts.push(job.filed ? "filed in the findings queue" : "being filed in the findings queue…");
  if (job.error) parts.push(job.error);
  return parts.join(" · ");
}

function render(jobs) {
  list.replaceChildren();
  for (const job of jobs) {
    const item = element("li", { class: `job job-${job.status}`, id: `job-${job.id}`, "data-status": job.status,
                                 "data-filed": String(Boolean(job.filed)) });
    const head = element("div", { class: "job-head" });
    head.append(element("span", { class: `badge state state-${job.status === "done" ? "closed" : "open"}` }, job.status),
                element("span", {}, `${when(job.created)} by ${job.owner}`));
    item.append(head);
    const bar = element("progress", { max: String(job.total || 1), value: String(job.done),
                                      "aria-label": `progress of job ${job.id.slice(0, 8)}` });
    item.append(bar, element("p", { class: "job-detail" }, describe(job)));
    const links = element("div", { class: "job-links" });
    if (job.status === "done") {
      links.append(element("a", { href: job.links.report_html, target: "_blank", rel: "noopener" }, "HTML report"),
                   element("a", { href: job.links.report }, "JSONL results"));
      if (job.filed) links.append(element("a", { href: "/qc/findings" }, "Findings queue"));
    }
    if (job.status === "queued" || job.status === "running") {
      const cancel = element("button", { type: "button", class: "btn btn-small", "data-cancel": job.id }, "Cancel");
      links.append(cancel);
    }
    item.append(links);
    list.append(item);
  }
  listStatus.textContent = jobs.length ? `${jobs.length} job${jobs.length === 1 ? "" : "s"}` : "No jobs yet.";
}

async function refresh() {
  clearTimeout(timer);
  try {
    const response = await request("/api/qc/office/jobs");
    if (!response.ok) {
      listStatus.textContent = await errorFrom(response);
      return;
    }
    const { jobs } = await response.json();
    render(jobs);
    const busy = jobs.some((j) => j.status === "queued" || j.status === "running" || (j.status === "done" && !j.filed));
    if (busy) timer = setTimeout(refresh, POLL_MS);
  } catch (error) {
    listStatus.textContent = `Could not load the jobs: ${error.message}`;
  }
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const file = document.getElementById("upload-file").files[0];
  if (!file) return;
  const button = document.getElementById("upload-button");
  button.disabled = true;
  uploadStatus.textContent = `Uploading ${file.name}…`;
  try {
    const body = new FormData();
    body.append("file", file);
    const response = await fetch("/api/qc/jobs", { method: "POST", body, credentials: "same-origin",
                                                   headers: { "X-CSRFToken": csrfToken(), Accept: "application/json" } });
    if (response.status === 401) {
      window.location.assign(document.body.dataset.loginUrl || "/login");
      return;
    }
    if (!response.ok) {
      uploadStatus.textContent = `Not accepted: ${await errorFrom(response)}`;
      return;
    }
    const job = await response.json();
    uploadStatus.textContent = `Job ${job.id.slice(0, 8)} queued: ${job.total} records.`;
    form.reset();
    refresh();
  } catch (error) {
    uploadStatus.textContent = `Upload failed: ${error.message}`;
  } finally {
    button.disabled = false;
  }
});

list.addEventListener("click", async (event) => {
  const id = event.target?.dataset?.cancel;
  if (!id) return;
  event.target.disabled = true;
  const response = await request(`/api/qc/jobs/${id}/cancel`, { method: "POST" });
  if (!response.ok) listStatus.textContent = await errorFrom(response);
  refresh();
});

refresh();
