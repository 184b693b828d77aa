// switchyard dashboard: vanilla ES2020, no build step, no external assets.
//
// Data: the `/monitor` WebSocket (a snapshot, then one event per frame),
// `/api/nodes/{addr}/history` to fill charts on load, `/api/agents` and
// `/metrics/actors` polled, `/api/nodes/{addr}/send` and `/api/broadcast`
// for the send form. Every text from the network goes into the page through
// textContent / attributes only.
'use strict';

(() => {
  const SENSORS = ['TMP', 'HUM', 'BAT'];
  const SPARK_POINTS = 60; // samples kept per node and sensor
  const TRAIL_POINTS = 24; // GPS positions kept per node
  const MESSAGES_MAX = 100;
  const LOG_MAX = 200;
  const AGENTS_POLL_MS = 1500;
  const ACTORS_POLL_MS = 2000;
  const MQTT_POLL_MS = 2000;
  const NODE_COLORS = ['#2f6fdd', '#e0762f', '#2d9d6a', '#9b59b6', '#d64545', '#0f8b8d', '#c49a06', '#6b7280'];
  const SVG_NS = 'http://www.w3.org/2000/svg';

  // Log groups: the chips above the event log.
  const LOG_GROUPS = [
    { id: 'data', label: 'data', kinds: ['node_data'], on: false },
    { id: 'messages', label: 'messages', kinds: ['node_message', 'command_result'], on: true },
    { id: 'status', label: 'status', kinds: ['node_status', 'agent_status', 'backend', 'link'], on: true },
    { id: 'other', label: 'other', kinds: null, on: true }, // everything else
  ];

  const $ = (sel) => document.querySelector(sel);

  // ---- state --------------------------------------------------------------

  const state = {
    clockOffset: 0, // server seconds - browser seconds
    link: null, // "up" | "down" | "none"
    backend: null, // {connected, outbox_depth, pending_requests}
    cluster: null, // cluster mode: {node, connected, nodes, switches: [{node, agents, has_backend, me}]}
    mqtt: null, // with --mqtt: /api/mqtt ({enabled, broker, connected, buffered, ...}); null: unknown
    nodes: new Map(), // key -> node
    agents: new Map(), // agent_id -> {agent_id, status, is_alive, queued, last_ping_ms}
    agentsLoaded: false,
    messages: [], // newest first
    log: [], // newest first, every kind, bounded per group
    logCounts: {},
    logPaused: false,
    actors: { prev: null, prevAt: 0, kinds: new Map(), total: 0, polls: 0 },
    liveSince: 0, // Date.now() when the current monitor connection went live
    eventTimes: [], // arrival times (ms) of monitor events, for events/s
    ws: null,
    wsState: 'connecting',
    retryMs: 500,
    retryAt: 0,
  };

  const dirty = new Set();
  let frameRequested = false;
  function mark(...what) {
    what.forEach((w) => dirty.add(w));
    if (!frameRequested) {
      frameRequested = true;
      // At most ~8 renders a second whatever the event rate.
      setTimeout(() => requestAnimationFrame(render), 120);
    }
  }

  const nowSec = () => Date.now() / 1000 + state.clockOffset;

  // ---- small helpers ------------------------------------------------------

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    if (attrs) {
      for (const [k, v] of Object.entries(attrs)) {
        if (v == null || v === false) continue;
        if (k === 'class') e.className = v;
        else if (k === 'text') e.textContent = v;
        else e.setAttribute(k, v === true ? '' : String(v));
      }
    }
    for (const c of children) if (c != null) e.append(c);
    return e;
  }

  function svg(tag, attrs) {
    const e = document.createElementNS(SVG_NS, tag);
    if (attrs) for (const [k, v] of Object.entries(attrs)) {
      if (k === 'text') e.textContent = v;
      else e.setAttribute(k, String(v));
    }
    return e;
  }

  function setText(node, text) {
    const t = String(text);
    if (node.textContent !== t) node.textContent = t;
  }

  function setAttr(node, name, value) {
    const v = String(value);
    if (node.getAttribute(name) !== v) node.setAttribute(name, v);
  }

  const pad2 = (n) => String(n).padStart(2, '0');
  function clockTime(tsSec) {
    const d = new Date((tsSec - state.clockOffset) * 1000);
    return `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
  }

  function ago(tsSec) {
    if (!tsSec) return '–';
    const s = Math.max(0, nowSec() - tsSec);
    if (s < 1) return 'just now';
    if (s < 60) return `${Math.floor(s)} s ago`;
    if (s < 3600) return `${Math.floor(s / 60)} min ago`;
    if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
    return `${Math.floor(s / 86400)} d ago`;
  }

  function fmtNum(n, digits = 0) {
    return Number(n).toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
  }

  function fmtRate(r) {
    if (r == null || !isFinite(r)) return '–';
    if (r >= 100) return fmtNum(r, 0);
    if (r >= 10) return fmtNum(r, 1);
    return fmtNum(r, r === 0 ? 0 : 1);
  }

  // The number a sensor's chart plots.
  function sensorNumber(type, value) {
    if (!value || typeof value !== 'object') return null;
    const v = type === 'TMP' ? value.celsius : type === 'HUM' ? value.percent : type === 'BAT' ? value.millivolts : null;
    return typeof v === 'number' && isFinite(v) ? v : null;
  }

  function formatValue(type, value, raw) {
    if (value && typeof value === 'object') {
      switch (type) {
        case 'TMP': if (typeof value.celsius === 'number') return `${fmtNum(value.celsius, 1)} °C`; break;
        case 'HUM': if (typeof value.percent === 'number') return `${fmtNum(value.percent, 0)} %`; break;
        case 'BAT': if (typeof value.millivolts === 'number') return `${fmtNum(value.millivolts / 1000, 2)} V`; break;
        case 'GPS':
          if (typeof value.lat === 'number' && typeof value.lon === 'number') return formatLatLon(value.lat, value.lon);
          break;
        default: break;
      }
      const parts = Object.entries(value).map(([k, v]) => `${k} ${typeof v === 'number' ? fmtNum(v, Number.isInteger(v) ? 0 : 2) : JSON.stringify(v)}`);
      if (parts.length) return parts.join(', ');
    }
    return raw ? `0x${raw}` : '–';
  }

  function formatLatLon(lat, lon) {
    const ns = lat >= 0 ? 'N' : 'S';
    const ew = lon >= 0 ? 'E' : 'W';
    return `${fmtNum(Math.abs(lat), 4)}° ${ns}, ${fmtNum(Math.abs(lon), 4)}° ${ew}`;
  }

  // "0x0001" for a local node, "gw:0x0001" for one behind a gateway.
  const nodeKey = (gateway, address) => (gateway ? `${gateway}:${address}` : address);
  const domKey = (key) => key.replace(/[^A-Za-z0-9_-]/g, '_');
  const addrOf = (n) => (typeof n === 'number' ? `0x${n.toString(16).padStart(4, '0')}` : String(n));

  // The operators' token (PROTOCOL 1.5), when the page was opened with
  // `?token=T`: sent on as a Bearer header to the API, and as `?token=` to
  // /monitor (a browser's WebSocket cannot set headers).
  const TOKEN = new URLSearchParams(location.search).get('token');
  const authHeaders = () => (TOKEN ? { Authorization: `Bearer ${TOKEN}` } : {});

  async function getJSON(url) {
    const r = await fetch(url, { cache: 'no-store', headers: authHeaders() });
    if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
    return r.json();
  }

  // ---- nodes --------------------------------------------------------------

  // A node keeps its colour across reloads: by address, or by a hash of
  // gateway and address for nodes behind a gateway.
  function nodeColor(key, addr, gateway) {
    let i = Number.isInteger(addr) && addr > 0 ? addr - 1 : 0;
    if (gateway) { i = 0; for (const ch of key) i = (i * 31 + ch.charCodeAt(0)) >>> 0; }
    return NODE_COLORS[i % NODE_COLORS.length];
  }
  function ensureNode(gateway, address, addr) {
    const key = nodeKey(gateway, address);
    let n = state.nodes.get(key);
    if (!n) {
      n = {
        key, gateway: gateway || null, address, addr: addr ?? parseInt(address, 16),
        status: 'active', first_seen: null, last_seen: null,
        latest: {}, hist: { TMP: [], HUM: [], BAT: [] }, trail: [],
        color: nodeColor(key, addr ?? parseInt(address, 16), gateway),
        historyLoaded: false,
      };
      state.nodes.set(key, n);
      mark('nodes', 'picker', 'map', 'kpi');
    }
    return n;
  }

  function pushSample(n, type, ts, value) {
    if (SENSORS.includes(type)) {
      const v = sensorNumber(type, value);
      if (v == null) return;
      const h = n.hist[type];
      if (h.length && h[h.length - 1].ts >= ts) return; // already have it
      h.push({ ts, v });
      if (h.length > SPARK_POINTS) h.splice(0, h.length - SPARK_POINTS);
    } else if (type === 'GPS') {
      if (!value || typeof value.lat !== 'number' || typeof value.lon !== 'number') return;
      const t = n.trail;
      if (t.length && t[t.length - 1].ts >= ts) return;
      t.push({ ts, lat: value.lat, lon: value.lon });
      if (t.length > TRAIL_POINTS) t.splice(0, t.length - TRAIL_POINTS);
    }
  }

  function applyNode(j) {
    const address = j.address || addrOf(j.addr);
    const n = ensureNode(j.gateway, address, j.addr);
    n.status = j.status || n.status;
    n.first_seen = j.first_seen ?? n.first_seen;
    n.last_seen = j.last_seen ?? n.last_seen;
    for (const [type, s] of Object.entries(j.latest || {})) {
      n.latest[type] = s;
      pushSample(n, type, s.ts, s.value);
    }
    return n;
  }

  async function loadHistory(n) {
    if (n.gateway) return; // the history API serves local nodes only
    const types = [...SENSORS, 'GPS'];
    await Promise.all(types.map(async (type) => {
      const limit = type === 'GPS' ? TRAIL_POINTS : SPARK_POINTS;
      try {
        const base = n.gateway
          ? `/api/nodes/${encodeURIComponent(n.gateway)}/${encodeURIComponent(n.address)}`
          : `/api/nodes/${encodeURIComponent(n.address)}`;
        const j = await getJSON(`${base}/history?type=${type}&limit=${limit}`);
        const samples = (j.samples || []).filter((s) => s && typeof s.ts === 'number');
        // The history as the switch has it, then what came live after it.
        const lastTs = samples.length ? samples[samples.length - 1].ts : -Infinity;
        if (type === 'GPS') {
          const fetched = samples.filter((s) => s.value && typeof s.value.lat === 'number' && typeof s.value.lon === 'number')
            .map((s) => ({ ts: s.ts, lat: s.value.lat, lon: s.value.lon }));
          n.trail = fetched.concat(n.trail.filter((p) => p.ts > lastTs)).slice(-TRAIL_POINTS);
        } else {
          const fetched = samples.map((s) => ({ ts: s.ts, v: sensorNumber(type, s.value) })).filter((s) => s.v != null);
          n.hist[type] = fetched.concat(n.hist[type].filter((p) => p.ts > lastTs)).slice(-SPARK_POINTS);
        }
      } catch (e) {
        // A node without this type answers with no samples; others are transient.
      }
    }));
    n.historyLoaded = true;
    mark('nodes', 'map');
  }

  // ---- monitor socket -----------------------------------------------------

  function connectMonitor() {
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    let ws;
    try {
      const query = TOKEN ? `?token=${encodeURIComponent(TOKEN)}` : '';
      ws = new WebSocket(`${proto}//${location.host}/monitor${query}`);
    } catch (e) {
      scheduleReconnect();
      return;
    }
    state.ws = ws;
    setMonitorState('connecting');
    ws.onmessage = (m) => {
      let ev;
      try { ev = JSON.parse(m.data); } catch (e) { return; }
      if (!ev || typeof ev !== 'object') return;
      handleEvent(ev);
    };
    ws.onclose = (e) => {
      if (state.ws !== ws) return;
      state.ws = null;
      if (state.wsState === 'live') {
        addLog({ event: 'monitor', ts: nowSec(), text: `monitor connection lost (code ${e.code}); reconnecting` }, true);
      }
      // The mesh link's state is only known through the monitor.
      state.link = null;
      scheduleReconnect();
    };
    ws.onerror = () => { /* onclose follows */ };
  }

  function scheduleReconnect() {
    const delay = state.retryMs;
    state.retryMs = Math.min(state.retryMs * 2, 10000);
    state.retryAt = Date.now() + delay;
    setMonitorState('closed');
    setTimeout(connectMonitor, delay);
  }

  function setMonitorState(s) {
    state.wsState = s;
    mark('pills');
  }

  function handleEvent(ev) {
    const kind = ev.event;
    if (typeof ev.ts === 'number' && kind !== 'snapshot') state.eventTimes.push(Date.now());
    switch (kind) {
      case 'snapshot': onSnapshot(ev); break;
      case 'node_data': {
        const n = ensureNode(ev.gateway, ev.address || addrOf(ev.node), ev.node);
        if (ev.type) {
          n.latest[ev.type] = { ts: ev.ts, raw: ev.raw, value: ev.value };
          pushSample(n, ev.type, ev.ts, ev.value);
        }
        if (!n.last_seen || ev.ts > n.last_seen) n.last_seen = ev.ts;
        if (!n.first_seen) n.first_seen = ev.ts;
        if (n.status !== 'active') n.status = 'active';
        mark('nodes', 'map', 'kpi');
        break;
      }
      case 'node_message': {
        const n = ensureNode(ev.gateway, ev.address || addrOf(ev.node), ev.node);
        if (!n.last_seen || ev.ts > n.last_seen) n.last_seen = ev.ts;
        addMessage({ dir: 'in', ts: ev.ts, key: n.key, address: n.address, gateway: n.gateway, text: ev.text, hex: ev.hex });
        break;
      }
      case 'node_status': {
        const n = ensureNode(ev.gateway, ev.address || addrOf(ev.node), ev.node);
        n.status = ev.status;
        mark('nodes', 'map', 'kpi');
        break;
      }
      case 'agent_status': {
        const a = state.agents.get(ev.agent_id) || { agent_id: ev.agent_id, is_alive: null, queued: null, last_ping_ms: null };
        a.status = ev.status;
        state.agents.set(ev.agent_id, a);
        mark('agents', 'kpi');
        break;
      }
      case 'backend':
        state.backend = Object.assign({}, state.backend || {}, { connected: !!ev.connected });
        mark('pills', 'agents', 'kpi');
        break;
      case 'link':
        if (!ev.link || ev.link === 'mesh') { state.link = ev.state; mark('pills'); }
        break;
      default:
        break;
    }
    if (kind !== 'snapshot') addLog(ev);
  }

  function onSnapshot(ev) {
    state.retryMs = 500;
    if (typeof ev.ts === 'number') state.clockOffset = ev.ts - Date.now() / 1000;
    setMonitorState('live');
    state.liveSince = Date.now();
    state.eventTimes = [];
    state.link = (ev.links && ev.links.mesh) || 'none';
    if (ev.backend) state.backend = ev.backend;
    const seen = new Set();
    for (const j of ev.nodes || []) seen.add(applyNode(j).key);
    for (const key of [...state.nodes.keys()]) if (!seen.has(key)) state.nodes.delete(key);
    if (Array.isArray(ev.agents)) setAgents(ev.agents);
    addLog({ event: 'snapshot', ts: ev.ts, text: `connected: ${seen.size} node${seen.size === 1 ? '' : 's'}, ${(ev.agents || []).length} agent${(ev.agents || []).length === 1 ? '' : 's'}, mesh link ${state.link}` });
    // (Re)fill the charts from history: also covers what a reconnect missed.
    for (const n of state.nodes.values()) loadHistory(n);
    mark('nodes', 'picker', 'map', 'pills', 'agents', 'kpi');
  }

  // ---- agents -------------------------------------------------------------

  function setAgents(list) {
    const next = new Map();
    for (const a of list) if (a && a.agent_id != null) next.set(String(a.agent_id), a);
    state.agents = next;
    state.agentsLoaded = true;
    mark('agents', 'kpi');
  }

  async function pollAgents() {
    try {
      const j = await getJSON('/api/agents');
      if (Array.isArray(j.agents)) setAgents(j.agents);
      if (j.backend) { state.backend = j.backend; mark('pills'); }
      state.cluster = j.cluster || null;
      mark('agents');
    } catch (e) {
      // The switch is unreachable: its backend's state is unknown.
      if (state.wsState !== 'live') { state.backend = null; mark('pills', 'agents', 'kpi'); }
    }
    setTimeout(pollAgents, AGENTS_POLL_MS);
  }

  function statusClass(s) {
    const v = String(s || '').toLowerCase();
    if (['in task', 'in_task', 'active', 'connected', 'up', 'approved', 'completed', 'done'].includes(v)) return 'ok';
    if (['none', 'waiting', 'onboarding', 'assigned', 'accepted', 'statusonboarding'].includes(v)) return 'info';
    if (['disconnect', 'timeout', 'partner disconnect', 'expired', 'returned', 'rejected', 'soft_rejected', 'mephisto_disconnect', 'down', 'unavailable'].includes(v)) return 'bad';
    if (['inactive', 'unknown', ''].includes(v)) return '';
    return 'warn';
  }

  // ---- MQTT bridge (with --mqtt only) ---------------------------------------

  async function pollMqtt() {
    try {
      const j = await getJSON('/api/mqtt');
      state.mqtt = j;
      mark('mqtt', 'pills');
      // Without --mqtt there is nothing to follow: it is not started later.
      if (j && j.enabled === false) return;
    } catch (e) {
      state.mqtt = state.mqtt && state.mqtt.enabled ? { ...state.mqtt, unknown: true } : state.mqtt;
      mark('mqtt', 'pills');
    }
    setTimeout(pollMqtt, MQTT_POLL_MS);
  }

  function renderMqtt() {
    const m = state.mqtt;
    const card = $('#card-mqtt');
    // `on` or `off` once /api/mqtt has answered (styles and tests read it).
    if (m) document.body.dataset.mqtt = m.enabled ? 'on' : 'off';
    if (!m || !m.enabled) { card.hidden = true; return; }
    card.hidden = false;
    setText($('#mqtt-broker'), m.broker || '–');
    const conn = $('#mqtt-connection');
    if (m.unknown) { setText(conn, 'unknown'); conn.className = ''; }
    else {
      setText(conn, m.connected ? `connected${m.connected_since ? ` · ${ago(m.connected_since)}` : ''}` : 'disconnected');
      conn.className = m.connected ? 'ok' : 'bad';
    }
    setText($('#mqtt-buffered'), `${fmtNum(m.buffered)} / ${fmtNum(m.buffer_limit)}`);
    setText($('#mqtt-published'), fmtNum(m.published));
    const dropped = $('#mqtt-dropped');
    setText(dropped, fmtNum(m.dropped));
    dropped.className = m.dropped > 0 ? 'bad' : '';
    setText($('#mqtt-reconnects'), fmtNum(m.reconnects));
    setText($('#mqtt-commands'), `${fmtNum(m.commands_ok)} ok · ${fmtNum(m.commands_failed)} failed · ${fmtNum(m.commands_refused)} refused`);
    setText($('#mqtt-nodes'), m.discovery ? fmtNum(m.nodes) : `${fmtNum(m.nodes)} (discovery off)`);
    setText($('#mqtt-note'), `${m.client_id} · topics under ${m.prefix}/`);
    const err = $('#mqtt-error');
    if (!m.connected && m.last_error) { setText(err, `last error: ${m.last_error}`); err.hidden = false; }
    else err.hidden = true;
  }

  // ---- actors -------------------------------------------------------------

  async function pollActors() {
    try {
      const j = await getJSON('/metrics/actors');
      const at = performance.now();
      const totals = j.totals || {};
      const prev = state.actors.prev;
      const dt = prev ? (at - state.actors.prevAt) / 1000 : 0;
      const seen = new Set();
      let total = 0;
      for (const [kind, t] of Object.entries(totals)) {
        seen.add(kind);
        let k = state.actors.kinds.get(kind);
        if (!k) { k = { kind, rates: [] }; state.actors.kinds.set(kind, k); }
        k.live = t.live; k.mailbox = t.mailbox_depth; k.handled = t.handled;
        if (prev && dt > 0) {
          const before = prev[kind] ? prev[kind].handled : 0;
          // Totals fall when actors stop; a negative delta counts as 0.
          k.rate = Math.max(0, (t.handled - before) / dt);
          k.rates.push(k.rate);
          if (k.rates.length > 30) k.rates.shift();
          total += k.rate;
        } else {
          k.rate = null;
        }
      }
      for (const [kind, k] of state.actors.kinds) {
        if (!seen.has(kind)) { k.live = 0; k.mailbox = 0; k.rate = 0; k.rates.push(0); if (k.rates.length > 30) k.rates.shift(); }
      }
      state.actors.total = prev && dt > 0 ? total : null;
      state.actors.prev = totals;
      state.actors.prevAt = at;
      state.actors.ok = true;
    } catch (e) {
      state.actors.ok = false;
    }
    mark('actors', 'kpi');
    // The first rate needs two polls: the second comes soon after the first.
    setTimeout(pollActors, state.actors.polls++ === 0 ? 600 : ACTORS_POLL_MS);
  }

  // ---- messages -----------------------------------------------------------

  function addMessage(m) {
    state.messages.unshift(m);
    if (state.messages.length > MESSAGES_MAX) state.messages.length = MESSAGES_MAX;
    mark('messages');
  }

  // ---- event log ----------------------------------------------------------

  function groupOf(kind) {
    for (const g of LOG_GROUPS) if (g.kinds && g.kinds.includes(kind)) return g;
    return LOG_GROUPS[LOG_GROUPS.length - 1];
  }

  function summarize(ev) {
    const who = ev.address ? (ev.gateway ? `${ev.gateway}:${ev.address}` : ev.address) : '';
    switch (ev.event) {
      case 'node_data': return `${who}  ${ev.type}  ${formatValue(ev.type, ev.value, ev.raw)}`;
      case 'node_message': return `${who}: ${ev.text != null ? ev.text : `0x${ev.hex}`}`;
      case 'node_status': return `${who} is ${ev.status}`;
      case 'agent_status': return `${ev.agent_id} → ${ev.status}`;
      case 'backend': return ev.connected ? 'backend connected' : 'backend disconnected';
      case 'link': return `${ev.link || 'link'} link ${ev.state}`;
      case 'log': return String(ev.text ?? '');
      case 'robots': {
        const r = Array.isArray(ev.robots) ? ev.robots : [];
        return `${r.length} robot${r.length === 1 ? '' : 's'}` + (r.length ? ': ' + r.map((x) => `${x.name ?? x.id} (${x.state ?? '?'})`).join(', ') : '');
      }
      case 'lagged': return `${ev.dropped} event${ev.dropped === 1 ? '' : 's'} dropped (this page fell behind)`;
      case 'command_result': return `${ev.command || 'command'} to ${who || 'the mesh'}: ${ev.ok ? 'ok' : `failed: ${ev.error ?? 'unknown error'}`}`;
      default: {
        if (ev.text != null) return String(ev.text);
        const rest = Object.assign({}, ev); delete rest.event; delete rest.ts;
        return JSON.stringify(rest);
      }
    }
  }

  function addLog(ev, bad) {
    const kind = String(ev.event || 'unknown');
    const g = groupOf(kind);
    state.logCounts[g.id] = (state.logCounts[g.id] || 0) + 1;
    const item = { kind, group: g.id, ts: typeof ev.ts === 'number' ? ev.ts : nowSec(), text: summarize(ev),
      bad: !!bad || kind === 'lagged' || (kind === 'command_result' && !ev.ok) };
    state.log.unshift(item);
    // Bounded per group, so a flood of node_data never pushes the rest out.
    const limitPerGroup = LOG_MAX;
    let inGroup = 0;
    for (let i = 0; i < state.log.length; i++) {
      if (state.log[i].group === g.id && ++inGroup > limitPerGroup) { state.log.splice(i, 1); break; }
    }
    mark('log');
  }

  // ---- send form ----------------------------------------------------------

  let pickerTouched = false;
  const sends = []; // newest first: {ts, to, text, state, detail}
  const SENDS_MAX = 8;

  function renderSends() {
    const list = $('#send-history');
    if (!sends.length) return;
    list.replaceChildren(...sends.map((x) => el('li', { 'data-state': x.state },
      el('span', { class: 't', text: clockTime(x.ts) }),
      el('span', { class: 'to', text: x.to }),
      el('span', { class: 'txt', title: x.text, text: x.text }),
      el('span', { class: `res ${x.state}`, title: x.detail || '', text: x.state === 'pending' ? '…' : x.state === 'ok' ? 'ok' : (x.detail || 'error') }))));
  }
  let syncForm = () => {};

  function setResult(kind, word, detail) {
    const r = $('#send-result');
    r.dataset.state = kind;
    r.replaceChildren(el('span', { class: 'res-word', text: word }), detail ? el('span', { class: 'res-detail', text: detail }) : '');
  }

  function setupForm() {
    const form = $('#send-form');
    const node = $('#send-node');
    const text = $('#send-text');
    const tracked = $('#send-tracked');
    const button = $('#send-button');
    const bytes = $('#send-bytes');
    const enc = new TextEncoder();

    const sync = () => {
      const n = enc.encode(text.value).length;
      bytes.textContent = `${n} / 255`;
      bytes.style.color = n > 255 ? 'var(--bad)' : '';
      const bc = node.value === 'broadcast';
      tracked.disabled = bc;
      tracked.closest('label').classList.toggle('disabled', bc);
    };
    syncForm = sync;
    text.addEventListener('input', sync);
    node.addEventListener('change', () => { pickerTouched = true; sync(); });
    sync();

    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const msg = text.value;
      if (!msg) return;
      const target = node.value;
      const isBroadcast = target === 'broadcast';
      const isTracked = !isBroadcast && tracked.checked;
      const url = isBroadcast ? '/api/broadcast' : `/api/nodes/${encodeURIComponent(target)}/send`;
      const body = isBroadcast ? { text: msg } : { text: msg, tracked: isTracked };
      button.disabled = true;
      setResult('pending', 'sending…', isBroadcast ? 'to all nodes' : `to ${target}`);
      // Listed before the request: the reply can come over the monitor
      // socket before the HTTP answer does.
      const out = { dir: 'out', ts: nowSec(), key: isBroadcast ? '*' : target, address: isBroadcast ? 'all' : target, text: msg };
      addMessage(out);
      const sent = { ts: out.ts, to: isBroadcast ? 'all' : target, text: msg, state: 'pending' };
      sends.unshift(sent);
      if (sends.length > SENDS_MAX) sends.length = SENDS_MAX;
      renderSends();
      const done = (stateName, detail) => { sent.state = stateName; sent.detail = detail; renderSends(); };
      const dropOut = () => {
        const i = state.messages.indexOf(out);
        if (i >= 0) { state.messages.splice(i, 1); mark('messages'); }
      };
      try {
        const r = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/json', ...authHeaders() }, body: JSON.stringify(body) });
        let j = null;
        try { j = await r.json(); } catch (err) { j = null; }
        if (r.ok && j && j.status === 'ok') {
          const cmd = j.command || (isBroadcast ? 'BCAST' : 'SEND-');
          // A tracked send is answered with the root's own result for it.
          setResult('ok', 'ok', `${cmd} ${isBroadcast ? 'to all nodes' : `to ${target}`}${isTracked ? ' (tracked), root confirmed' : ''}`);
          done('ok');
          text.value = '';
          sync();
        } else {
          const err = (j && (j.error || j.message)) || `HTTP ${r.status}`;
          setResult('error', 'error', err);
          dropOut();
          done('error', err);
        }
      } catch (err) {
        setResult('error', 'error', `request failed: ${err.message || err}`);
        dropOut();
        done('error', 'request failed');
      } finally {
        button.disabled = false;
      }
    });
  }

  function renderPicker() {
    const sel = $('#send-node');
    const local = [...state.nodes.values()].filter((n) => !n.gateway).sort((a, b) => a.addr - b.addr);
    const want = ['broadcast', ...local.map((n) => n.address)];
    const have = [...sel.options].map((o) => o.value);
    if (want.join('|') === have.join('|')) return;
    const current = sel.value;
    sel.replaceChildren(el('option', { value: 'broadcast', text: 'All nodes (broadcast)' }),
      ...local.map((n) => el('option', { value: n.address, text: `Node ${n.address}` })));
    // The first node is the default until the user picks something.
    if (!pickerTouched && local.length) sel.value = local[0].address;
    else sel.value = want.includes(current) ? current : 'broadcast';
    syncForm();
  }

  // ---- rendering ----------------------------------------------------------

  function render() {
    frameRequested = false;
    const d = new Set(dirty);
    dirty.clear();
    if (d.has('pills')) renderPills();
    if (d.has('nodes')) renderNodes();
    if (d.has('picker')) renderPicker();
    if (d.has('map')) renderMap();
    if (d.has('agents')) renderAgents();
    if (d.has('actors')) renderActors();
    if (d.has('messages')) renderMessages();
    if (d.has('log')) renderLog();
    if (d.has('kpi')) renderKpis();
    if (d.has('mqtt')) renderMqtt();
  }

  function setPill(id, stateName, value) {
    const p = document.getElementById(id);
    setAttr(p, 'data-state', stateName);
    setText(p.querySelector('.pill-value'), value);
  }

  function renderPills() {
    if (state.wsState === 'live') setPill('monitor-state', 'live', 'live');
    else if (state.wsState === 'connecting') setPill('monitor-state', 'connecting', 'connecting');
    else {
      const s = Math.max(0, Math.ceil((state.retryAt - Date.now()) / 1000));
      setPill('monitor-state', 'closed', s > 0 ? `retry in ${s} s` : 'retrying');
    }
    const link = state.link;
    setPill('link-state', link || 'unknown', link || '…');
    const b = state.backend;
    if (!b) setPill('backend-state', 'unknown', '…');
    else setPill('backend-state', b.connected ? 'connected' : 'disconnected', b.connected ? 'connected' : 'disconnected');
    const m = state.mqtt;
    const mp = document.getElementById('mqtt-state');
    mp.hidden = !(m && m.enabled);
    if (m && m.enabled) {
      if (m.unknown) setPill('mqtt-state', 'unknown', '…');
      else setPill('mqtt-state', m.connected ? 'connected' : 'disconnected', m.connected ? 'connected' : 'disconnected');
    }
  }

  function renderKpis() {
    const nodes = [...state.nodes.values()];
    const active = nodes.filter((n) => n.status === 'active').length;
    const kn = $('#kpi-nodes');
    kn.replaceChildren(String(active), el('span', { class: 'of', text: ` / ${nodes.length}` }));
    const agents = [...state.agents.values()];
    const alive = agents.filter((a) => a.is_alive).length;
    $('#kpi-agents').replaceChildren(String(alive), el('span', { class: 'of', text: ` / ${agents.length}` }));
    const b = state.backend;
    const ob = $('#kpi-outbox');
    setText(ob, b && typeof b.outbox_depth === 'number' ? fmtNum(b.outbox_depth) : '–');
    setText($('#kpi-rate'), state.actors.total == null ? '–' : fmtRate(state.actors.total));
    renderEventRate();
  }

  // Node rows are built once and updated in place.
  const nodeRows = new Map();

  function sparkEl(key, type) {
    const s = svg('svg', { class: `spark ${type}`, id: `spark-${domKey(key)}-${type}`, width: 76, height: 26, viewBox: '0 0 76 26', 'data-points': 0 });
    s.append(svg('path', { class: 'area' }), svg('polyline'), svg('circle', { r: 2.2, cx: -10, cy: -10 }), svg('title'));
    return s;
  }

  function drawSpark(s, values, fixedMin, fixedMax) {
    const W = +s.getAttribute('width');
    const H = +s.getAttribute('height');
    setAttr(s, 'data-points', values.length);
    const [area, line, dot] = s.childNodes;
    if (!values.length) { line.setAttribute('points', ''); area.setAttribute('d', ''); dot.setAttribute('cx', -10); return; }
    let lo = Math.min(...values);
    let hi = Math.max(...values);
    if (fixedMin != null) lo = Math.min(lo, fixedMin);
    if (fixedMax != null) hi = Math.max(hi, fixedMax);
    if (hi - lo < 1e-9) { hi += 0.5; lo -= 0.5; }
    const padY = 3;
    const n = values.length;
    // Fewer than 2 samples: a dot at the right end; else the line spans the width.
    const step = n > 1 ? (W - 4) / (n - 1) : 0;
    const x0 = n > 1 ? 2 : W - 2;
    const pts = values.map((v, i) => [x0 + i * step, padY + (H - 2 * padY) * (1 - (v - lo) / (hi - lo))]);
    const p = pts.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(' ');
    line.setAttribute('points', p);
    area.setAttribute('d', `M${pts[0][0].toFixed(1)},${H} L${p.replace(/ /g, ' L')} L${pts[n - 1][0].toFixed(1)},${H} Z`);
    dot.setAttribute('cx', pts[n - 1][0].toFixed(1));
    dot.setAttribute('cy', pts[n - 1][1].toFixed(1));
  }

  function buildNodeRow(n) {
    const tr = el('tr', { 'data-node': n.key });
    const addrCell = el('td');
    const addr = el('span', { class: 'addr' }, el('span', { class: 'swatch', style: `background:${n.color}` }), n.address);
    addrCell.append(addr);
    if (n.gateway) addrCell.append(el('span', { class: 'gw', text: `via ${n.gateway}` }));
    const statusCell = el('td', { class: 'status' }, el('span', { class: 'badge' }));
    const seenCell = el('td', { class: 'seen' });
    tr.append(addrCell, statusCell, seenCell);
    const sensors = {};
    for (const type of SENSORS) {
      const val = el('span', { class: 'val none', text: '–' });
      const sp = sparkEl(n.key, type);
      const td = el('td', { class: `sensor-cell s-${type}`, 'data-type': type }, el('div', { class: 'sensor' }, val, sp));
      sensors[type] = { val, sp };
      tr.append(td);
    }
    // Types other than the charted ones and GPS: named under the address,
    // their values in the tooltip.
    const extra = el('span', { class: 'extra' });
    addrCell.append(extra);
    const pos = el('div', { class: 'pos none', text: '–' });
    tr.append(el('td', { class: 'pos-cell' }, pos));
    return { tr, badge: statusCell.firstChild, seen: seenCell, sensors, pos, extra };
  }

  function sortedNodes() {
    return [...state.nodes.values()].sort((a, b) => (a.gateway || '').localeCompare(b.gateway || '') || a.addr - b.addr);
  }

  function renderNodes() {
    const body = $('#nodes-body');
    const nodes = sortedNodes();
    for (const [key, row] of nodeRows) {
      if (!state.nodes.has(key)) { row.tr.remove(); nodeRows.delete(key); }
    }
    if (!nodes.length) {
      if (!body.querySelector('tr.empty')) body.replaceChildren(el('tr', { class: 'empty' }, el('td', { colspan: 7, text: 'No nodes heard from yet' })));
      return;
    }
    const emptyRow = body.querySelector('tr.empty');
    if (emptyRow) emptyRow.remove();
    let prevTr = null;
    for (const n of nodes) {
      let row = nodeRows.get(n.key);
      if (!row) { row = buildNodeRow(n); nodeRows.set(n.key, row); }
      // keep rows in order
      const want = prevTr ? prevTr.nextSibling : body.firstChild;
      if (want !== row.tr) body.insertBefore(row.tr, want);
      prevTr = row.tr;

      row.tr.classList.toggle('inactive', n.status !== 'active');
      setText(row.badge, n.status || 'unknown');
      setAttr(row.badge, 'class', `badge ${statusClass(n.status)}`);
      setText(row.seen, ago(n.last_seen));
      for (const type of SENSORS) {
        const s = n.latest[type];
        const { val, sp } = row.sensors[type];
        setText(val, s ? formatValue(type, s.value, s.raw) : '–');
        val.classList.toggle('none', !s);
        const values = n.hist[type].map((x) => x.v);
        drawSpark(sp, values);
        if (values.length) {
          const lo = Math.min(...values), hi = Math.max(...values);
          const f = (v) => formatValue(type, type === 'TMP' ? { celsius: v } : type === 'HUM' ? { percent: v } : { millivolts: v });
          setText(sp.lastChild, `${type}, last ${values.length} samples: min ${f(lo)}, max ${f(hi)}`);
        }
      }
      const g = n.latest.GPS;
      if (g && g.value && typeof g.value.lat === 'number') {
        const [lat, lon] = formatLatLon(g.value.lat, g.value.lon).split(', ');
        if (row.pos.childNodes.length !== 2 || row.pos.classList.contains('none')) {
          row.pos.replaceChildren(el('span', { class: 'lat' }), el('span', { class: 'lon' }));
          row.pos.classList.remove('none');
        }
        setText(row.pos.firstChild, lat);
        setText(row.pos.lastChild, lon);
      }
      const extras = Object.keys(n.latest).filter((t) => !SENSORS.includes(t) && t !== 'GPS').sort();
      setText(row.extra, extras.length ? `+ ${extras.join(', ')}` : '');
      setAttr(row.extra, 'title', extras.map((t) => `${t}: ${formatValue(t, n.latest[t].value, n.latest[t].raw)}`).join('\n'));
      row.tr.title = n.first_seen ? `first seen ${clockTime(n.first_seen)}` : '';
    }
  }

  // Monitor events per second over the last 5 s (or since the socket went live).
  function renderEventRate() {
    const now = Date.now();
    const cutoff = now - 5000;
    while (state.eventTimes.length && state.eventTimes[0] < cutoff) state.eventTimes.shift();
    const span = Math.min(5, (now - state.liveSince) / 1000);
    const live = state.wsState === 'live';
    setText($('#kpi-events'), live && span >= 0.5 ? fmtRate(state.eventTimes.length / span) : '–');
  }

  // Last-seen times tick every second without a full render.
  function tickAgo() {
    for (const [key, row] of nodeRows) {
      const n = state.nodes.get(key);
      if (n) setText(row.seen, ago(n.last_seen));
    }
    setText($('#clock'), clockTime(nowSec()));
    renderEventRate();
    if (state.wsState === 'closed') renderPills();
    for (const li of document.querySelectorAll('#agents-body tr[data-agent]')) {
      const a = state.agents.get(li.dataset.agent);
      if (a) setText(li.querySelector('.ping'), a.last_ping_ms ? ago(a.last_ping_ms / 1000) : '–');
    }
  }

  // ---- map ----------------------------------------------------------------

  // The plot's size in CSS pixels, followed with a ResizeObserver so the SVG
  // fills its card at any width without scaling its text.
  let MAP_W = 400;
  let MAP_H = 290;
  const MAP_PAD = 24; // top and right
  const MAP_PAD_L = 58; // room for latitude labels
  const MAP_PAD_B = 24; // room for longitude labels
  let mapView = null; // {lon0, lat0, kx, spanX, spanY, cx, cy}

  function niceStep(span, ticks = 4) {
    const raw = span / Math.max(1, ticks);
    const p = Math.pow(10, Math.floor(Math.log10(raw)));
    const m = raw / p;
    return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p; // the first nice step at least `raw`
  }

  function renderMap() {
    const pts = [];
    for (const n of state.nodes.values()) for (const p of n.trail) pts.push(p);
    $('#map-empty').hidden = pts.length > 0;
    const trails = $('#map-trails');
    const points = $('#map-points');
    const grid = $('#map-grid');
    const scale = $('#map-scale');
    if (!pts.length) { trails.replaceChildren(); points.replaceChildren(); grid.replaceChildren(); scale.replaceChildren(); return; }

    let minLon = Infinity, maxLon = -Infinity, minLat = Infinity, maxLat = -Infinity;
    for (const p of pts) {
      minLon = Math.min(minLon, p.lon); maxLon = Math.max(maxLon, p.lon);
      minLat = Math.min(minLat, p.lat); maxLat = Math.max(maxLat, p.lat);
    }
    const latMid = (minLat + maxLat) / 2;
    const kx = Math.cos(latMid * Math.PI / 180); // degrees of lon to "lat-degree" units
    const minSpan = 0.0005; // ~50 m: a single still node is not infinitely zoomed
    const needX = Math.max((maxLon - minLon) * kx, minSpan);
    const needY = Math.max(maxLat - minLat, minSpan);
    const cx = (minLon + maxLon) / 2;
    const cy = latMid;
    // Keep the view unless the points leave it or fill less than half of it:
    // the plot does not twitch with every sample.
    const v = mapView;
    const inside = v && minLon >= v.cx - v.spanX / 2 / v.kx && maxLon <= v.cx + v.spanX / 2 / v.kx
      && minLat >= v.cy - v.spanY / 2 && maxLat <= v.cy + v.spanY / 2;
    const tooBig = v && needX < v.spanX * 0.45 && needY < v.spanY * 0.45;
    if (!v || !inside || tooBig) {
      const aspect = (MAP_W - MAP_PAD - MAP_PAD_L) / (MAP_H - MAP_PAD - MAP_PAD_B);
      let spanX = needX * 1.25, spanY = needY * 1.25;
      if (spanX / spanY > aspect) spanY = spanX / aspect; else spanX = spanY * aspect;
      mapView = { cx, cy, kx, spanX, spanY };
    }
    const mv = mapView;
    const sx = (MAP_W - MAP_PAD - MAP_PAD_L) / mv.spanX;
    const X = (lon) => MAP_PAD_L + ((lon - mv.cx) * mv.kx + mv.spanX / 2) * sx;
    const Y = (lat) => MAP_PAD + (mv.spanY / 2 - (lat - mv.cy)) * sx;

    // grid in degrees, labelled on the frame
    const gl = [];
    const lonSpan = mv.spanX / mv.kx;
    // About one longitude label per 64 px and one latitude label per 36 px.
    const stepLon = niceStep(lonSpan, Math.floor((MAP_W - MAP_PAD - MAP_PAD_L) / 64));
    const stepLat = niceStep(mv.spanY, Math.floor((MAP_H - MAP_PAD - MAP_PAD_B) / 36));
    const lonLo = mv.cx - lonSpan / 2, lonHi = mv.cx + lonSpan / 2;
    const latLo = mv.cy - mv.spanY / 2, latHi = mv.cy + mv.spanY / 2;
    const dec = (step) => Math.max(0, Math.min(6, -Math.floor(Math.log10(step) + 1e-9)));
    const bottom = MAP_H - MAP_PAD_B;
    gl.push(svg('rect', { class: 'frame', x: MAP_PAD_L, y: MAP_PAD, width: MAP_W - MAP_PAD - MAP_PAD_L, height: bottom - MAP_PAD }));
    for (let lon = Math.ceil(lonLo / stepLon) * stepLon; lon <= lonHi + 1e-12; lon += stepLon) {
      const x = X(lon);
      if (x < MAP_PAD_L + 1 || x > MAP_W - MAP_PAD - 1) continue;
      gl.push(svg('line', { class: 'gridline', x1: x, x2: x, y1: MAP_PAD, y2: bottom }));
      gl.push(svg('text', { class: 'axis', x, y: bottom + 14, 'text-anchor': 'middle', text: `${lon.toFixed(dec(stepLon))}° E`.replace(/^-(.*) E$/, '$1 W') }));
    }
    for (let lat = Math.ceil(latLo / stepLat) * stepLat; lat <= latHi + 1e-12; lat += stepLat) {
      const y = Y(lat);
      if (y < MAP_PAD + 1 || y > bottom - 1) continue;
      gl.push(svg('line', { class: 'gridline', x1: MAP_PAD_L, x2: MAP_W - MAP_PAD, y1: y, y2: y }));
      gl.push(svg('text', { class: 'axis', x: MAP_PAD_L - 5, y: y + 3, 'text-anchor': 'end', text: `${lat.toFixed(dec(stepLat))}° N`.replace(/^-(.*) N$/, '$1 S') }));
    }
    grid.replaceChildren(...gl);

    // scale bar: 1 degree of latitude is ~111.32 km
    const metresPerUnit = 111320;
    const widthMetres = mv.spanX * metresPerUnit;
    const target = widthMetres / 4;
    const p10 = Math.pow(10, Math.floor(Math.log10(target)));
    const m = target / p10;
    const barM = (m < 2 ? 1 : m < 5 ? 2 : 5) * p10;
    const barPx = barM / metresPerUnit * sx;
    // Above the frame, right-aligned: it never hides a node.
    const bx = MAP_W - MAP_PAD - barPx, by = MAP_PAD - 9;
    const sg = svg('g', { class: 'scale' });
    sg.append(
      svg('line', { x1: bx, x2: bx + barPx, y1: by, y2: by }),
      svg('line', { x1: bx, x2: bx, y1: by - 3, y2: by + 3 }),
      svg('line', { x1: bx + barPx, x2: bx + barPx, y1: by - 3, y2: by + 3 }),
      svg('text', { x: bx - 6, y: by + 3.5, 'text-anchor': 'end', text: barM >= 1000 ? `${barM / 1000} km` : `${barM} m` }),
    );
    scale.replaceChildren(sg);

    const tr = [];
    const pt = [];
    const labels = [];
    for (const n of sortedNodes()) {
      if (!n.trail.length) continue;
      const last = n.trail[n.trail.length - 1];
      if (n.trail.length > 1) {
        tr.push(svg('polyline', { class: 'trail', stroke: n.color, points: n.trail.map((p) => `${X(p.lon).toFixed(1)},${Y(p.lat).toFixed(1)}`).join(' ') }));
      }
      const x = X(last.lon), y = Y(last.lat);
      const c = svg('circle', { class: `pt${n.status !== 'active' ? ' inactive' : ''}`, cx: x.toFixed(1), cy: y.toFixed(1), r: 5.5, fill: n.color, 'data-node': n.key });
      c.append(svg('title', { text: `${n.key}  ${formatLatLon(last.lat, last.lon)}` }));
      pt.push(c);
      const text = n.gateway ? n.key : n.address;
      const wText = 7 * text.length;
      const right = x < MAP_W - MAP_PAD - wText - 10;
      const lx = right ? x + 9 : x - 9;
      labels.push({ text, x: lx, y: y + 4, y0: y + 4, x0: right ? lx : lx - wText, x1: right ? lx + wText : lx, anchor: right ? 'start' : 'end' });
    }
    // Labels that would overlap move apart vertically, nearest first.
    labels.sort((a, b) => a.y0 - b.y0);
    for (let i = 0; i < labels.length; i++) {
      for (let j = 0; j < i; j++) {
        const a = labels[j], b = labels[i];
        if (b.x0 < a.x1 && a.x0 < b.x1 && Math.abs(b.y - a.y) < 12) b.y = a.y + 12;
      }
    }
    const labelEls = labels.map((l) => svg('text', { class: 'label', x: l.x.toFixed(1), y: l.y.toFixed(1), 'text-anchor': l.anchor, text: l.text }));
    trails.replaceChildren(...tr);
    points.replaceChildren(...pt, ...labelEls);
  }

  // ---- cluster (cluster mode only) ------------------------------------------

  // One line under the agents' title: this switch, NATS, every switch of the
  // cluster with its agents, and which one holds the backend.
  function renderCluster() {
    const line = $('#cluster-detail');
    const c = state.cluster;
    if (!line) return;
    if (!c || !Array.isArray(c.switches)) { line.hidden = true; return; }
    const parts = c.switches.map((s) => {
      const who = s.me ? `${s.node} (this)` : s.node;
      const backend = s.has_backend ? ' · backend' : '';
      return `${who}: ${fmtNum(s.agents)} agent${s.agents === 1 ? '' : 's'}${backend}`;
    });
    const nats = c.connected ? 'NATS connected' : 'NATS disconnected';
    line.textContent = [`cluster of ${c.nodes} · ${nats}`, ...parts].join('\n');
    line.hidden = false;
  }

  // ---- agents table -------------------------------------------------------

  function renderAgents() {
    const b = state.backend;
    const detail = $('#backend-detail');
    if (b) {
      const parts = [b.connected ? 'backend connected' : 'backend disconnected'];
      if (typeof b.outbox_depth === 'number') parts.push(`outbox ${fmtNum(b.outbox_depth)}`);
      if (typeof b.pending_requests === 'number') parts.push(`${b.pending_requests} pending`);
      setText(detail, parts.join(' · '));
    } else {
      setText(detail, 'backend: unknown');
    }
    renderCluster();
    const body = $('#agents-body');
    const agents = [...state.agents.values()].sort((x, y) => String(x.agent_id).localeCompare(String(y.agent_id)));
    if (!agents.length) {
      body.replaceChildren(el('tr', { class: 'empty' }, el('td', { colspan: 5, text: state.agentsLoaded ? 'No agents connected' : 'Loading…' })));
      return;
    }
    const rows = agents.map((a) => {
      const alive = a.is_alive == null ? el('span', { class: 'no', text: '–' })
        : a.is_alive ? el('span', { class: 'yes', text: 'yes' }) : el('span', { class: 'no', text: 'no' });
      return el('tr', { 'data-agent': a.agent_id, 'data-status': a.status ?? '' },
        el('td', { class: 'mono', title: a.agent_id, text: a.agent_id }),
        el('td', { class: 'agent-status' }, el('span', { class: `badge ${statusClass(a.status)}`, text: a.status ?? 'unknown' })),
        el('td', { class: 'alive' }, alive),
        el('td', { class: 'num queued', text: a.queued == null ? '–' : fmtNum(a.queued) }),
        el('td', { class: 'num ping', text: a.last_ping_ms ? ago(a.last_ping_ms / 1000) : '–' }));
    });
    body.replaceChildren(...rows);
  }

  // ---- actors table -------------------------------------------------------

  function renderActors() {
    const body = $('#actors-body');
    const kinds = [...state.actors.kinds.values()].sort((a, b) => a.kind.localeCompare(b.kind));
    if (!kinds.length) {
      body.replaceChildren(el('tr', { class: 'empty' }, el('td', { colspan: 5, text: state.actors.ok === false ? '/metrics/actors unavailable' : 'Loading…' })));
      return;
    }
    const rows = kinds.map((k) => {
      const sp = svg('svg', { class: 'spark rate', id: `actor-spark-${domKey(k.kind)}`, width: 64, height: 20, viewBox: '0 0 64 20', 'aria-hidden': 'true' });
      sp.append(svg('path', { class: 'area' }), svg('polyline'), svg('circle', { r: 2, cx: -10, cy: -10 }));
      drawSpark(sp, k.rates, 0, null);
      return el('tr', { 'data-kind': k.kind },
        el('td', { text: k.kind, title: k.kind }),
        el('td', { class: 'num live', text: fmtNum(k.live ?? 0) }),
        el('td', { class: 'num mailbox', text: fmtNum(k.mailbox ?? 0) }),
        el('td', { class: 'num rate', text: fmtRate(k.rate) }),
        el('td', { class: 'trend' }, sp));
    });
    const live = kinds.reduce((s, k) => s + (k.live || 0), 0);
    setText($('#actors-note'), `${fmtNum(live)} actor${live === 1 ? '' : 's'} · polled every 2 s`);
    body.replaceChildren(...rows);
  }

  // ---- messages and log ---------------------------------------------------

  // Messages are only ever added at the top (or an unsent one removed), so
  // the list is patched in place: a new item's highlight is not restarted.
  function messageItem(m) {
    const n = state.nodes.get(m.key);
    const from = el('span', { class: 'from' });
    if (m.dir === 'out') from.append(`→ ${m.address}`);
    else {
      const who = m.gateway ? `${m.gateway}:${m.address}` : m.address;
      from.append(el('span', { class: 'swatch', style: `background:${n ? n.color : 'var(--idle)'}` }), el('span', { class: 'who', title: who, text: who }));
    }
    const body = m.text != null ? el('span', { class: 'txt', title: m.text, text: m.text })
      : el('span', { class: 'txt hex', title: m.hex, text: `0x${m.hex}` });
    return el('li', { class: `${m.dir} fresh`, 'data-node': m.key, 'data-dir': m.dir },
      el('span', { class: 't', text: clockTime(m.ts) }), from, body);
  }

  function renderMessages() {
    const list = $('#messages');
    if (!state.messages.length) { list.replaceChildren(el('li', { class: 'empty', text: 'No messages yet' })); return; }
    const empty = list.querySelector('li.empty');
    if (empty) empty.remove();
    state.messages.forEach((m, i) => {
      if (!m.li) m.li = messageItem(m);
      const at = list.children[i];
      if (at !== m.li) list.insertBefore(m.li, at || null);
    });
    while (list.children.length > state.messages.length) list.lastElementChild.remove();
  }

  function renderChips() {
    const box = $('#log-filters');
    if (!box.childNodes.length) {
      for (const g of LOG_GROUPS) {
        const b = el('button', { type: 'button', 'data-group': g.id, 'aria-pressed': g.on ? 'true' : 'false', title: g.kinds ? g.kinds.join(', ') : 'log, robots, lagged, monitor' },
          g.label, el('span', { class: 'n', text: '0' }));
        b.addEventListener('click', () => {
          g.on = !g.on;
          b.setAttribute('aria-pressed', g.on ? 'true' : 'false');
          mark('log');
        });
        box.append(b);
      }
    }
    for (const b of box.childNodes) {
      const n = state.logCounts[b.dataset.group] || 0;
      setText(b.querySelector('.n'), n > 9999 ? `${Math.floor(n / 1000)}k` : String(n));
    }
  }

  function renderLog() {
    renderChips();
    if (state.logPaused) return;
    const on = new Set(LOG_GROUPS.filter((g) => g.on).map((g) => g.id));
    const shown = [];
    for (const item of state.log) {
      if (!on.has(item.group)) continue;
      shown.push(item);
      if (shown.length >= LOG_MAX) break;
    }
    const list = $('#event-log');
    if (!shown.length) { list.replaceChildren(el('li', { class: 'empty', text: 'No events of the selected kinds yet' })); return; }
    list.replaceChildren(...shown.map((it) => el('li', { 'data-kind': it.kind, class: it.bad ? 'bad' : null },
      el('span', { class: 't', text: clockTime(it.ts) }),
      el('span', { class: `kind k-${it.kind}`, text: it.kind }),
      el('span', { class: 'txt', title: it.text, text: it.text }))));
  }

  // ---- start --------------------------------------------------------------

  function start() {
    setupForm();
    const pause = $('#log-pause');
    pause.addEventListener('click', () => {
      state.logPaused = !state.logPaused;
      pause.setAttribute('aria-pressed', state.logPaused ? 'true' : 'false');
      pause.textContent = state.logPaused ? 'Resume' : 'Pause';
      mark('log');
    });
    renderChips();
    const wrap = $('.map-wrap');
    const fit = () => {
      const w = Math.max(200, Math.round(wrap.clientWidth));
      const h = Math.max(180, Math.round(wrap.clientHeight));
      if (w === MAP_W && h === MAP_H) return;
      MAP_W = w; MAP_H = h;
      $('#map').setAttribute('viewBox', `0 0 ${w} ${h}`);
      mapView = null; // refit to the new shape
      mark('map');
    };
    if (window.ResizeObserver) new ResizeObserver(fit).observe(wrap);
    fit();
    mark('pills', 'nodes', 'agents', 'actors', 'messages', 'log', 'kpi');
    connectMonitor();
    pollAgents();
    pollActors();
    pollMqtt();
    setInterval(tickAgo, 1000);
    tickAgo();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
