// sqrx quick start: a sandbox, a command, a script file, streamed output, a timeout, an error,
// and JavaScript in QuickJS. The same story as examples/rust/src/bin/quickstart.rs and
// examples/python/quickstart.py.
//
//   npm install sqrx-0.1.0.tgz && npx tsc && sudo node build/quickstart.js
//
// Sandboxes need root. The data dir is the CLI's default ($SQRX_DATA, else /var/lib/sqrx).
import { Runtime, SqrxError, runJs } from 'sqrx'

// The runtime owns the data dir: layers, sandboxes. The base layer is built on first use.
const rt = await Runtime.open()

{
  // A sandbox on the base layer with 256 MiB of memory; `await using` destroys it at the end
  // of the block.
  await using sb = await rt.create({ id: 'quickstart', layers: ['000-base'], memoryMb: 256 })
  const r = await sb.exec('echo hello from $(hostname)')
  console.log(`exit ${r.exitCode}: ${r.text.trim()}`)

  // Files go in from the host; an array is an argv, no shell involved.
  await sb.files.write('/data/greet.sh', Buffer.from('#!/bin/sh\necho "hi, $1"\n'), 0o755)
  console.log((await sb.exec(['/data/greet.sh', 'world'])).text.trim())
  console.log('files in /data:', (await sb.files.list('/data')).map((f) => f.name))

  // Output as it is written.
  for await (const ev of sb.execStream('for i in 1 2 3; do echo tick $i; sleep 0.1; done')) {
    if (ev.kind === 'exit') console.log('stream ended, exit', ev.result?.exitCode)
    else console.log(`${ev.kind}: ${ev.data.toString().trim()}`)
  }

  // A timeout kills the command's whole process tree.
  const slow = await sb.exec('sleep 30', { timeoutMs: 1000 })
  console.log(`timed out: ${slow.timedOut}`)
}

// Errors are SqrxError, with the core's error kind as `code`.
try {
  await rt.get('quickstart')
} catch (e) {
  if (!(e instanceof SqrxError) || e.code !== 'NotFound') throw e
  console.log(`${e.code}: ${e.message}`)
}

// JavaScript runs in-process with QuickJS, no sandbox needed.
const res = await runJs('input.xs.map(x => x * 2)', { input: { xs: [1, 2, 3] } })
console.log(`js ${res.status}: ${JSON.stringify(res.result)}`)
