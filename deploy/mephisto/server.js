#!/usr/bin/env node
// switchyard launcher for Mephisto (architect.server_type=node).
//
// Mephisto's architects start a router by copying the folder named by
// `architect.server_source_path` and running `node server.js` inside the copy
// with PORT set (the local architect: cwd = the copy, env = Mephisto's own
// environment plus PORT; it stops the router with SIGTERM). This file is that
// `server.js`: instead of the Node router it starts the switchyard binary with
// the same externally visible behaviour:
//
//   switchyard --http 0.0.0.0:$PORT          (PORT default 3000)
//              --static-dir <this folder>/static   (where Mephisto puts the
//                                                   task bundle, task_config.json
//                                                   and wrap_crowd_source.js)
//              --upload-dir /tmp             (the local architect's
//                                             download_file copies from /tmp/)
//              --data-dir <this folder>/switchyard-data
//              $SWITCHYARD_ARGS              (extra flags, space-separated)
//
// A flag given in SWITCHYARD_ARGS replaces the launcher's default for it
// (switchyard refuses a flag given twice).
//
// The binary: $SWITCHYARD_BIN, else <this folder>/bin/switchyard (a binary
// shipped inside the copied folder), else `switchyard` on PATH (where
// `pip install switchyard-router` puts it in the environment Mephisto runs
// from), else <this folder>/../../../bin/switchyard (the wheel's own layout,
// <prefix>/share/switchyard-router/mephisto next to <prefix>/bin, for this
// file started where the wheel installed it rather than from a copy).
//
// SIGINT and SIGTERM are passed on to switchyard, which closes every socket
// with 1001 and exits 0. SIGHUP is passed on as SIGTERM (switchyard does not
// handle SIGHUP and would otherwise die without closing its sockets). If
// switchyard has not exited STOP_GRACE_MS after the first stop signal it is
// killed. This process exits with switchyard's exit code, or 128 + the signal
// number if switchyard died from a signal.
//
// Node >= 18, standard library only (no npm dependencies).

"use strict";

const { spawn } = require("child_process");
const fs = require("fs");
const os = require("os");
const path = require("path");

const HERE = __dirname;
const NAME = "switchyard launcher";
const STOP_GRACE_MS = 20000;

function fail(message) {
  console.error(`${NAME}: ${message}`);
  process.exit(1);
}

function isExecutableFile(file) {
  try {
    if (!fs.statSync(file).isFile()) return false;
    fs.accessSync(file, fs.constants.X_OK);
    return true;
  } catch (_) {
    return false;
  }
}

function findBinary() {
  const fromEnv = process.env.SWITCHYARD_BIN;
  if (fromEnv !== undefined && fromEnv !== "") {
    const file = path.resolve(fromEnv);
    if (!isExecutableFile(file)) {
      fail(`SWITCHYARD_BIN=${fromEnv} is not an executable file`);
    }
    return file;
  }
  const bundled = path.join(HERE, "bin", "switchyard");
  if (isExecutableFile(bundled)) return bundled;
  for (const dir of (process.env.PATH || "").split(path.delimiter)) {
    if (dir === "") continue;
    const file = path.join(dir, "switchyard");
    if (isExecutableFile(file)) return file;
  }
  const wheel = path.join(HERE, "..", "..", "..", "bin", "switchyard");
  if (isExecutableFile(wheel)) return path.resolve(wheel);
  fail(
    "cannot find the switchyard binary: set SWITCHYARD_BIN to its path, " +
      `put it at ${bundled}, or install it on PATH ` +
      "(`pip install switchyard-router` in the environment Mephisto runs from, " +
      "`cargo install --path .`, or copy target/release/switchyard to /usr/local/bin)"
  );
}

function portFromEnv() {
  const raw = process.env.PORT;
  if (raw === undefined || raw.trim() === "") return 3000;
  const port = Number(raw.trim());
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    fail(`PORT=${raw} is not a port number`);
  }
  return port;
}

function extraArgs() {
  return (process.env.SWITCHYARD_ARGS || "").split(/\s+/).filter((a) => a !== "");
}

function gives(args, flag) {
  return args.some((a) => a === flag || a.startsWith(flag + "="));
}

function main() {
  const bin = findBinary();
  const extra = extraArgs();
  const defaults = [
    ["--http", `0.0.0.0:${portFromEnv()}`],
    ["--static-dir", path.join(HERE, "static")],
    ["--upload-dir", "/tmp"],
    ["--data-dir", path.join(HERE, "switchyard-data")],
  ];
  const args = [];
  for (const [flag, value] of defaults) {
    if (!gives(extra, flag)) args.push(flag, value);
  }
  args.push(...extra);

  console.log(`${NAME}: starting ${bin} ${args.join(" ")}`);
  const child = spawn(bin, args, { cwd: HERE, env: process.env, stdio: "inherit" });

  let exited = false;
  let killTimer = null;

  child.on("error", (err) => {
    // The binary could not be started at all (ENOENT, EACCES, ...).
    exited = true;
    fail(`cannot start ${bin}: ${err.message}`);
  });

  child.on("exit", (code, signal) => {
    exited = true;
    if (killTimer !== null) clearTimeout(killTimer);
    if (code !== null) {
      console.log(`${NAME}: switchyard exited with status ${code}`);
      process.exit(code);
    }
    const num = os.constants.signals[signal] || 0;
    console.log(`${NAME}: switchyard was killed by ${signal}`);
    process.exit(128 + num);
  });

  const forward = (received, sent) => {
    if (exited) return;
    console.log(`${NAME}: ${received} received, sending ${sent} to switchyard`);
    try {
      child.kill(sent);
    } catch (_) {
      // already gone; the exit handler reports it
    }
    if (killTimer === null) {
      killTimer = setTimeout(() => {
        if (!exited) {
          console.error(`${NAME}: switchyard still running after ${STOP_GRACE_MS} ms, killing it`);
          child.kill("SIGKILL");
        }
      }, STOP_GRACE_MS);
    }
  };
  process.on("SIGINT", () => forward("SIGINT", "SIGINT"));
  process.on("SIGTERM", () => forward("SIGTERM", "SIGTERM"));
  process.on("SIGHUP", () => forward("SIGHUP", "SIGTERM"));

  // If this process goes away some other way (uncaught error), do not leave
  // the switch running without its launcher.
  process.on("exit", () => {
    if (!exited) {
      try {
        child.kill("SIGTERM");
      } catch (_) {
        // nothing to do
      }
    }
  });
}

main();
