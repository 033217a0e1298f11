// The JavaScript playground: code (with the bundled examples as presets), input JSON, limits;
// POST /v1/execute; the result, the console log with timestamps, and the execution time.
import { post } from "../api.js";
import { h, put, field, showError } from "../dom.js";

// eslint-disable-next-line no-undef
const EXAMPLES = __JS_EXAMPLES__;

function json(v) {
  return typeof v === "string" ? v : JSON.stringify(v, null, 2);
}

export function playgroundPage(root) {
  const names = Object.keys(EXAMPLES);
  const preset = h(
    "select",
    { name: "preset" },
    h("option", { value: "" }, "Choose an example…"),
    names.map((n) => h("option", { value: n }, n)),
  );
  const code = h("textarea", {
    name: "code",
    class: "code",
    rows: "16",
    spellcheck: "false",
    autocapitalize: "off",
    wrap: "off",
    "aria-describedby": "code-hint",
  });
  code.value = EXAMPLES["simple.js"] || "1 + 1";
  if (EXAMPLES["simple.js"]) preset.value = "simple.js";
  const input = h("textarea", { name: "input", class: "code", rows: "4", spellcheck: "false" });
  input.value = "{}";
  const timeout = h("input", { name: "timeout_ms", type: "number", min: "1", step: "1", value: "5000" });
  const memory = h("input", { name: "memory_mb", type: "number", min: "2", step: "1", value: "64" });
  const run = h("button", { type: "submit", class: "primary", id: "run" }, "Run");
  const result = h("div", { class: "result", "aria-live": "polite" });
  const form = h(
    "form",
    { class: "playground" },
    h(
      "div",
      { class: "editor" },
      field("Example", preset),
      h("label", { for: "code" }, "Code"),
      code,
      h("small", { class: "hint", id: "code-hint" }, "Tab indents; press Escape then Tab to leave the editor. Ctrl+Enter runs."),
      field("Input (JSON, the global input)", input),
      h("div", { class: "row3" }, field("Timeout (ms)", timeout), field("Memory (MiB)", memory), h("div", { class: "field end" }, run)),
    ),
    result,
  );
  code.id = "code";
  preset.addEventListener("change", () => {
    if (preset.value) {
      code.value = EXAMPLES[preset.value];
      if (preset.value === "pi.js") input.value = '{"terms": 100000}';
    }
  });
  let escaped = false;
  code.addEventListener("keydown", (e) => {
    if (e.key === "Escape") {
      escaped = true;
      return;
    }
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      form.requestSubmit();
      return;
    }
    if (e.key === "Tab" && !escaped && !e.shiftKey) {
      e.preventDefault();
      const { selectionStart: s, selectionEnd: t, value } = code;
      code.value = `${value.slice(0, s)}  ${value.slice(t)}`;
      code.selectionStart = code.selectionEnd = s + 2;
    }
    escaped = false;
  });
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    let parsed;
    try {
      parsed = input.value.trim() ? JSON.parse(input.value) : undefined;
    } catch (err) {
      showError(err, "the input is not JSON");
      input.focus();
      return;
    }
    run.disabled = true;
    put(result, h("p", { class: "muted", role: "status" }, "Running…"));
    const body = { code: code.value, timeout_ms: Number(timeout.value) || undefined, memory_mb: Number(memory.value) || undefined };
    if (parsed !== undefined) body.input = parsed;
    try {
      const r = await post("/v1/execute", body);
      put(
        result,
        h(
          "div",
          { class: "result-head" },
          h("span", { class: `badge ${r.status === "success" ? "ok" : "bad"}`, id: "exec-status" }, r.status),
          h("span", { class: "muted", id: "exec-time" }, `${Number(r.executionTime).toFixed(2)} ms`),
        ),
        h("h2", {}, "Result"),
        h("pre", { class: "out", id: "exec-result" }, json(r.result)),
        r.error ? [h("h2", {}, "Error"), h("pre", { class: "err" }, r.error.stack || `${r.error.name}: ${r.error.message}`)] : null,
        h("h2", {}, `Console (${r.log.length})`),
        h(
          "ol",
          { class: "console", id: "exec-log" },
          r.log.length
            ? r.log.map((entry) =>
                h(
                  "li",
                  { class: `log-${entry.type}` },
                  h("time", { datetime: entry.timestamp }, entry.timestamp.replace(/^.*T/, "").replace("Z", "")),
                  h("span", { class: "log-type" }, entry.type),
                  h("span", { class: "log-data" }, (entry.data || []).map((d) => json(d)).join(" ")),
                ),
              )
            : h("li", { class: "muted" }, "Nothing was logged."),
        ),
      );
    } catch (err) {
      put(result);
      showError(err, "cannot run the script");
    } finally {
      run.disabled = false;
    }
  });
  put(root, h("div", { class: "page-head" }, h("h1", {}, "JavaScript playground")), h("p", { class: "muted" }, "Runs in QuickJS inside the server, with memory and time limits."), form);
  return () => {};
}
