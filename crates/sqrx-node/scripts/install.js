// `npm install` of this directory (`npm install ./crates/sqrx-node` from another project, or
// in it): builds the addon and the sqrx-init binary when they are missing, with cargo alone
// (no @napi-rs/cli needed; index.d.ts is committed). A packed or already built package has
// both and this does nothing. SQRX_NODE_PROFILE picks the cargo profile (default release).
'use strict'
const { execFileSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')

const here = path.join(__dirname, '..')
const addon = path.join(here, 'sqrx.node')
const init = path.join(here, 'sqrx-init')
if (fs.existsSync(addon) && fs.existsSync(init)) process.exit(0)

const manifest = path.join(here, 'Cargo.toml')
if (!fs.existsSync(manifest)) {
  console.error('sqrx: the native addon is missing and this package has no sources to build it from')
  process.exit(1)
}
const profile = process.env.SQRX_NODE_PROFILE || 'release'
const run = (args) => {
  console.error(`+ cargo ${args.join(' ')}`)
  try {
    return execFileSync('cargo', args, { cwd: here, stdio: ['ignore', 'pipe', 'inherit'] })
  } catch (e) {
    console.error(`sqrx: building the native parts needs Rust (cargo) on this machine: ${e.message}`)
    process.exit(1)
  }
}
const meta = JSON.parse(run(['metadata', '--format-version', '1', '--no-deps', '--manifest-path', manifest]))
run(['build', '--manifest-path', manifest, '--package', 'sqrx-node', '--lib', '--profile', profile])
run(['build', '--manifest-path', manifest, '--package', 'sqrx-core', '--bin', 'sqrx-init', '--profile', profile])
// A build for a named target (CARGO_BUILD_TARGET) lands in a directory of that name.
const outDir = path.join(
  meta.target_directory,
  process.env.CARGO_BUILD_TARGET || '',
  profile === 'dev' || profile === 'test' ? 'debug' : profile,
)
const copy = (from, to, mode) => {
  fs.copyFileSync(from, `${to}.tmp`)
  fs.chmodSync(`${to}.tmp`, mode)
  fs.renameSync(`${to}.tmp`, to)
}
copy(path.join(outDir, 'libsqrx_node.so'), addon, 0o755)
copy(path.join(outDir, 'sqrx-init'), init, 0o755)
