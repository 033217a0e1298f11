// The official `e2b` JavaScript SDK (pinned in package.json), unchanged, against `sqrx serve`:
// only E2B_API_URL, E2B_SANDBOX_URL and E2B_API_KEY point it at sqrx. Node's own fetch carries
// every call. The server runs on a throwaway data dir (/tmp/sqrx-test-e2b-*), cleaned up after.
import { test, before, after } from 'node:test'
import assert from 'node:assert'
import { spawn, execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import readline from 'node:readline'
import { Sandbox, CommandExitError, FileNotFoundError, AuthenticationError, TimeoutError, InvalidArgumentError, NotFoundError, SandboxNotFoundError } from 'e2b'

const privileged = process.getuid() === 0
const skip = !privileged && process.env.SQRX_REQUIRE_PRIVILEGED !== '1' ? 'not running as root' : false
const ctx = { proc: null, data: null }

async function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer()
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address()
      s.close(() => resolve(port))
    })
  })
}

before(async () => {
  if (skip) return
  assert.ok(privileged, 'the E2B tests need root (SQRX_REQUIRE_PRIVILEGED=1)')
  ctx.data = fs.mkdtempSync(path.join(os.tmpdir(), 'sqrx-test-e2b-'))
  const port = await freePort()
  const token = 'e2b_' + randomBytes(20).toString('hex')
  const log = fs.openSync(path.join(ctx.data, 'server.log'), 'w')
  // get_host(port) names {port}-{id}.sqrx.test: wildcard DNS, as a deployment has.
  const args = ['serve', '--listen', `127.0.0.1:${port}`, '--auth-token', token, '--allowed-host', '*.sqrx.test']
  ctx.proc = spawn(process.env.SQRX_BIN, args, {
    env: { ...process.env, SQRX_DATA: ctx.data },
    stdio: ['ignore', 'pipe', log],
  })
  const line = await new Promise((resolve) => readline.createInterface({ input: ctx.proc.stdout }).once('line', resolve))
  assert.match(line, /listening on/)
  const url = `http://127.0.0.1:${port}`
  Object.assign(ctx, { port, token })
  Object.assign(process.env, { E2B_API_URL: url, E2B_SANDBOX_URL: url, E2B_API_KEY: token, E2B_DOMAIN: 'sqrx.test' })
})

after(async () => {
  if (!ctx.proc) return
  ctx.proc.kill('SIGTERM')
  await new Promise((resolve) => ctx.proc.once('exit', resolve))
  const env = { ...process.env, SQRX_DATA: ctx.data }
  let ids = []
  try {
    ids = JSON.parse(execFileSync(process.env.SQRX_BIN, ['sandbox', 'ls', '--json'], { env }).toString()).map((s) => s.id)
  } catch {}
  for (const id of ids) {
    try { execFileSync(process.env.SQRX_BIN, ['sandbox', 'rm', id], { env, stdio: 'ignore' }) } catch {}
  }
  fs.rmSync(ctx.data, { recursive: true, force: true })
})

test('lifecycle: create, info, list, timeout, pause, connect, kill', { skip }, async () => {
  const sbx = await Sandbox.create('base', { timeoutMs: 60_000, metadata: { suite: 'js' }, envs: { GREETING: 'hello' } })
  const info = await sbx.getInfo()
  assert.strictEqual(info.sandboxId, sbx.sandboxId)
  assert.deepStrictEqual(info.metadata, { suite: 'js' })
  assert.strictEqual(info.state, 'running')
  const page = await Sandbox.list({ query: { metadata: { suite: 'js' } } }).nextItems()
  assert.deepStrictEqual(page.map((s) => s.sandboxId), [sbx.sandboxId])
  await sbx.setTimeout(300_000)
  assert.ok((await sbx.getInfo()).endAt > info.endAt)
  assert.strictEqual(await sbx.isRunning(), true)
  assert.strictEqual(await sbx.pause(), true)
  assert.strictEqual(await sbx.isRunning(), false)
  const again = await Sandbox.connect(sbx.sandboxId)
  assert.strictEqual((await again.commands.run('echo $GREETING')).stdout, 'hello\n')
  assert.strictEqual(await again.kill(), true)
  assert.strictEqual(await Sandbox.kill(sbx.sandboxId), false)
})

