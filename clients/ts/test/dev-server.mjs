// Starts a real `chatmesh dev` (SQLite, in-process bus) for the tests, on a fixed port and data
// dir so that it can be stopped and started again with its state.
//
// The Python interpreter is CHATMESH_PYTHON, else the repository's .venv/bin/python, else
// python3; the repository root is found from this file.
import { spawn } from "node:child_process";
import { createHmac, randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, rmSync, openSync, closeSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
export const repoRoot = resolve(here, "..", "..", "..");

function python() {
  if (process.env.CHATMESH_PYTHON) return process.env.CHATMESH_PYTHON;
  const venv = join(repoRoot, ".venv", "bin", "python");
  return existsSync(venv) ? venv : "python3";
}

export function freePort() {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolvePort(port));
    });
  });
}

function base64url(data) {
  return Buffer.from(data).toString("base64url");
}

/** An HS256 user token as chatmesh_common.auth.issue_token signs it. */
export function signToken(secret, userId, { deviceId = "default", ttlS = 3600, now } = {}) {
  const iat = Math.floor((now ?? Date.now()) / 1000);
  const header = base64url(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const claims = base64url(
    JSON.stringify({ sub: userId, did: deviceId, knd: "user", iat, exp: iat + ttlS }),
  );
  const signature = createHmac("sha256", secret).update(`${header}.${claims}`).digest("base64url");
  return `${header}.${claims}.${signature}`;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export class DevServer {
  constructor({ port, dataDir, secret }) {
    this.port = port;
    this.dataDir = dataDir;
    this.secret = secret;
    this.url = `ws://127.0.0.1:${port}/v1/ws`;
    this.logPath = join(dataDir, "dev.log");
    this.proc = undefined;
  }

  static async start() {
    const dataDir = mkdtempSync(join(tmpdir(), "chatmesh-ts-sdk-"));
    const server = new DevServer({
      port: await freePort(),
      dataDir,
      secret: randomBytes(32).toString("hex"),
    });
    await server.launch();
    return server;
  }

  token(userId, options) {
    return signToken(this.secret, userId, options);
  }

  async launch(timeoutMs = 30_000) {
    const log = openSync(this.logPath, "a");
    this.proc = spawn(
      python(),
      [
        "-m", "chatmesh_launcher", "dev",
        "--data-dir", this.dataDir,
        "--grpc", "127.0.0.1:0",
        "--ws", `127.0.0.1:${this.port}`,
        "--metrics", "127.0.0.1:0",
      ],
      {
        cwd: repoRoot,
        env: {
          ...process.env,
          PYTHONPATH: [repoRoot, join(repoRoot, "gen"), process.env.PYTHONPATH]
            .filter(Boolean)
            .join(":"),
          CHATMESH_JWT_SECRET: this.secret,
          PYTHONUNBUFFERED: "1",
        },
        stdio: ["ignore", log, log],
      },
    );
    closeSync(log);
    const proc = this.proc;
    let exited = false;
    proc.once("exit", () => {
      exited = true;
    });
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (exited) throw new Error(`chatmesh dev exited during startup:\n${this.log()}`);
      try {
        const res = await fetch(`http://127.0.0.1:${this.port}/healthz`);
        if (res.status === 200) return;
      } catch {
        // not listening yet
      }
      await sleep(50);
    }
    throw new Error(`chatmesh dev not healthy within ${timeoutMs} ms:\n${this.log()}`);
  }

  log() {
    try {
      return readFileSync(this.logPath, "utf8").slice(-4000);
    } catch {
      return "";
    }
  }

  /** Stops the server (SIGTERM: the gateway closes sockets with 1001; SIGKILL: they drop). */
  async stop(signal = "SIGTERM") {
    const proc = this.proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((r) => proc.once("exit", r));
    proc.kill(signal);
    const timer = setTimeout(() => proc.kill("SIGKILL"), 10_000);
    await exited;
    clearTimeout(timer);
  }

  /** Freezes the server (SIGSTOP) so that requests go unanswered; `resume()` thaws it. */
  pause() {
    this.proc?.kill("SIGSTOP");
  }

  resume() {
    this.proc?.kill("SIGCONT");
  }

  async restart(signal = "SIGTERM") {
    await this.stop(signal);
    await this.launch();
  }

  async dispose() {
    this.resume();
    await this.stop();
    rmSync(this.dataDir, { recursive: true, force: true });
  }
}
