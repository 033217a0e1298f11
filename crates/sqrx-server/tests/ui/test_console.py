"""The web console end to end in headless Chromium: every page, driven as a person would
(clicks, typing, drag and drop), checked on screen and through the API."""

import os
import re

from conftest import SHORT_TTL, sign_in
from playwright.sync_api import expect

SCREEN = "window.sqrxTerminal && window.sqrxTerminal.screenText()"


def wait_screen_line(page, text, timeout=15000):
    """Wait until a line of the terminal's screen is exactly `text` (output, not the echo)."""
    page.wait_for_function(
        "(t) => window.sqrxTerminal && window.sqrxTerminal.screenText().split('\\n').some((l) => l.trim() === t)",
        arg=text,
        timeout=timeout,
    )


def wait_prompt(page, timeout=20000):
    page.wait_for_function(
        "() => window.sqrxTerminal && /[#$] ?$/m.test(window.sqrxTerminal.screenText().trimEnd())",
        timeout=timeout,
    )


def type_in_terminal(page, text):
    page.locator(".xterm-helper-textarea").focus()
    page.keyboard.type(text)
    page.keyboard.press("Enter")


def open_sandbox(page, server, sid, tab=None):
    page.goto(f"{server['url']}/ui/#/sandboxes/{sid}")
    page.get_by_role("heading", name=sid).wait_for()
    if tab:
        page.get_by_role("tab", name=tab).click()


def test_a_bad_token_is_refused_in_the_page(new_page, server, shot):
    page = new_page(signed_in=False)
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_label("Token").fill("not-the-token")
    page.get_by_role("button", name="Sign in").click()
    error = page.locator("#login-error")
    expect(error).to_contain_text("refused (401 unauthorized)")
    shot(page, "login-error")
    # Then the right one works, and survives a reload (sessionStorage).
    sign_in(page, server["token"])
    page.reload()
    expect(page.get_by_role("heading", name="Sandboxes")).to_be_visible()
    # A token that goes bad later: the next call's 401 asks again, in the page.
    page.evaluate("sessionStorage.setItem('sqrx.token', 'revoked')")
    page.goto(server["url"] + "/ui/#/playground")
    page.reload()
    expect(page.locator("#login-error")).to_contain_text("refused")


def test_create_a_sandbox_and_use_its_terminal(new_page, server, shot):
    page = new_page(permissions=["clipboard-read", "clipboard-write"])
    # The dialog opens and closes from the keyboard, focus going back to its button.
    new = page.get_by_role("button", name="New sandbox")
    new.focus()
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="New sandbox")
    expect(dialog).to_be_visible()
    expect(page.get_by_label("Sandbox id")).to_be_focused()
    page.keyboard.press("Escape")
    expect(dialog).to_have_count(0)
    expect(new).to_be_focused()

    new.click()
    page.get_by_label("Sandbox id").fill("ui-term")
    page.get_by_label("Memory (MiB)").fill("256")
    expect(page.get_by_role("checkbox", name=re.compile("000-base"))).to_be_checked()
    shot(page, "create-dialog")
    page.get_by_role("button", name="Create").click()
    page.wait_for_url("**/ui/#/sandboxes/ui-term")
    expect(page.locator(".term-status")).to_have_text("Connected")
    wait_prompt(page)

    type_in_terminal(page, "echo hi")
    wait_screen_line(page, "hi")
    # What a person sees: xterm's DOM rows hold the same line (rendered on the next frame).
    expect(page.locator(".xterm-rows")).to_have_text(re.compile(r"^hi\s*$", re.M), use_inner_text=True)
    shot(page, "sandbox-terminal")

    # Resize: the window changes, the shell learns the new size.
    before = page.evaluate("[window.sqrxTerminal.term.cols, window.sqrxTerminal.term.rows]")
    page.set_viewport_size({"width": 900, "height": 700})
    page.wait_for_function(
        "(b) => window.sqrxTerminal.term.cols !== b[0] || window.sqrxTerminal.term.rows !== b[1]", arg=before
    )
    cols, rows_n = page.evaluate("[window.sqrxTerminal.term.cols, window.sqrxTerminal.term.rows]")
    type_in_terminal(page, "stty size")
    wait_screen_line(page, f"{rows_n} {cols}")

    # The connection drops: the page says so and reconnects by itself.
    page.evaluate("window.sqrxTerminal.drop()")
    expect(page.locator(".term-status")).to_contain_text("reconnecting")
    expect(page.locator(".term-status")).to_have_text("Connected", timeout=15000)
    type_in_terminal(page, "echo back-$((1+1))")
    wait_screen_line(page, "back-2")
    # The Reconnect button starts a new shell.
    page.get_by_role("button", name="Reconnect").click()
    expect(page.locator(".term-status")).to_have_text("Connected")
    type_in_terminal(page, "echo again-$((2+1))")
    wait_screen_line(page, "again-3")

    # Copy and paste through the clipboard.
    page.evaluate("navigator.clipboard.writeText('echo pasted-$((3+4))\\n')")
    page.get_by_role("button", name="Paste").click()
    wait_screen_line(page, "pasted-7")
    page.evaluate("window.sqrxTerminal.term.selectAll()")
    page.get_by_role("button", name="Copy").click()
    page.wait_for_function("navigator.clipboard.readText().then((t) => t.includes('pasted-7'))")

    # Exec from the page, kept in the history.
    page.get_by_role("tab", name="Exec").click()
    page.get_by_label("Command").fill("echo from-exec; echo oops >&2; exit 3")
    page.get_by_role("button", name="Run").click()
    entry = page.locator(".history .exec").first
    expect(entry.locator("pre.out")).to_have_text("from-exec\n")
    expect(entry.locator("pre.err")).to_have_text("oops\n")
    expect(entry.locator(".badge")).to_have_text("exit 3")
    page.get_by_label("Command").fill("uname -s")
    page.get_by_label("Command").press("Enter")
    expect(page.locator(".history .exec")).to_have_count(2)
    expect(page.locator(".history .exec").first.locator("pre.out")).to_have_text("Linux\n")
    shot(page, "sandbox-exec")
    # Back to the terminal tab: still connected.
    page.get_by_role("tab", name="Terminal").click()
    expect(page.locator(".term-status")).to_have_text("Connected")