test('commands: run, stream, exit codes, background, stdin, kill', { skip }, async (t) => {
  const sbx = await Sandbox.create({ timeoutMs: 120_000 })
  t.after(() => sbx.kill())
  const r = await sbx.commands.run('echo out; echo err >&2', { envs: { A: '1' }, cwd: '/tmp' })
  assert.strictEqual(r.stdout, 'out\n')
  assert.strictEqual(r.stderr, 'err\n')
  await assert.rejects(sbx.commands.run('exit 5'), (e) => e instanceof CommandExitError && e.exitCode === 5)
  const seen = []
  const started = Date.now()
  await sbx.commands.run('for i in 1 2 3; do echo $i; sleep 0.4; done', { onStdout: (d) => seen.push([Date.now() - started, d]) })
  assert.deepStrictEqual(seen.map(([, d]) => d), ['1\n', '2\n', '3\n'])
  assert.ok(seen[0][0] < 350 && seen[2][0] > 700, JSON.stringify(seen))
  await assert.rejects(sbx.commands.run('sleep 10', { timeoutMs: 1000 }), (e) => e instanceof TimeoutError)
  const bg = await sbx.commands.run('sleep 30', { background: true })
  assert.ok((await sbx.commands.list()).some((p) => p.pid === bg.pid))
  assert.strictEqual(await sbx.commands.kill(bg.pid), true)
  assert.strictEqual(await sbx.commands.kill(bg.pid), false)
  const cat = await sbx.commands.run('cat', { background: true, stdin: true })
  await sbx.commands.sendStdin(cat.pid, 'abc\n')
  await sbx.commands.closeStdin(cat.pid)
  assert.strictEqual((await cat.wait()).stdout, 'abc\n')
})

test('files and pty', { skip }, async (t) => {
  const sbx = await Sandbox.create({ timeoutMs: 120_000 })
  t.after(() => sbx.kill())
  await sbx.files.write('/tmp/js/a.txt', 'alpha')
  assert.strictEqual(await sbx.files.read('/tmp/js/a.txt'), 'alpha')
  await sbx.files.write('/tmp/js/s.txt', new Blob(['from a blob']).stream())
  assert.strictEqual(await sbx.files.read('/tmp/js/s.txt'), 'from a blob')
  await sbx.files.write([{ path: '/tmp/js/b.txt', data: 'beta' }, { path: '/tmp/js/c/d.txt', data: 'delta' }])
  const listed = (await sbx.files.list('/tmp/js', { depth: 2 })).map((e) => e.path).sort()
  assert.deepStrictEqual(listed, ['/tmp/js/a.txt', '/tmp/js/b.txt', '/tmp/js/c', '/tmp/js/c/d.txt', '/tmp/js/s.txt'])
  assert.strictEqual(await sbx.files.exists('/tmp/js/b.txt'), true)
  assert.strictEqual(await sbx.files.makeDir('/tmp/js/new'), true)
  await sbx.files.rename('/tmp/js/a.txt', '/tmp/js/new/a.txt')
  assert.strictEqual((await sbx.commands.run('cat /tmp/js/new/a.txt')).stdout, 'alpha')
  await sbx.files.remove('/tmp/js')
  assert.strictEqual(await sbx.files.exists('/tmp/js'), false)
  await assert.rejects(sbx.files.read('/tmp/js/a.txt'), (e) => e instanceof FileNotFoundError)

  const chunks = []
  const term = await sbx.pty.create({ cols: 80, rows: 24, onData: (d) => chunks.push(Buffer.from(d)), timeoutMs: 0 })
  await sbx.pty.resize(term.pid, { cols: 100, rows: 40 })
  await sbx.pty.sendInput(term.pid, new TextEncoder().encode('stty size; echo mark-$((40+2)); exit\n'))
  await term.wait().catch(() => {})
  const text = Buffer.concat(chunks).toString()
  assert.ok(text.includes('mark-42') && text.includes('40 100'), text)
})

