// The asking view: a conversation of turns, each answer with its own citations, kept across reloads.

import { ApiError, request, stream } from "./api.js";
import { append, clear, duration, el, highlighted } from "./dom.js";

const THREAD = "rag.thread.v1";
const MAX_TURNS = 50;
const VERDICTS = {
  supported: "supported by its source",
  unsupported: "not supported by the source it cites",
  uncited: "cites no source",
};
const STAGES = ["plan", "embed", "bm25", "dense", "fuse", "rerank", "generate", "verify", "total"];

/** The conversation, as stored in this browser (local storage: it survives a reload and a closed tab). */
export const thread = {
  turns: [],
  load() {
    try {
      const saved = JSON.parse(localStorage.getItem(THREAD) || "{}");
      this.turns = Array.isArray(saved.turns) ? saved.turns : [];
    } catch {
      this.turns = [];
    }
    for (const t of this.turns) if (t.status === "streaming") t.status = "interrupted";
  },
  save() {
    this.turns = this.turns.slice(-MAX_TURNS);
    try {
      localStorage.setItem(THREAD, JSON.stringify({ turns: this.turns }));
    } catch {
      // storage full or disabled: the conversation still works, it is just not kept
    }
  },
  clear() {
    this.turns = [];
    localStorage.removeItem(THREAD);
  },
};

/** Set up by the app: what the server supports and how to report problems. */
export const context = { features: { history: null, plan: false }, notify: () => {}, showView: () => {} };

let ui = null;

/** Wire the view's controls; render the stored conversation. */
export function init() {
  ui = {
    form: document.getElementById("ask-form"),
    question: document.getElementById("question"),
    collection: document.getElementById("collection"),
    thread: document.getElementById("thread"),
    ask: document.getElementById("ask-button"),
    search: document.getElementById("search-button"),
    fresh: document.getElementById("new-button"),
    historyNote: document.getElementById("history-note"),
    card: document.getElementById("card"),
    source: {
      view: document.getElementById("view-source"),
      back: document.getElementById("source-back"),
      title: document.getElementById("source-title"),
      meta: document.getElementById("source-meta"),
      note: document.getElementById("source-note"),
      text: document.getElementById("source-text"),
    },
  };
  ui.form.addEventListener("submit", (e) => {
    e.preventDefault();
    submit("ask");
  });
  ui.search.addEventListener("click", () => submit("search"));
  ui.question.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      submit("ask");
    }
  });
  ui.fresh.addEventListener("click", () => {
    thread.clear();
    renderThread();
    ui.question.focus();
  });
  ui.source.back.addEventListener("click", () => closeSource());
  ui.card.addEventListener("mouseenter", () => clearTimeout(cardTimer));
  ui.card.addEventListener("mouseleave", () => hideCardSoon());
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && !ui.card.hidden) hideCard();
  });
  thread.load();
  renderThread();
}

/** Show whether follow-ups carry the conversation (feature-detected from the OpenAPI document). */
export function showHistoryNote() {
  const supported = context.features.history !== null;
  ui.historyNote.hidden = supported;
  ui.historyNote.textContent = supported
    ? ""
    : "This server does not take earlier turns yet: each question is answered on its own, without the conversation.";
}

function newId() {
  return `t${Date.now().toString(36)}${Math.random().toString(36).slice(2, 7)}`;
}

function busy(on) {
  ui.ask.disabled = on;
  ui.search.disabled = on;
  ui.form.setAttribute("aria-busy", on ? "true" : "false");
}

/**
 * The earlier turns over the same collection, in the shape the server's ``history`` field takes,
 * or undefined when the server takes none.
 */
function history(before, collection) {
  const shape = context.features.history;
  if (!shape) return undefined;
  const done = before.filter((t) => t.mode === "ask" && t.status === "done" && t.collection === collection
    && t.result && !t.result.abstained && t.result.answer);
  if (shape === "messages") {
    return done.flatMap((t) => [
      { role: "user", content: t.question },
      { role: "assistant", content: t.result.answer },
    ]);
  }
  return done.map((t) => ({ question: t.question, answer: t.result.answer }));
}

