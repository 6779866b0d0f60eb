// Bundles dashboard.js (the real Uppy Dashboard, from this folder's locked npm packages) and
// the CSS it imports into ../dashboard.bundle.js and ../dashboard.bundle.css, minified, and
// writes the bundled packages' licenses to ../dashboard.bundle.licenses.txt. All three are
// committed and the first two compiled into the binary (sidecar/src/dev.rs): nothing is
// fetched at run time. `npm ci && npm run build` rewrites them; tests/tests/web_bundle.rs
// fails when they differ from what this makes (esbuild's output is the same for the same
// inputs and esbuild version).
//
//   node build.mjs [DIR]   writes into DIR instead of ..
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const here = dirname(fileURLToPath(import.meta.url));
const out = process.argv[2] ?? join(here, '..');
const header =
  '/* Generated from sidecar/web/dashboard/ (dashboard.js and Uppy 6 from npm) by ' +
  '`npm ci && npm run build` there; do not edit. The bundled packages and their licenses: ' +
  'dashboard.bundle.licenses.txt. */';

const result = await esbuild.build({
  absWorkingDir: here,
  entryPoints: ['dashboard.js'],
  outfile: join(out, 'dashboard.bundle.js'),
  bundle: true,
  minify: true,
  format: 'esm',
  target: ['es2022'],
  legalComments: 'eof',
  charset: 'utf8',
  banner: { js: header, css: header },
  metafile: true,
  logLevel: 'warning',
});

// Every package a byte of the bundle came from, with its license text.
const packages = new Set();
for (const input of Object.keys(result.metafile.inputs)) {
  const m = /^(.*node_modules\/(?:@[^/]+\/)?[^/]+)\//.exec(input);
  if (m) packages.add(m[1]);
}
const notices = [...packages].sort().map((dir) => {
  const pkg = JSON.parse(readFileSync(join(here, dir, 'package.json'), 'utf8'));
  const file = readdirSync(join(here, dir)).find((f) => /^licen[cs]e/i.test(f));
  const author = typeof pkg.author === 'string' ? pkg.author : pkg.author?.name;
  const text = file
    ? readFileSync(join(here, dir, file), 'utf8').trim()
    : `No license file; its package.json: license ${pkg.license}, author ${author ?? 'not given'}.`;
  return `${pkg.name} ${pkg.version} (${pkg.license})\n\n${text}\n`;
});
writeFileSync(
  join(out, 'dashboard.bundle.licenses.txt'),
  `The packages bundled into dashboard.bundle.js and dashboard.bundle.css (made by\nsidecar/web/dashboard/build.mjs; do not edit), with their licenses.\n\n${notices.join('\n---\n\n')}`,
);