test('watchDir streams the changes a command makes', { skip }, async (t) => {
  const sbx = await Sandbox.create({ timeoutMs: 120_000 })
  t.after(() => sbx.kill())
  await sbx.files.makeDir('/tmp/w')
  const events = []
  const watcher = await sbx.files.watchDir('/tmp/w', (e) => events.push(`${e.name}:${e.type}`), { recursive: true })
  await sbx.commands.run('echo a > /tmp/w/a.txt; sleep 0.4; mkdir /tmp/w/sub; sleep 0.4; echo b > /tmp/w/sub/b.txt; sleep 0.4; rm /tmp/w/a.txt; sleep 0.6')
  await watcher.stop()
  for (const want of ['a.txt:create', 'sub:create', 'sub/b.txt:create', 'a.txt:remove']) {
    assert.ok(events.includes(want), `${want} not in ${events}`)
  }
})

test('getHost reaches a service in the sandbox through sqrx', { skip }, async (t) => {
  const sbx = await Sandbox.create({ timeoutMs: 120_000 })
  t.after(() => sbx.kill())
  await sbx.files.write('/tmp/www/index.html', 'from the sandbox\n')
  await sbx.commands.run('busybox httpd -f -p 8000 -h /tmp/www', { background: true })
  const host = sbx.getHost(8000)
  assert.strictEqual(host, `8000-${sbx.sandboxId}.sqrx.test`)
  const http = await import('node:http')
  const get = () => new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port: ctx.port, path: '/index.html', headers: { Host: host, Authorization: `Bearer ${ctx.token}` } }, (res) => {
      let body = ''
      res.on('data', (d) => { body += d })
      res.on('end', () => resolve([res.statusCode, body]))
    }).on('error', reject)
  })
  let got = [0, '']
  for (let i = 0; i < 50 && got[0] !== 200; i++) {
    got = await get().catch(() => [0, ''])
    if (got[0] !== 200) await new Promise((r) => setTimeout(r, 100))
  }
  assert.deepStrictEqual(got, [200, 'from the sandbox\n'])
})

test('errors map to the SDK errors', { skip }, async (t) => {
  const sbx = await Sandbox.create({ timeoutMs: 60_000 })
  t.after(() => sbx.kill())
  await sbx.files.write('/tmp/plain.txt', 'x')
  await assert.rejects(sbx.files.list('/tmp/plain.txt'), (e) => e instanceof InvalidArgumentError)
  await assert.rejects(sbx.commands.connect(999999), (e) => e instanceof NotFoundError || e instanceof SandboxNotFoundError)
  await assert.rejects(Sandbox.getInfo('inosuchsandbox'), (e) => e instanceof SandboxNotFoundError)
})

test('a wrong key is an authentication error', { skip }, async () => {
  await assert.rejects(Sandbox.create({ apiKey: 'e2b_' + '0'.repeat(40) }), (e) => e instanceof AuthenticationError)
})

test("the base template is E2B's user image: user, home, sudo, python3, owned files", { skip }, async () => {
  const sbx = await Sandbox.create('base', { timeoutMs: 60_000 })
  try {
    assert.strictEqual((await sbx.commands.run('whoami; pwd')).stdout, 'user\n/home/user\n')
    assert.strictEqual((await sbx.commands.run('sudo whoami')).stdout, 'root\n')
    assert.strictEqual((await sbx.commands.run('whoami', { user: 'root' })).stdout, 'root\n')
    assert.match((await sbx.commands.run('python3 -c "print(6*7)"')).stdout, /^42\n$/)
    const info = await sbx.files.write('js.txt', 'from js')
    assert.strictEqual(info.path, '/home/user/js.txt')
    const entry = await sbx.files.getInfo('js.txt')
    assert.deepStrictEqual([entry.owner, entry.group], ['user', 'user'])
    await assert.rejects(sbx.commands.run('touch /root/x'), CommandExitError)
  } finally {
    await sbx.kill()
  }
})