async function submit(mode) {
  if (ui.ask.disabled) return; // one question at a time
  const question = ui.question.value.trim();
  const collection = ui.collection.value;
  if (!question) {
    context.notify("Type a question first.");
    ui.question.focus();
    return;
  }
  if (!collection) {
    context.notify("There is no collection to ask: create one in the Admin view, or run `rag ingest`.");
    return;
  }
  const turn = {
    id: newId(), mode, question, collection, status: "streaming", draft: "", sources: [],
    result: null, results: null, error: null, feedback: { answer: null, chunks: {} }, at: Date.now(),
  };
  const earlier = history(thread.turns, collection);
  turn.withHistory = earlier !== undefined && earlier.length > 0;
  turn.historyTurns = earlier ? earlier.length : 0;
  turn.followUpAlone = earlier === undefined
    && thread.turns.some((t) => t.mode === "ask" && t.status === "done" && t.collection === collection);
  thread.turns.push(turn);
  thread.save();
  ui.question.value = "";
  const node = renderTurn(turn);
  ui.thread.append(node);
  node.scrollIntoView({ block: "nearest" });
  busy(true);
  try {
    if (mode === "search") {
      const found = await request("POST", "/v1/search", { json: { query: question, collection, top_k: 10 } });
      turn.results = found.results;
      turn.timings = found.timings_ms;
      turn.status = "done";
    } else {
      const body = { query: question, collection, stream: true };
      if (turn.withHistory) body.history = earlier;
      await stream("/v1/ask", body, (event, data) => onEvent(turn, event, data));
      if (turn.status === "streaming") turn.status = turn.result ? "done" : "interrupted";
    }
  } catch (err) {
    turn.status = "error";
    turn.error = { message: err.message, code: err instanceof ApiError ? err.code : null };
  }
  thread.save();
  rerender(turn);
  busy(false);
  ui.question.focus();
}

function onEvent(turn, event, data) {
  if (event === "citations") {
    turn.sources = data.sources || [];
    thread.save();
  } else if (event === "token") {
    turn.draft += data.text;
    const draft = document.querySelector(`#${turn.id} .draft`);
    if (draft) draft.textContent = turn.draft;
  } else if (event === "verification") {
    turn.result = { ...data };
    thread.save();
    rerender(turn);
  } else if (event === "done") {
    turn.result = { ...(turn.result || {}), ...data };
    turn.status = "done";
  } else if (event === "error") {
    turn.status = "error";
    turn.error = data.error || { message: "the answer failed" };
  }
}

function renderThread() {
  clear(ui.thread);
  for (const turn of thread.turns) ui.thread.append(renderTurn(turn));
}

function rerender(turn) {
  const old = document.getElementById(turn.id);
  if (old) old.replaceWith(renderTurn(turn));
}

// A turn ------------------------------------------------------------------------------------------

function renderTurn(turn) {
  const li = el("li", { id: turn.id, class: `turn ${turn.status}` });
  li.append(
    el("div", { class: "asked" }, el("span", { class: "who" }, turn.mode === "search" ? "You searched" : "You asked"),
      el("p", { class: "question" }, turn.question),
      el("span", { class: "meta" }, `in ${turn.collection}`)),
  );
  const reply = el("div", { class: "reply", "aria-live": turn.status === "streaming" ? "polite" : null });
  li.append(reply);
  if (turn.withHistory) {
    reply.append(el("p", { class: "help" }, `A follow-up: asked with the ${turn.historyTurns} earlier turn${turn.historyTurns === 1 ? "" : "s"} over ${turn.collection}.`));
  }
  if (turn.followUpAlone) {
    reply.append(el("p", { class: "help" }, "Sent without the earlier turns: this server does not take a conversation history yet."));
  }
  if (turn.mode === "search") {
    renderSearch(turn, reply);
    return li;
  }
  if (turn.result && turn.result.claims) {
    renderAnswer(turn, reply);
  } else if (turn.status === "streaming") {
    reply.append(el("p", { class: "draft", "aria-busy": "true" }, turn.draft), el("p", { class: "help working" }, turn.sources.length ? "Writing the answer…" : "Searching…"));
  } else if (turn.draft) {
    reply.append(el("p", { class: "draft" }, turn.draft));
  }
  if (turn.status === "interrupted") reply.append(el("p", { class: "error" }, "This answer was interrupted before it was checked."));
  if (turn.status === "error") {
    reply.append(el("p", { class: "error", role: "alert" }, `The question failed: ${turn.error.message}`));
  }
  return li;
}

