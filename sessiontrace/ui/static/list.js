// The sessions list: search, filters, sorting and paging, all kept in the page's address.
import {
  ago,
  api,
  badge,
  cost,
  count,
  debounce,
  el,
  failure,
  render,
  sessionHref,
  ticket,
} from "./dom.js";

const PAGE_SIZE = 50;
const SORTS = [
  ["-last_end", "Latest activity"],
  ["last_end", "Oldest activity"],
  ["-first_start", "Newest first"],
  ["-tokens", "Most tokens"],
  ["-cost", "Highest cost"],
  ["-errors", "Most errors"],
  ["-spans", "Most spans"],
  ["-traces", "Most traces"],
  ["session_id", "Session id"],
];

export function listView(query) {
  const values = Object.fromEntries(query);
  const results = el("div", { id: "results" });
  const field = (name, placeholder, type) =>
    el("input", {
      type: type || "text",
      name,
      placeholder,
      value: values[name] || "",
      "aria-label": placeholder,
      oninput: debounce(() => update(0), 250),
    });
  const status = el(
    "select",
    { name: "status", "aria-label": "Status", onchange: () => update(0) },
    [
      ["", "Any status"],
      ["running", "Running"],
      ["ok", "OK"],
      ["error", "Error"],
    ].map(([value, label]) => el("option", { value, selected: values.status === value }, label)),
  );
  const sort = el(
    "select",
    { name: "sort", "aria-label": "Sort", onchange: () => update(0) },
    SORTS.map(([value, label]) =>
      el("option", { value, selected: (values.sort || "-last_end") === value }, label),
    ),
  );
  const topLevel = el("input", {
    type: "checkbox",
    name: "top_level",
    checked: values.top_level === "true",
    onchange: () => update(0),
  });
  const search = field("q", "Search session id or name", "search");
  const inputs = [search, field("user", "User"), field("tag", "Tag"), status, sort];

  function update(offset) {
    const params = new URLSearchParams();
    for (const input of inputs) if (input.value) params.set(input.name, input.value);
    if (topLevel.checked) params.set("top_level", "true");
    if (offset) params.set("offset", String(offset));
    history.replaceState(null, "", "#/" + (params.toString() ? "?" + params : ""));
    refresh();
  }

  async function refresh() {
    const params = new URLSearchParams(location.hash.split("?")[1] || "");
    params.set("limit", String(PAGE_SIZE));
    if (params.get("sort") === "-last_end") params.delete("sort");
    const fresh = ticket();
    let page;
    try {
      page = await api("/api/sessions?" + params);
    } catch (error) {
      if (fresh()) results.replaceChildren(failure(error));
      return;
    }
    if (fresh()) results.replaceChildren(sessionsTable(page, update));
  }

  const bar = el("div", { class: "filters" }, inputs, el("label", {}, topLevel, "Top level only"));
  render(el("h1", { class: "page-title" }, "Sessions"), bar, results);
  return { refresh, key: "list" };
}

function sessionsTable(page, update) {
  const { total, offset, sessions } = page;
  if (!sessions.length) {
    return el(
      "div",
      { class: "empty" },
      total
        ? "No sessions on this page."
        : "No sessions match. Record some with sessiontrace.configure(), or change the filters.",
    );
  }
  const head = el(
    "tr",
    {},
    ["Session", "User", "Status"].map((h) => el("th", {}, h)),
    ["Traces", "Spans", "Tokens", "Cost", "Errors", "Last activity"].map((h) =>
      el("th", { class: "num" }, h),
    ),
  );
  const rows = sessions.map((s) =>
    el(
      "tr",
      {
        class: "row",
        "data-session": s.session_id,
        onclick: (event) => {
          if (!event.target.closest("a")) location.hash = sessionHref(s.session_id);
        },
      },
      el(
        "td",
        {},
        el("a", { class: "sid", href: sessionHref(s.session_id) }, s.session_id),
        s.name ? el("div", { class: "sub" }, s.name) : null,
        s.parent_session_id
          ? el("div", { class: "sub" }, "sub-session of ", s.parent_session_id)
          : null,
        (s.tags || []).length
          ? el(
              "div",
              {},
              s.tags.map((t) => el("span", { class: "chip" }, t)),
            )
          : null,
      ),
      el(
        "td",
        {},
        s.user_id || "–",
        s.user_count > 1 ? el("div", { class: "sub" }, `+${s.user_count - 1} more`) : null,
      ),
      el("td", {}, badge(s.status)),
      el("td", { class: "num" }, count(s.trace_count)),
      el("td", { class: "num" }, count(s.span_count)),
      el("td", { class: "num" }, count(s.total_tokens)),
      el("td", { class: "num" }, cost(s.cost_usd)),
      el("td", { class: "num" }, count(s.error_count)),
      el("td", { class: "num", title: s.last_end }, ago(s.last_end)),
    ),
  );
  const last = offset + sessions.length;
  const pager = el(
    "div",
    { class: "pager" },
    el(
      "button",
      { disabled: offset === 0, onclick: () => update(Math.max(offset - PAGE_SIZE, 0)) },
      "‹ Previous",
    ),
    el("span", { id: "range" }, `${count(offset + 1)}–${count(last)} of ${count(total)} sessions`),
    el("button", { disabled: last >= total, onclick: () => update(last) }, "Next ›"),
  );
  return el(
    "div",
    {},
    el("table", { class: "list" }, el("thead", {}, head), el("tbody", {}, rows)),
    pager,
  );
}
