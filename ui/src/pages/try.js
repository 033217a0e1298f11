// The "Try" page: open a time-limited session (POST /v1/try), get a terminal in its sandbox,
// watch the countdown to expiry; when the session ends the page says so.
import { get, post, call, sandboxPath } from "../api.js";
import { h, put, field, showError, toast } from "../dom.js";
import { TerminalView } from "../terminal.js";

function remaining(ms) {
  const s = Math.max(0, Math.ceil(ms / 1000));
  const m = Math.floor(s / 60);
  return `${m}:${String(s % 60).padStart(2, "0")}`;
}

export function tryPage(root) {
  const template = h("input", { name: "template", placeholder: "default", autocomplete: "off" });
  const ttl = h("input", { name: "ttl", type: "number", min: "1", step: "1", placeholder: "template default" });
  const start = h("button", { type: "submit", class: "primary", id: "start-session" }, "Start session");
  const form = h(
    "form",
    { class: "inline-form" },
    field("Template", template),
    field("Time to live (s)", ttl),
    start,
  );
  const area = h("div", { class: "session-area" });
  put(
    root,
    h("div", { class: "page-head" }, h("h1", {}, "Try a sandbox")),
    h(
      "p",
      { class: "muted" },
      "A session is a fresh sandbox that ends by itself: open one, use its terminal, and watch the clock.",
    ),
    form,
    area,
  );

  let terminal = null;
  let ticker = null;
  let poller = null;
  let session = null;

  const cleanup = () => {
    clearInterval(ticker);
    clearInterval(poller);
    terminal?.dispose();
    terminal = null;
    if (window.sqrxTerminal && !document.contains(window.sqrxTerminal.el)) window.sqrxTerminal = null;
  };

  function ended(status) {
    clearInterval(ticker);
    clearInterval(poller);
    const state = status === "stopped" ? "stopped" : "expired";
    const banner = area.querySelector(".countdown");
    if (banner) {
      banner.dataset.state = state;
      banner.textContent = state === "expired" ? "Session expired" : "Session stopped";
    }
    area.querySelector(".session-actions")?.replaceChildren(
      h("p", { class: "muted" }, state === "expired" ? "The sandbox is gone. Start a new session to try again." : "You stopped the session."),
    );
    terminal?.end(state === "expired" ? "Session expired: the terminal is closed." : "Session stopped.");
    start.disabled = false;
  }

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    cleanup();
    start.disabled = true;
    put(area, h("p", { class: "muted", role: "status" }, "Opening a session…"));
    const body = {};
    if (template.value.trim()) body.template = template.value.trim();
    if (ttl.value) body.ttl = Number(ttl.value);
    try {
      session = await post("/v1/try", body);
    } catch (err) {
      showError(err, "cannot open a session");
      put(area);
      start.disabled = false;
      return;
    }
    const until = Date.parse(session.valid_till);
    const countdown = h("div", { class: "countdown", role: "timer", "aria-live": "off", dataset: { state: "running" } });
    const stop = h("button", { type: "button", class: "danger" }, "Stop session");
    const extend = h("button", { type: "button", class: "ghost" }, "Extend by 60 s");
    let validTill = until;
    const tick = () => {
      const left = validTill - Date.now();
      if (countdown.dataset.state !== "running") return;
      countdown.textContent = `Expires in ${remaining(left)}`;
      countdown.classList.toggle("soon", left < 30000);
    };
    stop.addEventListener("click", async () => {
      try {
        await call("POST", `/v1/stop/${encodeURIComponent(session.termination_token)}`);
        ended("stopped");
      } catch (err) {
        showError(err, "cannot stop the session");
      }
    });
    extend.addEventListener("click", async () => {
      try {
        const r = await post(`/v1/extend/${encodeURIComponent(session.termination_token)}`, { seconds: 60 });
        if (r && r.valid_till) validTill = Date.parse(r.valid_till);
        toast("Extended", "info");
        tick();
      } catch (err) {
        showError(err, "cannot extend the session");
      }
    });
    terminal = new TerminalView(`${sandboxPath(`session-${session.session_id}`)}/pty`, {
      label: "Session terminal",
      // The sandbox goes at expiry and takes the terminal with it: that is the end, not a drop.
      onClose: () => {
        if (Date.now() < validTill - 1500) return false;
        ended("expired");
        return true;
      },
    });
    put(
      area,
      h(
        "div",
        { class: "session-head" },
        countdown,
        h("span", { class: "muted" }, `session ${session.session_id.slice(0, 8)}… · until ${new Date(validTill).toLocaleTimeString()}`),
        h("span", { class: "spacer" }),
        h("div", { class: "session-actions" }, extend, stop),
      ),
      terminal.el,
    );
    window.sqrxTerminal = terminal;
    terminal.start();
    tick();
    ticker = setInterval(tick, 250);
    poller = setInterval(async () => {
      try {
        const s = await get(`/v1/status/${encodeURIComponent(session.session_id)}`);
        if (s.valid_till) validTill = Date.parse(s.valid_till);
        if (s.status === "expired" || s.status === "stopped") ended(s.status);
      } catch (err) {
        if (err.status === 404) ended("expired");
      }
    }, 1000);
  });
  return cleanup;
}