def test_files_upload_download_and_edit(new_page, server, shot, tmp_path):
    api = server["api"]
    api.ok("POST", "/v1/sandboxes", {"id": "ui-files"})
    api.sh("ui-files", "mkdir -p /work && echo 'first line' > /work/notes.txt")
    page = new_page()
    open_sandbox(page, server, "ui-files", "Files")
    page.get_by_role("button", name="work/").click()
    expect(page.locator("tr[data-name='notes.txt']")).to_be_visible()

    # Upload with the file input.
    blob = os.urandom(70000)
    page.locator("#upload-input").set_input_files(
        files=[{"name": "blob.bin", "mimeType": "application/octet-stream", "buffer": blob}]
    )
    expect(page.locator("tr[data-name='blob.bin']")).to_be_visible()
    assert api.read("ui-files", "/work/blob.bin") == blob

    # Upload by drag and drop (a real DataTransfer on a drop event).
    page.evaluate(
        """() => {
        const dt = new DataTransfer();
        dt.items.add(new File([new Uint8Array([0, 1, 2, 255, 10])], "dropped.bin"));
        dt.items.add(new File(["dropped text\\n"], "dropped.txt", {type: "text/plain"}));
        const zone = document.querySelector('[data-testid=dropzone]');
        zone.dispatchEvent(new DragEvent("dragover", {dataTransfer: dt, bubbles: true, cancelable: true}));
        zone.dispatchEvent(new DragEvent("drop", {dataTransfer: dt, bubbles: true, cancelable: true}));
    }"""
    )
    expect(page.locator("tr[data-name='dropped.txt']")).to_be_visible()
    expect(page.locator("tr[data-name='dropped.bin']")).to_be_visible()
    assert api.read("ui-files", "/work/dropped.bin") == bytes([0, 1, 2, 255, 10])
    assert api.read("ui-files", "/work/dropped.txt") == b"dropped text\n"
    shot(page, "sandbox-files")

    # Download: the same bytes.
    with page.expect_download() as info:
        page.get_by_role("button", name="Download blob.bin").click()
    download = info.value
    assert download.suggested_filename == "blob.bin"
    target = tmp_path / "blob.bin"
    download.save_as(target)
    assert target.read_bytes() == blob

    # Edit a small text file.
    page.get_by_role("button", name="Edit notes.txt").click()
    editor = page.get_by_label("Contents of /work/notes.txt")
    expect(editor).to_have_value("first line\n")
    editor.fill("edited in the browser\nsecond line\n")
    shot(page, "sandbox-edit")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("dialog")).to_have_count(0)
    assert api.read("ui-files", "/work/notes.txt") == b"edited in the browser\nsecond line\n"

    # Delete asks first.
    page.get_by_role("button", name="Delete dropped.bin").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    expect(page.locator("tr[data-name='dropped.bin']")).to_have_count(0)


