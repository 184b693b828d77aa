// The worker-statistics demo task page: speaks switchyard's agent router
// protocol (PROTOCOL.md section 1) the way `mephisto-task` does, and the
// live-update messages of seed 004 with examples/worker_stats_backend.rs.
//
//   alive                       once per connection, for this page's agent id
//   heartbeat                   every 3 s; the reply carries the agent status
//                               and `last_mephisto_ping` (ms since the epoch)
//   mephisto_bound_live_update  get_worker_stats, set_cad, set_permutation,
//                               set_feedback (seed 004)
//   client_bound_live_update    set_worker_stats -> the stats panel
//   update_status               the agent status
//
// The agent id comes from `?agent_id=` in the URL, else a random one (then
// written into the URL, so a reload keeps it).
'use strict';

(() => {
  // The mephisto-task version whose protocol this page speaks (sent with the
  // task config request, as mephisto-task does).
  const MEPHISTO_TASK_VERSION = '2.0.4';
  const HEARTBEAT_MS = 3000;
  const BACKOFF_MIN_MS = 500;
  const BACKOFF_MAX_MS = 10000;
  const LOG_LIMIT = 50;

  const $ = (id) => document.getElementById(id);

  // ---- agent id ----------------------------------------------------------
  function randomAgentId() {
    const bytes = new Uint8Array(4);
    crypto.getRandomValues(bytes);
    return 'demo-' + Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  }
  const params = new URLSearchParams(location.search);
  let agentId = (params.get('agent_id') || '').trim();
  if (!agentId) {
    agentId = randomAgentId();
    params.set('agent_id', agentId);
    history.replaceState(null, '', `${location.pathname}?${params}${location.hash}`);
  }
  $('agent-id').textContent = agentId;

  // ---- activity log --------------------------------------------------------
  const clock = (d = new Date()) => d.toLocaleTimeString([], { hour12: false });
  function log(text, kind = 'info') {
    const li = document.createElement('li');
    li.dataset.kind = kind;
    const time = document.createElement('time');
    time.textContent = clock();
    li.append(time, document.createTextNode(text));
    const list = $('log');
    list.prepend(li);
    while (list.children.length > LOG_LIMIT) list.lastElementChild.remove();
  }

  // ---- the socket ----------------------------------------------------------
  const wsUrl = (location.protocol === 'https:' ? 'wss' : 'ws') + '://' + location.host + '/';
  let ws = null;
  let heartbeatTimer = null;
  let retryTimer = null;
  let backoff = BACKOFF_MIN_MS;
  let heartbeatSentAt = 0;

  function setConn(state, label) {
    const el = $('conn-state');
    el.dataset.state = state;
    el.querySelector('.label').textContent = label;
    const open = state === 'open';
    for (const b of document.querySelectorAll('button')) b.disabled = !open;
  }

  function sendPacket(packetType, data) {
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    ws.send(JSON.stringify({
      packet_type: packetType,
      subject_id: agentId,
      data,
      client_timestamp: Date.now() / 1000,
    }));
    return true;
  }

  const sendLiveUpdate = (message) => sendPacket('mephisto_bound_live_update', message);

  function sendHeartbeat() {
    if (sendPacket('heartbeat', {})) heartbeatSentAt = performance.now();
  }

  function connect() {
    retryTimer = null;
    setConn('connecting', 'connecting…');
    const socket = new WebSocket(wsUrl);
    ws = socket;
    socket.onopen = () => {
      backoff = BACKOFF_MIN_MS;
      setConn('open', 'connected');
      log('connected to the switch');
      sendPacket('alive', {});
      sendHeartbeat();
      heartbeatTimer = setInterval(sendHeartbeat, HEARTBEAT_MS);
      requestStats();
    };
    socket.onmessage = (ev) => {
      let packet;
      try {
        packet = JSON.parse(ev.data);
      } catch {
        log('the switch sent a frame that is not JSON', 'error');
        return;
      }
      handlePacket(packet);
    };
    socket.onclose = (ev) => {
      if (ws !== socket) return;
      ws = null;
      clearInterval(heartbeatTimer);
      heartbeatTimer = null;
      const delay = backoff;
      backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
      setConn('closed', `disconnected · retrying in ${Math.round(delay / 100) / 10} s`);
      log(`connection closed (${ev.code}${ev.reason ? ': ' + ev.reason : ''}); retrying in ${delay} ms`, 'warn');
      retryTimer = setTimeout(connect, delay);
    };
    socket.onerror = () => { /* a close event follows */ };
  }

  // ---- incoming packets ----------------------------------------------------
  function setStatus(status) {
    if (typeof status !== 'string') return;
    const el = $('agent-status');
    if (el.textContent !== status) {
      el.textContent = status;
      el.dataset.status = status;
    }
  }

  let lastPingMs = 0;
  function renderPing() {
    const el = $('last-ping');
    el.dataset.ms = String(lastPingMs);
    if (!lastPingMs) {
      el.textContent = 'never';
      el.removeAttribute('title');
      return;
    }
    const ago = Math.max(0, Math.round((Date.now() - lastPingMs) / 1000));
    el.textContent = ago === 0 ? 'just now' : `${ago} s ago`;
    el.title = new Date(lastPingMs).toLocaleString();
  }
  setInterval(renderPing, 1000);

  function handlePacket(p) {
    if (p && typeof p.error === 'string') {
      log(`switch error (${p.kind || 'unknown'}): ${p.error}`, 'error');
      return;
    }
    const data = (p && p.data) || {};
    switch (p && p.packet_type) {
      case 'update_status':
        setStatus(data.status);
        log(`status: ${data.status}`);
        break;
      case 'heartbeat':
        if (heartbeatSentAt) {
          $('heartbeat-rtt').textContent = `${Math.round(performance.now() - heartbeatSentAt)} ms round trip`;
        }
        if (typeof data.last_mephisto_ping === 'number') lastPingMs = data.last_mephisto_ping;
        renderPing();
        setStatus(data.status);
        break;
      case 'client_bound_live_update':
        handleLiveUpdate(data);
        break;
      default:
        break; // nothing else is meant for an agent page
    }
  }

  // ---- statistics ------------------------------------------------------------
  const STAT_FIELDS = { num_cads: 'num-cads', num_rankings: 'num-rankings', num_first_place: 'num-first-place' };

  function handleLiveUpdate(msg) {
    if (msg.message !== 'set_worker_stats' || typeof msg.stats !== 'object' || msg.stats === null) {
      log(`live update ignored: ${JSON.stringify(msg).slice(0, 120)}`);
      return;
    }
    for (const [key, id] of Object.entries(STAT_FIELDS)) {
      const el = $(id);
      const value = msg.stats[key] === undefined ? '–' : String(msg.stats[key]);
      if (el.textContent !== value) {
        el.textContent = value;
        el.classList.remove('flash');
        void el.offsetWidth; // restart the animation
        el.classList.add('flash');
      }
    }
    const panel = $('stats');
    panel.dataset.updates = String(Number(panel.dataset.updates) + 1);
    $('stats-updated').textContent = `updated ${clock()}`;
    for (const note of document.querySelectorAll('.note[data-pending]')) {
      delete note.dataset.pending;
      note.textContent += ' · stats updated';
    }
  }

  function requestStats() {
    if (sendLiveUpdate({ message: 'get_worker_stats' })) $('stats-updated').textContent = 'asking the backend…';
  }

  // ---- the forms -----------------------------------------------------------
  function wireForm(formId, inputId, noteId, build, describe) {
    const form = $(formId);
    const input = $(inputId);
    const note = $(noteId);
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const value = input.value.trim();
      if (!value) {
        note.textContent = 'Please enter something first.';
        note.dataset.kind = 'error';
        input.focus();
        return;
      }
      if (!sendLiveUpdate(build(value))) {
        note.textContent = 'Not connected; try again when the indicator is green.';
        note.dataset.kind = 'error';
        return;
      }
      log(describe(value));
      input.value = '';
      note.dataset.kind = 'ok';
      note.dataset.pending = '';
      note.textContent = `Sent ${clock()}`;
    });
  }

  wireForm('cad-form', 'cad-input', 'cad-note',
    (cad) => ({ message: 'set_cad', cad }),
    (cad) => `CAD sent (${cad.length} characters)`);
  wireForm('ranking-form', 'ranking-input', 'ranking-note',
    (permutation) => ({ message: 'set_permutation', permutation }),
    (permutation) => `ranking sent: ${permutation}`);
  wireForm('feedback-form', 'feedback-input', 'feedback-note',
    (feedback) => ({ message: 'set_feedback', feedback }),
    (feedback) => `feedback sent (${feedback.length} characters)`);
  $('refresh-stats').addEventListener('click', requestStats);
  // Ctrl/Cmd+Enter sends the feedback textarea.
  $('feedback-input').addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && (ev.ctrlKey || ev.metaKey)) $('feedback-form').requestSubmit();
  });

  // ---- task config -----------------------------------------------------------
  fetch(`/task_config.json?mephisto_task_version=${encodeURIComponent(MEPHISTO_TASK_VERSION)}`)
    .then((r) => (r.ok ? r.json() : null))
    .then((cfg) => {
      if (!cfg) return;
      if (typeof cfg.task_title === 'string' && cfg.task_title) {
        $('task-title').textContent = cfg.task_title;
        document.title = cfg.task_title;
      }
      if (typeof cfg.task_description === 'string') $('task-description').textContent = cfg.task_description;
    })
    .catch(() => { /* the built-in title stays */ });

  // Reconnect at once when the tab comes back and a retry is pending.
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible' && retryTimer !== null) {
      clearTimeout(retryTimer);
      connect();
    }
  });

  connect();
})();
