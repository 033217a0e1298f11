// The console's entry: asks for the token when the server wants one, then routes on the URL
// fragment (#/, #/sandboxes/ID, #/try, #/playground).
import "@xterm/xterm/css/xterm.css";
import "./style.css";
import { get, getToken, setToken, setUnauthorizedHandler } from "./api.js";
import { h, put, field, showError } from "./dom.js";
import { listPage } from "./pages/list.js";
import { sandboxPage } from "./pages/sandbox.js";
import { tryPage } from "./pages/try.js";
import { playgroundPage } from "./pages/playground.js";

const main = document.getElementById("main");
const signout = document.getElementById("signout");
let leave = () => {};
let signedIn = false;

function navigate(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

function loginPage(message) {
  leave();
  leave = () => {};
  signedIn = false;
  signout.hidden = true;
  const token = h("input", { type: "password", name: "token", autocomplete: "current-password", required: true, autofocus: true });
  const error = h("p", { class: "form-error", role: "alert", id: "login-error", hidden: !message }, message || "");
  const submit = h("button", { type: "submit", class: "primary" }, "Sign in");
  const form = h(
    "form",
    { class: "login card", "aria-labelledby": "login-title" },
    h("h1", { id: "login-title" }, "Sign in"),
    h("p", { class: "muted" }, "Paste the server's token (--auth-token) or your API key. It is kept in this tab only."),
    field("Token", token),
    error,
    submit,
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    submit.disabled = true;
    setToken(token.value.trim());
    try {
      await get("/v1/sandboxes", { quiet401: true });
      signedIn = true;
      route();
    } catch (err) {
      setToken("");
      error.hidden = false;
      error.textContent =
        err.status === 401 ? "That token was refused (401 unauthorized). Check it and try again." : `Cannot sign in: ${err.message}`;
      submit.disabled = false;
      token.select();
    }
  });
  put(main, form);
  token.focus();
}

setUnauthorizedHandler((err) => {
  setToken("");
  loginPage(`Your token was refused (${err.message}). Sign in again.`);
});

signout.addEventListener("click", () => {
  setToken("");
  loginPage("Signed out.");
});

function route() {
  if (!signedIn) return boot();
  leave();
  leave = () => {};
  const hash = location.hash || "#/";
  const parts = hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
  let nav = "sandboxes";
  if (parts[0] === "sandboxes" && parts[1]) {
    leave = sandboxPage(main, { id: parts[1], navigate });
    document.title = `${parts[1]} · sqrx console`;
  } else if (parts[0] === "try") {
    nav = "try";
    leave = tryPage(main, { navigate });
    document.title = "Try · sqrx console";
  } else if (parts[0] === "playground") {
    nav = "playground";
    leave = playgroundPage(main, { navigate });
    document.title = "Playground · sqrx console";
  } else {
    leave = listPage(main, { navigate });
    document.title = "Sandboxes · sqrx console";
  }
  for (const a of document.querySelectorAll("[data-nav]")) {
    if (a.dataset.nav === nav) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  signout.hidden = !getToken();
  main.focus({ preventScroll: true });
}

async function boot() {
  try {
    // Works without a token when the server has none; else the stored token is checked.
    await get("/v1/sandboxes", { quiet401: true });
    signedIn = true;
    route();
  } catch (err) {
    if (err.status === 401) {
      loginPage(getToken() ? "Your token was refused. Sign in again." : "");
      setToken("");
    } else {
      showError(err, "cannot reach the server");
      put(main, h("p", { class: "muted" }, "The server did not answer. ", h("button", { type: "button", onclick: boot }, "Retry")));
    }
  }
}

window.addEventListener("hashchange", () => route());
boot();