def test_snapshot_and_restore(new_page, server, shot):
    api = server["api"]
    api.ok("POST", "/v1/sandboxes", {"id": "ui-snap"})
    api.sh("ui-snap", "echo kept > /root/before.txt")
    page = new_page()
    open_sandbox(page, server, "ui-snap", "Snapshots")
    page.get_by_label("Label").fill("first")
    page.get_by_role("button", name="Take snapshot").click()
    expect(page.locator("li.snap[data-label='first']")).to_be_visible()
    api.sh("ui-snap", "echo gone > /root/after.txt")

    page.get_by_role("button", name="Restore first").click()
    expect(page.locator("li.snap[data-label='first'] .badge")).to_have_text("active")
    expect(page.locator(".meta")).to_contain_text("snapshot first")
    out = api.sh("ui-snap", "ls /root; cat /root/before.txt")["stdout"]
    assert "after.txt" not in out, out
    assert "kept" in out, out

    # A snapshot after a restore sits on the restored one: the chain shows it.
    api.sh("ui-snap", "echo more > /root/second.txt")
    page.get_by_label("Label").fill("second")
    page.get_by_role("button", name="Take snapshot").click()
    expect(page.locator("li.snap[data-label='second']")).to_contain_text("on first")
    expect(page.locator("li.snap")).to_have_count(2)
    shot(page, "sandbox-snapshots")

    # Pause and resume from the page header.
    page.get_by_role("button", name="Pause").click()
    expect(page.locator(".page-head .badge")).to_have_text("paused")
    assert api.ok("GET", "/v1/sandboxes/ui-snap")["status"] == "paused"
    page.get_by_role("button", name="Resume").click()
    expect(page.locator(".page-head .badge")).to_have_text("running")


def test_list_live_usage_and_destroy_with_confirmation(new_page, server, shot):
    api = server["api"]
    api.ok("POST", "/v1/sandboxes", {"id": "ui-busy", "cpu": 0.5, "memory_mb": 128})
    api.ok("POST", "/v1/sandboxes", {"id": "ui-doomed"})
    api.sh("ui-busy", "nohup sh -c 'while :; do :; done' >/dev/null 2>&1 &")
    page = new_page()
    row = page.locator("tr[data-id='ui-busy']")
    expect(row).to_be_visible()
    expect(row.locator("td.cpu")).to_have_text(re.compile(r"^\d+\.\d%$"))
    # Half a core, spinning: the CPU column shows it.
    page.wait_for_function(
        "() => parseFloat(document.querySelector(\"tr[data-id='ui-busy'] td.cpu\").textContent) > 20",
        timeout=15000,
    )
    expect(row.locator("td.mem")).to_contain_text("/ 128 MiB")
    expect(row).to_contain_text("0.5 CPU")
    shot(page, "sandboxes")

    doomed = page.locator("tr[data-id='ui-doomed']")
    doomed.get_by_role("button", name="Destroy").click()
    dialog = page.get_by_role("dialog", name="Destroy ui-doomed?")
    expect(dialog).to_be_visible()
    shot(page, "destroy-confirm")
    page.keyboard.press("Escape")
    expect(dialog).to_have_count(0)
    assert api.call("GET", "/v1/sandboxes/ui-doomed")[0] == 200
    doomed.get_by_role("button", name="Destroy").click()
    page.get_by_role("dialog").get_by_role("button", name="Destroy").click()
    expect(page.locator("tr[data-id='ui-doomed']")).to_have_count(0)
    assert api.call("GET", "/v1/sandboxes/ui-doomed")[0] == 404
    api.ok("DELETE", "/v1/sandboxes/ui-busy")


def test_the_playground_runs_the_examples(new_page, server, shot):
    page = new_page()
    page.get_by_role("link", name="Playground").click()
    page.get_by_label("Example").select_option("pi.js")
    expect(page.get_by_label("Code", exact=True)).to_have_value(re.compile("Nilakantha"))
    page.get_by_role("button", name="Run").click()
    expect(page.locator("#exec-status")).to_have_text("success")
    result = page.locator("#exec-result").inner_text()
    assert '"terms": 100000' in result and '"pi": 3.14159' in result, result
    expect(page.locator("#exec-log")).to_contain_text("pi after 100000 terms")
    assert re.search(r"\d\d:\d\d:\d\d\.\d{3}", page.locator("#exec-log time").first.inner_text())
    expect(page.locator("#exec-time")).to_have_text(re.compile(r"^\d+\.\d\d ms$"))
    shot(page, "playground")

    page.get_by_label("Example").select_option("log.js")
    page.get_by_label("Code", exact=True).press("Control+Enter")
    expect(page.locator("#exec-log li")).to_have_count(6)
    for kind in ["log", "info", "warn", "error", "debug"]:
        expect(page.locator(f"#exec-log li.log-{kind}").first).to_be_visible()
    expect(page.locator("#exec-result")).to_have_text("3")

    # A script that never ends: the limit is the answer, shown as a status.
    code = page.get_by_label("Code", exact=True)
    code.fill("while (true) {}")
    page.get_by_label("Timeout (ms)").fill("300")
    page.get_by_role("button", name="Run").click()
    expect(page.locator("#exec-status")).to_have_text("timeout")
    # Tab indents inside the editor.
    code.fill("")
    code.press("Tab")
    expect(code).to_have_value("  ")
    # Invalid input JSON is an in-page error, not a request.
    page.get_by_label("Input (JSON, the global input)").fill("{nope")
    page.get_by_role("button", name="Run").click()
    expect(page.locator(".toast.error")).to_contain_text("the input is not JSON")


