// sessiontrace's web view: text, elements, numbers, times and the API, for every page.
//
// Everything from the store is untrusted. No file of the page parses text as HTML: every node
// is made with createElement and every piece of text goes in through a text node, after
// `shown()` has written control, bidi and separator characters as visible escapes (the same
// characters the CLI escapes). Links are built from encoded ids, never taken from the data.
// The server's Content-Security-Policy lets the page run its own scripts and nothing else.
const UNSAFE =
  /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]/gu;
const NAMED = { "\n": "\\n", "\r": "\\r", "\t": "\\t" };

// ---- text and elements ----------------------------------------------------------------------
export function shown(value, keepNewlines) {
  let text;
  if (value === null || value === undefined) text = "";
  else if (typeof value === "string") text = value;
  else if (typeof value === "object") text = JSON.stringify(value);
  else text = String(value);
  return text.replace(UNSAFE, (ch) => {
    if (keepNewlines && ch === "\n") return ch;
    if (NAMED[ch]) return NAMED[ch];
    const code = ch.codePointAt(0);
    return code <= 0xff
      ? "\\x" + code.toString(16).padStart(2, "0")
      : "\\u" + code.toString(16).padStart(4, "0");
  });
}

export function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "class") node.className = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  append(node, children);
  return node;
}

export function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.appendChild(child instanceof Node ? child : document.createTextNode(shown(child)));
  }
  return node;
}

// Text kept on several lines (chat messages, inputs, outputs): newlines stay, the rest escaped.
export function block(tag, props, text) {
  const node = el(tag, props);
  node.textContent = shown(text, true);
  return node;
}

export function clipped(text, limit) {
  const whole = shown(text);
  return whole.length <= limit ? whole : whole.slice(0, limit - 1) + "…";
}

// ---- numbers and times ----------------------------------------------------------------------
export const numberFormat = new Intl.NumberFormat("en-US");
export function count(n) {
  return n === null || n === undefined ? "–" : numberFormat.format(n);
}
export function cost(usd) {
  if (usd === null || usd === undefined) return "–";
  if (usd === 0) return "$0";
  if (usd >= 0.01) return "$" + usd.toFixed(usd >= 100 ? 0 : 2);
  return "$" + Number(usd.toPrecision(3)).toString();
}
export function duration(ms) {
  if (ms === null || ms === undefined) return "–";
  if (ms < 1) return ms.toFixed(2) + " ms";
  if (ms < 1000) return Math.round(ms) + " ms";
  if (ms < 60000) return (ms / 1000).toFixed(1) + " s";
  const minutes = Math.floor(ms / 60000);
  return minutes + " min " + Math.round((ms % 60000) / 1000) + " s";
}
export function when(iso) {
  const date = new Date(iso);
  return isNaN(date) ? shown(iso) : date.toLocaleString();
}
export function ago(iso) {
  const seconds = (Date.now() - new Date(iso).getTime()) / 1000;
  if (!isFinite(seconds)) return shown(iso);
  if (seconds < 60) return "just now";
  if (seconds < 3600) return Math.floor(seconds / 60) + " min ago";
  if (seconds < 86400) return Math.floor(seconds / 3600) + " h ago";
  return new Date(iso).toLocaleDateString();
}
export function tokens(p, c, t) {
  if (t === null || t === undefined) return "–";
  return (
    count(t) + (p !== null && c !== null && p !== undefined ? ` (${count(p)}/${count(c)})` : "")
  );
}

// ---- the API --------------------------------------------------------------------------------
export async function api(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" } });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(body.error || `${response.status} ${response.statusText}`);
    error.status = response.status;
    throw error;
  }
  return body;
}
export const enc = encodeURIComponent;
export const sessionApi = (id, tail) => "/api/sessions/" + enc(id) + (tail || "");
export const sessionHref = (id, tail) => "#/s/" + enc(id) + (tail || "");

export function badge(status) {
  const word =
    status === "error" || status === "ERROR" ? "error" : status === "running" ? "running" : "ok";
  return el("span", { class: "badge " + word }, word);
}

export function failure(error) {
  if (error.status === 404) {
    return el(
      "div",
      { class: "empty" },
      "No session with this id in the store. ",
      el("a", { href: "#/" }, "Back to the sessions"),
    );
  }
  return el("div", { class: "error-box" }, "Could not load this page: ", error.message);
}

// Each refresh takes a ticket, and only the newest may draw: an answer that arrives after the
// reader moved on, or after a newer answer for the same page, is dropped.
let tickets = 0;
export function ticket() {
  const mine = ++tickets;
  return () => mine === tickets;
}

export function render(...children) {
  const main = document.getElementById("app");
  main.replaceChildren();
  append(main, children);
}

export function debounce(work, ms) {
  let timer = null;
  return () => {
    clearTimeout(timer);
    timer = setTimeout(work, ms);
  };
}
