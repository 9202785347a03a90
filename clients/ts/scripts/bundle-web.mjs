// Bundles the SDK (src/index.ts and @bufbuild/protobuf) into one browser ES module for the web
// client, gateway_ws/web/chatmesh-sdk.js, which is committed: the gateway serves static files and
// runs no Node. `node scripts/bundle-web.mjs` (npm run bundle:web) writes it; check-gen.mjs
// builds it again with `bundleWeb()` and fails when the committed file differs.
import { writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

import { build } from "esbuild";

const pkg = join(dirname(fileURLToPath(import.meta.url)), "..");
export const WEB_BUNDLE = join(pkg, "..", "..", "gateway_ws", "web", "chatmesh-sdk.js");

const HEADER = `// Generated from clients/ts/src by esbuild: do not edit. Rebuild with
// \`npm run bundle:web\` in clients/ts (checked fresh by \`npm run check:gen\`).`;

/** The bundle's text, as it should be committed. */
export async function bundleWeb() {
  const result = await build({
    absWorkingDir: pkg,
    entryPoints: ["src/index.ts"],
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    minify: true,
    legalComments: "none",
    banner: { js: HEADER },
    write: false,
    logLevel: "warning",
  });
  return result.outputFiles[0].text;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const text = await bundleWeb();
  writeFileSync(WEB_BUNDLE, text);
  console.log(`wrote ${relative(process.cwd(), WEB_BUNDLE)} (${text.length} bytes)`);
}
