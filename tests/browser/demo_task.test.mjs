// Browser test of the worker-statistics demo: a real switchyard serving
// examples/worker_stats/static, the example backend
// (examples/worker_stats_backend.rs) connected to it, and the demo task page
// in Debian's chromium driven by playwright-core. A pseudo-submit on the page
// goes agent -> switch -> backend and its stats come back backend -> switch ->
// agent as a live update.
//
//   cargo build --release --bin switchyard --example worker_stats_backend
//   node --test tests/browser/demo_task.test.mjs      (or: bash tests/browser/run.sh)
//
// SWITCHYARD_BIN: the switch (default target/release/switchyard of this
// repository). WORKER_STATS_BIN: the backend (default
// target/release/examples/worker_stats_backend, built here with cargo if
// absent). CHROMIUM: the browser (default: chromium on PATH, else
// /usr/bin/chromium).
// Screenshots: target/test-artifacts/demo-task.png (and demo-task-reconnected.png).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { CHROMIUM_ARGS } from './support.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '../..');
const SWITCH_BIN = process.env.SWITCHYARD_BIN || path.join(ROOT, 'target/release/switchyard');
const BACKEND_BIN = process.env.WORKER_STATS_BIN || path.join(ROOT, 'target/release/examples/worker_stats_backend');
const STATIC_DIR = path.join(ROOT, 'examples/worker_stats/static');
const ARTIFACTS = path.join(ROOT, 'target/test-artifacts');
const VIEWPORT = { width: 1280, height: 800 };
const WAIT = { timeout: 15000 };

let port;
let base; // http://127.0.0.1:port
let dataDir;
let sw; // the switch process
let backend; // the example backend process
let browser;
let page;
const problems = [];

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port: p } = srv.address();
      srv.close(() => resolve(p));
    });
  });
}

function findChromium() {
  if (process.env.CHROMIUM) return process.env.CHROMIUM;
  for (const dir of (process.env.PATH || '').split(path.delimiter)) {
    for (const name of ['chromium', 'chromium-browser']) {
      const p = path.join(dir || '.', name);
      try {
        fs.accessSync(p, fs.constants.X_OK);
        return p;
      } catch { /* next */ }
    }
  }
  return fs.existsSync('/usr/bin/chromium') ? '/usr/bin/chromium' : null;
}

// A child process whose output is kept (the tail) for error messages.
function start(name, bin, args) {
  const child = spawn(bin, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'info' },
  });
  child.name = name;
  child.output = '';
  const keep = (b) => { child.output = (child.output + b.toString()).slice(-20000); };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  child.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  return child;
}

// SIGTERM, then SIGKILL after 10 s; resolves with how it exited.
async function stop(child) {
  if (!child) return null;
  child.stopping = true;
  if (child.exitCode === null && child.signalCode === null) {
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10000);
    const how = await child.exited;
    clearTimeout(timer);
    return how;
  }
  return child.exited;
}

const logs = () => `--- switchyard ---\n${sw?.output ?? ''}\n--- worker_stats_backend ---\n${backend?.output ?? ''}`;

