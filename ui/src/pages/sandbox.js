// One sandbox: its terminal, exec history, files and snapshots, and destroy.
import { get, post, call, sandboxPath, filePath } from "../api.js";
import { h, put, age, bytes, clock, modal, field, showError, toast } from "../dom.js";
import { TerminalView } from "../terminal.js";
import { statusBadge, destroySandbox } from "./list.js";

/** Commands run from the page, per sandbox (kept while the tab lives). */
const history = new Map();

const TEXT_EDIT_MAX = 256 * 1024;

function tabs(names, onSelect) {
  const buttons = names.map(([key, label], i) =>
    h(
      "button",
      {
        type: "button",
        role: "tab",
        id: `tab-${key}`,
        "aria-controls": `panel-${key}`,
        "aria-selected": i === 0 ? "true" : "false",
        tabindex: i === 0 ? "0" : "-1",
        dataset: { tab: key },
      },
      label,
    ),
  );
  const list = h("div", { role: "tablist", class: "tabs", "aria-label": "Sandbox sections" }, buttons);
  const select = (key, focus) => {
    for (const b of buttons) {
      const on = b.dataset.tab === key;
      b.setAttribute("aria-selected", on ? "true" : "false");
      b.tabIndex = on ? 0 : -1;
      if (on && focus) b.focus();
    }
    onSelect(key);
  };
  list.addEventListener("click", (e) => {
    const b = e.target.closest("[role=tab]");
    if (b) select(b.dataset.tab);
  });
  // Arrow keys move between tabs (the WAI-ARIA tabs pattern).
  list.addEventListener("keydown", (e) => {
    const i = buttons.indexOf(document.activeElement);
    if (i < 0) return;
    let j = null;
    if (e.key === "ArrowRight") j = (i + 1) % buttons.length;
    if (e.key === "ArrowLeft") j = (i - 1 + buttons.length) % buttons.length;
    if (e.key === "Home") j = 0;
    if (e.key === "End") j = buttons.length - 1;
    if (j !== null) {
      e.preventDefault();
      select(buttons[j].dataset.tab, true);
    }
  });
  return { list, select };
}

function execPanel(id) {
  const entries = history.get(id) || [];
  history.set(id, entries);
  const cmd = h("input", { name: "command", placeholder: "ls -la /", autocomplete: "off", spellcheck: "false", required: true });
  const timeout = h("input", { name: "timeout", type: "number", min: "1", step: "1", value: "30", class: "short" });
  const run = h("button", { type: "submit", class: "primary" }, "Run");
  const list = h("ol", { class: "history", reversed: true, "aria-label": "Exec history" });
  const render = () =>
    put(
      list,
      entries
        .slice()
        .reverse()
        .map((e) =>
          h(
            "li",
            { class: "exec" },
            h(
              "div",
              { class: "exec-head" },
              h("code", {}, `$ ${e.command}`),
              h("span", { class: "spacer" }),
              e.pending
                ? h("span", { class: "badge status-creating" }, "running…")
                : h(
                    "span",
                    { class: `badge ${e.exit_code === 0 ? "ok" : "bad"}` },
                    e.error ? "error" : e.timed_out ? "timed out" : e.signal ? `signal ${e.signal}` : `exit ${e.exit_code}`,
                  ),
              e.duration_ms !== undefined ? h("small", { class: "muted" }, ` ${e.duration_ms} ms`) : null,
              h("small", { class: "muted" }, ` ${new Date(e.at).toLocaleTimeString()}`),
            ),
            e.stdout ? h("pre", { class: "out" }, e.stdout) : null,
            e.stderr ? h("pre", { class: "err" }, e.stderr) : null,
            e.error ? h("pre", { class: "err" }, e.error) : null,
          ),
        ),
      entries.length ? null : h("li", { class: "muted empty" }, "Commands you run here are listed with their output."),
    );
  const form = h(
    "form",
    { class: "exec-form" },
    field("Command", cmd),
    field("Timeout (s)", timeout),
    run,
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const entry = { command: cmd.value, at: Date.now(), pending: true };
    entries.push(entry);
    render();
    run.disabled = true;
    try {
      const r = await post(`${sandboxPath(id)}/exec`, { command: cmd.value, timeout: Number(timeout.value) || 30 });
      Object.assign(entry, r);
      cmd.select();
    } catch (e) {
      entry.error = e.message;
      showError(e, "exec failed");
    } finally {
      entry.pending = false;
      run.disabled = false;
      render();
    }
  });
  render();
  return h("div", {}, form, list);
}

