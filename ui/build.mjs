// Builds the console into crates/sqrx-server/ui/dist: one JS bundle and one CSS bundle with
// content-hashed names under assets/, and an index.html naming them. Deterministic (same
// sources and lock file -> same bytes), because CI rebuilds it and diffs the committed copy.
// The JavaScript examples (examples/js/*.js) are embedded as the playground's presets.
import { build } from "esbuild";
import { readFileSync, rmSync, mkdirSync, writeFileSync, readdirSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..");
const out = join(root, "crates/sqrx-server/ui/dist");

const examplesDir = join(root, "examples/js");
const examples = Object.fromEntries(
  readdirSync(examplesDir)
    .filter((f) => f.endsWith(".js"))
    .sort()
    .map((f) => [f, readFileSync(join(examplesDir, f), "utf8")]),
);

rmSync(out, { recursive: true, force: true });
mkdirSync(join(out, "assets"), { recursive: true });

const result = await build({
  entryPoints: { app: join(here, "src/main.js") },
  bundle: true,
  minify: true,
  format: "esm",
  target: ["es2022"],
  outdir: join(out, "assets"),
  entryNames: "[name]-[hash]",
  assetNames: "[name]-[hash]",
  legalComments: "none",
  charset: "utf8",
  metafile: true,
  define: { __JS_EXAMPLES__: JSON.stringify(examples) },
  logLevel: "warning",
});

const outputs = Object.keys(result.metafile.outputs).map((p) =>
  relative(out, join(process.cwd(), p)).split("\\").join("/"),
);
const js = outputs.find((p) => p.endsWith(".js"));
const css = outputs.find((p) => p.endsWith(".css"));
if (!js || !css) throw new Error(`unexpected esbuild outputs: ${outputs.join(", ")}`);

const html = readFileSync(join(here, "src/index.html"), "utf8")
  .replace("%CSS%", css)
  .replace("%JS%", js);
writeFileSync(join(out, "index.html"), html);
console.log(`built ${outputs.concat("index.html").map((p) => `dist/${p}`).join(", ")}`);
