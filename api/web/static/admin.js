// The admin view: collections, documents, uploads that run as ingestion jobs, deletes and stats.

import { request } from "./api.js";
import { append, bytes, clear, el } from "./dom.js";

export const context = { notify: () => {}, collectionsChanged: () => {} };

let ui = null;
let limits = null;
let selected = null;
const polling = new Map(); // job id -> timer

/** Wire the view's controls. */
export function init() {
  ui = {
    refused: document.getElementById("admin-refused"),
    body: document.getElementById("admin-body"),
    create: document.getElementById("create-form"),
    name: document.getElementById("new-collection"),
    collections: document.querySelector("#collections-table tbody"),
    panel: document.getElementById("collection-panel"),
    heading: document.getElementById("panel-heading"),
    stats: document.getElementById("stats"),
    upload: document.getElementById("upload-form"),
    files: document.getElementById("upload-files"),
    uploadHelp: document.getElementById("upload-help"),
    jobs: document.getElementById("jobs"),
    documents: document.querySelector("#documents-table tbody"),
  };
  ui.create.addEventListener("submit", (e) => {
    e.preventDefault();
    createCollection();
  });
  ui.upload.addEventListener("submit", (e) => {
    e.preventDefault();
    upload();
  });
}

/** Ask the server whether this caller may administer; returns true when it may. */
export async function probe() {
  try {
    const status = await request("GET", "/v1/admin");
    limits = status.limits;
    ui.refused.hidden = true;
    ui.body.hidden = false;
    ui.uploadHelp.textContent = `Up to ${limits.max_files} files and ${bytes(limits.max_upload_bytes)} per upload; `
      + `each file at most ${bytes(limits.max_file_bytes)}. Formats: ${limits.formats.join(" ")}.`;
    return true;
  } catch (err) {
    ui.body.hidden = true;
    ui.refused.hidden = false;
    ui.refused.textContent = err.status === 403
      ? `The admin view is not available to you: ${err.message}.`
      : `The admin view could not be loaded: ${err.message}`;
    return false;
  }
}

/** Load the view's data (when it is shown). */
export async function refresh() {
  if (!(await probe())) return;
  await loadCollections();
  if (selected) await select(selected);
}

async function loadCollections() {
  const { collections } = await request("GET", "/v1/admin/collections");
  clear(ui.collections);
  if (!collections.length) {
    ui.collections.append(el("tr", {}, el("td", { colspan: 7 }, "No collections yet: create one above.")));
  }
  for (const c of collections) {
    ui.collections.append(el("tr", { class: c.name === selected ? "selected" : null },
      el("th", { scope: "row" }, c.name, c.busy ? el("span", { class: "tag" }, "ingesting") : null),
      el("td", {}, String(c.documents)),
      el("td", {}, String(c.chunks)),
      el("td", {}, String(c.pending)),
      el("td", {}, String(c.deleted)),
      el("td", {}, bytes(c.bytes)),
      el("td", { class: "actions" },
        el("button", { type: "button", class: "secondary small", "aria-label": `Open ${c.name}`, onclick: () => select(c.name) }, "Open"),
        confirmButton(`Drop ${c.name}`, `Drop ${c.name} and all its documents?`, () => drop(c.name)))));
  }
  if (selected && !collections.some((c) => c.name === selected)) {
    selected = null;
    ui.panel.hidden = true;
  }
}

/** A button that asks again in place before doing something that cannot be undone (no native dialog). */
function confirmButton(label, question, action) {
  const wrap = el("span", { class: "confirm" });
  const first = el("button", { type: "button", class: "danger small", onclick: () => ask() }, label.split(" ")[0]);
  first.setAttribute("aria-label", label);
  const ask = () => {
    clear(wrap);
    const yes = el("button", { type: "button", class: "danger small", onclick: async () => {
      yes.disabled = true;
      try {
        await action();
      } catch (err) {
        context.notify(err.message);
        reset();
      }
    } }, "Yes");
    yes.setAttribute("aria-label", `Yes: ${label}`);
    const no = el("button", { type: "button", class: "quiet small", onclick: () => { reset(); first.focus(); } }, "No");
    append(wrap, el("span", { class: "question" }, question), " ", yes, no);
    yes.focus();
  };
  const reset = () => {
    clear(wrap).append(first);
  };
  reset();
  return wrap;
}

async function createCollection() {
  const name = ui.name.value.trim();
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$/.test(name)) {
    context.notify("A collection name is 1 to 100 letters, digits, '_', '.' or '-', starting with a letter or digit.");
    ui.name.focus();
    return;
  }
  try {
    await request("POST", "/v1/admin/collections", { json: { name } });
    ui.name.value = "";
    context.notify(`Created ${name}.`);
    await loadCollections();
    context.collectionsChanged();
    await select(name);
  } catch (err) {
    context.notify(err.message);
  }
}

async function drop(name) {
  await request("DELETE", `/v1/admin/collections/${encodeURIComponent(name)}`);
  context.notify(`Dropped ${name}.`);
  if (selected === name) {
    selected = null;
    ui.panel.hidden = true;
  }
  await loadCollections();
  context.collectionsChanged();
}

