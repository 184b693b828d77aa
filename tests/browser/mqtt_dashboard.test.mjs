// Browser test of the dashboard's MQTT tile (README, "Into your home or
// lab"): a switch with the simulated mesh bridged to a Mosquitto of the
// test's own. The tile and the MQTT pill show the bridge connected and
// publishing; with the broker killed they show it disconnected, the reason
// and what waits; with the broker back, connected again. A switch without
// --mqtt shows neither.
//
//   node --test tests/browser/mqtt_dashboard.test.mjs
//
// MOSQUITTO: the broker binary (default: /usr/sbin/mosquitto, as scripts/test
// installs it). SWITCHYARD_BIN, CHROMIUM: as the other browser tests.
// Screenshot: target/test-artifacts/dashboard-mqtt.png.

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
const MOSQUITTO = process.env.MOSQUITTO || '/usr/sbin/mosquitto';
const ARTIFACTS = path.join(ROOT, 'target/test-artifacts');

let dir;
let browser;
let brokerPort;
let broker;
const bases = {};

const procs = new Processes();
const run = (name, bin, args) => procs.run(name, bin, args);
// The broker is killed on purpose; a switch exiting is a failure.
const waitFor = (what, ms, check) => procs.waitFor(what, ms, check, ['mosquitto']);

async function listening(port) {
  const net = await import('node:net');
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => { s.destroy(); resolve(true); });
    s.on('error', () => resolve(false));
  });
}

async function startBroker() {
  const conf = path.join(dir, 'mosquitto.conf');
  fs.writeFileSync(conf, `listener ${brokerPort} 127.0.0.1\nallow_anonymous true\npersistence false\n`);
  broker = run('mosquitto', MOSQUITTO, ['-c', conf]);
  await waitFor('mosquitto listening', 15000, () => listening(brokerPort));
}

async function killBroker() {
  const exited = new Promise((r) => broker.child.once('exit', r));
  broker.child.kill('SIGKILL');
  await exited;
}

before(async () => {
  assert.ok(fs.existsSync(BIN), `switchyard binary not found at ${BIN} (build it, or set SWITCHYARD_BIN)`);
  assert.ok(fs.existsSync(MOSQUITTO), `mosquitto not found at ${MOSQUITTO} (run scripts/test, or set MOSQUITTO)`);
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'switchyard-mqtt-dashboard-'));
  brokerPort = await freePort();
  await startBroker();
  for (const [name, extra] of [['bridged', ['--mqtt', `mqtt://127.0.0.1:${brokerPort}`]], ['plain', []]]) {
    const http = await freePort();
    bases[name] = `http://127.0.0.1:${http}`;
    run(name, BIN, [
      '--http', `127.0.0.1:${http}`, '--tcp', 'none', '--sim-interval', '0.3',
      '--data-dir', path.join(dir, name), ...extra,
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

async function openDashboard(t, base) {
  const page = await browser.newPage({ viewport: { width: 1366, height: 900 } });
  t.after(() => page.close().catch(() => {}));
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`console error: ${m.text()}`); });
  const res = await page.goto(`${base}/dashboard`);
  assert.equal(res.status(), 200, 'GET /dashboard');
  return { page, problems };
}

const num = (s) => Number(String(s).replace(/[^0-9]/g, ''));

test('the MQTT tile follows the bridge through a broker outage', { timeout: 120000 }, async (t) => {
  const { page, problems } = await openDashboard(t, bases.bridged);
  try {
    await page.waitForFunction(() => {
      const pill = document.querySelector('#mqtt-state');
      return pill && !pill.hidden && pill.dataset.state === 'connected';
    }, null, { timeout: 30000 });
    assert.equal(await page.isVisible('#card-mqtt'), true);
    assert.equal(await page.textContent('#mqtt-broker'), `mqtt://127.0.0.1:${brokerPort}`);
    assert.match(await page.textContent('#mqtt-connection'), /^connected/);
    // Published climbs as the simulated nodes report.
    await page.waitForFunction(() => Number(document.querySelector('#mqtt-published').textContent.replace(/[^0-9]/g, '')) > 50, null, { timeout: 30000 });
    assert.match(await page.textContent('#mqtt-nodes'), /^6\b/);

    await killBroker();
    await page.waitForFunction(() => document.querySelector('#mqtt-state').dataset.state === 'disconnected', null, { timeout: 30000 });
    assert.equal(await page.textContent('#mqtt-connection'), 'disconnected');
    await page.waitForFunction(() => !document.querySelector('#mqtt-error').hidden, null, { timeout: 30000 });
    assert.match(await page.textContent('#mqtt-error'), /^last error: .+/);
    // What the nodes report meanwhile waits in the bridge.
    await page.waitForFunction(() => Number(document.querySelector('#mqtt-buffered').textContent.split('/')[0].replace(/[^0-9]/g, '')) > 20, null, { timeout: 30000 });
    await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard-mqtt-down.png'), fullPage: true }).catch(() => {});

    await startBroker();
    await page.waitForFunction(() => document.querySelector('#mqtt-state').dataset.state === 'connected', null, { timeout: 30000 });
    await page.waitForFunction(() => document.querySelector('#mqtt-error').hidden, null, { timeout: 10000 });
    assert.ok(num(await page.textContent('#mqtt-reconnects')) >= 1);
    // Nothing was dropped: the outage was far below the buffer's bound.
    assert.equal(num(await page.textContent('#mqtt-dropped')), 0);
  } finally {
    await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard-mqtt.png'), fullPage: true }).catch(() => {});
  }
  assert.deepEqual(problems, []);
});

test('without --mqtt the dashboard shows no MQTT tile', { timeout: 60000 }, async (t) => {
  const { page, problems } = await openDashboard(t, bases.plain);
  // Wait until the page has asked /api/mqtt and rendered its answer.
  await page.waitForFunction(() => document.body.dataset.mqtt === 'off', null, { timeout: 30000 });
  const j = await (await fetch(`${bases.plain}/api/mqtt`)).json();
  assert.deepEqual(j, { enabled: false });
  assert.equal(await page.isHidden('#mqtt-state'), true);
  assert.equal(await page.isHidden('#card-mqtt'), true);
  assert.deepEqual(problems, []);
});
