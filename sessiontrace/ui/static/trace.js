// One trace as a span tree with timing bars, and the chosen span's input, output, events and attributes.
import { badge, block, duration, el, enc, sessionHref, shown, tokens, when } from "./dom.js";

function flatten(spans, depth, out) {
  for (const span of spans) {
    out.push([span, depth]);
    flatten(span.children, depth + 1, out);
  }
  return out;
}

function kindClass(span) {
  if (span.status === "ERROR") return "error";
  const kind = (span.openinference_kind || "").toLowerCase();
  if (kind === "llm" || kind === "tool" || kind === "chain" || kind === "agent")
    return kind === "agent" ? "chain" : kind;
  return span.attributes["sessiontrace.span.type"] === "step" ? "step" : "other";
}

export function traceView(session, extra) {
  const trace = session.traces.find((t) => t.trace_id === extra.trace);
  if (!trace)
    return el(
      "div",
      { class: "empty" },
      "This trace is not in the session. ",
      el("a", { href: sessionHref(session.session_id, "/traces") }, "See its traces"),
    );
  const rows = flatten(trace.spans, 0, []);
  const begin = new Date(trace.start).getTime(),
    total = Math.max(new Date(trace.end).getTime() - begin, 0.001);
  const wanted = new URLSearchParams(location.hash.split("?")[1] || "").get("span");
  let selected = rows.find(([span]) => span.span_id === wanted) || rows[0];
  const detail = el("div", { class: "detail", id: "span-detail" });
  const tree = el("div", { class: "tree", id: "span-tree" });
  function select(entry) {
    selected = entry;
    for (const row of tree.children)
      row.classList.toggle("on", row.dataset.span === entry[0].span_id);
    detail.replaceChildren(...spanDetail(entry[0]));
    const base = location.hash.split("?")[0];
    history.replaceState(null, "", base + "?span=" + enc(entry[0].span_id));
  }
  for (const entry of rows) {
    const [span, depth] = entry;
    const left = ((new Date(span.start).getTime() - begin) / total) * 100;
    const width = (span.duration_ms / total) * 100;
    const bar = el("i", { class: "bar " + kindClass(span) });
    bar.style.left = Math.min(Math.max(left, 0), 100) + "%";
    bar.style.width = Math.min(Math.max(width, 0), 100) + "%";
    const name = el(
      "div",
      { class: "nm", title: shown(span.name) },
      el("span", { class: "kind" }, span.openinference_kind || span.kind),
      " ",
      span.name,
    );
    name.style.paddingLeft = depth * 16 + "px";
    tree.appendChild(
      el(
        "div",
        {
          class: "span-row" + (span.status === "ERROR" ? " err" : ""),
          "data-span": span.span_id,
          onclick: () => select(entry),
        },
        name,
        el("div", { class: "bar-track" }, bar),
        el("div", { class: "ms" }, duration(span.duration_ms)),
      ),
    );
  }
  if (selected) select(selected);
  return el(
    "div",
    {},
    el("h2", {}, "Trace ", el("span", { class: "mono muted" }, trace.trace_id)),
    el("div", { class: "trace-view" }, tree, detail),
  );
}

function pretty(value) {
  if (typeof value === "string" && /^\s*[[{]/.test(value)) {
    try {
      return JSON.stringify(JSON.parse(value), null, 2);
    } catch (e) {
      /* shown as it is */
    }
  }
  return typeof value === "string" ? value : JSON.stringify(value, null, 2);
}

function keyValues(object) {
  const keys = Object.keys(object || {}).sort();
  if (!keys.length) return el("div", { class: "muted" }, "none");
  return el(
    "table",
    { class: "kv" },
    el(
      "tbody",
      {},
      keys.map((key) =>
        el(
          "tr",
          {},
          el("td", {}, key),
          block(
            "td",
            {},
            typeof object[key] === "string" ? object[key] : JSON.stringify(object[key]),
          ),
        ),
      ),
    ),
  );
}

function spanDetail(span) {
  const parts = [
    el("h3", {}, span.name),
    el(
      "div",
      { class: "meta" },
      badge(span.status),
      el("span", {}, span.openinference_kind || span.kind),
      el("span", {}, duration(span.duration_ms)),
      el("span", { title: span.start }, when(span.start)),
      span.total_tokens !== null
        ? el(
            "span",
            {},
            "tokens " + tokens(span.prompt_tokens, span.completion_tokens, span.total_tokens),
          )
        : null,
    ),
  ];
  if (span.status === "ERROR")
    parts.push(el("div", { class: "error-box" }, span.status_message || "failed"));
  if (span.input !== null && span.input !== undefined)
    parts.push(el("h4", {}, "Input"), block("pre", {}, pretty(span.input)));
  if (span.output !== null && span.output !== undefined)
    parts.push(el("h4", {}, "Output"), block("pre", {}, pretty(span.output)));
  if (span.events.length) {
    parts.push(
      el("h4", {}, "Events"),
      ...span.events.map((event) =>
        el(
          "div",
          { class: "event" },
          el("b", {}, event.name),
          " ",
          el("span", { class: "muted" }, when(event.timestamp)),
          keyValues(event.attributes),
        ),
      ),
    );
  }
  parts.push(
    el("h4", {}, "Attributes"),
    keyValues(span.attributes),
    el("div", { class: "muted mono" }, "span ", span.span_id),
  );
  return parts;
}
