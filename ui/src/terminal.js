// A terminal (xterm.js) over the pty WebSocket: binary frames carry keystrokes and output,
// text frames {"type":"resize","cols","rows"} follow the element's size (fit addon). Copy and
// paste with the toolbar buttons or Ctrl+Shift+C / Ctrl+Shift+V. When the socket drops, a
// message says so and it reconnects by itself (a few times); Reconnect starts a new shell.
import { Terminal } from "@xterm/xterm";
import { FitAddon } from "@xterm/addon-fit";
import { openSocket } from "./api.js";
import { h, showError, toast } from "./dom.js";

const dark = () => window.matchMedia("(prefers-color-scheme: dark)").matches;

function theme() {
  return dark()
    ? { background: "#0d1117", foreground: "#e6edf3", cursor: "#7ee787", selectionBackground: "#264f78" }
    : { background: "#ffffff", foreground: "#1f2328", cursor: "#1a7f37", selectionBackground: "#b6d7ff" };
}

const RETRIES = 5;

export class TerminalView {
  /**
   * @param {string} path the pty path (`/v1/sandboxes/ID/pty`)
   * @param {{label?: string, onClose?: (ev: CloseEvent) => boolean}} opts
   */
  constructor(path, opts = {}) {
    this.path = path;
    this.onClose = opts.onClose;
    this.ws = null;
    this.retries = 0;
    this.ended = false; // no automatic reconnect (the shell exited, or we closed it)
    this.disposed = false;
    this.retryTimer = null;
    this.status = h("span", { class: "term-status", role: "status", "aria-live": "polite" }, "Connecting…");
    this.reconnectBtn = h("button", { type: "button", onclick: () => this.reconnect() }, "Reconnect");
    const copy = h("button", { type: "button", class: "ghost", onclick: () => this.copy() }, "Copy");
    const paste = h("button", { type: "button", class: "ghost", onclick: () => this.paste() }, "Paste");
    this.screen = h("div", { class: "term-screen" });
    this.el = h(
      "section",
      { class: "term-box", "aria-label": opts.label || "Terminal" },
      h("div", { class: "term-bar" }, this.status, h("span", { class: "spacer" }), copy, paste, this.reconnectBtn),
      this.screen,
    );
    this.term = new Terminal({
      cursorBlink: true,
      fontFamily: 'ui-monospace, "DejaVu Sans Mono", "Liberation Mono", Menlo, Consolas, monospace',
      fontSize: 14,
      scrollback: 5000,
      theme: theme(),
      screenReaderMode: false,
    });
    this.fit = new FitAddon();
    this.term.loadAddon(this.fit);
    this.term.attachCustomKeyEventHandler((e) => {
      if (e.type !== "keydown" || !e.ctrlKey || !e.shiftKey) return true;
      if (e.code === "KeyC") {
        this.copy();
        return false;
      }
      if (e.code === "KeyV") {
        this.paste();
        return false;
      }
      return true;
    });
    this.term.onData((data) => this.send(new TextEncoder().encode(data)));
    this.term.onBinary((data) => this.send(Uint8Array.from(data, (c) => c.charCodeAt(0))));
    this.term.onResize(({ cols, rows }) => {
      if (this.ws && this.ws.readyState === WebSocket.OPEN)
        this.ws.send(JSON.stringify({ type: "resize", cols, rows }));
    });
    this.onWindowResize = () => this.resize();
    window.addEventListener("resize", this.onWindowResize);
    this.schemeQuery = window.matchMedia("(prefers-color-scheme: dark)");
    this.onScheme = () => (this.term.options.theme = theme());
    this.schemeQuery.addEventListener("change", this.onScheme);
    this.opened = false;
  }

  /** Put the terminal on the page (after `el` is in the document) and connect. */
  start() {
    if (!this.opened) {
      this.term.open(this.screen);
      this.opened = true;
    }
    this.resize();
    this.connect();
  }

  resize() {
    if (!this.opened || !this.screen.offsetParent) return;
    try {
      this.fit.fit();
    } catch {
      // not laid out yet
    }
  }

  setStatus(text, state) {
    this.status.textContent = text;
    this.status.dataset.state = state;
  }