function download(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = h("a", { href: url, download: name, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

function filesPanel(id) {
  let cwd = "/";
  const crumbs = h("nav", { class: "crumbs", "aria-label": "Path" });
  const rows = h("tbody");
  const input = h("input", { type: "file", multiple: true, id: "upload-input", class: "sr-only" });
  const uploadLabel = h("label", { for: "upload-input", class: "button" }, "Upload files…");
  const mkdir = h("button", { type: "button", class: "ghost" }, "New folder");
  const newFile = h("button", { type: "button", class: "ghost" }, "New file");
  const refreshBtn = h("button", { type: "button", class: "ghost" }, "Refresh");
  const drop = h(
    "div",
    { class: "dropzone", "data-testid": "dropzone" },
    h("p", { class: "muted" }, "Drop files here to upload them to the current folder."),
  );
  const join = (dir, name) => `${dir.replace(/\/$/, "")}/${name}`;
  const url = (path) => {
    const p = filePath(path);
    return p ? `${sandboxPath(id)}/files/${p}` : `${sandboxPath(id)}/files`;
  };

  async function upload(files) {
    for (const f of files) {
      try {
        await call("PUT", url(join(cwd, f.name)), { raw: f });
        toast(`Uploaded ${f.name} (${bytes(f.size)})`, "info");
      } catch (e) {
        showError(e, `cannot upload ${f.name}`);
      }
    }
    load();
  }

  async function edit(path, exists = true) {
    let text = "";
    if (exists) {
      try {
        const raw = await (await call("GET", url(path), { as: "response" })).arrayBuffer();
        // Only text is edited here: a binary file would not survive a round trip.
        if (new Uint8Array(raw).includes(0)) throw new Error("it is not a text file (download it instead)");
        text = new TextDecoder("utf-8", { fatal: true }).decode(raw);
      } catch (e) {
        showError(e.name === "TypeError" ? new Error("it is not UTF-8 text (download it instead)") : e, `cannot edit ${path}`);
        return;
      }
    }
    const area = h("textarea", { class: "code", rows: "18", spellcheck: "false", "aria-label": `Contents of ${path}` });
    area.value = text;
    const saved = await modal({
      title: `Edit ${path}`,
      body: area,
      submit: "Save",
      wide: true,
      onSubmit: () => call("PUT", url(path), { raw: area.value }),
    });
    if (saved) {
      toast(`Saved ${path}`, "info");
      load();
    }
  }

  async function load() {
    put(
      crumbs,
      cwd
        .split("/")
        .filter(Boolean)
        .reduce(
          (acc, part) => {
            const path = join(acc.path, part);
            acc.items.push(" / ", h("button", { type: "button", class: "link", onclick: () => go(path) }, part));
            acc.path = path;
            return acc;
          },
          { path: "", items: [h("button", { type: "button", class: "link", onclick: () => go("/") }, "/")] },
        ).items,
    );
    let list;
    try {
      list = await get(cwd === "/" ? `${sandboxPath(id)}/files` : `${url(cwd)}?list`);
    } catch (e) {
      showError(e, `cannot list ${cwd}`);
      return;
    }
    list.sort((a, b) => (b.kind === "dir") - (a.kind === "dir") || a.name.localeCompare(b.name));
    put(
      rows,
      cwd !== "/"
        ? h("tr", {}, h("td", { colspan: "5" }, h("button", { type: "button", class: "link", onclick: () => go(cwd.replace(/\/[^/]+$/, "") || "/") }, "⬑ ..")))
        : null,
      list.map((f) => {
        const path = f.path || join(cwd, f.name);
        const isDir = f.kind === "dir";
        const name = isDir
          ? h("button", { type: "button", class: "link", onclick: () => go(path) }, `${f.name}/`)
          : h("span", {}, f.name);
        const actions = [];
        if (f.kind === "file") {
          actions.push(
            h("button", {
              type: "button",
              class: "ghost",
              "aria-label": `Download ${f.name}`,
              onclick: async () => {
                try {
                  const res = await call("GET", url(path), { as: "response" });
                  download(await res.blob(), f.name);
                } catch (e) {
                  showError(e, `cannot download ${f.name}`);
                }
              },
            }, "Download"),
          );
          if (f.size <= TEXT_EDIT_MAX)
            actions.push(h("button", { type: "button", class: "ghost", "aria-label": `Edit ${f.name}`, onclick: () => edit(path) }, "Edit"));
        }
        actions.push(
          h("button", {
            type: "button",
            class: "ghost danger-text",
            "aria-label": `Delete ${f.name}`,
            onclick: async () => {
              const yes = await modal({ title: `Delete ${path}?`, body: h("p", {}, isDir ? "The folder and everything in it is removed." : "The file is removed."), submit: "Delete", danger: true });
              if (!yes) return;
              try {
                await call("DELETE", `${url(path)}${isDir ? "?recursive=true" : ""}`);
                load();
              } catch (e) {
                showError(e, `cannot delete ${path}`);
              }
            },
          }, "Delete"),
        );
        return h(
          "tr",
          { dataset: { name: f.name } },
          h("th", { scope: "row", "data-label": "Name" }, name),
          h("td", { "data-label": "Size", class: "num" }, isDir ? "" : bytes(f.size)),
          h("td", { "data-label": "Mode" }, h("code", {}, (f.mode & 0o7777).toString(8).padStart(4, "0"))),
          h("td", { "data-label": "Modified" }, clock(f.mtime)),
          h("td", { class: "actions-cell" }, actions),
        );
      }),
    );
  }

  function go(path) {
    cwd = path || "/";
    load();
  }

  input.addEventListener("change", () => {
    upload([...input.files]);
    input.value = "";
  });
  for (const t of ["dragenter", "dragover"])
    panel_on(t, (e) => {
      e.preventDefault();
      drop.classList.add("over");
    });
  panel_on("dragleave", () => drop.classList.remove("over"));
  panel_on("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    const files = [...(e.dataTransfer?.files || [])];
    if (files.length) upload(files);
  });
  function panel_on(type, fn) {
    drop.addEventListener(type, fn);
  }
  mkdir.addEventListener("click", async () => {
    const name = h("input", { required: true, autocomplete: "off" });
    const ok = await modal({ title: "New folder", body: field("Name", name), submit: "Create", onSubmit: () => call("PUT", `${url(join(cwd, name.value))}?dir`, { raw: "" }) });
    if (ok) load();
  });
  newFile.addEventListener("click", async () => {
    const name = h("input", { required: true, autocomplete: "off" });
    const ok = await modal({ title: "New file", body: field("Name", name), submit: "Next" });
    if (ok && name.value) edit(join(cwd, name.value), false);
  });
  refreshBtn.addEventListener("click", () => load());
  load();
  return h(
    "div",
    { class: "files" },
    h("div", { class: "toolbar" }, crumbs, h("span", { class: "spacer" }), input, uploadLabel, newFile, mkdir, refreshBtn),
    drop,
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        { class: "file-table" },
        h("caption", { class: "sr-only" }, "Files in the current folder"),
        h("thead", {}, h("tr", {}, ["Name", "Size", "Mode", "Modified", ""].map((t) => h("th", { scope: "col" }, t)))),
        rows,
      ),
    ),
  );
}

