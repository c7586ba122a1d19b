"""The timeline page's inline style sheet and script: no network, no fonts, no libraries.

The label column is 360 px wide (``--label``); the time axis takes the rest of the page.
"""

from __future__ import annotations

CSS = """
:root {
  --label: 360px; --row: 24px; --ink: #1f2430; --muted: #6b7280; --line: #e6e8ee;
  --step: #64748b; --llm: #7c5cff; --tool: #0f9d7a; --chain: #2f7de1; --other: #a0a7b4;
  --error: #e5484d; --sub: #f6f3ff; --subline: #c9b8ff;
}
* { box-sizing: border-box; }
body {
  margin: 0; padding: 24px 28px 40px; color: var(--ink); background: #fff;
  font: 13px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
    sans-serif;
}
h1 { font-size: 20px; margin: 0; font-weight: 650; }
.top .title { display: flex; align-items: baseline; gap: 12px; flex-wrap: wrap; }
.top .name { font-size: 15px; color: var(--muted); }
.top .meta { color: var(--muted); margin: 4px 0 14px; }
.top .totals { margin: -8px 0 14px; font-variant-numeric: tabular-nums; }
.top .totals .note { color: var(--muted); }
.badge {
  display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 11px;
  font-weight: 600; letter-spacing: .03em;
}
.badge.ok { background: #dcfce7; color: #166534; }
.badge.error { background: #fee2e2; color: #991b1b; }
.badge.running, .badge.plain { background: #eef0f4; color: #4b5563; }
.cards { display: flex; gap: 10px; flex-wrap: wrap; margin-bottom: 14px; }
.card {
  border: 1px solid var(--line); border-radius: 8px; padding: 8px 14px; min-width: 104px;
}
.card .v { font-size: 18px; font-weight: 650; font-variant-numeric: tabular-nums; }
.card .k { color: var(--muted); font-size: 11px; text-transform: uppercase; }
.card .d { color: var(--muted); font-size: 11px; }
.legend { display: flex; gap: 16px; color: var(--muted); margin-bottom: 10px; }
.legend i {
  display: inline-block; width: 12px; height: 10px; border-radius: 2px; margin-right: 5px;
  vertical-align: -1px;
}
.timeline { position: relative; border-top: 1px solid var(--line); padding-right: 18px; }
.grid {
  position: absolute; top: 0; bottom: 0; left: var(--label); right: 18px;
  pointer-events: none;
}
.grid .tick { position: absolute; top: 0; bottom: 0; border-left: 1px dashed #eceef3; }
.row { display: flex; min-height: var(--row); align-items: stretch; position: relative; }
.row > .label {
  width: var(--label); flex: none; padding: 3px 10px 3px 0; white-space: nowrap;
  overflow: hidden; text-overflow: ellipsis;
}
.row > .track { flex: 1; position: relative; }
.axis {
  position: sticky; top: 0; background: #fff; z-index: 2; border-bottom: 1px solid var(--line);
}
.axis .track span {
  position: absolute; top: 5px; transform: translateX(-50%); color: var(--muted);
  font-size: 11px; font-variant-numeric: tabular-nums;
}
.axis .label { color: var(--muted); font-size: 11px; padding-top: 5px; }
.lane { border-bottom: 1px solid var(--line); padding: 4px 0 6px; }
.lane.sub-lane, .subhead { background: var(--sub); }
.lane.sub-lane > .row > .label, .subhead > .label {
  box-shadow: inset 3px 0 0 var(--subline);
}
.head { font-weight: 600; min-height: 28px; }
.head .label { padding-top: 5px; }
.head .dur { font-weight: 400; }
.head .idx {
  display: inline-block; min-width: 20px; padding: 0 5px; margin-right: 6px;
  border-radius: 4px; background: #eef0f4; color: #374151; text-align: center;
  font-size: 11px;
}
.head .label .stats {
  display: block; font-weight: 400; color: var(--muted); font-size: 11.5px;
}
.bar {
  position: absolute; top: 50%; height: 12px; margin-top: -6px; min-width: 2px;
  border-radius: 3px; background: var(--other); cursor: default;
}
.head .bar { height: 16px; margin-top: -8px; opacity: .5; }
.bar.step { background: var(--step); }
.bar.llm { background: var(--llm); }
.bar.tool { background: var(--tool); }
.bar.chain { background: var(--chain); }
.bar.error { background: var(--error); }
.head .bar.error { opacity: .6; }
.bar.open { background: repeating-linear-gradient(45deg, #cbd5e1 0 4px, #fff 4px 8px); }
.bar:hover { outline: 2px solid #111827; outline-offset: 1px; }
.dur {
  position: absolute; top: 50%; transform: translateY(-50%); font-size: 11px;
  color: var(--muted); white-space: nowrap; font-variant-numeric: tabular-nums;
  pointer-events: none; overflow: hidden; text-overflow: ellipsis;
}
.span-row .label { color: #374151; }
.dur .said { color: #4b5563; font-style: italic; margin-left: 8px; }
.dur .said::before { content: "\\2192  "; font-style: normal; color: var(--muted); }
.span-row .label .k {
  display: inline-block; width: 8px; height: 8px; border-radius: 50%; margin-right: 6px;
  background: var(--other);
}
.span-row .label .k.llm { background: var(--llm); }
.span-row .label .k.tool { background: var(--tool); }
.span-row .label .k.chain { background: var(--chain); }
.span-row .label .k.error { background: var(--error); }
.span-row .label .model { color: var(--muted); margin-left: 6px; font-size: 11px; }
.state-row .label { white-space: normal; padding-top: 2px; }
.state-row .track { display: flex; align-items: center; }
.chip {
  display: inline-block; margin: 1px 4px 1px 0; padding: 0 6px; border-radius: 4px;
  font: 11px/17px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
}
.chip.added { background: #dcfce7; color: #166534; }
.chip.changed { background: #fef3c7; color: #92400e; }
.chip.removed { background: #f1f2f5; color: #9ca3af; text-decoration: line-through; }
.state-row .label > .t { color: var(--muted); font-size: 11px; margin-right: 6px; }
details.snapshot { display: inline; }
details.snapshot summary {
  cursor: pointer; color: var(--chain); font-size: 11px; display: inline; margin-left: 2px;
}
details.snapshot pre {
  white-space: pre-wrap; word-break: break-word; background: #f8f9fb; border: 1px solid
  var(--line); border-radius: 6px; padding: 8px; margin: 4px 0; font-size: 11px;
  max-width: calc(var(--label) - 20px); max-height: 260px; overflow: auto;
}
.subhead { min-height: 26px; }
.subhead .label { font-weight: 600; color: #5b3fd6; padding-top: 5px; }
.subhead .label .stats {
  font-weight: 400; color: var(--muted); font-size: 11.5px; margin-left: 8px;
}
.subhead .bracket {
  position: absolute; top: 8px; height: 9px; border: 1.5px solid var(--subline);
  border-bottom: none; border-radius: 3px 3px 0 0;
}
.note { color: var(--muted); padding: 6px 0; }
footer { color: var(--muted); font-size: 11px; margin-top: 16px; }
#tip {
  position: fixed; z-index: 10; display: none; max-width: 460px; padding: 8px 10px;
  background: #111827; color: #f9fafb; border-radius: 6px; font-size: 12px;
  white-space: pre-wrap; word-break: break-word; pointer-events: none;
  box-shadow: 0 4px 14px rgba(0, 0, 0, .25);
}
"""