  connect() {
    clearTimeout(this.retryTimer);
    if (this.disposed) return;
    const { cols, rows } = this.term;
    const ws = openSocket(`${this.path}?cols=${cols}&rows=${rows}`);
    this.ws = ws;
    this.ended = false;
    this.setStatus("Connecting…", "connecting");
    ws.onopen = () => {
      if (ws !== this.ws) return;
      this.retries = 0;
      this.setStatus("Connected", "open");
      this.term.options.disableStdin = false;
      this.term.focus();
      this.resize();
      ws.send(JSON.stringify({ type: "resize", cols: this.term.cols, rows: this.term.rows }));
    };
    ws.onmessage = (ev) => {
      if (ws !== this.ws) return;
      if (ev.data instanceof ArrayBuffer) this.term.write(new Uint8Array(ev.data));
      else this.term.write(ev.data);
    };
    ws.onclose = (ev) => {
      if (ws !== this.ws || this.disposed) return;
      this.ws = null;
      if (this.ended) return;
      // The page may know better (a session that just expired): then no reconnect.
      if (this.onClose && this.onClose(ev)) return;
      if (ev.code === 1000) {
        // The shell exited: do not start another one unasked.
        this.ended = true;
        this.setStatus(`Shell ended (${ev.reason || "closed"}). Reconnect starts a new shell.`, "closed");
        this.term.write(`\r\n\x1b[2m[${ev.reason || "closed"}]\x1b[0m\r\n`);
        return;
      }
      if (this.retries >= RETRIES) {
        this.ended = true;
        this.setStatus(`Disconnected${ev.reason ? `: ${ev.reason}` : ""}. Press Reconnect to try again.`, "closed");
        return;
      }
      this.retries += 1;
      const delay = Math.min(8000, 1000 * 2 ** (this.retries - 1));
      this.setStatus(
        `Connection lost${ev.reason ? ` (${ev.reason})` : ""}; reconnecting in ${Math.round(delay / 1000)} s…`,
        "retrying",
      );
      this.term.write("\r\n\x1b[2m[connection lost: reconnecting]\x1b[0m\r\n");
      this.retryTimer = setTimeout(() => this.connect(), delay);
    };
  }

  /** Start over with a new shell. */
  reconnect() {
    this.retries = 0;
    const old = this.ws;
    this.ws = null;
    if (old) old.close(1000, "reconnect");
    this.term.write("\r\n\x1b[2m[reconnecting]\x1b[0m\r\n");
    this.connect();
  }

  /** Stop reconnecting and show why (an expired session). */
  end(message) {
    this.ended = true;
    clearTimeout(this.retryTimer);
    const old = this.ws;
    this.ws = null;
    if (old) old.close(1000);
    this.term.options.disableStdin = true;
    this.setStatus(message, "closed");
    this.reconnectBtn.disabled = true;
  }

  /** For tests: drop the connection as a network failure would (not a clean close). */
  drop() {
    if (this.ws) this.ws.close(4000, "dropped by the test hook");
  }

  send(bytes) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(bytes);
  }

  async copy() {
    const text = this.term.getSelection();
    if (!text) {
      toast("Select text in the terminal first", "info");
      return;
    }
    try {
      await navigator.clipboard.writeText(text);
      toast("Copied", "info");
    } catch (e) {
      showError(e, "cannot copy");
    }
  }

  async paste() {
    try {
      const text = await navigator.clipboard.readText();
      if (text) this.term.paste(text);
      this.term.focus();
    } catch (e) {
      showError(e, "cannot paste (use Ctrl+V in the terminal)");
    }
  }

  /** The visible screen as text (what a person sees). */
  screenText() {
    const buf = this.term.buffer.active;
    const lines = [];
    for (let i = 0; i < buf.length; i += 1) lines.push(buf.getLine(i)?.translateToString(true) ?? "");
    return lines.join("\n");
  }

  dispose() {
    this.disposed = true;
    clearTimeout(this.retryTimer);
    window.removeEventListener("resize", this.onWindowResize);
    this.schemeQuery.removeEventListener("change", this.onScheme);
    const old = this.ws;
    this.ws = null;
    if (old) old.close(1000);
    this.term.dispose();
  }
}
