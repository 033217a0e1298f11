// Shared by the tests: a privilege check, and a runtime on a throwaway data dir under /tmp
// (sqrx-test-*) whose sandboxes are destroyed and directory removed after the test file, even
// when a test fails.
'use strict'
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { before, after } = require('node:test')
const { Runtime } = require('..')

/** Why sandboxes cannot run here, or null. */
function privilegeProblem() {
  if (process.getuid() !== 0) return 'not running as root'
  if (!fs.existsSync('/dev/loop-control')) return 'no /dev/loop-control'
  if (!fs.readFileSync('/proc/filesystems', 'utf8').includes('squashfs')) return 'kernel has no squashfs'
  return null
}

/**
 * Options for node:test's `test()`: skip when sandboxes cannot run, except under
 * SQRX_REQUIRE_PRIVILEGED=1 (set by .ci/run), where the tests run and fail.
 */
function privileged() {
  const problem = privilegeProblem()
  if (problem && process.env.SQRX_REQUIRE_PRIVILEGED !== '1') return { skip: problem }
  return {}
}

let counter = 0
/** A unique sandbox id. */
function newId() {
  counter += 1
  return `node${process.pid}-${counter}`
}

/**
 * Call inside a `describe`: opens a runtime on a fresh data dir before its tests and, after
 * them, destroys every sandbox left in it and removes the directory. Returns `{ rt, dataDir }`
 * (filled in once the suite starts).
 */
function useRuntime() {
  const ctx = { rt: null, dataDir: null }
  before(async () => {
    ctx.dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sqrx-test-node-'))
    ctx.rt = await Runtime.open({ dataDir: ctx.dataDir })
  })
  after(async () => {
    try {
      if (ctx.rt) for (const sb of await ctx.rt.list()) await sb.destroy()
    } finally {
      if (ctx.dataDir) fs.rmSync(ctx.dataDir, { recursive: true, force: true })
    }
  })
  return ctx
}

/** A sandbox on the base layer, destroyed after the test `t`. */
async function sandbox(t, rt, options = {}) {
  const sb = await rt.create({ id: newId(), layers: ['000-base'], memoryMb: 256, ...options })
  t.after(() => sb.destroy())
  return sb
}

/**
 * Call inside a `describe`: like `useRuntime`, but the runtime's sandbox links live in a network
 * namespace made for the suite (`sqrx<tag>-<pid>`, with an uplink whose other end goes nowhere),
 * deleted after it. Returns `{ rt, dataDir, ns }`.
 */
function useNetRuntime(tag) {
  const { execFileSync } = require('node:child_process')
  const ns = `sqrx${tag}-${process.pid}`
  const ip = (...args) => execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] })
  const ctx = { rt: null, dataDir: null, ns, netns: false }
  before(async () => {
    ip('netns', 'add', ns)
    ctx.netns = true
    ip('-n', ns, 'link', 'set', 'lo', 'up')
    ip('-n', ns, 'link', 'add', 'up0', 'type', 'veth', 'peer', 'name', 'up1')
    ip('-n', ns, 'link', 'set', 'up0', 'up')
    ctx.dataDir = fs.mkdtempSync(path.join(os.tmpdir(), `sqrx-test-${tag}-`))
    ctx.rt = await Runtime.open({ dataDir: ctx.dataDir, netNetns: `/run/netns/${ns}`, netUplink: 'up0' })
  })
  after(async () => {
    try {
      if (ctx.rt) for (const sb of await ctx.rt.list()) await sb.destroy()
    } finally {
      if (ctx.dataDir) fs.rmSync(ctx.dataDir, { recursive: true, force: true })
      if (ctx.netns) ip('netns', 'del', ns)
    }
  })
  return ctx
}

/** Poll `check` until it is true or `ms` pass; returns its last value. */
async function eventually(check, ms = 5000) {
  const deadline = Date.now() + ms
  for (;;) {
    const ok = await check()
    if (ok || Date.now() > deadline) return ok
    await new Promise((r) => setTimeout(r, 100))
  }
}

module.exports = { privileged, newId, useRuntime, useNetRuntime, sandbox, eventually }
