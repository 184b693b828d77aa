// Browser test of a central switch's dashboard (PROTOCOL 5): an edge
// switch with the simulated mesh uplinks to a central one, and the
// central's /dashboard shows the edge's nodes, keyed by gateway.
//
//   node --test tests/browser/gateway_dashboard.test.mjs
//
// SWITCHYARD_BIN: the binary (default: target/release/switchyard).
// Screenshot: target/test-artifacts/dashboard-gateway.png.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { freePort, chromiumPath, CHROMIUM_ARGS } from './support.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '../..');
const BIN = process.env.SWITCHYARD_BIN || path.join(ROOT, 'target/release/switchyard');
const ARTIFACTS = path.join(ROOT, 'target/test-artifacts');

const procs = [];
let browser;
let central;



async function waitAlive(url, ms) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    try {
      const r = await fetch(`${url}/is_alive`);
      if (r.ok) return;
    } catch {}
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${url} never came up`);
}

async function startSwitch(args) {
  const http = await freePort();
  const tcp = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sy-gw-'));
  const p = spawn(BIN, ['--http', `127.0.0.1:${http}`, '--tcp', `127.0.0.1:${tcp}`, '--data-dir', dir, ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  p.stderr.on('data', () => {});
  procs.push(p);
  const url = `http://127.0.0.1:${http}`;
  await waitAlive(url, 20000);
  return url;
}

before(async () => {
  central = await startSwitch(['--uart', 'none', '--gateway-token', 'gt']);
  const ws = central.replace('http://', 'ws://');
  await startSwitch(['--sim-interval', '0.2', '--uplink', `${ws}/gateway`, '--gateway-id', 'edge-1', '--uplink-token', 'gt']);
  browser = await chromium.launch({
    executablePath: chromiumPath(),
    args: CHROMIUM_ARGS,
  });
});

after(async () => {
  if (browser) await browser.close();
  for (const p of procs) p.kill('SIGTERM');
});

test('the central dashboard shows the gateway\'s nodes', async () => {
  const page = await browser.newPage({ viewport: { width: 1366, height: 768 } });
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(`${central}/dashboard`);
  for (const n of ['0x0001', '0x0006']) {
    await page.waitForSelector(`#nodes-table tr[data-node="edge-1:${n}"]`, { timeout: 15000 });
  }
  const rows = await page.$$eval('#nodes-table tr[data-node^="edge-1:"]', (rs) => rs.length);
  assert.equal(rows, 6);
  // Their charts fill from the gateway's history and live events.
  await page.waitForFunction(() => {
    const s = document.querySelector('[id^="spark-"][id*="0x0001-TMP"]');
    return s && Number(s.getAttribute('data-points') || 0) >= 3;
  }, null, { timeout: 15000 });
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard-gateway.png'), fullPage: true });
  assert.deepEqual(errors, []);
  await page.close();
});