// Polls `probe` (async, returns truthy when done) every 100 ms until `ms`.
async function until(what, ms, probe) {
  const deadline = Date.now() + ms;
  let last = 'not tried';
  while (Date.now() < deadline) {
    for (const child of [sw, backend]) {
      if (child && !child.stopping && child.exitCode !== null) throw new Error(`${child.name} exited with ${child.exitCode} while waiting for ${what}:\n${logs()}`);
    }
    try {
      if (await probe()) return;
      last = 'not yet';
    } catch (e) {
      last = e.message;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what} (${last}):\n${logs()}`);
}

async function metric(name) {
  const text = await (await fetch(`${base}/metrics`)).text();
  const m = text.match(new RegExp(`^${name} (\\S+)$`, 'm'));
  return m ? Number(m[1]) : null;
}

function startSwitch() {
  sw = start('switchyard', SWITCH_BIN, [
    '--http', `127.0.0.1:${port}`,
    '--tcp', 'none',
    '--uart', 'none',
    '--data-dir', dataDir,
    '--static-dir', STATIC_DIR,
  ]);
}

async function switchAlive() {
  await until('/is_alive', 15000, async () => (await fetch(`${base}/is_alive`)).ok);
}

async function backendConnected() {
  await until('the backend to connect (switchyard_backend_connected 1)', 20000,
    async () => (await metric('switchyard_backend_connected')) === 1);
}

const text = (sel) => page.textContent(sel).then((t) => t.trim());

async function waitText(sel, want) {
  await page.waitForFunction(([s, w]) => document.querySelector(s)?.textContent.trim() === w, [sel, want], WAIT)
    .catch(async (e) => {
      throw new Error(`${sel} is "${await text(sel).catch(() => '?')}", expected "${want}": ${e.message}\n${logs()}`);
    });
}

async function waitConn(state) {
  await page.waitForFunction((s) => document.querySelector('#conn-state')?.dataset.state === s, state, { timeout: 25000 });
}

async function updates() {
  return Number(await page.getAttribute('#stats', 'data-updates'));
}

async function waitUpdatesAbove(n) {
  await page.waitForFunction((k) => Number(document.querySelector('#stats').dataset.updates) > k, n, WAIT);
}

async function shoot(name) {
  await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true }).catch(() => {});
}

before(async () => {
  assert.ok(fs.existsSync(SWITCH_BIN), `switchyard not found at ${SWITCH_BIN} (cargo build --release, or set SWITCHYARD_BIN)`);
  if (!fs.existsSync(BACKEND_BIN) && !process.env.WORKER_STATS_BIN) {
    // Not built yet (tests/browser/run.sh builds only the switch): build it here.
    const r = spawnSync('cargo', ['build', '--release', '--example', 'worker_stats_backend'], { cwd: ROOT, stdio: 'inherit' });
    assert.equal(r.status, 0, 'cargo build --release --example worker_stats_backend failed');
  }
  assert.ok(fs.existsSync(BACKEND_BIN),
    `worker_stats_backend not found at ${BACKEND_BIN} (cargo build --release --example worker_stats_backend, or set WORKER_STATS_BIN)`);
  const executablePath = findChromium();
  assert.ok(executablePath, 'chromium not found (apt-get install chromium, or set CHROMIUM)');
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'switchyard-demo-task-'));
  port = await freePort();
  base = `http://127.0.0.1:${port}`;

  startSwitch();
  await switchAlive();
  backend = start('worker_stats_backend', BACKEND_BIN, ['--url', `ws://127.0.0.1:${port}/`]);
  await backendConnected();

  browser = await chromium.launch({
    executablePath,
    args: CHROMIUM_ARGS,
  });
  page = await browser.newPage({ viewport: VIEWPORT });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`console error: ${m.text()}`); });
  page.on('response', (r) => { if (r.status() >= 400) problems.push(`HTTP ${r.status()} for ${r.url()}`); });
});

after(async () => {
  if (browser) await browser.close().catch(() => {});
  await stop(backend);
  await stop(sw);
  if (dataDir) fs.rmSync(dataDir, { recursive: true, force: true });
});

