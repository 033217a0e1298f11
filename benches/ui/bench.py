"""The console's benchmark (see run.sh): time from clicking "Create" in the browser to a shell
prompt in its terminal, against the same create + pty + first prompt done by a plain
WebSocket client without a browser; and the page weight of a first load.

    python bench.py URL TOKEN [ROUNDS]
"""

import asyncio
import concurrent.futures
import json
import statistics
import sys
import time
import urllib.error
import urllib.request

import websockets
from playwright.sync_api import sync_playwright

CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
]
PROMPT = "() => window.sqrxTerminal && /[#$] ?$/m.test(window.sqrxTerminal.screenText().trimEnd())"


def api(url, token, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        url + path, data=data, method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=60) as r:
        return r.read()


def pct(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def page_weight(browser, url, token):
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    page = ctx.new_page()
    seen = []
    page.on("requestfinished", lambda r: seen.append(r))
    page.goto(url + "/ui/", wait_until="networkidle")
    transferred = 0
    body = 0
    files = []
    for r in seen:
        if "/ui/" not in r.url:
            continue
        sizes = r.sizes()
        transferred += sizes["responseBodySize"] + sizes["responseHeadersSize"]
        resp = r.response()
        size = len(resp.body()) if resp else 0
        body += size
        files.append((r.url.split("/ui/", 1)[1] or "index.html", sizes["responseBodySize"], size))
    ctx.close()
    return transferred, body, files


def forget(url, token, sid):
    """Destroy `sid` if a previous run left it."""
    try:
        api(url, token, "DELETE", f"/v1/sandboxes/{sid}")
    except urllib.error.HTTPError as e:
        if e.code != 404:
            raise


def browser_round(browser, url, token, sid):
    forget(url, token, sid)
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    ctx.add_init_script(f"sessionStorage.setItem('sqrx.token', {json.dumps(token)})")
    page = ctx.new_page()
    page.goto(url + "/ui/")
    page.get_by_role("button", name="New sandbox").click()
    page.get_by_label("Sandbox id").fill(sid)
    create = page.get_by_role("button", name="Create")
    t0 = time.perf_counter()
    create.click()
    page.wait_for_function(PROMPT, polling="raf", timeout=60000)
    elapsed = time.perf_counter() - t0
    ctx.close()
    return elapsed


async def peer_round(url, token, sid):
    await asyncio.to_thread(forget, url, token, sid)
    t0 = time.perf_counter()
    await asyncio.to_thread(api, url, token, "POST", "/v1/sandboxes", {"id": sid})
    ws_url = url.replace("http://", "ws://") + f"/v1/sandboxes/{sid}/pty?cols=120&rows=30"
    async with websockets.connect(ws_url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        screen = ""
        while True:
            msg = await asyncio.wait_for(ws.recv(), 60)
            screen += msg.decode(errors="replace") if isinstance(msg, bytes) else msg
            tail = screen.rstrip()
            if tail.endswith("#") or tail.endswith("$"):
                break
    return time.perf_counter() - t0


def run_peer(url, token, sid):
    # Playwright's sync API owns this thread's event loop: the peer runs on a thread of its own.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(peer_round(url, token, sid))).result()


def main():
    url, token = sys.argv[1], sys.argv[2]
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 20
    browser_times, peer_times = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        transferred, body, files = page_weight(browser, url, token)
        # Warm up both paths once (layer mounts, page cache), not counted.
        browser_round(browser, url, token, "bench-warm-b")
        run_peer(url, token, "bench-warm-p")
        for sid in ("bench-warm-b", "bench-warm-p"):
            api(url, token, "DELETE", f"/v1/sandboxes/{sid}")
        for i in range(rounds):
            # Interleaved, so both see the same machine state.
            b = f"bench-b{i}"
            browser_times.append(browser_round(browser, url, token, b))
            api(url, token, "DELETE", f"/v1/sandboxes/{b}")
            q = f"bench-p{i}"
            peer_times.append(run_peer(url, token, q))
            api(url, token, "DELETE", f"/v1/sandboxes/{q}")
        browser.close()
    ms = lambda v: f"{v * 1000:.0f} ms"
    bp50, bp90 = statistics.median(browser_times), pct(browser_times, 90)
    pp50, pp90 = statistics.median(peer_times), pct(peer_times, 90)
    print(f"rounds: {rounds}")
    print(f"browser (click Create -> prompt in xterm.js): p50 {ms(bp50)}, p90 {ms(bp90)}")
    print(f"peer (POST create + pty WebSocket -> prompt, Python websockets): p50 {ms(pp50)}, p90 {ms(pp90)}")
    print(f"ratio browser/peer: p50 {bp50 / pp50:.2f}x, p90 {bp90 / pp90:.2f}x")
    print(f"page weight, first load: {transferred / 1024:.1f} KB transferred (gzip, headers included), "
          f"{body / 1024:.1f} KB uncompressed")
    for name, sent, size in files:
        print(f"  {name}: {sent / 1024:.1f} KB sent, {size / 1024:.1f} KB")


if __name__ == "__main__":
    main()
