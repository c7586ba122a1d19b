// What `sessiontrace doctor` finds in a session: each problem, its likely cause and its fix.
import { count, el, enc, sessionHref, shown } from "./dom.js";

function withCode(text) {
  return shown(text)
    .split("`")
    .map((part, i) => (i % 2 ? el("code", {}, part) : part));
}

export function doctor(found, id) {
  if (!found.problems.length) {
    return el(
      "div",
      { class: "problem healthy", id: "doctor" },
      el("div", { class: "kind" }, "No problems found"),
      `Every span of the ${count(found.traces_checked)} traces this session touches (${count(found.spans_checked)} spans) carries the session.`,
    );
  }
  return el(
    "div",
    { id: "doctor" },
    el(
      "p",
      { class: "muted" },
      `${found.problems.length} problem(s) in ${count(found.traces_checked)} traces, ${count(found.spans_checked)} spans checked.`,
    ),
    found.problems.map((problem) =>
      el(
        "div",
        { class: "problem" },
        el("div", { class: "kind" }, problem.kind),
        el("div", {}, problem.description),
        el("div", { class: "muted" }, "Likely cause: ", problem.cause, ". ", problem.evidence),
        el("div", { class: "fix" }, "Fix: ", withCode(problem.fix)),
        el(
          "div",
          { class: "calls" },
          "Spans: ",
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
