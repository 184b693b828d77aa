// Browser test of the dashboard in cluster mode (CLUSTER.md, "Metrics and
// the dashboard"): two switches of one cluster on a nats-server of the
// test's own, the backend on s1 and an agent on s2, both opened from
// browser pages; s1's dashboard names both switches, their agents, and
// which one holds the backend.
//
//   node --test tests/browser/cluster_dashboard.test.mjs
//
// NATS_SERVER: the nats-server binary (default: target/nats/bin/nats-server,
// as scripts/test installs it). SWITCHYARD_BIN, CHROMIUM: as the other
// browser tests. Screenshot: target/test-artifacts/dashboard-cluster.png.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { freePort, chromiumPath, Processes, CHROMIUM_ARGS } from './support.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '../..');
const BIN = process.env.SWITCHYARD_BIN || path.join(ROOT, 'target/release/switchyard');
const NATS = process.env.NATS_SERVER || path.join(ROOT, 'target/nats/bin/nats-server');
const ARTIFACTS = path.join(ROOT, 'target/test-artifacts');

let dir;
let browser;
const bases = {}; // switch name -> http://127.0.0.1:port

const procs = new Processes();
const run = (name, bin, args) => procs.run(name, bin, args);
const waitFor = (what, ms, check) => procs.waitFor(what, ms, check);

before(async () => {
  assert.ok(fs.existsSync(BIN), `switchyard binary not found at ${BIN} (build it, or set SWITCHYARD_BIN)`);
  assert.ok(fs.existsSync(NATS), `nats-server not found at ${NATS} (run scripts/test, or set NATS_SERVER)`);
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'switchyard-cluster-dashboard-'));
  const natsPort = await freePort();
  run('nats-server', NATS, ['-js', '-sd', path.join(dir, 'js'), '-a', '127.0.0.1', '-p', String(natsPort)]);
  await waitFor('nats-server listening', 15000, async () => {
    const net = await import('node:net');
    return new Promise((resolve) => {
      const s = net.connect(natsPort, '127.0.0.1', () => { s.destroy(); resolve(true); });
      s.on('error', () => resolve(false));
    });
  });
  for (const name of ['s1', 's2']) {
    const http = await freePort();
    bases[name] = `http://127.0.0.1:${http}`;
    run(name, BIN, [
      '--http', `127.0.0.1:${http}`, '--uart', 'none', '--tcp', 'none',
      '--data-dir', path.join(dir, name),
      '--cluster', `nats://127.0.0.1:${natsPort}`, '--node-id', name,
    ]);
    await waitFor(`${name} alive`, 15000, async () => (await fetch(`${bases[name]}/is_alive`)).ok);
  }
  browser = await chromium.launch({
    executablePath: chromiumPath(),
    args: CHROMIUM_ARGS,
  });
});

after(async () => {
  if (browser) await browser.close().catch(() => {});
  await procs.stopAll();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

// A page of `base` that opens a WebSocket there and says `alive` as `id`;
// resolves with the first packet the switch answers.
async function sayAlive(t, base, id) {
  const page = await browser.newPage();
  t.after(() => page.close().catch(() => {}));
  await page.goto(`${base}/is_alive`);
  return page.evaluate(([url, id]) => new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    window.socket = ws;
    const timer = setTimeout(() => reject(new Error(`no reply to ${id}'s alive`)), 10000);
    ws.onopen = () => ws.send(JSON.stringify({ packet_type: 'alive', subject_id: id, data: {} }));
    ws.onmessage = (m) => { clearTimeout(timer); resolve(m.data); };
    ws.onerror = () => reject(new Error(`${id}: socket error`));
  }), [base.replace(/^http/, 'ws') + '/', id]);
}

test('the dashboard names every switch, its agents, and the backend\'s holder', { timeout: 90000 }, async (t) => {
  // The backend on s1: it is answered with nothing at once, so do not wait
  // for a reply; wait until s1 reports it connected.
  const backendPage = await browser.newPage();
  t.after(() => backendPage.close().catch(() => {}));
  await backendPage.goto(`${bases.s1}/is_alive`);
  await backendPage.evaluate((url) => {
    const ws = new WebSocket(url);
    window.socket = ws;
    ws.onopen = () => ws.send(JSON.stringify({ packet_type: 'alive', subject_id: 'mephisto', data: {} }));
  }, bases.s1.replace(/^http/, 'ws') + '/');
  await waitFor('the backend bound on s1', 15000, async () => {
    const m = await (await fetch(`${bases.s1}/metrics`)).text();
    return /^switchyard_backend_connected 1$/m.test(m);
  });
  const reply = JSON.parse(await sayAlive(t, bases.s2, 'agent-7'));
  assert.equal(reply.packet_type, 'update_status', JSON.stringify(reply));

  const page = await browser.newPage({ viewport: { width: 1366, height: 768 } });
  t.after(() => page.close().catch(() => {}));
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`console error: ${m.text()}`); });
  const res = await page.goto(`${bases.s1}/dashboard`);
  assert.equal(res.status(), 200, 'GET /dashboard');
  try {
    // Heartbeats carry each switch's agents: wait until s2's has told one.
    await page.waitForFunction(() => {
      const line = document.querySelector('#cluster-detail');
      return line && !line.hidden && /s2: 1 agent\b/.test(line.textContent);
    }, null, { timeout: 30000 });
    const text = await page.textContent('#cluster-detail');
    assert.match(text, /cluster of 2/);
    assert.match(text, /NATS connected/);
    assert.match(text, /^s1 \(this\): 0 agents · backend$/m);
    assert.match(text, /^s2: 1 agent$/m);
    // Every switch on a line of its own, none cut off.
    const cut = await page.evaluate(() => {
      const line = document.querySelector('#cluster-detail');
      return line.scrollWidth > line.clientWidth;
    });
    assert.equal(cut, false, 'the cluster line is cut');
    assert.equal((await page.innerText('#cluster-detail')).split('\n').length, 3);
  } finally {
    await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard-cluster.png'), fullPage: true }).catch(() => {});
  }
  assert.deepEqual(problems, []);
});
