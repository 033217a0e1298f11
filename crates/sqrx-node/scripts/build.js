// Builds the package's native parts: the addon with @napi-rs/cli (which also regenerates
// index.d.ts from the Rust sources, headed by dts-header.d.ts) and the sqrx-init binary the
// package ships, the PID 1 of every sandbox. SQRX_NODE_PROFILE picks the cargo profile
// (default release; CI uses dev to share what `cargo build` compiled).
'use strict'
const { execFileSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')

const here = path.join(__dirname, '..')
const manifest = path.join(here, 'Cargo.toml')
const profile = process.env.SQRX_NODE_PROFILE || 'release'
const run = (cmd, args, stdout = 'pipe') => {
  console.error(`+ ${cmd} ${args.filter((a) => !a.includes('\n')).join(' ')}`)
  return execFileSync(cmd, args, { cwd: here, stdio: ['ignore', stdout, 'inherit'] })
}

// napi looks for the dev profile's artifacts under `debug` only when no profile is named.
const profileArgs = profile === 'dev' ? [] : profile === 'release' ? ['--release'] : ['--profile', profile]
run(
  path.join(here, 'node_modules', '.bin', 'napi'),
  [
    'build',
    '--manifest-path', manifest,
    ...profileArgs,
    '--dts', 'index.d.ts',
    '--dts-header', fs.readFileSync(path.join(here, 'dts-header.d.ts'), 'utf8'),
  ],
  'inherit',
)

const meta = JSON.parse(run('cargo', ['metadata', '--format-version', '1', '--no-deps', '--manifest-path', manifest]))
run('cargo', ['build', '--manifest-path', manifest, '--package', 'sqrx-core', '--bin', 'sqrx-init', '--profile', profile])
const outDir = profile === 'dev' || profile === 'test' ? 'debug' : profile
// A build for a named target (CARGO_BUILD_TARGET) lands in a directory of that name.
const built = path.join(meta.target_directory, process.env.CARGO_BUILD_TARGET || '', outDir, 'sqrx-init')
const dest = path.join(here, 'sqrx-init')
fs.copyFileSync(built, `${dest}.tmp`)
fs.chmodSync(`${dest}.tmp`, 0o755)
fs.renameSync(`${dest}.tmp`, dest)
