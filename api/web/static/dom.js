// Building the page from text: every string goes into a text node or an attribute, never into HTML.
// (The page's CSP requires Trusted Types, so assigning a string to an HTML sink would throw anyway.)

/**
 * Create an element.
 * @param {string} tag
 * @param {Object<string, *>} [attrs] attributes; `class`, `text`, `on<event>`, `dataset` and boolean values are understood
 * @param {...(Node|string|null|undefined|false)} children strings become text nodes
 * @returns {HTMLElement}
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "text") node.textContent = String(value);
    else if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
    else if (value === true) node.setAttribute(key, "");
    else node.setAttribute(key, String(value));
  }
  append(node, ...children);
  return node;
}

/** Append children (strings as text nodes), skipping empty ones. */
export function append(node, ...children) {
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** Remove every child of a node. */
export function clear(node) {
  while (node.firstChild) node.firstChild.remove();
  return node;
}

/**
 * Text with some ranges marked, as a fragment of text nodes and <mark> elements.
 * Where ranges overlap, the one given later wins (pass the chunk first, then the cited spans).
 * @param {string} text
 * @param {Array<{start:number, end:number, className?:string}>} ranges offsets into text
 * @returns {{fragment: DocumentFragment, marks: HTMLElement[]}}
 */
export function highlighted(text, ranges) {
  const fragment = document.createDocumentFragment();
  const marks = [];
  const clipped = ranges
    .map((r, i) => ({ start: Math.max(0, r.start), end: Math.min(text.length, r.end), className: r.className || "cited", i }))
    .filter((r) => r.end > r.start);
  const cuts = [...new Set([0, text.length, ...clipped.flatMap((r) => [r.start, r.end])])].sort((a, b) => a - b);
  let run = null; // [start, end, className]
  const flush = () => {
    if (!run) return;
    const piece = text.slice(run[0], run[1]);
    if (run[2]) {
      const mark = el("mark", { class: run[2] }, piece);
      marks.push(mark);
      fragment.append(mark);
    } else {
      fragment.append(document.createTextNode(piece));
    }
    run = null;
  };
  for (let k = 0; k + 1 < cuts.length; k += 1) {
    const [a, b] = [cuts[k], cuts[k + 1]];
    let top = null;
    for (const r of clipped) if (r.start <= a && r.end >= b && (!top || r.i > top.i)) top = r;
    const cls = top ? top.className : "";
    if (run && run[2] === cls) run[1] = b;
    else {
      flush();
      run = [a, b, cls];
    }
  }
  flush();
  return { fragment, marks };
}

/** A number of bytes for people: 1.2 MB. */
export function bytes(n) {
  if (n < 1024) return `${n} B`;
  const units = ["KB", "MB", "GB", "TB"];
  let value = n;
  let unit = -1;
  do {
    value /= 1024;
    unit += 1;
  } while (value >= 1024 && unit < units.length - 1);
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

/** Milliseconds for people: 850 ms, 4.2 s. */
export function duration(ms) {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}
