// sessiontrace's web view: routes the page's address to its view, and reloads it when the store changes.
import { listView } from "./list.js";
import { sessionView } from "./session.js";
import { api, shown } from "./dom.js";

const POLL_MS = 1000; // how often the page asks whether the store changed

let current = null;

function route() {
  const [path, queryText] = (location.hash.slice(1) || "/").split("?");
  const parts = path
    .split("/")
    .filter(Boolean)
    .map((part) => {
      try {
        return decodeURIComponent(part);
      } catch (e) {
        return part;
      }
    });
  let view;
  if (parts[0] === "s" && parts.length >= 2) {
    const tail =
      parts[2] === "trace" && parts.length >= 4
        ? "/trace"
        : ["traces", "timeline", "doctor"].includes(parts[2])
          ? "/" + parts[2]
          : "";
    view = sessionView(parts[1], tail, tail === "/trace" ? { trace: parts[3] } : null);
  } else {
    if (current && current.key === "list") return current.refresh();
    view = listView(new URLSearchParams(queryText || ""));
  }
  if (current && current.key === view.key) return current.refresh();
  current = view;
  window.scrollTo(0, 0);
  return view.refresh();
}

let stamp = null;
async function poll() {
  const live = document.getElementById("live");
  try {
    const changes = await api("/api/changes");
    live.className = "live";
    if (stamp !== null && changes.stamp !== stamp && current) {
      await current.refresh();
      live.textContent = "live · updated " + new Date().toLocaleTimeString();
    }
    stamp = changes.stamp;
  } catch (error) {
    live.className = "live stale";
    live.textContent = "not reachable";
  }
  setTimeout(poll, POLL_MS);
}

async function start() {
  api("/api/info").then(
    (info) => {
      document.getElementById("store").textContent = shown(info.store) + " · read-only";
    },
    () => {
      /* the pages say what failed */
    },
  );
  window.addEventListener("hashchange", route);
  await route();
  poll();
}

start();