# Native `title` tooltips work without script; this swaps them for a faster, wider one. The
# text is moved with textContent, never parsed as HTML.
JS = """
(function () {
  var tip = document.getElementById("tip");
  function show(el, ev) {
    var text = el.getAttribute("data-tip");
    if (text === null) {
      text = el.getAttribute("title");
      if (text === null) { return; }
      el.setAttribute("data-tip", text);
      el.removeAttribute("title");
    }
    tip.textContent = text;
    tip.style.display = "block";
    move(ev);
  }
  function move(ev) {
    var x = ev.clientX + 14, y = ev.clientY + 14;
    var w = tip.offsetWidth, h = tip.offsetHeight;
    if (x + w > window.innerWidth - 8) { x = Math.max(8, ev.clientX - w - 14); }
    if (y + h > window.innerHeight - 8) { y = Math.max(8, ev.clientY - h - 14); }
    tip.style.left = x + "px";
    tip.style.top = y + "px";
  }
  document.addEventListener("mouseover", function (ev) {
    var el = ev.target.closest("[title], [data-tip]");
    if (el) { show(el, ev); } else { tip.style.display = "none"; }
  });
  document.addEventListener("mousemove", function (ev) {
    if (tip.style.display === "block") { move(ev); }
  });
  document.addEventListener("mouseleave", function () { tip.style.display = "none"; });
})();
"""