def test_a_try_session_counts_down_and_expires(new_page, server, shot):
    page = new_page()
    page.get_by_role("link", name="Try").click()
    page.get_by_label("Template").fill("ui-short")
    page.get_by_role("button", name="Start session").click()
    countdown = page.locator(".countdown")
    expect(countdown).to_have_text(re.compile(r"^Expires in 0:0\d$"))
    expect(page.locator(".term-status")).to_have_text("Connected")
    type_in_terminal(page, "echo in-session")
    wait_screen_line(page, "in-session")
    shot(page, "try-running")
    expect(countdown).to_have_text("Session expired", timeout=(SHORT_TTL + 10) * 1000)
    expect(countdown).to_have_attribute("data-state", "expired")
    expect(page.locator(".term-status")).to_contain_text("Session expired")
    shot(page, "try-expired")

    # Another one: extended, then stopped from the page.
    page.get_by_role("button", name="Start session").click()
    expect(countdown).to_have_text(re.compile(r"^Expires in 0:0\d$"))
    page.get_by_role("button", name="Extend by 60 s").click()
    expect(countdown).to_have_text(re.compile(r"^Expires in 1:0\d$"))
    page.get_by_role("button", name="Stop session").click()
    expect(countdown).to_have_text("Session stopped")
    expect(page.locator(".term-status")).to_contain_text("Session stopped")


def test_errors_from_the_server_are_shown(new_page, server):
    server["api"].ok("POST", "/v1/sandboxes", {"id": "ui-dup"})
    page = new_page()
    page.get_by_role("button", name="New sandbox").click()
    page.get_by_label("Sandbox id").fill("ui-dup")
    page.get_by_role("button", name="Create").click()
    # The server's JSON error, in the dialog, which stays open.
    expect(page.get_by_role("dialog").locator(".form-error")).to_contain_text("ui-dup")
    page.keyboard.press("Escape")
    page.goto(server["url"] + "/ui/#/sandboxes/no-such-sandbox")
    expect(page.locator(".toast.error")).to_contain_text("no-such-sandbox")


def test_phone_width_and_dark_mode(new_page, server, shot):
    server["api"].ok("POST", "/v1/sandboxes", {"id": "ui-phone"})
    page = new_page(viewport={"width": 390, "height": 844}, color_scheme="dark", is_mobile=True, has_touch=True)
    bg = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert bg == "rgb(1, 4, 9)", bg
    expect(page.locator("tr[data-id='ui-phone']")).to_be_visible()

    def fits():
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the page is {width}px wide on a 390px screen"

    fits()
    shot(page, "phone-dark-sandboxes", full_page=True)
    open_sandbox(page, server, "ui-phone")
    expect(page.locator(".term-status")).to_have_text("Connected")
    wait_prompt(page)
    fits()
    shot(page, "phone-dark-terminal")
    page.goto(server["url"] + "/ui/#/playground")
    page.get_by_role("button", name="Run").click()
    expect(page.locator("#exec-status")).to_have_text("success")
    fits()
    shot(page, "phone-dark-playground", full_page=True)
    desktop = new_page(color_scheme="dark")
    shot(desktop, "dark-sandboxes")


def test_each_user_sees_only_their_own_sandboxes(new_page, server, shot):
    api = server["api"]
    keys = {}
    for name in ("ui-alice", "ui-bob"):
        user = api.ok("POST", "/api/admin/users", {"name": name, "quota": {}})
        key = api.ok("POST", f"/api/admin/users/{user['id']}/apikeys", {"name": "console"})
        keys[name] = key["key"]
    for name, key in keys.items():
        type(api)(api.url, key).ok("POST", "/v1/sandboxes", {"id": f"{name}-box"})
    alice = new_page(key=keys["ui-alice"])
    bob = new_page(key=keys["ui-bob"])
    expect(alice.locator("tr[data-id='ui-alice-box']")).to_be_visible()
    expect(bob.locator("tr[data-id='ui-bob-box']")).to_be_visible()
    expect(alice.locator("tbody tr")).to_have_count(1)
    expect(bob.locator("tbody tr")).to_have_count(1)
    # Another user's sandbox, opened by URL: not found, and no terminal.
    bob.goto(server["url"] + "/ui/#/sandboxes/ui-alice-box")
    expect(bob.locator(".toast.error")).to_contain_text("not found")
    expect(bob.locator(".term-box")).to_have_count(0)
    shot(alice, "tenant-alice")
