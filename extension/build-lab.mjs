// Build the JupyterLab 4 prebuilt extension: tsc (tsconfig.lab.json: src/lab -> lib/lab), then
// `jupyter labextension build .` -> ../workbench/labextension (package.json "jupyterlab").
// Finds jupyter as $JUPYTER, else ../.venv/bin/jupyter, else `jupyter` on PATH. Run by `npm run build`.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { delimiter, dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);

function run(cmd, args, env = process.env) {
  const r = spawnSync(cmd, args, { cwd: here, stdio: "inherit", env });
  if (r.error) {
    console.error(`${cmd}: ${r.error.message}`);
    process.exit(1);
  }
  if (r.status !== 0) process.exit(r.status ?? 1);
}

const tsc = require.resolve("typescript/bin/tsc");
run(process.execPath, [tsc, "-p", "tsconfig.lab.json"]);

const venv = resolve(here, "..", ".venv", process.platform === "win32" ? "Scripts/jupyter.exe" : "bin/jupyter");
const jupyter = process.env.JUPYTER || (existsSync(venv) ? venv : "jupyter");
const mode = process.argv.includes("--development") ? ["--development", "True"] : [];
// `jupyter labextension build` runs `jupyter-builder` from PATH: put jupyter's bin dir first
const env = { ...process.env };
if (jupyter.includes("/") || jupyter.includes("\\")) env.PATH = `${dirname(resolve(jupyter))}${delimiter}${env.PATH ?? ""}`;
run(jupyter, ["labextension", "build", ".", ...mode], env);
console.log(`lab extension -> ${resolve(here, "..", "workbench", "labextension")}`);
