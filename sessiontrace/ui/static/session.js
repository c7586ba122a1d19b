// A session: its header and cards, and its tabs (conversation, traces, a trace, timeline, doctor).
import { doctor } from "./doctor.js";
import { timeline } from "./timeline.js";
import { traceView } from "./trace.js";
import {
  api,
  badge,
  block,
  cost,
  count,
  duration,
  el,
  enc,
  failure,
  render,
  sessionApi,
  sessionHref,
  ticket,
  tokens,
  when,
} from "./dom.js";

const TABS = [
  ["", "Conversation"],
  ["/traces", "Traces"],
  ["/timeline", "Timeline"],
  ["/doctor", "Doctor"],
];

function sessionHeader(summary, tab) {
  const s = summary;
  const cards = [
    ["Traces", count(s.trace_count)],
    ["Spans", count(s.span_count)],
    ["LLM calls", count(s.llm_calls)],
    ["Tokens", tokens(s.prompt_tokens, s.completion_tokens, s.total_tokens)],
    ["Cost", cost(s.cost_usd)],
    ["Duration", duration(s.duration_seconds * 1000)],
    ["Errors", count(s.error_count)],
  ];
  return [
    el(
      "div",
      { class: "crumbs" },
      el("a", { href: "#/" }, "‹ Sessions"),
      s.parent_session_id
        ? [" / ", el("a", { href: sessionHref(s.parent_session_id) }, s.parent_session_id)]
        : null,
    ),
    el(
      "div",
      { class: "title" },
      el("h1", { id: "session-title" }, s.session_id),
      s.name ? el("span", { class: "muted" }, s.name) : null,
      badge(s.status),
    ),
    el(
      "div",
      { class: "meta" },
      s.user_id ? el("span", {}, "user ", el("b", {}, s.user_id)) : null,
      el("span", { title: s.first_start }, "started ", when(s.first_start)),
      (s.tags || []).length
        ? el(
            "span",
            {},
            s.tags.map((t) => el("span", { class: "chip" }, t)),
          )
        : null,
      s.subsessions.length
        ? el(
            "span",
            {},
            "sub-sessions: ",
            s.subsessions.map((c, i) => [i ? ", " : "", el("a", { href: sessionHref(c) }, c)]),
          )
        : null,
    ),
    el(
      "div",
      { class: "cards" },
      cards.map(([k, v]) =>
        el("div", { class: "card" }, el("div", { class: "v" }, v), el("div", { class: "k" }, k)),
      ),
    ),
    el(
      "nav",
      { class: "tabs" },
      TABS.map(([tail, label]) =>
        el(
          "a",
          {
            href: sessionHref(s.session_id, tail),
            class: tail === tab ? "on" : null,
          },
          label,
        ),
      ),
    ),
  ];
}

export function sessionView(id, tab, extra) {
  async function refresh() {
    const fresh = ticket();
    try {
      const wants = [api(sessionApi(id))];
      if (tab === "/timeline") wants.push(api(sessionApi(id, "/timeline")));
      if (tab === "/doctor") wants.push(api(sessionApi(id, "/doctor")));
      const [session, other] = await Promise.all(wants);
      if (!fresh()) return;
      const body =
        tab === ""
          ? conversation(session)
          : tab === "/traces"
            ? tracesList(session)
            : tab === "/trace"
              ? traceView(session, extra)
              : tab === "/timeline"
                ? timeline(other)
                : doctor(other, id);
      render(sessionHeader(session.summary, tab === "/trace" ? "/traces" : tab), body);
    } catch (error) {
      if (fresh())
        render(
          el("div", { class: "crumbs" }, el("a", { href: "#/" }, "‹ Sessions")),
          failure(error),
        );
    }
  }
  return { refresh, key: "s:" + id + tab + (extra ? ":" + extra.trace : "") };
}

function conversation(session) {
  if (!session.turns.length)
    return el("div", { class: "empty" }, "This session has no traces yet.");
  return el(
    "div",
    { class: "chat" },
    session.turns.map((turn, i) =>
      el(
        "div",
        { class: "turn", "data-trace": turn.trace_id },
        el(
          "div",
          { class: "head" },
          el("b", {}, `Turn ${i + 1}`),
          el("span", {}, when(turn.start)),
          el("span", {}, duration(turn.duration_ms)),
          turn.total_tokens !== null ? el("span", {}, count(turn.total_tokens) + " tokens") : null,
          turn.cost_usd !== null ? el("span", {}, cost(turn.cost_usd)) : null,
          turn.models.length ? el("span", {}, turn.models.join(", ")) : null,
          el(
            "a",
            { href: sessionHref(session.session_id, "/trace/" + enc(turn.trace_id)) },
            "open trace ›",
          ),
        ),
        turn.user
          ? block("div", { class: "bubble user" }, turn.user)
          : el(
              "div",
              { class: "bubble none" },
              turn.name ? ["(", turn.name, ": no user message)"] : "(no user message)",
            ),
        turn.output ? block("div", { class: "bubble bot" }, turn.output) : null,
        turn.status === "error"
          ? el(
              "div",
              { class: "bubble fail" },
              "Error: ",
              turn.error || "the trace has a failed span",
            )
          : null,
      ),
    ),
  );
}

function tracesList(session) {
  const head = el(
    "tr",
    {},
    el("th", {}, "Trace"),
    el("th", {}, "Started"),
    ["Spans", "Duration"].map((h) => el("th", { class: "num" }, h)),
    el("th", {}, "Status"),
  );
  const rows = session.traces.map((trace) => {
    const root = trace.spans[0] || {};
    const href = sessionHref(session.session_id, "/trace/" + enc(trace.trace_id));
    return el(
      "tr",
      {
        class: "row",
        onclick: () => {
          location.hash = href;
        },
      },
      el(
        "td",
        {},
        el("a", { href }, root.name || trace.trace_id),
        el("div", { class: "sub mono" }, trace.trace_id),
      ),
      el("td", {}, when(trace.start)),
      el("td", { class: "num" }, count(trace.span_count)),
      el("td", { class: "num" }, duration(trace.duration_ms)),
      el("td", {}, badge(anyError(trace.spans) ? "error" : "ok")),
    );
  });
  return el("table", { class: "list" }, el("thead", {}, head), el("tbody", {}, rows));
}

function anyError(spans) {
  return spans.some((span) => span.status === "ERROR" || anyError(span.children));
}
