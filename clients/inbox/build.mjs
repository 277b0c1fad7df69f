// Builds <herald-inbox>:
//   ../../backend/sdk_assets/herald-inbox.js  one classic script (IIFE) the API serves at
//                                              /sdk/herald-inbox.js; a page needs one <script>
//   dist/herald-inbox.mjs                      an ES module for apps that bundle it
//   dist/types/                                its TypeScript declarations
// Type errors fail the build, and so does a served bundle over 40 kB gzipped (the GraphQL
// client included); the size is printed.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";

import { build } from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const SERVED = join(here, "..", "..", "backend", "sdk_assets", "herald-inbox.js");
const LIMIT_BYTES = 40_000;

execFileSync(join(here, "node_modules", ".bin", "tsc"), ["-p", join(here, "tsconfig.json")], {
  stdio: "inherit",
});

const common = {
  entryPoints: [join(here, "src", "index.ts")],
  bundle: true,
  minify: true,
  target: "es2022",
  legalComments: "none",
  logLevel: "warning",
};
await build({ ...common, format: "iife", globalName: "HeraldInbox", outfile: SERVED });
await build({ ...common, format: "esm", outfile: join(here, "dist", "herald-inbox.mjs") });

const bytes = readFileSync(SERVED);
const gzipped = gzipSync(bytes, { level: 9 }).length;
console.log(
  `herald-inbox.js: ${(bytes.length / 1000).toFixed(1)} kB, ${(gzipped / 1000).toFixed(1)} kB gzipped ` +
    `(limit ${LIMIT_BYTES / 1000} kB gzipped)`,
);
if (gzipped > LIMIT_BYTES) {
  console.error(`herald-inbox.js is ${gzipped} bytes gzipped, over the ${LIMIT_BYTES} byte limit`);
  process.exit(1);
}