function snapshotsPanel(id, { reload, onRestored }) {
  const label = h("input", { name: "label", placeholder: "optional label", autocomplete: "off", pattern: "[a-zA-Z0-9][a-zA-Z0-9_.\\-]{0,63}" });
  const take = h("button", { type: "submit", class: "primary" }, "Take snapshot");
  const chain = h("ol", { class: "chain", "aria-label": "Snapshots, oldest first" });
  const activateSel = h("select", { name: "layer" });
  const activateBtn = h("button", { type: "button" }, "Activate layer");
  const form = h("form", { class: "inline-form" }, field("Label", label), take);
  const activateRow = h("div", { class: "inline-form", hidden: true }, field("Add a layer on top", activateSel), activateBtn);
  let active = null;

  async function load() {
    let sandbox;
    let snaps;
    let layers;
    try {
      [sandbox, snaps, layers] = await Promise.all([
        get(sandboxPath(id)),
        get(`${sandboxPath(id)}/snapshots`),
        get("/v1/layers").catch(() => []),
      ]);
    } catch (e) {
      showError(e, "cannot list snapshots");
      return;
    }
    active = sandbox.active_snapshot;
    snaps.sort((a, b) => Date.parse(a.created) - Date.parse(b.created));
    put(
      chain,
      snaps.length
        ? snaps.map((s) =>
            h(
              "li",
              { class: `snap${s.label === active ? " active" : ""}`, dataset: { label: s.label } },
              h(
                "div",
                { class: "snap-head" },
                h("strong", {}, s.label),
                s.label === active ? h("span", { class: "badge ok" }, "active") : null,
                h("span", { class: "spacer" }),
                h("button", {
                  type: "button",
                  class: "restore",
                  "aria-label": `Restore ${s.label}`,
                  onclick: async () => {
                    try {
                      await post(`${sandboxPath(id)}/restore`, { label: s.label });
                      toast(`Restored ${s.label}`, "info");
                      await load();
                      onRestored();
                    } catch (e) {
                      showError(e, `cannot restore ${s.label}`);
                    }
                  },
                }, "Restore"),
              ),
              h(
                "small",
                { class: "muted" },
                `${clock(s.created)} · ${bytes(s.size)} · on ${s.parent ? s.parent : "the base layers"} · ${s.layers.join(" → ")}`,
              ),
            ),
          )
        : h("li", { class: "muted empty" }, "No snapshots yet. A snapshot saves the sandbox's files; restore brings them back."),
    );
    const mine = new Set(sandbox.layers);
    put(
      activateSel,
      layers.filter((l) => !mine.has(l.name) && !/^9\d\d-/.test(l.name)).map((l) => h("option", { value: l.name }, l.name)),
    );
    activateBtn.disabled = !activateSel.options.length;
    activateRow.hidden = !activateSel.options.length;
    reload(sandbox);
  }

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    take.disabled = true;
    try {
      const body = label.value ? { label: label.value } : {};
      const s = await post(`${sandboxPath(id)}/snapshot`, body);
      toast(`Snapshot ${s.label} taken (${bytes(s.size)})`, "info");
      label.value = "";
      await load();
    } catch (err) {
      showError(err, "cannot take a snapshot");
    } finally {
      take.disabled = false;
    }
  });
  activateBtn.addEventListener("click", async () => {
    try {
      await post(`${sandboxPath(id)}/activate`, { layer: activateSel.value });
      toast(`Activated ${activateSel.value}`, "info");
      load();
    } catch (err) {
      showError(err, "cannot activate");
    }
  });
  load();
  return h(
    "div",
    { class: "snapshots" },
    form,
    chain,
    activateRow,
  );
}

