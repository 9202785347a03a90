// Fails when src/gen/ is not what buf.gen.yaml generates from ../../protos now (regenerates into
// a temporary directory and compares the trees file by file), or when the web client's bundle,
// gateway_ws/web/chatmesh-sdk.js, is not what scripts/bundle-web.mjs builds from src/ now.
//
// buf is the @bufbuild/buf dev dependency (or $BUF).
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

import { bundleWeb, WEB_BUNDLE } from "./bundle-web.mjs";

const pkg = join(dirname(fileURLToPath(import.meta.url)), "..");
const committed = join(pkg, "src", "gen");
const bin = join(pkg, "node_modules", ".bin", process.platform === "win32" ? "buf.cmd" : "buf");
const buf = process.env.BUF || (existsSync(bin) ? bin : "buf");

function files(root) {
  const out = new Map();
  const walk = (dir) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else out.set(relative(root, path), readFileSync(path, "utf8"));
    }
  };
  if (existsSync(root)) walk(root);
  return out;
}

const tmp = mkdtempSync(join(tmpdir(), "chatmesh-ts-gen-"));
try {
  execFileSync(buf, ["generate", "--template", "buf.gen.yaml", "-o", tmp], {
    cwd: pkg,
    stdio: ["ignore", "inherit", "inherit"],
  });
  const fresh = files(join(tmp, "src", "gen"));
  const have = files(committed);
  const problems = [];
  for (const [path, text] of fresh) {
    if (!have.has(path)) problems.push(`missing: src/gen/${path}`);
    else if (have.get(path) !== text) problems.push(`differs: src/gen/${path}`);
  }
  for (const path of have.keys()) {
    if (!fresh.has(path)) problems.push(`not generated any more: src/gen/${path}`);
  }
  if (fresh.size === 0) problems.push("buf generated nothing");
  if (problems.length) {
    console.error(
      `src/gen/ is stale (run \`npm run generate\` in clients/ts and commit):\n  ${problems.join("\n  ")}`,
    );
  } else {
    console.log(`src/gen/ is up to date (${fresh.size} files)`);
  }
  // Built from src/ as it is on disk (src/gen/ included), like the comparison above.
  const bundle = relative(join(pkg, "..", ".."), WEB_BUNDLE);
  const built = await bundleWeb();
  const committedBundle = existsSync(WEB_BUNDLE) ? readFileSync(WEB_BUNDLE, "utf8") : undefined;
  if (committedBundle !== built) {
    console.error(
      `${bundle} is ${committedBundle === undefined ? "missing" : "stale"} ` +
        "(run `npm run bundle:web` in clients/ts and commit)",
    );
    problems.push(bundle);
  } else {
    console.log(`${bundle} is up to date`);
  }
  if (problems.length) process.exitCode = 1;
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
