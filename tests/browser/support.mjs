// What the browser tests share: free loopback ports, finding chromium on
// PATH, and the flags it runs with on this closed network.

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
