// What `sessiontrace doctor` finds in a session: each problem, its likely cause and its fix.
import { count, el, enc, sessionHref, shown } from "./dom.js";

// Backticks in a fix mark code, as the CLI prints it.
function withCode(text) {
  return shown(text)
    .split("`")
    .map((part, i) => (i % 2 ? el("code", {}, part) : part));
}

function plural(n, noun) {
  return `${count(n)} ${noun}${n === 1 ? "" : "s"}`;
}

function capitalized(text) {
  const whole = shown(text);
  return whole.charAt(0).toUpperCase() + whole.slice(1);
}

export function doctor(found, id) {
  const checked = `${plural(found.traces_checked, "trace")}, ${plural(found.spans_checked, "span")}`;
  if (!found.problems.length) {
    return el(
      "div",
      { class: "problem healthy", id: "doctor" },
      el("div", { class: "kind" }, "No problems found"),
      `Every span of the traces this session touches (${checked}) carries the session.`,
    );
  }
  return el(
    "div",
    { id: "doctor" },
    el("p", { class: "muted" }, `${plural(found.problems.length, "problem")} (checked ${checked}).`),
    found.problems.map((problem) =>
      el(
        "div",
        { class: "problem", "data-kind": problem.kind },
        el("div", { class: "kind" }, capitalized(problem.cause)),
        el("div", {}, problem.description),
        el("div", { class: "muted" }, "Why: ", problem.evidence),
        el("div", { class: "fix" }, "Fix: ", withCode(problem.fix)),
        el(
          "div",
          { class: "calls" },
          problem.spans.length === 1 ? "Span: " : "Spans: ",
          problem.spans.map((span, i) => [
            i ? ", " : "",
            el(
              "a",
              {
                href:
                  sessionHref(id, "/trace/" + enc(problem.trace_id)) + "?span=" + enc(span.span_id),
              },
              span.name,
            ),
          ]),
        ),
      ),
    ),
  );
}
