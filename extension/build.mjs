// Bundle each widget front end into ONE self-contained ES module for anywidget:
//   src/widgets/<name>.ts  ->  ../workbench/widgets/static/<name>.js
// Run by `npm run build` after `tsc --noEmit`. Portable: esbuild's JS API, no shell.
import { build } from "esbuild";
import { mkdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";

const here = dirname(fileURLToPath(import.meta.url));
const outdir = resolve(here, "..", "workbench", "widgets", "static");
const widgets = ["feature_map", "neighborhood", "patch_preview"];

mkdirSync(outdir, { recursive: true });

const result = await build({
  entryPoints: Object.fromEntries(widgets.map((w) => [w, join(here, "src", "widgets", `${w}.ts`)])),
  outdir,
  bundle: true,
  splitting: false,
  format: "esm",
  platform: "browser",
  target: "es2020",
  minify: true,
  sourcemap: false,
  legalComments: "eof",
  charset: "utf8",
  define: { "process.env.NODE_ENV": '"production"' },
  logLevel: "warning",
  metafile: true,
});

if (result.errors.length > 0) process.exit(1);

const kib = (b) => `${(b / 1024).toFixed(1)} KiB`;
for (const w of widgets) {
  const file = join(outdir, `${w}.js`);
  const size = statSync(file).size;
  const text = readFileSync(file);
  // Every module must be an AFM: `export default { render }`.
  if (!/export\s*\{[^}]*\bas default\b[^}]*\}/.test(text.toString("utf8"))) {
    console.error(`${w}.js: no default export`);
    process.exit(1);
  }
  console.log(
    `${relative(process.cwd(), file).padEnd(48)} ${kib(size).padStart(10)}  (gzip ${kib(gzipSync(text).length)})`,
  );
}
