// The peer of benches/js: quickjs-emscripten (QuickJS compiled to WebAssembly) in Node, one
// fresh context per execution, on one thread. Prints one JSON line per script:
// {"script", "runs", "per_sec", "p50_us", "p99_us"}.
//
// node bench.mjs --runs N --script NAME=CODE [--script NAME=CODE ...]
import { getQuickJS } from "quickjs-emscripten";

const args = process.argv.slice(2);
let runs = 2000;
const scripts = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--runs") runs = Number(args[++i]);
  else if (args[i] === "--script") {
    const s = args[++i];
    const eq = s.indexOf("=");
    scripts.push([s.slice(0, eq), s.slice(eq + 1)]);
  } else throw new Error(`unknown argument ${args[i]}`);
}

const QuickJS = await getQuickJS();

function once(code) {
  const ctx = QuickJS.newContext();
  try {
    const r = ctx.evalCode(code);
    if (r.error) {
      const e = ctx.dump(r.error);
      r.error.dispose();
      throw new Error(JSON.stringify(e));
    }
    const v = ctx.dump(r.value);
    r.value.dispose();
    return v;
  } finally {
    ctx.dispose();
  }
}

for (const [name, code] of scripts) {
  for (let i = 0; i < Math.min(200, runs); i++) once(code); // warm up
  const lat = new Float64Array(runs);
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < runs; i++) {
    const s = process.hrtime.bigint();
    once(code);
    lat[i] = Number(process.hrtime.bigint() - s) / 1000;
  }
  const total = Number(process.hrtime.bigint() - t0) / 1e9;
  lat.sort();
  const q = (p) => lat[Math.min(runs - 1, Math.floor(p * runs))];
  console.log(JSON.stringify({ script: name, runs, per_sec: runs / total, p50_us: q(0.5), p99_us: q(0.99) }));
}
