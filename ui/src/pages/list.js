// The sandbox list (status, layers, age, limits, live CPU and memory from the cgroup) and
// the create dialog.
import { get, post, del, sandboxPath } from "../api.js";
import { h, put, age, bytes, modal, field, showError, confirmDialog, toast } from "../dom.js";

const POLL_MS = 2000;

/** Put `children` in a cell, inside one block (so a phone's card layout keeps them together). */
const fill = (cell, ...children) => put(cell, h("div", { class: "cell" }, ...children));

function limits(s) {
  const parts = [];
  parts.push(s.cpu ? `${s.cpu} CPU` : "no CPU limit");
  parts.push(s.memory_mb ? `${s.memory_mb} MiB` : "no memory limit");
  if (s.pids_max) parts.push(`${s.pids_max} pids`);
  return parts.join(" · ");
}

function networkText(n) {
  if (!n || typeof n === "string") return n || "none";
  return `allow ${(n.allow || []).join(", ") || "nothing"}`;
}

export function statusBadge(status) {
  return h("span", { class: `badge status-${status}` }, status);
}

/** Destroy `id` after a confirmation; true when it was destroyed. */
export async function destroySandbox(id) {
  const yes = await confirmDialog(
    `Destroy ${id}?`,
    `Every process in ${id} is stopped and its files are deleted. This cannot be undone.`,
    "Destroy",
  );
  if (!yes) return false;
  try {
    await del(sandboxPath(id));
    toast(`Destroyed ${id}`, "info");
    return true;
  } catch (e) {
    showError(e, `cannot destroy ${id}`);
    return false;
  }
}

/** The create dialog; resolves with the new sandbox or null. */
export async function createDialog() {
  let layers = [];
  try {
    layers = (await get("/v1/layers")).filter((l) => !/^9\d\d-/.test(l.name));
  } catch (e) {
    showError(e, "cannot list layers");
  }
  const suggested = `sbx-${Math.random().toString(36).slice(2, 7)}`;
  const id = h("input", {
    name: "id",
    required: true,
    value: suggested,
    pattern: "[a-zA-Z0-9][a-zA-Z0-9_\\-]{0,63}",
    autocomplete: "off",
    spellcheck: "false",
    autofocus: true,
  });
  const layerBoxes = layers.map((l) =>
    h(
      "label",
      { class: "check" },
      h("input", { type: "checkbox", name: "layer", value: l.name, checked: l.name === "000-base" }),
      ` ${l.name} `,
      h("small", { class: "muted" }, bytes(l.size)),
    ),
  );
  const cpu = h("input", { name: "cpu", type: "number", min: "0.05", step: "0.05", placeholder: "server default" });
  const mem = h("input", { name: "memory_mb", type: "number", min: "16", step: "1", placeholder: "server default" });
  const pids = h("input", { name: "pids_max", type: "number", min: "8", step: "1", placeholder: "server default" });
  const lifetime = h("input", { name: "max_lifetime", type: "number", min: "0", step: "1", value: "0" });
  const network = h(
    "select",
    { name: "network" },
    h("option", { value: "none" }, "none (loopback only)"),
    h("option", { value: "all" }, "all (internet, never the host)"),
    h("option", { value: "allow" }, "allow list"),
  );
  const allow = h("textarea", { name: "allow", rows: "2", placeholder: "10.1.0.0/16, 192.0.2.7:443", disabled: true });
  network.addEventListener("change", () => (allow.disabled = network.value !== "allow"));
  const body = h(
    "div",
    { class: "form-grid" },
    field("Sandbox id", id, "Letters, digits, - and _; unique."),
    h(
      "fieldset",
      { class: "layers" },
      h("legend", {}, "Layers (lowest first)"),
      layerBoxes.length ? layerBoxes : h("p", { class: "muted" }, "No layers listed: the server's base layer is used."),
    ),
    h(
      "div",
      { class: "row3" },
      field("CPU (cores)", cpu),
      field("Memory (MiB)", mem),
      field("Processes", pids),
    ),
    h("div", { class: "row2" }, field("Network", network), field("Lifetime (s, 0 = none)", lifetime)),
    field("Allowed destinations", allow, "Comma or newline separated; with the allow list policy."),
  );
  return modal({
    title: "New sandbox",
    body,
    submit: "Create",
    wide: true,
    onSubmit: async () => {
      const spec = { id: id.value.trim() };
      const chosen = [...body.querySelectorAll('input[name="layer"]:checked')].map((c) => c.value).sort();
      if (chosen.length) spec.layers = chosen;
      if (cpu.value) spec.cpu = Number(cpu.value);
      if (mem.value) spec.memory_mb = Number(mem.value);
      if (pids.value) spec.pids_max = Number(pids.value);
      if (lifetime.value && Number(lifetime.value) > 0) spec.max_lifetime = Number(lifetime.value);
      if (network.value === "all") spec.network = "all";
      if (network.value === "allow")
        spec.network = { allow: allow.value.split(/[\s,]+/).filter(Boolean) };
      window.__sqrxCreateClicked = performance.now();
      return post("/v1/sandboxes", spec);
    },
  });
}

