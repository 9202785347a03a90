// The README's example runs as written against a real `chatmesh dev`.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

import { DevServer } from "./dev-server.mjs";

const pkg = join(dirname(fileURLToPath(import.meta.url)), "..");

test("the README example runs", async (t) => {
  const readme = readFileSync(join(pkg, "README.md"), "utf8");
  const match = readme.match(/```js\n([\s\S]*?)```/);
  assert.ok(match, "a js block in README.md");
  const server = await DevServer.start();
  t.after(() => server.dispose());
  const code = match[1].replace("ws://127.0.0.1:8080/v1/ws", server.url);
  // Inside the package, so that "@chatmesh/client" resolves to this package itself.
  const file = join(pkg, "test", `.readme-example-${process.pid}.mjs`);
  writeFileSync(file, code);
  t.after(() => rmSync(file, { force: true }));
  const { stdout } = await promisify(execFile)(
    process.execPath,
    [file, server.token("alice"), server.token("bob")],
    { timeout: 20_000 },
  );
  assert.match(stdout, /stored as seq 1/);
  assert.match(stdout, /bob got #1 from alice: noon\?/);
  assert.match(stdout, /alice is typing/);
  assert.match(stdout, /refused: /);
});