function renderSearch(turn, reply) {
  if (turn.status === "streaming") {
    reply.append(el("p", { class: "help working" }, "Searching…"));
    return;
  }
  if (turn.status === "error") {
    reply.append(el("p", { class: "error", role: "alert" }, `The search failed: ${turn.error.message}`));
    return;
  }
  const results = turn.results || [];
  reply.append(el("p", { class: "summary" }, results.length ? `${results.length} passages found` : "Nothing found."));
  const list = el("ol", { class: "results" });
  results.forEach((r, i) => {
    list.append(
      el("li", { class: "result" },
        el("div", { class: "source-head" },
          el("strong", {}, r.title || r.external_id), " ",
          el("span", { class: "meta" }, [r.section, r.source].filter(Boolean).join(" · "))),
        el("p", { class: "passage" }, r.text),
        el("button", {
          type: "button", class: "secondary small",
          onclick: (e) => openSource(turn, { n: i + 1, ...r, spans: [] }, null, e.currentTarget),
        }, "Open the document")),
    );
  });
  reply.append(list);
  if (turn.timings) reply.append(timings(turn.timings));
}

function renderAnswer(turn, reply) {
  const r = turn.result;
  const byN = new Map((r.citations || []).map((c) => [c.n, c]));
  if (r.abstained) {
    const closest = (turn.sources || []).slice(0, 5);
    const box = el("div", { class: "abstain", role: "note" },
      el("p", {}, el("strong", {}, "No answer. "),
        "The sources found do not support an answer to this question, so none is given."));
    if (closest.length) {
      box.append(el("p", {}, "The closest passages found:"));
      const list = el("ol", { class: "results" });
      for (const s of closest) {
        list.append(el("li", { class: "result" },
          el("div", { class: "source-head" }, el("strong", {}, s.title || s.source), " ", el("span", { class: "meta" }, s.source)),
          el("p", { class: "passage" }, s.text),
          el("button", { type: "button", class: "secondary small", onclick: (e) => openSource(turn, { ...s, spans: [] }, null, e.currentTarget) }, "Open the document")));
      }
      box.append(list);
    } else {
      box.append(el("p", {}, "Nothing close was found in this collection."));
    }
    reply.append(box);
  } else {
    const answer = el("p", { class: "answer" });
    const claims = r.claims || [];
    if (!claims.length) answer.append(r.answer || "");
    claims.forEach((claim, k) => {
      if (k) answer.append(" ");
      const label = `${claim.verdict}, support ${claim.score.toFixed(2)}`;
      const span = el("span", {
        class: `claim v-${claim.verdict}`,
        title: `This sentence is ${VERDICTS[claim.verdict] || claim.verdict} (support score ${claim.score.toFixed(2)})`,
        dataset: { verdict: claim.verdict, score: claim.score.toFixed(2) },
      }, claim.text, el("span", { class: "sr-only" }, ` (${label})`));
      answer.append(span);
      for (const n of claim.citations) {
        const citation = byN.get(n);
        if (!citation) continue;
        answer.append(marker(turn, citation, k));
      }
    });
    reply.append(answer);
    const supported = claims.filter((c) => c.verdict === "supported").length;
    reply.append(el("p", { class: "summary" },
      el("span", { class: "faithfulness" }, `Faithfulness ${Math.round((r.faithfulness || 0) * 100)}%`),
      claims.length ? ` · ${supported} of ${claims.length} sentences supported by their sources` : "",
      legend()));
    if ((r.invalid_citations || []).length) {
      reply.append(el("p", { class: "help" },
        `The answer cited source${r.invalid_citations.length > 1 ? "s" : ""} ${r.invalid_citations.join(", ")}, which it was not given; those markers were removed.`));
    }
  }
  if ((r.citations || []).length) reply.append(sourceList(turn));
  if (!r.abstained && (r.citations || []).length) reply.append(answerFeedback(turn));
  const plan = planOf(r);
  if (plan) reply.append(plan);
  if (r.timings_ms) reply.append(timings(r.timings_ms));
}

