// A tracker run's timeline: its steps with state changes and LLM calls, sub-sessions nested where they started.
import { badge, clipped, cost, count, duration, el, sessionHref, shown, tokens } from "./dom.js";

export function timeline(run) {
  if (!run.steps.length && !run.subsessions.length) {
    return el(
      "div",
      { class: "empty" },
      "This session was not recorded by a SessionTracker: it has no steps. Its turns are under Conversation.",
    );
  }
  return el("div", { id: "timeline" }, runTotals(run), runBody(run));
}

function runTotals(run) {
  const t = run.totals;
  if (!t) return el("p", { class: "muted" }, "The run has not ended: totals appear when it does.");
  return el(
    "div",
    { class: "cards" },
    [
      ["Steps", count(t.steps)],
      ["Spans", count(t.spans)],
      ["LLM calls", count(t.llm_calls)],
      ["Tokens (with sub-sessions)", tokens(t.prompt_tokens, t.completion_tokens, t.total_tokens)],
      ["Cost", cost(t.cost_usd)],
      ["Duration", duration(t.duration_ms)],
      ["Errors", count(t.errors)],
    ].map(([k, v]) =>
      el("div", { class: "card" }, el("div", { class: "v" }, v), el("div", { class: "k" }, k)),
    ),
  );
}

function runBody(run) {
  const children = new Map(run.subsessions.map((sub) => [sub.session_id, sub]));
  const starts = run.steps.map((s) => s.start_ns),
    ends = run.steps.map((s) => s.end_ns);
  const begin = Math.min(...starts),
    span = Math.max(Math.max(...ends) - begin, 1);
  const steps = run.steps.map((step) => {
    const bar = el("i");
    bar.style.left = ((step.start_ns - begin) / span) * 100 + "%";
    bar.style.width = Math.max(((step.duration_ms * 1e6) / span) * 100, 0.3) + "%";
    const change = step.state_change;
    const subs = (step.children || [])
      .filter((id) => children.has(id))
      .map((id) => {
        const sub = children.get(id);
        children.delete(id);
        return subRun(sub);
      });
    return el(
      "div",
      { class: "step" + (step.status === "error" ? " error" : ""), "data-step": step.index },
      el(
        "div",
        { class: "top" },
        el("span", { class: "idx" }, "#" + step.index),
        el("span", { class: "nm" }, step.name),
        step.status === "error" ? badge("error") : null,
        el(
          "span",
          { class: "nums" },
          el("span", {}, duration(step.duration_ms)),
          el(
            "span",
            {},
            tokens(step.prompt_tokens, step.completion_tokens, step.total_tokens) + " tokens",
          ),
          step.cost_usd !== null ? el("span", {}, cost(step.cost_usd)) : null,
          el("span", {}, count(step.span_count) + " spans"),
        ),
      ),
      el("div", { class: "span-bar" }, bar),
      step.status_message ? el("div", { class: "error-box" }, step.status_message) : null,
      change
        ? el(
            "div",
            { class: "changes" },
            Object.entries(change.set).map(([k, v]) =>
              el("span", { class: "set", title: shown(v) }, "+ ", k, " = ", clipped(v, 90)),
            ),
            change.removed.map((k) => el("span", { class: "rm" }, "− ", k)),
          )
        : null,
      (step.llm_calls || []).map((call) =>
        el(
          "div",
          { class: "calls" },
          "LLM ",
          call.name,
          call.model ? " · " + shown(call.model) : "",
          " · ",
          duration(call.duration_ms),
          call.total_tokens !== null ? " · " + count(call.total_tokens) + " tokens" : "",
          call.response ? [" → ", clipped(call.response, 140)] : null,
        ),
      ),
      subs,
    );
  });
  return el("div", { class: "steps" }, steps, [...children.values()].map(subRun));
}

function subRun(sub) {
  if (sub.truncated)
    return el(
      "div",
      { class: "sub-run" },
      "sub-session ",
      el("a", { href: sessionHref(sub.session_id, "/timeline") }, sub.session_id),
      " (nested too deep to show here)",
    );
  return el(
    "div",
    { class: "sub-run", "data-subsession": sub.session_id },
    el(
      "div",
      { class: "run-head" },
      el("b", {}, "sub-session"),
      el("a", { href: sessionHref(sub.session_id, "/timeline") }, sub.session_id),
      sub.name ? el("span", { class: "muted" }, sub.name) : null,
      badge(sub.status),
    ),
    sub.steps.length || sub.subsessions.length
      ? runBody(sub)
      : el("div", { class: "muted" }, "no steps"),
  );
}
