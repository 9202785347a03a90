// Runs the tests with `node --test` (each test at most 60 s). On Node 20 and 21 the global WebSocket (standard from Node 22
// on) is switched on with --experimental-websocket, so that the default transport is tested too.
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const testDir = join(dirname(fileURLToPath(import.meta.url)), "..", "test");
const files = readdirSync(testDir)
  .filter((name) => name.endsWith(".test.mjs"))
  .sort()
  .map((name) => join(testDir, name));
const major = Number(process.versions.node.split(".")[0]);
const flags = major >= 20 && major < 22 ? ["--experimental-websocket", "--no-warnings"] : [];
// No single test may hang the run.
if (major >= 20) flags.push("--test-timeout=60000");
const done = spawnSync(process.execPath, [...flags, "--test", ...process.argv.slice(2), ...files], {
  stdio: "inherit",
});
process.exit(done.status ?? 1);
