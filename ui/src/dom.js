// Small DOM helpers: an element builder, toasts for errors, dialogs, formatters.

/** Build an element: h("button", {type: "button", onclick}, "Text", child...). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "value") el.value = v;
    else if (k === "checked") el.checked = !!v;
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** Replace the children of `el`. */
export function put(el, ...children) {
  el.replaceChildren();
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** Show a message in the page: kind "error" (stays until dismissed) or "info" (fades). */
export function toast(message, kind = "error") {
  const box = document.getElementById("toasts");
  const close = h("button", { type: "button", class: "icon", "aria-label": "Dismiss" }, "×");
  const t = h(
    "div",
    { class: `toast ${kind}`, role: kind === "error" ? "alert" : "status" },
    h("span", { class: "toast-text" }, message),
    close,
  );
  close.addEventListener("click", () => t.remove());
  box.append(t);
  if (kind !== "error") setTimeout(() => t.remove(), 4000);
  else setTimeout(() => t.remove(), 20000);
  return t;
}

/** Report an error (an ApiError or anything thrown) in the page. */
export function showError(err, context) {
  if (err && err.name === "AbortError") return;
  const status = err && err.status ? ` (${err.status})` : "";
  const text = err && err.message ? err.message : String(err);
  toast(context ? `${context}: ${text}${status}` : `${text}${status}`, "error");
}

/**
 * A modal <dialog>: Escape and the Cancel button close it, focus goes to `focus` (or the
 * first field) and back to where it was. Resolves with the submit's value or null.
 */
export function modal({ title, body, submit = "OK", danger = false, onSubmit, wide = false }) {
  return new Promise((resolve) => {
    const previous = document.activeElement;
    const error = h("p", { class: "form-error", role: "alert", hidden: true });
    const cancel = h("button", { type: "button", class: "ghost", value: "cancel" }, "Cancel");
    const ok = h("button", { type: "submit", class: danger ? "danger" : "primary" }, submit);
    const titleId = `dlg-${Math.random().toString(36).slice(2)}`;
    const form = h(
      "form",
      { method: "dialog" },
      h("h2", { id: titleId }, title),
      body,
      error,
      h("div", { class: "actions" }, cancel, ok),
    );
    const dlg = h("dialog", { "aria-labelledby": titleId, class: wide ? "wide" : "" }, form);
    let done = false;
    const finish = (value) => {
      if (done) return;
      done = true;
      dlg.close();
      dlg.remove();
      if (previous && previous.focus) previous.focus();
      resolve(value);
    };
    cancel.addEventListener("click", () => finish(null));
    dlg.addEventListener("cancel", (e) => {
      e.preventDefault();
      finish(null);
    });
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      if (!onSubmit) return finish(true);
      ok.disabled = true;
      error.hidden = true;
      try {
        const value = await onSubmit();
        finish(value === undefined ? true : value);
      } catch (err) {
        error.textContent = err && err.message ? err.message : String(err);
        error.hidden = false;
        ok.disabled = false;
      }
    });
    document.body.append(dlg);
    dlg.showModal();
    // A question without fields starts on Cancel when the answer destroys something.
    const first =
      dlg.querySelector("[autofocus]") || dlg.querySelector("input, select, textarea") || (danger ? cancel : ok);
    first.focus();
  });
}

/** Ask before doing something that cannot be undone. */
export function confirmDialog(title, text, submit) {
  return modal({ title, body: h("p", {}, text), submit, danger: true });
}

export function bytes(n) {
  if (n === null || n === undefined) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${i === 0 ? v : v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

export function age(iso) {
  const s = Math.max(0, Math.floor((Date.now() - Date.parse(iso)) / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d`;
}

export function clock(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleString();
}

/** A field with its label: field("Memory (MiB)", input, "hint"). */
export function field(label, input, hint) {
  if (!input.id) input.id = `f-${Math.random().toString(36).slice(2)}`;
  const hintEl = hint ? h("small", { class: "hint", id: `${input.id}-hint` }, hint) : null;
  if (hintEl) input.setAttribute("aria-describedby", hintEl.id);
  return h("div", { class: "field" }, h("label", { for: input.id }, label), input, hintEl);
}
