// The API client: the token (kept in sessionStorage for this tab), JSON calls that turn the
// server's {"error": "..."} answers into ApiError, and WebSocket URLs/subprotocols that carry
// the token without putting it in a URL.

const TOKEN_KEY = "sqrx.token";

/** An error answered by the server (status and its JSON `error` message). */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

let onUnauthorized = () => {};

/** Register what happens on a 401 (the app asks for the token again). */
export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(token) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

function headers(extra = {}) {
  const h = { ...extra };
  const token = getToken();
  if (token) h.Authorization = `Bearer ${token}`;
  return h;
}

async function errorOf(res) {
  let message = `${res.status} ${res.statusText}`;
  try {
    const body = await res.json();
    if (body && typeof body.error === "string") message = body.error;
    else if (body && typeof body.message === "string") message = body.message;
  } catch {
    // not JSON: keep the status line
  }
  return new ApiError(res.status, message);
}

/**
 * Call the API. `body` (an object) is sent as JSON; `raw` (a Blob/File/string) as is.
 * Returns the parsed JSON, the Response for `as: "response"`, or null for 204.
 */
export async function call(method, path, { body, raw, as, signal, quiet401 } = {}) {
  const init = { method, headers: headers(), signal };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  } else if (raw !== undefined) {
    init.headers["Content-Type"] = "application/octet-stream";
    init.body = raw;
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ApiError(0, `cannot reach the server (${e.message})`);
  }
  if (!res.ok) {
    const err = await errorOf(res);
    if (res.status === 401 && !quiet401) onUnauthorized(err);
    throw err;
  }
  if (as === "response") return res;
  if (res.status === 204) return null;
  const type = res.headers.get("content-type") || "";
  return type.includes("json") ? res.json() : res.text();
}

export const get = (path, opts) => call("GET", path, opts);
export const post = (path, body, opts) => call("POST", path, { ...opts, body });
export const del = (path, opts) => call("DELETE", path, opts);

/** `/v1/sandboxes/ID` with the id encoded. */
export const sandboxPath = (id) => `/v1/sandboxes/${encodeURIComponent(id)}`;

/** A path inside a sandbox as URL segments (each encoded; no leading slash). */
export const filePath = (path) =>
  path
    .split("/")
    .filter(Boolean)
    .map(encodeURIComponent)
    .join("/");

function base64url(text) {
  const bytes = new TextEncoder().encode(text);
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/**
 * Open an API WebSocket. A browser cannot set Authorization on a WebSocket, and a token in
 * the URL would land in logs: the token travels as the subprotocol `sqrx.bearer.<base64url>`
 * next to `sqrx`, which the server selects.
 */
export function openSocket(path) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const protocols = ["sqrx"];
  const token = getToken();
  if (token) protocols.push(`sqrx.bearer.${base64url(token)}`);
  const ws = new WebSocket(`${scheme}//${location.host}${path}`, protocols);
  ws.binaryType = "arraybuffer";
  return ws;
}