function legend() {
  return el("span", { class: "legend", "aria-hidden": "true" },
    el("span", { class: "claim v-supported" }, "supported"),
    el("span", { class: "claim v-unsupported" }, "unsupported"),
    el("span", { class: "claim v-uncited" }, "uncited"));
}

function marker(turn, citation, claimIndex) {
  const button = el("button", {
    type: "button",
    class: `cite ${citation.kind === "attributed" ? "attributed" : ""}`,
    "aria-label": `Source ${citation.n}: ${citation.title || citation.source}`,
    "aria-describedby": "card",
    dataset: { n: citation.n, claim: claimIndex },
  }, String(citation.n));
  const show = () => showCard(turn, citation, claimIndex, button);
  button.addEventListener("mouseenter", show);
  button.addEventListener("focus", show);
  button.addEventListener("mouseleave", hideCardSoon);
  button.addEventListener("blur", hideCardSoon);
  button.addEventListener("click", () => openSource(turn, citation, claimIndex, button));
  return button;
}

function sourceList(turn) {
  const list = el("ol", { class: "sources", "aria-label": "Sources cited" });
  for (const c of turn.result.citations) {
    const meta = [c.section, c.page ? `page ${c.page}` : "", c.source].filter(Boolean).join(" · ");
    const steps = (turn.result.plan && turn.result.plan.steps) || [];
    const foundBy = steps.length > 1 && c.query ? `Found by step ${(c.step || 0) + 1}: ${c.query}` : "";
    list.append(el("li", { class: "source", value: c.n },
      el("div", { class: "source-head" },
        el("span", { class: "n" }, `[${c.n}]`), " ",
        el("strong", {}, c.title || c.source),
        c.kind === "attributed" ? el("span", { class: "tag", title: "The answer did not cite this source; the verifier attributed a sentence to it" }, "attributed") : null),
      el("p", { class: "meta" }, meta),
      foundBy ? el("p", { class: "meta" }, foundBy) : null,
      el("div", { class: "row" },
        el("button", { type: "button", class: "secondary small", onclick: (e) => openSource(turn, c, null, e.currentTarget) }, "Open the document"),
        thumbs(turn, `source ${c.n}`, turn.feedback.chunks[c.chunk_id], (relevant) => sendFeedback(turn, [c.chunk_id], relevant, "chunk")))));
  }
  return list;
}

function answerFeedback(turn) {
  return el("div", { class: "feedback row" },
    el("span", {}, "Was this answer helpful?"),
    thumbs(turn, "this answer", turn.feedback.answer, (good) => {
      const chunks = turn.result.citations.map((c) => c.chunk_id);
      return sendFeedback(turn, chunks, good, "answer");
    }));
}

function thumbs(turn, what, state, send) {
  const status = el("span", { class: "feedback-status", role: "status" }, state === undefined || state === null ? "" : "Thanks, saved.");
  const group = el("span", { class: "thumbs", role: "group", "aria-label": `Feedback on ${what}` });
  const make = (good) => el("button", {
    type: "button",
    class: `thumb ${good ? "up" : "down"}`,
    "aria-pressed": state === good ? "true" : "false",
    "aria-label": good ? `Helpful: ${what}` : `Not helpful: ${what}`,
    title: good ? "Relevant: the reranker learns from this" : "Not relevant: the reranker learns from this",
    onclick: async (e) => {
      const pressed = e.currentTarget; // currentTarget is gone once the handler awaits
      const buttons = group.querySelectorAll("button");
      buttons.forEach((b) => (b.disabled = true));
      try {
        await send(good);
        buttons.forEach((b) => b.setAttribute("aria-pressed", b === pressed ? "true" : "false"));
        status.textContent = "Thanks, saved.";
      } catch (err) {
        status.textContent = `Not saved: ${err.message}`;
      } finally {
        buttons.forEach((b) => (b.disabled = false));
      }
    },
  }, el("img", { src: `/static/thumb-${good ? "up" : "down"}.svg`, alt: "", width: 20, height: 20 }), el("span", { class: "sr-only" }, good ? "Yes" : "No"));
  append(group, make(true), make(false), status);
  return group;
}