test('the demo page round-trips pseudo-submits through the example backend', { timeout: 90000 }, async () => {
  const res = await page.goto(`${base}/?agent_id=demo-1`);
  assert.equal(res.status(), 200, 'GET /?agent_id=demo-1');
  try {
    // Connected, with the title from /task_config.json and the agent id from the URL.
    await waitConn('open');
    assert.match(await text('#conn-state'), /connected/);
    await waitText('#task-title', 'Worker statistics demo');
    assert.equal(await text('#agent-id'), 'demo-1');
    // `alive` answered with update_status; heartbeats answered with the status
    // and, once the backend has sent request_statuses, a Mephisto ping.
    await waitText('#agent-status', 'none');
    await page.waitForFunction(() => Number(document.querySelector('#last-ping').dataset.ms) > 0, null, WAIT);
    assert.match(await text('#last-ping'), /just now|\d+ s ago/);
    assert.match(await text('#heartbeat-rtt'), /\d+ ms round trip/);

    // get_worker_stats was sent on connecting: an unknown worker has zeros.
    await waitText('#num-cads', '0');
    assert.equal(await text('#num-rankings'), '0');
    assert.equal(await text('#num-first-place'), '0');

    // A CAD.
    await page.fill('#cad-input', 'The film was not dull for a single minute.');
    await page.click('#cad-submit');
    await waitText('#num-cads', '1');
    assert.equal(await text('#num-rankings'), '0');
    assert.equal(await page.inputValue('#cad-input'), '', 'the field is cleared after sending');
    await page.waitForFunction(() => /stats updated/.test(document.querySelector('#cad-note').textContent), null, WAIT);

    // A ranking with the worker's own CAD first: a first place.
    await page.fill('#ranking-input', 'own, 2, 1');
    await page.press('#ranking-input', 'Enter');
    await waitText('#num-rankings', '1');
    await waitText('#num-first-place', '1');
    assert.equal(await text('#num-cads'), '1');

    // Feedback: stored by the backend, answered with (unchanged) fresh stats.
    const before = await updates();
    await page.fill('#feedback-input', 'Clear instructions, thanks!');
    await page.click('#feedback-submit');
    await waitUpdatesAbove(before);
    await page.waitForFunction(() => /stats updated/.test(document.querySelector('#feedback-note').textContent), null, WAIT);
    assert.deepEqual([await text('#num-cads'), await text('#num-rankings'), await text('#num-first-place')], ['1', '1', '1']);

    // A ranking with another CAD first is counted, but not as a first place.
    await page.fill('#ranking-input', '2, own, 1');
    await page.click('#ranking-submit');
    await waitText('#num-rankings', '2');
    assert.equal(await text('#num-first-place'), '1');

    // "Refresh stats" asks again and gets the same numbers.
    const beforeRefresh = await updates();
    await page.click('#refresh-stats');
    await waitUpdatesAbove(beforeRefresh);
    assert.deepEqual([await text('#num-cads'), await text('#num-rankings'), await text('#num-first-place')], ['1', '2', '1']);
    await page.waitForFunction(() => /^updated /.test(document.querySelector('#stats-updated').textContent), null, WAIT);
  } finally {
    await shoot('demo-task');
  }
  assert.deepEqual(problems, []);
});

test('page and backend both reconnect after the switch restarts; the backend keeps its state', { timeout: 90000 }, async () => {
  try {
    await waitConn('open');
    const how = await stop(sw);
    assert.equal(how.code, 0, `switchyard exit on SIGTERM:\n${sw.output}`);
    await waitConn('closed');
    assert.match(await text('#conn-state'), /disconnected/);
    assert.ok(await page.isDisabled('#cad-submit'), 'submit buttons are disabled while disconnected');

    startSwitch();
    await switchAlive();
    await backendConnected(); // the backend re-sent `alive`
    await waitConn('open');

    // A new switch knows nothing, but the backend still has demo-1's record.
    await page.click('#refresh-stats');
    await waitText('#num-cads', '1');
    await page.fill('#cad-input', 'A second CAD, after the restart.');
    await page.click('#cad-submit');
    await waitText('#num-cads', '2');
    assert.deepEqual([await text('#num-rankings'), await text('#num-first-place')], ['2', '1']);
  } finally {
    await shoot('demo-task-reconnected');
  }
  // While the switch was down the browser reported the refused connections.
  const unexpected = problems.filter((p) => !/WebSocket connection to .* failed/.test(p));
  assert.deepEqual(unexpected, []);
});

test('the backend stops cleanly on SIGTERM and the switch sees it go', { timeout: 30000 }, async () => {
  const how = await stop(backend);
  assert.equal(how.code, 0, `worker_stats_backend exit on SIGTERM:\n${backend.output}`);
  assert.match(backend.output, /accepted as the backend/);
  assert.match(backend.output, /reconnecting in/);
  await until('switchyard_backend_connected 0', 10000, async () => (await metric('switchyard_backend_connected')) === 0);
});
