// Browser tests of the dashboard (`/dashboard`): a real switchyard with its
// simulated mesh, Debian's chromium driven by playwright-core.
//
//   node --test tests/browser/            (or: bash tests/browser/run.sh)
//
// SWITCHYARD_BIN: the binary (default: target/release/switchyard of this
// repository). CHROMIUM: the browser (default: chromium found on PATH).
// Screenshots: target/test-artifacts/dashboard-<name>.png.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { freePort, findOnPath, CHROMIUM_ARGS } from './support.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '../..');
const BIN = process.env.SWITCHYARD_BIN || path.join(ROOT, 'target/release/switchyard');
const ARTIFACTS = path.join(ROOT, 'target/test-artifacts');
const VIEWPORT = { width: 1366, height: 768 };
const NODES = ['0x0001', '0x0002', '0x0003', '0x0004', '0x0005', '0x0006'];

let sw; // the switch process
let swLog = '';
let base; // http://127.0.0.1:port
let dataDir;
let browser;



async function waitAlive(url, ms) {
  const deadline = Date.now() + ms;
  let last = 'not tried';
  while (Date.now() < deadline) {
    if (sw.exitCode !== null) throw new Error(`switchyard exited with ${sw.exitCode}:\n${swLog}`);
    try {
      const r = await fetch(url);
      if (r.ok) return;
      last = `HTTP ${r.status}`;
    } catch (e) {
      last = e.message;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} not alive after ${ms} ms (${last}):\n${swLog}`);
}

before(async () => {
  assert.ok(fs.existsSync(BIN), `switchyard binary not found at ${BIN} (build it, or set SWITCHYARD_BIN)`);
  const executablePath = process.env.CHROMIUM || findOnPath(['chromium', 'chromium-browser']);
  assert.ok(executablePath, 'chromium not found on PATH (apt-get install chromium, or set CHROMIUM)');
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'switchyard-dashboard-'));
  const http = await freePort();
  const tcp = await freePort();
  base = `http://127.0.0.1:${http}`;
  sw = spawn(BIN, [
    '--http', `127.0.0.1:${http}`,
    '--tcp', `127.0.0.1:${tcp}`,
    '--data-dir', dataDir,
    '--sim-interval', '0.2',
  ], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'info' } });
  const keep = (b) => { swLog = (swLog + b.toString()).slice(-20000); };
  sw.stdout.on('data', keep);
  sw.stderr.on('data', keep);
  await waitAlive(`${base}/is_alive`, 15000);
  browser = await chromium.launch({
    executablePath,
    args: CHROMIUM_ARGS,
  });
});

after(async () => {
  if (browser) await browser.close().catch(() => {});
  if (sw && sw.exitCode === null) {
    const exited = new Promise((r) => sw.once('exit', r));
    sw.kill('SIGTERM');
    const timer = setTimeout(() => sw.kill('SIGKILL'), 10000);
    await exited;
    clearTimeout(timer);
  }
  if (dataDir) fs.rmSync(dataDir, { recursive: true, force: true });
});

// A dashboard page that records script errors and failed requests.
async function openDashboard(t) {
  const page = await browser.newPage({ viewport: VIEWPORT });
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`console error: ${m.text()}`); });
  page.on('response', (r) => { if (r.status() >= 400) problems.push(`HTTP ${r.status()} for ${r.url()}`); });
  const res = await page.goto(`${base}/dashboard`);
  assert.equal(res.status(), 200, 'GET /dashboard');
  t.after(() => page.close().catch(() => {}));
  return { page, problems };
}

async function shoot(page, name) {
  await page.evaluate(() => window.scrollTo(0, 0)); // the sticky header at the top
  await page.screenshot({ path: path.join(ARTIFACTS, `dashboard-${name}.png`), fullPage: true });
}

// Runs `body`, then saves the screenshot whether it passed or not.
async function withShot(page, name, body) {
  try {
    await body();
  } finally {
    await shoot(page, name).catch(() => {});
  }
}

test('shows the six simulated nodes, fills their sparklines, mesh link up', { timeout: 60000 }, async (t) => {
  const { page, problems } = await openDashboard(t);
  await withShot(page, 'nodes', async () => {
    for (const a of NODES) {
      await page.waitForSelector(`#nodes-table tr[data-node="${a}"]`, { timeout: 10000 });
    }
    await page.waitForFunction(
      (nodes) => nodes.every((a) => ['TMP', 'HUM', 'BAT'].every((ty) => {
        const s = document.getElementById(`spark-${a}-${ty}`);
        return s && Number(s.getAttribute('data-points')) >= 3;
      })),
      NODES, { timeout: 10000 });
    await page.waitForFunction(() => document.querySelector('#link-state')?.dataset.state === 'up', null, { timeout: 10000 });
    assert.match(await page.textContent('#link-state'), /up/);

    // Latest values are shown with units, and the last-seen time is relative.
    const row = page.locator('#nodes-table tr[data-node="0x0001"]');
    await page.waitForFunction(() => /°C/.test(document.querySelector('#nodes-table tr[data-node="0x0001"]')?.textContent || ''), null, { timeout: 10000 });
    const text = await row.textContent();
    assert.match(text, /-?\d+\.\d °C/);
    assert.match(text, /\d+ %/);
    assert.match(text, /\d\.\d\d V/);
    assert.match(text, /active/);
    assert.match(await row.locator('td.seen').textContent(), /just now|\d+ s ago/);

    // Every node is plotted on the position plane.
    await page.waitForFunction((n) => document.querySelectorAll('#map circle.pt').length === n, NODES.length, { timeout: 10000 });
    // The actor table has filled from /metrics/actors, with a rate.
    await page.waitForSelector('#actors-table tr[data-kind="NetworkManager"]', { timeout: 10000 });
    await page.waitForFunction(() => /\d/.test(document.querySelector('#actors-table tr[data-kind="NetworkManager"] td.rate')?.textContent || ''), null, { timeout: 10000 });
    // The monitor socket is live and the event log has entries.
    await page.waitForFunction(() => document.querySelector('#monitor-state')?.dataset.state === 'live', null, { timeout: 10000 });
    await page.waitForSelector('#event-log li[data-kind]', { timeout: 10000 });
  });
  assert.deepEqual(problems, []);
});