async function select(name) {
  selected = name;
  ui.panel.hidden = false;
  ui.heading.textContent = name;
  const [stats, docs] = await Promise.all([
    request("GET", `/v1/admin/collections/${encodeURIComponent(name)}`),
    request("GET", `/v1/admin/collections/${encodeURIComponent(name)}/documents`),
  ]);
  renderStats(stats);
  renderDocuments(docs.documents);
  for (const row of ui.collections.querySelectorAll("tr")) {
    row.classList.toggle("selected", row.querySelector("th")?.firstChild?.textContent === name);
  }
}

function renderStats(s) {
  clear(ui.stats);
  const items = [
    ["Documents", s.documents], ["Chunks", s.chunks], ["Pending", s.pending], ["Deleted (tombstones)", s.deleted],
    ["Vectors", s.vectors], ["BM25 entries", s.lexical_docs], ["Index", s.index_type || "none yet"],
    ["On disk", bytes(s.bytes)], ["Embedding model", s.embedding_model || "—"],
  ];
  for (const [k, v] of items) append(ui.stats, el("div", {}, el("dt", {}, k), el("dd", {}, String(v))));
}

function renderDocuments(docs) {
  clear(ui.documents);
  if (!docs.length) ui.documents.append(el("tr", {}, el("td", { colspan: 6 }, "No documents yet: upload some files above.")));
  for (const d of docs) {
    const updated = d.updated_at ? new Date(d.updated_at).toLocaleString() : "";
    ui.documents.append(el("tr", {},
      el("th", { scope: "row" }, d.title || d.external_id),
      el("td", { class: "path" }, d.source),
      el("td", {}, d.state),
      el("td", {}, String(d.chunks)),
      el("td", {}, updated),
      el("td", { class: "actions" },
        confirmButton(`Delete ${d.title || d.external_id}`, "Delete this document?", async () => {
          await request("DELETE", `/v1/admin/collections/${encodeURIComponent(selected)}/documents/${d.id}`);
          context.notify(`Deleted ${d.title || d.external_id}.`);
          await select(selected);
          await loadCollections();
          context.collectionsChanged();
        }))));
  }
}

async function upload() {
  const files = [...ui.files.files];
  if (!selected) return;
  if (!files.length) {
    context.notify("Choose one or more files first.");
    ui.files.focus();
    return;
  }
  const total = files.reduce((n, f) => n + f.size, 0);
  if (limits && (files.length > limits.max_files || total > limits.max_upload_bytes)) {
    context.notify(`That is ${files.length} files and ${bytes(total)}; one upload holds at most ${limits.max_files} files and ${bytes(limits.max_upload_bytes)}. Upload them in parts.`);
    return;
  }
  const form = new FormData();
  form.append("collection", selected);
  for (const f of files) form.append("files", f, f.name);
  const button = document.getElementById("upload-button");
  button.disabled = true;
  try {
    const job = await request("POST", "/v1/admin/jobs", { form });
    ui.files.value = "";
    showJob(job);
    poll(job.id);
  } catch (err) {
    context.notify(err.code === "busy" ? `Busy: ${err.message}` : `The upload failed: ${err.message}`);
  } finally {
    button.disabled = false;
  }
}

function poll(id) {
  clearTimeout(polling.get(id));
  polling.set(id, setTimeout(async () => {
    try {
      const job = await request("GET", `/v1/admin/jobs/${encodeURIComponent(id)}`);
      showJob(job);
      if (job.status === "queued" || job.status === "running") {
        poll(id);
        return;
      }
      polling.delete(id);
      if (job.collection === selected) await select(selected);
      await loadCollections();
      context.collectionsChanged();
    } catch (err) {
      context.notify(`Lost track of job ${id}: ${err.message}`);
      polling.delete(id);
    }
  }, 500));
}

function showJob(job) {
  const id = `job-${job.id}`;
  const p = job.progress;
  const total = p.files_total || job.files.length || 1;
  const done = job.status === "done" ? total : Math.min(p.files_done, total);
  const state = { queued: "waiting", running: "ingesting", done: "finished", failed: "failed" }[job.status];
  const line = job.status === "done"
    ? `${job.documents_added} added, ${job.documents_updated} updated, ${job.documents_unchanged} unchanged, ${job.documents_failed} failed; ${job.chunks_added} chunks`
    : `${done} of ${total} files, ${p.chunks} chunks${p.eta_s ? `, about ${Math.ceil(p.eta_s)} s left` : ""}`;
  const item = el("li", { id, class: `job ${job.status}`, dataset: { status: job.status } },
    el("div", { class: "row" },
      el("strong", {}, `Job ${job.id}`), " ",
      el("span", { class: "tag" }, state), " ",
      el("span", { class: "meta" }, `${job.collection}: ${job.files.join(", ")}`)),
    el("label", { for: `${id}-bar`, class: "sr-only" }, `Progress of job ${job.id}`),
    el("progress", { id: `${id}-bar`, max: total, value: done }),
    el("p", { class: "job-line" }, line));
  if (job.error) {
    item.append(el("p", { class: "error" }, job.error.code === "busy" ? `Busy: ${job.error.message}` : job.error.message));
  }
  if (job.failures.length) {
    const list = el("ul", { class: "failures", "aria-label": "Files that failed" });
    for (const f of job.failures) list.append(el("li", {}, el("code", {}, f.file), `: ${f.reason}`));
    item.append(el("p", {}, "Not ingested:"), list);
  }
  const old = document.getElementById(id);
  if (old) old.replaceWith(item);
  else ui.jobs.prepend(item);
}