export function listPage(root, { navigate }) {
  const rows = h("tbody");
  const empty = h("p", { class: "empty muted", hidden: true }, "No sandboxes yet. Create one to get a shell.");
  const newBtn = h("button", { type: "button", class: "primary", id: "new-sandbox" }, "New sandbox");
  const updated = h("small", { class: "muted", "aria-live": "off" });
  put(
    root,
    h(
      "div",
      { class: "page-head" },
      h("h1", {}, "Sandboxes"),
      updated,
      h("span", { class: "spacer" }),
      newBtn,
    ),
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        { class: "sandboxes" },
        h("caption", { class: "sr-only" }, "Sandboxes with their status, layers, limits and live usage"),
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            ["Sandbox", "Status", "Layers", "Age", "Limits", "CPU", "Memory", ""].map((t) =>
              h("th", { scope: "col" }, t),
            ),
          ),
        ),
        rows,
      ),
    ),
    empty,
  );

  const last = new Map(); // id -> {usec, t}
  let stopped = false;
  let timer = null;

  newBtn.addEventListener("click", async () => {
    const created = await createDialog();
    if (created) navigate(`#/sandboxes/${encodeURIComponent(created.id)}`);
  });

  function usage(s, stats, cpuCell, memCell) {
    if (!stats) {
      fill(cpuCell, "—");
      fill(memCell, "—");
      return;
    }
    const prev = last.get(s.id);
    const now = performance.now();
    let cpuText = "…";
    if (prev && now > prev.t) {
      const pct = ((stats.cpu_usage_usec - prev.usec) / ((now - prev.t) * 1000)) * 100;
      cpuText = `${Math.max(0, pct).toFixed(1)}%`;
    }
    last.set(s.id, { usec: stats.cpu_usage_usec, t: now });
    const limit = stats.memory_limit_bytes;
    const frac = limit ? Math.min(1, stats.memory_bytes / limit) : 0;
    fill(cpuCell, cpuText);
    fill(
      memCell,
      `${bytes(stats.memory_bytes)}${limit ? ` / ${bytes(limit)}` : ""}`,
      limit ? h("meter", { min: "0", max: "1", value: String(frac), "aria-label": "memory used" }) : null,
      h("small", { class: "muted" }, `${stats.pids} tasks`),
    );
  }

  // Rows are kept and updated in place, so focus and clicks survive the polling.
  const shown = new Map(); // id -> {tr, cells}

  function row(s) {
    const open = h("a", { href: `#/sandboxes/${encodeURIComponent(s.id)}`, class: "id" }, s.id);
    const destroy = h("button", { type: "button", class: "ghost danger-text destroy", "aria-label": `Destroy ${s.id}` }, "Destroy");
    destroy.addEventListener("click", async () => {
      if (await destroySandbox(s.id)) refresh();
    });
    const cells = {
      status: h("td", { "data-label": "Status" }),
      layers: h("td", { "data-label": "Layers", class: "layer-list" }),
      age: h("td", { "data-label": "Age" }),
      limits: h("td", { "data-label": "Limits" }),
      cpu: h("td", { "data-label": "CPU", class: "num cpu" }, "—"),
      mem: h("td", { "data-label": "Memory", class: "num mem" }, "—"),
    };
    const tr = h(
      "tr",
      { dataset: { id: s.id } },
      h("th", { scope: "row", "data-label": "Sandbox" }, open, s.owner ? h("small", { class: "muted owner" }, s.owner) : null),
      Object.values(cells),
      h("td", { class: "actions-cell" }, destroy),
    );
    return { tr, cells };
  }

  async function refresh() {
    let list;
    try {
      list = await get("/v1/sandboxes");
    } catch (e) {
      if (e.status !== 401) showError(e, "cannot list sandboxes");
      return;
    }
    const stats = await Promise.all(
      list.map((s) => get(`${sandboxPath(s.id)}/stats`, { quiet401: true }).catch(() => null)),
    );
    if (stopped) return;
    const ids = new Set(list.map((s) => s.id));
    for (const [id, r] of shown) {
      if (!ids.has(id)) {
        r.tr.remove();
        shown.delete(id);
        last.delete(id);
      }
    }
    let previous = null;
    list.forEach((s, i) => {
      let r = shown.get(s.id);
      if (!r) {
        r = row(s);
        shown.set(s.id, r);
        if (previous) previous.after(r.tr);
        else rows.prepend(r.tr);
      }
      previous = r.tr;
      fill(r.cells.status, statusBadge(s.status));
      fill(r.cells.layers, s.layers.join(", ") + (s.active_snapshot ? ` + ${s.active_snapshot}` : ""));
      r.cells.age.title = s.created;
      fill(r.cells.age, age(s.created));
      fill(r.cells.limits, limits(s), h("br"), h("small", { class: "muted" }, `network ${networkText(s.network)}`));
      usage(s, stats[i], r.cells.cpu, r.cells.mem);
    });
    empty.hidden = list.length > 0;
    updated.textContent = `updated ${new Date().toLocaleTimeString()}`;
  }

  async function loop() {
    await refresh();
    if (!stopped) timer = setTimeout(loop, POLL_MS);
  }
  loop();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