async function sendFeedback(turn, chunkIds, relevant, kind) {
  for (const chunk_id of chunkIds) {
    await request("POST", "/v1/feedback", { json: { query: turn.question, collection: turn.collection, chunk_id, relevant } });
    turn.feedback.chunks[chunk_id] = relevant;
  }
  if (kind === "answer") turn.feedback.answer = relevant;
  thread.save();
}

/** How the question was planned: the rewrite of a follow-up, and each retrieval step with its query. */
function planOf(result) {
  const plan = result.plan;
  const steps = plan && Array.isArray(plan.steps) ? plan.steps : [];
  const rewritten = plan && plan.rewrite && plan.rewrite.question && plan.rewrite.question !== plan.rewrite.original;
  if (!plan || (steps.length <= 1 && !rewritten && !plan.fallback)) return null;
  const details = el("details", { class: "plan" },
    el("summary", {}, `Plan: ${plan.mode}, ${steps.length} step${steps.length === 1 ? "" : "s"}`));
  if (rewritten) details.append(el("p", {}, "Searched as: ", el("q", {}, plan.rewrite.question)));
  if (plan.fallback) details.append(el("p", { class: "help" }, `Planning fell back: ${plan.fallback}`));
  const list = el("ol", { class: "steps" });
  for (const step of steps) {
    const found = Array.isArray(step.found) ? step.found.length : 0;
    list.append(el("li", {},
      el("q", {}, step.query || ""),
      el("span", { class: "meta" }, ` ${[step.purpose, `${found} found`, step.decision].filter(Boolean).join(" · ")}`)));
  }
  details.append(list);
  if (plan.stop) details.append(el("p", { class: "help" }, `Stopped: ${plan.stop}`));
  if (steps.length > 1) details.open = true;
  return details;
}

function timings(t) {
  const total = t.total || 0;
  const table = el("table", { class: "timings" }, el("caption", { class: "sr-only" }, "Milliseconds per stage"));
  const body = el("tbody");
  for (const stage of STAGES) {
    if (t[stage] === undefined || t[stage] === null || (stage === "plan" && !t[stage])) continue;
    body.append(el("tr", {}, el("th", { scope: "row" }, stage), el("td", {}, duration(t[stage]))));
  }
  table.append(body);
  return el("details", { class: "timings" }, el("summary", {}, `Timings: ${duration(total)} in all`), table);
}

// The citation card ---------------------------------------------------------------------------------

let cardTimer = 0;

function evidenceRanges(turn, citation, claimIndex) {
  const claim = claimIndex === null || claimIndex === undefined ? null : (turn.result.claims || [])[claimIndex];
  const own = claim && (claim.evidence || []).filter((e) => e.n === citation.n);
  if (own && own.length) return own.map((e) => ({ start: e.start, end: e.end }));
  return (citation.spans || []).map((s) => ({ start: s.start, end: s.end }));
}

