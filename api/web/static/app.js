// The page's entry point: views, the API key, collections and what this server supports.

import * as admin from "./admin.js";
import { hooks, key, request } from "./api.js";
import * as ask from "./ask.js";
import { clear, el } from "./dom.js";

const COLLECTION = "rag.collection";
const views = {
  ask: document.getElementById("view-ask"),
  source: document.getElementById("view-source"),
  admin: document.getElementById("view-admin"),
};
const tabs = { ask: document.getElementById("tab-ask"), admin: document.getElementById("tab-admin") };
const notice = document.getElementById("notice");
const dialog = document.getElementById("key-dialog");
let current = "ask";

function notify(message) {
  notice.textContent = message;
  notice.hidden = !message;
}

function showView(name) {
  if (name !== current && name !== "source" && current !== "source") notify("");
  current = name;
  for (const [k, node] of Object.entries(views)) node.hidden = k !== name;
  const tab = name === "admin" ? "admin" : "ask";
  for (const [k, node] of Object.entries(tabs)) {
    if (k === tab) node.setAttribute("aria-current", "page");
    else node.removeAttribute("aria-current");
  }
  const hash = `#${name}`;
  if (location.hash !== hash) history.pushState(null, "", hash);
}

function route() {
  const name = location.hash.slice(1);
  if (name === "admin") {
    if (current !== "admin") showView("admin");
    admin.refresh();
  } else if (name === "source" && current === "source") {
    // already there
  } else if (current === "source") {
    ask.closeSource();
  } else {
    showView("ask");
  }
}

// The API key: asked for once when the server wants one, kept in this tab only.

function openKeyDialog(reason) {
  document.getElementById("key-why").textContent = reason
    || "An API key for this server. It is kept in this tab only (session storage) and sent as a bearer header.";
  document.getElementById("key-input").value = "";
  if (!dialog.open) dialog.showModal();
}

hooks.unauthorized = (err) => openKeyDialog(`This server needs an API key (${err.message}). It is kept in this tab only (session storage) and sent as a bearer header.`);

document.getElementById("key-button").addEventListener("click", () => openKeyDialog());
document.getElementById("key-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const value = document.getElementById("key-input").value.trim();
  if (!value) return;
  key.set(value);
  dialog.close();
  start();
});
document.getElementById("key-forget").addEventListener("click", () => {
  key.set("");
  dialog.close();
  notify("The key is forgotten.");
});
document.getElementById("key-cancel").addEventListener("click", () => dialog.close());

// What the server supports, read from its OpenAPI document (the planning work adds a history).

async function features() {
  try {
    const doc = await (await fetch("/openapi.json", { credentials: "omit" })).json();
    const schemas = (doc.components && doc.components.schemas) || {};
    const resolve = (s) => (s && s.$ref ? schemas[s.$ref.split("/").pop()] : s);
    const field = ((schemas.AskRequest || {}).properties || {}).history;
    if (!field) return { history: null };
    const list = resolve((field.anyOf || []).find((x) => x.type === "array") || field);
    const item = resolve(list && list.items) || {};
    const props = item.properties || {};
    if (props.role && props.content) return { history: "messages" };
    if (props.question && props.answer) return { history: "pairs" };
    return { history: null };
  } catch {
    return { history: null };
  }
}

async function loadCollections() {
  const select = document.getElementById("collection");
  try {
    const { collections } = await request("GET", "/v1/collections");
    const wanted = select.value || localStorage.getItem(COLLECTION) || "";
    clear(select);
    for (const c of collections) {
      select.append(el("option", { value: c.name }, `${c.name} (${c.documents} document${c.documents === 1 ? "" : "s"})`));
    }
    if (collections.some((c) => c.name === wanted)) select.value = wanted;
    if (!collections.length) notify("There are no collections yet: create one in the Admin view, or run `rag ingest`.");
  } catch (err) {
    if (err.status !== 401) notify(`The collections could not be loaded: ${err.message}`);
  }
}

document.getElementById("collection").addEventListener("change", (e) => localStorage.setItem(COLLECTION, e.target.value));

async function start() {
  notify("");
  ask.context.features = await features();
  ask.showHistoryNote();
  await loadCollections();
  if (await admin.probe()) tabs.admin.hidden = false;
}

ask.context.notify = notify;
ask.context.showView = showView;
admin.context.notify = notify;
admin.context.collectionsChanged = loadCollections;
ask.init();
admin.init();
window.addEventListener("popstate", route);
tabs.admin.addEventListener("click", (e) => {
  e.preventDefault();
  showView("admin");
  admin.refresh();
});
tabs.ask.addEventListener("click", (e) => {
  e.preventDefault();
  if (current === "source") ask.closeSource();
  else showView("ask");
});
if (location.hash === "#admin") {
  showView("admin");
}
start().then(() => {
  if (current === "admin") admin.refresh();
  document.body.dataset.ready = "true";
});
