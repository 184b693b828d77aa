// What the browser tests share: free loopback ports, finding chromium on
// PATH, and the flags it runs with on this closed network.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';

/** A TCP port free on 127.0.0.1 right now. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** The first of `names` found as an executable on PATH, or null. */
export function findOnPath(names) {
  for (const dir of (process.env.PATH || '').split(path.delimiter)) {
    for (const name of names) {
      const p = path.join(dir || '.', name);
      try {
        fs.accessSync(p, fs.constants.X_OK);
        return p;
      } catch { /* next */ }
    }
  }
  return null;
}

/** Debian's chromium (or $CHROMIUM). */
export function chromiumPath() {
  const p = process.env.CHROMIUM || findOnPath(['chromium', 'chromium-browser']);
  if (!p) throw new Error('chromium not found on PATH (set CHROMIUM)');
  return p;
}

/** Headless, and quiet on a network that only reaches loopback. */
export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

/**
 * The child processes of one test file (switches, brokers): their output
 * kept for failure messages, conditions waited for with a deadline, and
 * every one stopped at the end (SIGTERM, SIGKILL after 10 s).
 */
export class Processes {
  constructor() {
    this.list = []; // [{ name, child, log }]
  }

  run(name, bin, args) {
    const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'info' } });
    const p = { name, child, log: '' };
    const keep = (b) => { p.log = (p.log + b.toString()).slice(-20000); };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    this.list.push(p);
    return p;
  }

  logs() {
    return this.list.map((p) => `--- ${p.name} (exit ${p.child.exitCode ?? p.child.signalCode})\n${p.log}`).join('\n');
  }

  /** Polls `check` until it holds; fails at once when a process exits
   * that may not (every one not named in `mayExit`). */
  async waitFor(what, ms, check, mayExit = []) {
    const deadline = Date.now() + ms;
    let last = 'not tried';
    while (Date.now() < deadline) {
      for (const p of this.list) {
        if (!mayExit.includes(p.name) && p.child.exitCode !== null) throw new Error(`${p.name} exited with ${p.child.exitCode}:\n${this.logs()}`);
      }
      try {
        if (await check()) return;
      } catch (e) {
        last = e.message;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`${what}: not after ${ms} ms (${last}):\n${this.logs()}`);
  }

  async stopAll() {
    for (const p of [...this.list].reverse()) {
      if (p.child.exitCode !== null || p.child.signalCode !== null) continue;
      const exited = new Promise((r) => p.child.once('exit', r));
      p.child.kill('SIGTERM');
      const timer = setTimeout(() => p.child.kill('SIGKILL'), 10000);
      await exited;
      clearTimeout(timer);
    }
  }
}