test('an agent that says alive appears in the agents table with its status', { timeout: 60000 }, async (t) => {
  const { page, problems } = await openDashboard(t);
  await withShot(page, 'agents', async () => {
    await page.waitForFunction(() => document.querySelector('#monitor-state')?.dataset.state === 'live', null, { timeout: 10000 });
    // The agent: a WebSocket on `/`, opened from a second page of the same origin.
    const agentPage = await browser.newPage();
    t.after(() => agentPage.close().catch(() => {}));
    await agentPage.goto(`${base}/is_alive`);
    const firstReply = await agentPage.evaluate((url) => new Promise((resolve, reject) => {
      const ws = new WebSocket(url);
      window.agentSocket = ws;
      const timer = setTimeout(() => reject(new Error('no reply to alive')), 10000);
      ws.onopen = () => ws.send(JSON.stringify({ packet_type: 'alive', subject_id: 'agent-42', data: {} }));
      ws.onmessage = (m) => { clearTimeout(timer); resolve(m.data); };
      ws.onerror = () => reject(new Error('agent socket error'));
    }), base.replace(/^http/, 'ws') + '/');
    assert.equal(JSON.parse(firstReply).packet_type, 'update_status');

    const row = '#agents-table tr[data-agent="agent-42"]';
    await page.waitForSelector(row, { timeout: 10000 });
    await page.waitForFunction((sel) => {
      const r = document.querySelector(sel);
      return r && r.querySelector('.agent-status')?.textContent.trim() !== '' && /yes/.test(r.querySelector('.alive')?.textContent || '');
    }, row, { timeout: 10000 });
    const status = (await page.textContent(`${row} .agent-status`)).trim();
    assert.equal(status, JSON.parse(firstReply).data.status, 'the status the switch told the agent');
    assert.match(await page.textContent(`${row} .queued`), /^\d+$/);
    // No backend in this test: the dashboard says so.
    assert.equal(await page.getAttribute('#backend-state', 'data-state'), 'disconnected');
  });
  assert.deepEqual(problems, []);
});

test('sending to node 0x0003 from the form shows ok, then the node\'s reply', { timeout: 60000 }, async (t) => {
  const { page, problems } = await openDashboard(t);
  await withShot(page, 'send', async () => {
    await page.waitForSelector('#send-node option[value="0x0003"]', { state: 'attached', timeout: 10000 });
    await page.waitForFunction(() => document.querySelector('#monitor-state')?.dataset.state === 'live', null, { timeout: 10000 });
    await page.selectOption('#send-node', '0x0003');

    // An error shows the API's error text: here a message over 255 bytes
    // (the input's own limit counts characters, so remove it).
    await page.evaluate(() => { const i = document.querySelector('#send-text'); i.removeAttribute('maxlength'); i.value = 'é'.repeat(200); });
    await page.click('#send-button');
    await page.waitForFunction(() => document.querySelector('#send-result')?.dataset.state === 'error', null, { timeout: 10000 });
    assert.match(await page.textContent('#send-result'), /too long/);

    const token = `hello dashboard ${Date.now() % 100000}`;
    await page.fill('#send-text', token);
    await page.click('#send-button');
    // Done when ok, or when an error other than the one before shows.
    await page.waitForFunction(() => {
      const r = document.querySelector('#send-result');
      return r.dataset.state === 'ok' || (r.dataset.state === 'error' && !/too long/.test(r.textContent));
    }, null, { timeout: 10000 });
    const result = await page.textContent('#send-result');
    assert.equal(await page.getAttribute('#send-result', 'data-state'), 'ok', `send result: ${result}`);
    assert.match(result, /^ok/);
    const reply = `node 0x0003 got: ${token}`;
    await page.waitForFunction((want) => [...document.querySelectorAll('#messages li')].some((li) => li.textContent.includes(want)), reply, { timeout: 10000 });
    const li = page.locator('#messages li', { hasText: reply }).first();
    assert.equal(await li.getAttribute('data-node'), '0x0003');
    assert.equal(await li.getAttribute('data-dir'), 'in');
  });
  // The deliberate 400 is the only failed request.
  assert.deepEqual(problems.filter((p) => !/HTTP 400 .*\/api\/nodes\/0x0003\/send/.test(p) && !/status of 400/.test(p)), []);
});