export function sandboxPage(root, { id, navigate }) {
  const status = h("span");
  const meta = h("p", { class: "muted meta" });
  const destroy = h("button", { type: "button", class: "danger", id: "destroy" }, "Destroy");
  const pause = h("button", { type: "button", class: "ghost" }, "Pause");
  const panels = {};
  let terminal = null;
  let current = null;
  const names = [
    ["terminal", "Terminal"],
    ["exec", "Exec"],
    ["files", "Files"],
    ["snapshots", "Snapshots"],
  ];
  const render = (sandbox) => {
    put(status, statusBadge(sandbox.status));
    pause.textContent = sandbox.status === "paused" ? "Resume" : "Pause";
    put(
      meta,
      `layers ${sandbox.layers.join(", ")}${sandbox.active_snapshot ? ` + snapshot ${sandbox.active_snapshot}` : ""} · created ${age(sandbox.created)} ago · ${
        sandbox.cpu ? `${sandbox.cpu} CPU` : "no CPU limit"
      } · ${sandbox.memory_mb ? `${sandbox.memory_mb} MiB` : "no memory limit"}`,
    );
  };
  const { list, select } = tabs(names, (key) => {
    current = key;
    for (const [k] of names) {
      if (k === key && !panels[k] && k !== "terminal") {
        panels[k] = h("div", { role: "tabpanel", id: `panel-${k}`, "aria-labelledby": `tab-${k}`, class: "panel" });
        body.append(panels[k]);
        if (k === "exec") panels[k].append(execPanel(id));
        if (k === "files") panels[k].append(filesPanel(id));
        if (k === "snapshots") panels[k].append(snapshotsPanel(id, { reload: render, onRestored: () => terminal?.reconnect() }));
      }
      if (panels[k]) panels[k].hidden = k !== key;
    }
    if (key === "terminal") terminal?.resize();
  });
  const body = h("div", { class: "panels" });
  put(
    root,
    h(
      "div",
      { class: "page-head" },
      h("a", { href: "#/", class: "back", "aria-label": "Back to sandboxes" }, "←"),
      h("h1", {}, id),
      status,
      h("span", { class: "spacer" }),
      h("div", { class: "head-actions" }, pause, destroy),
    ),
    meta,
    list,
    body,
  );
  // The terminal connects at once, beside the sandbox's details (a missing sandbox refuses
  // both, and the page says so).
  terminal = new TerminalView(`${sandboxPath(id)}/pty`, { label: `Terminal of ${id}` });
  panels.terminal = h("div", { role: "tabpanel", id: "panel-terminal", "aria-labelledby": "tab-terminal", class: "panel" }, terminal.el);
  body.prepend(panels.terminal);
  window.sqrxTerminal = terminal;
  terminal.start();
  get(sandboxPath(id))
    .then(render)
    .catch((e) => {
      terminal?.dispose();
      terminal = null;
      showError(e, `cannot open ${id}`);
      put(body, h("p", { class: "muted" }, "This sandbox could not be loaded. ", h("a", { href: "#/" }, "Back to the list")));
    });
  current = "terminal";
  destroy.addEventListener("click", async () => {
    if (await destroySandbox(id)) navigate("#/");
  });
  pause.addEventListener("click", async () => {
    const resume = pause.textContent === "Resume";
    try {
      const s = await post(`${sandboxPath(id)}/${resume ? "resume" : "pause"}`);
      if (s && s.status) render(s);
      else render(await get(sandboxPath(id)));
    } catch (e) {
      showError(e, resume ? "cannot resume" : "cannot pause");
    }
  });
  return () => {
    terminal?.dispose();
    if (window.sqrxTerminal === terminal) window.sqrxTerminal = null;
  };
}