function showCard(turn, citation, claimIndex, anchor) {
  clearTimeout(cardTimer);
  const card = clear(ui.card);
  const claim = claimIndex === null || claimIndex === undefined ? null : (turn.result.claims || [])[claimIndex];
  const meta = [citation.section, citation.page ? `page ${citation.page}` : "", citation.source].filter(Boolean).join(" · ");
  const { fragment, marks } = highlighted(citation.text, evidenceRanges(turn, citation, claimIndex));
  append(card,
    el("p", { class: "card-title" }, el("span", { class: "n" }, `[${citation.n}] `), el("strong", {}, citation.title || citation.source)),
    el("p", { class: "meta" }, meta),
    claim ? el("p", { class: `card-verdict v-${claim.verdict}` }, `This sentence is ${VERDICTS[claim.verdict] || claim.verdict}; support ${claim.score.toFixed(2)}.`) : null,
    el("blockquote", { class: "passage" }, fragment),
    el("p", { class: "help" }, marks.length ? "The highlighted words are the ones cited. Click to open the document." : "Click to open the document."));
  card.hidden = false;
  anchor.setAttribute("aria-expanded", "true");
  card.dataset.for = `${turn.id}:${citation.n}`;
  place(card, anchor);
  if (marks.length) {
    const quote = card.querySelector(".passage");
    quote.scrollTop = Math.max(0, marks[0].offsetTop - quote.offsetTop - 24);
  }
}

function place(card, anchor) {
  const box = anchor.getBoundingClientRect();
  const width = Math.min(420, window.innerWidth - 16);
  card.style.width = `${width}px`;
  const left = Math.min(Math.max(8, box.left + window.scrollX - width / 2), window.scrollX + window.innerWidth - width - 8);
  card.style.left = `${left}px`;
  const below = box.bottom + window.scrollY + 6;
  const height = card.offsetHeight;
  const fitsBelow = box.bottom + 6 + height < window.innerHeight || box.top < height + 12;
  card.style.top = `${fitsBelow ? below : box.top + window.scrollY - height - 6}px`;
}

function hideCard() {
  ui.card.hidden = true;
  document.querySelectorAll(".cite[aria-expanded='true']").forEach((b) => b.setAttribute("aria-expanded", "false"));
}

function hideCardSoon() {
  clearTimeout(cardTimer);
  cardTimer = setTimeout(() => {
    if (!ui.card.matches(":hover")) hideCard();
  }, 200);
}

// The source view -------------------------------------------------------------------------------------

let returnFocus = null;

async function openSource(turn, citation, claimIndex, from) {
  hideCard();
  returnFocus = from || null;
  const s = ui.source;
  s.title.textContent = citation.title || citation.source;
  s.meta.textContent = [citation.source, citation.section].filter(Boolean).join(" · ");
  s.note.hidden = true;
  clear(s.text).append("Loading…");
  context.showView("source");
  const spans = (citation.spans || []).length
    ? citation.spans.map((x) => ({ start: x.char_start, end: x.char_end }))
    : evidenceRanges(turn, citation, claimIndex).map((x) => ({ start: citation.char_start + x.start, end: citation.char_start + x.end }));
  let text;
  let ranges;
  try {
    const doc = await request("GET", `/v1/collections/${encodeURIComponent(turn.collection)}/documents/${citation.document_id}`);
    text = doc.text;
    ranges = [{ start: citation.char_start, end: citation.char_end, className: "chunk" }, ...spans.map((r) => ({ ...r, className: "cited" }))];
  } catch (err) {
    text = citation.text;
    ranges = spans.map((r) => ({ start: r.start - citation.char_start, end: r.end - citation.char_start, className: "cited" }));
    s.note.hidden = false;
    s.note.textContent = err.status === 404
      ? "This document has changed or been deleted since the answer; showing the cited passage as it was."
      : `The document could not be loaded (${err.message}); showing the cited passage.`;
  }
  if (!ranges.some((r) => r.className === "cited") && citation.char_end > citation.char_start) {
    // No span recorded (a search result, an older answer): the whole passage is what was found.
    ranges = ranges.map((r) => (r.className === "chunk" ? { ...r, className: "cited" } : r));
  }
  const { fragment, marks } = highlighted(text, ranges);
  clear(s.text).append(fragment);
  const target = s.text.querySelector("mark.cited") || marks[0];
  if (target) target.scrollIntoView({ block: "center" });
  s.title.setAttribute("tabindex", "-1");
  s.title.focus({ preventScroll: true });
}

/** Leave the source view for the answer, focusing what opened it. */
export function closeSource() {
  context.showView("ask");
  if (returnFocus && document.body.contains(returnFocus)) returnFocus.focus();
  returnFocus = null;
}
