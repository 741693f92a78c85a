// Switchboard console: plain JavaScript, no dependencies. Everything the
// page shows from the server is put in the DOM as text, never as HTML.
'use strict';

const $ = (id) => document.getElementById(id);
const PROTOCOLS = ['megaphone', 'pipe', 'middleman', 'relay'];
const state = { token: sessionStorage.getItem('sb-console-token') || '', self: '', timers: [] };

// ---------- helpers ----------

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function fmtBytes(n) {
  if (!Number.isFinite(n)) return '?';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : String(n)) + ' ' + u[i];
}

function fmtDuration(ms) {
  let s = Math.max(0, Math.floor(ms / 1000));
  const d = Math.floor(s / 86400); s %= 86400;
  const h = Math.floor(s / 3600); s %= 3600;
  const m = Math.floor(s / 60); s %= 60;
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${m}m`;
  if (m) return `${m}m ${s}s`;
  return `${s}s`;
}

function fmtRate(x) { return x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2); }

function setStatus(node, text, bad) {
  node.textContent = text;
  node.classList.toggle('bad', !!bad);
}

// errorText reads a {"code","message"} error body, or falls back to the status.
async function errorText(res) {
  try {
    const j = await res.json();
    if (j && j.message) return `${res.status} ${j.code || ''}: ${j.message}`;
  } catch (_) { /* not JSON */ }
  return `${res.status} ${res.statusText}`;
}

function fillTable(table, rows, cols, emptyText) {
  const body = table.tBodies[0];
  body.replaceChildren();
  if (!rows.length) {
    body.append(el('tr', {}, el('td', { class: 'empty', colspan: String(cols) }, emptyText)));
    return;
  }
  for (const r of rows) body.append(r);
}

function cell(v, num) { return el('td', num ? { class: 'num' } : {}, v); }

// ---------- admin API ----------

class AuthError extends Error {}

async function api(path) {
  const headers = {};
  if (state.token) headers.Authorization = 'Bearer ' + state.token;
  const res = await fetch('/admin/api/' + path, { headers, cache: 'no-store' });
  if (res.status === 401 || res.status === 403) throw new AuthError(await errorText(res));
  if (!res.ok) throw new Error(await errorText(res));
  return res.json();
}

function showLogin(msg) {
  $('login').hidden = false;
  if (msg) $('login-msg').textContent = msg;
  if (!$('login-form').hidden) $('token').focus();
}

async function start() {
  let info;
  try {
    info = await api('auth');
  } catch (e) {
    setStatus($('conn'), 'cannot reach the gateway: ' + e.message, true);
    return;
  }
  if (!info.authorized) {
    setStatus($('conn'), 'not signed in', true);
    if (info.off) {
      $('login-form').hidden = true;
      showLogin('The console is off for clients on other hosts because no token is configured: set ui.token (or megaphone.admin_token), or open it on the gateway\'s own host.');
    } else {
      showLogin(state.token ? 'That token was not accepted. Try again.' : null);
    }
    return;
  }
  $('login').hidden = true;
  state.self = info.self;
  $('channels-card').hidden = !info.channels;
  for (const t of state.timers) clearInterval(t);
  state.timers = [];
  const every = (fn, ms) => { fn(); state.timers.push(setInterval(fn, ms)); };
  every(refreshCluster, 2000);
  every(refreshTraffic, 2000);
  every(refreshNATS, 5000);
  every(refreshRelay, 5000);
  if (info.channels) every(refreshChannels, 5000);
}

$('login-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  state.token = $('token').value.trim();
  sessionStorage.setItem('sb-console-token', state.token);
  $('token').value = '';
  start();
});

async function guarded(fn) {
  try {
    await fn();
  } catch (e) {
    setStatus($('conn'), e instanceof AuthError ? 'signed out: ' + e.message : 'update failed: ' + e.message, true);
    if (e instanceof AuthError) { for (const t of state.timers) clearInterval(t); state.timers = []; showLogin(); }
  }
}

// ---------- overview ----------

function refreshCluster() {
  return guarded(async () => {
    const c = await api('cluster');
    const rows = c.gateways.map((g) => {
      const tr = el('tr', g.id === c.self ? { class: 'self' } : {},
        el('td', { title: g.id }, g.id.slice(-8)), cell(g.version), cell(fmtDuration(c.now - g.started)), cell(g.listen),
        cell(g.nats || 'disconnected'), cell(g.polls, true), cell(g.pipesWaiting, true), cell(g.pipesTransferring, true),
        cell(g.mmConnections, true), cell(g.relayInFlight, true));
      tr.dataset.listen = g.listen;
      return tr;
    });
    fillTable($('cluster'), rows, 10, 'no gateway heard from yet');
    $('cluster-count').textContent = `(${c.gateways.length} gateway${c.gateways.length === 1 ? '' : 's'})`;
    setStatus($('conn'), `gateway …${c.self.slice(-8)} · updated ${new Date().toLocaleTimeString()}`);
  });
}

function refreshNATS() {
  return guarded(async () => {
    const n = await api('nats');
    const kv = $('nats-kv');
    kv.replaceChildren();
    const add = (k, v) => kv.append(el('dt', {}, k), el('dd', {}, v));
    add('State', n.status);
    add('Server', n.server ? `${n.serverName || ''} ${n.server}`.trim() : '—');
    add('Version', n.serverVersion || '—');
    if (n.cluster) add('Cluster', n.cluster);
    add('RTT', n.rttMicros ? (n.rttMicros / 1000).toFixed(2) + ' ms' : '—');
    add('Reconnects', n.reconnects);
    if (n.streamsError) add('Streams', n.streamsError);
    const rows = n.streams.map((s) => el('tr', {},
      cell((s.bucket ? 'bucket ' : 'stream ') + s.name), cell(s.messages, true), cell(fmtBytes(s.bytes), true),
      cell(s.replicas, true), cell(s.leader || '—')));
    fillTable($('streams'), rows, 5, 'none yet');
  });
}

function refreshRelay() {
  return guarded(async () => {
    const r = await api('relay');
    const rows = [];
    for (const u of r.upstreams) {
      u.agents.forEach((a, i) => {
        const tr = el('tr', {}, i === 0 ? el('th', { scope: 'row', rowspan: String(u.agents.length) }, `${u.name} (${u.agents.length})`) : '',
          el('td', { title: a.id }, a.id.slice(-8)), cell(a.version), cell(a.requests, true), cell(a.errors, true), cell(a.inFlight, true));
        if (i !== 0) tr.firstChild.remove();
        tr.dataset.upstream = u.name;
        rows.push(tr);
      });
    }
    fillTable($('relay'), rows, 6, 'no agent connected');
  });
}

function refreshChannels() {
  return guarded(async () => {
    const c = await api('channels');
    $('channels-count').textContent = `(${c.count})`;
    const rows = c.channels.map((ch) => el('tr', {}, cell(ch.consumerAddress), cell(ch.buffered, true)));
    fillTable($('channels'), rows, 2, 'no live channel');
  });
}

const SVG = 'http://www.w3.org/2000/svg';

function chart(name, at, series) {
  const w = 300, h = 90, pad = 4;
  const peak = Math.max(0.1, ...series.req, ...series.err);
  const t0 = at.length ? at[0] : 0, t1 = at.length ? at[at.length - 1] : 1;
  const x = (t) => pad + (t1 > t0 ? (t - t0) / (t1 - t0) : 1) * (w - 2 * pad);
  const y = (v) => h - pad - (v / peak) * (h - 2 * pad);
  const line = (vals, cls) => {
    const p = document.createElementNS(SVG, 'polyline');
    p.setAttribute('class', cls);
    p.setAttribute('points', vals.map((v, i) => `${x(at[i]).toFixed(1)},${y(v).toFixed(1)}`).join(' '));
    return p;
  };
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('viewBox', `0 0 ${w} ${h}`);
  svg.setAttribute('preserveAspectRatio', 'none');
  svg.setAttribute('role', 'img');
  const last = (a) => (a.length ? a[a.length - 1] : 0);
  svg.setAttribute('aria-label', `${name}: ${fmtRate(last(series.req))} requests/s, ${fmtRate(last(series.err))} errors/s now, peak ${fmtRate(peak)}`);
  svg.append(line(series.req, 'req'), line(series.err, 'err'));
  return el('div', { class: 'chart' }, el('h4', {}, name), svg,
    el('div', { class: 'legend' }, el('span', { class: 'r' }, `● ${fmtRate(last(series.req))} req/s`), '  ',
      el('span', { class: 'e' }, `● ${fmtRate(last(series.err))} err/s`), `  · peak ${fmtRate(peak)}`));
}

function refreshTraffic() {
  return guarded(async () => {
    const t = await api('traffic');
    $('charts').replaceChildren(...PROTOCOLS.map((p) => chart(p, t.at, t.series[p] || { req: [], err: [] })));
  });
}

// ---------- navigation ----------

function route() {
  const page = (location.hash || '#overview').slice(1);
  const known = ['overview', 'pipes', 'megaphone', 'middleman'];
  const current = known.includes(page) ? page : 'overview';
  for (const p of known) {
    $(p).hidden = p !== current;
    const a = $('nav-' + p);
    if (p === current) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
}
window.addEventListener('hashchange', route);

// ---------- pipes ----------

function pipeURL(ns, name) {
  return '/channels/' + encodeURIComponent(ns) + '/' + encodeURIComponent(name);
}

// contentDisposition names the file in ASCII and in UTF-8 (RFC 6266).
function contentDisposition(name) {
  const ascii = name.replace(/[^\x20-\x7e]/g, '_').replace(/["\\]/g, '_');
  return `attachment; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(name)}`;
}

function fileNameFrom(header) {
  if (!header) return '';
  const star = /filename\*\s*=\s*UTF-8''([^;]+)/i.exec(header);
  if (star) { try { return decodeURIComponent(star[1].trim()); } catch (_) { /* fall through */ } }
  const plain = /filename\s*=\s*"([^"]*)"|filename\s*=\s*([^;]+)/i.exec(header);
  const name = plain ? (plain[1] !== undefined ? plain[1] : plain[2].trim()) : '';
  return name.replace(/[\\/]/g, '_');
}

function updateDirect() {
  $('pr-direct').href = pipeURL($('pr-ns').value, $('pr-name').value);
}
$('pr-ns').addEventListener('input', updateDirect);
$('pr-name').addEventListener('input', updateDirect);

let chosenFile = null;

function chooseFile(f) {
  chosenFile = f || null;
  $('ps-file-label').textContent = f ? `File: ${f.name} (${fmtBytes(f.size)})` : 'Drop a file here, or choose one:';
}

$('ps-file').addEventListener('change', () => chooseFile($('ps-file').files[0]));
const drop = $('ps-drop');
drop.addEventListener('dragover', (ev) => { ev.preventDefault(); drop.classList.add('over'); });
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', (ev) => {
  ev.preventDefault();
  drop.classList.remove('over');
  if (ev.dataTransfer.files.length) chooseFile(ev.dataTransfer.files[0]);
});
drop.addEventListener('keydown', (ev) => {
  if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); $('ps-file').click(); }
});

$('pipe-send').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const status = $('ps-status'), bar = $('ps-progress'), btn = $('ps-go');
  const file = chosenFile;
  const body = file || new Blob([$('ps-text').value], { type: 'text/plain; charset=utf-8' });
  const xhr = new XMLHttpRequest();
  xhr.open('POST', pipeURL($('ps-ns').value, $('ps-name').value));
  if (file) {
    xhr.setRequestHeader('Content-Type', file.type || 'application/octet-stream');
    xhr.setRequestHeader('Content-Disposition', contentDisposition(file.name));
  } else {
    xhr.setRequestHeader('Content-Type', 'text/plain; charset=utf-8');
  }
  bar.value = 0; bar.max = 1;
  btn.disabled = true;
  setStatus(status, 'waiting for a receiver…');
  xhr.upload.addEventListener('progress', (e) => {
    if (e.lengthComputable && e.total > 0) {
      bar.max = e.total; bar.value = e.loaded;
      setStatus(status, `sending ${fmtBytes(e.loaded)} of ${fmtBytes(e.total)}…`);
    }
  });
  xhr.addEventListener('load', () => {
    btn.disabled = false;
    if (xhr.status === 200) {
      bar.max = 1; bar.value = 1;
      setStatus(status, `sent ${file ? file.name + ' (' + fmtBytes(file.size) + ')' : 'text (' + fmtBytes(body.size) + ')'}: the receiver got it all`);
    } else {
      let msg = `${xhr.status}`;
      try { const j = JSON.parse(xhr.responseText); msg += ` ${j.code}: ${j.message}`; } catch (_) { /* keep status */ }
      setStatus(status, 'send failed: ' + msg, true);
    }
  });
  xhr.addEventListener('error', () => { btn.disabled = false; setStatus(status, 'send failed: network error', true); });
  xhr.send(body);
});

$('pipe-recv').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const status = $('pr-status'), bar = $('pr-progress'), btn = $('pr-go'), link = $('pr-link'), text = $('pr-text');
  const ns = $('pr-ns').value, name = $('pr-name').value;
  updateDirect();
  btn.disabled = true;
  link.hidden = true; text.hidden = true;
  bar.value = 0; bar.max = 1;
  setStatus(status, 'waiting for a sender…');
  try {
    const res = await fetch(pipeURL(ns, name), { cache: 'no-store' });
    if (!res.ok) throw new Error(await errorText(res));
    const total = Number(res.headers.get('Content-Length')) || 0;
    const type = res.headers.get('Content-Type') || 'application/octet-stream';
    const fileName = fileNameFrom(res.headers.get('Content-Disposition')) || `${name}.${type.startsWith('text/') ? 'txt' : 'bin'}`;
    const reader = res.body.getReader();
    const chunks = [];
    let got = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      got += value.length;
      if (total) { bar.max = total; bar.value = got; }
      setStatus(status, `receiving ${fmtBytes(got)}${total ? ' of ' + fmtBytes(total) : ''}…`);
    }
    bar.max = 1; bar.value = 1;
    const blob = new Blob(chunks, { type });
    if (link.href) URL.revokeObjectURL(link.href);
    link.href = URL.createObjectURL(blob);
    link.download = fileName;
    link.textContent = `Save ${fileName} (${fmtBytes(got)})`;
    link.hidden = false;
    if (type.startsWith('text/') && got <= 65536) {
      text.textContent = await blob.text();
      text.hidden = false;
    } else {
      link.click();
    }
    setStatus(status, `received ${fileName} (${fmtBytes(got)}, ${type})`);
  } catch (e) {
    setStatus(status, 'receive failed: ' + e.message, true);
  } finally {
    btn.disabled = false;
  }
});

// ---------- Megaphone ----------

let tail = null;

$('mp-create').addEventListener('click', async () => {
  const status = $('mp-status');
  try {
    const res = await fetch('/create', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}' });
    if (!res.ok) throw new Error(await errorText(res));
    const c = await res.json();
    $('mp-consumer').value = c.consumerAddress;
    $('mp-producer').value = c.producerAddress;
    setStatus(status, 'channel created; tailing it');
    startTail();
  } catch (e) {
    setStatus(status, 'create failed: ' + e.message, true);
  }
});

$('mp-write').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const status = $('mp-status');
  const producer = $('mp-producer').value.trim();
  if (!producer) { setStatus(status, 'create a channel (or paste a producer address) first', true); return; }
  const raw = $('mp-body').value;
  try { JSON.parse(raw); } catch (e) { setStatus(status, 'the body is not JSON: ' + e.message, true); return; }
  try {
    const res = await fetch('/write/' + encodeURIComponent(producer) + '/' + encodeURIComponent($('mp-sid').value || 'console'), {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: raw,
    });
    if (!res.ok) throw new Error(await errorText(res));
    setStatus(status, `event written at ${new Date().toLocaleTimeString()}`);
  } catch (e) {
    setStatus(status, 'write failed: ' + e.message, true);
  }
});

function stopTail() {
  if (tail) { tail.close(); tail = null; }
  $('mp-tail-state').textContent = '(stopped)';
}

function startTail() {
  const consumer = $('mp-consumer').value.trim();
  if (!consumer) { setStatus($('mp-status'), 'create a channel or paste a consumer address first', true); return; }
  stopTail();
  $('mp-events').replaceChildren();
  const es = new EventSource('/read/' + encodeURIComponent(consumer));
  tail = es;
  $('mp-tail-state').textContent = '(connecting)';
  es.addEventListener('open', () => { if (tail === es) $('mp-tail-state').textContent = '(live)'; });
  es.addEventListener('message', (m) => {
    let line = m.data;
    try {
      const e = JSON.parse(m.data);
      line = `${e.ts}  ${e.sid}  ${JSON.stringify(e.body)}`;
    } catch (_) { /* show raw */ }
    $('mp-events').append(el('li', {}, line));
  });
  es.addEventListener('error', () => {
    if (tail !== es) return;
    // A poll ends after megaphone.poll_duration; EventSource reconnects
    // with Last-Event-ID and resumes. CLOSED means it gave up (channel gone,
    // or another reader).
    $('mp-tail-state').textContent = es.readyState === EventSource.CLOSED ? '(ended: channel gone or read elsewhere)' : '(reconnecting)';
    if (es.readyState === EventSource.CLOSED) tail = null;
  });
}

$('mp-tail').addEventListener('click', startTail);
$('mp-stop').addEventListener('click', stopTail);

// ---------- middleman ----------

let ws = null;

function mmLog(text, cls) {
  const log = $('mm-log');
  log.append(el('li', cls ? { class: cls } : {}, text));
  while (log.children.length > 500) log.firstChild.remove();
  log.scrollTop = log.scrollHeight;
}

// frame builds one middleman frame: command line, headers, blank line,
// dot-stuffed body with CRLF line ends, terminator.
function frame(cmd, key, headers, body) {
  const lines = body.replace(/\r\n/g, '\n').split('\n').map((l) => (l.startsWith('.') ? '.' + l : l));
  const hdr = headers.split('\n').map((l) => l.trim()).filter((l) => l.includes(':'));
  return `${cmd} ${key}\r\n` + hdr.map((h) => h + '\r\n').join('') + '\r\n' + lines.join('\r\n') + '\r\n.\r\n';
}

// readable turns a received frame into display text: CRLF to LF, the
// body unstuffed, the terminator dropped.
function readable(data) {
  const lines = String(data).replace(/\r\n/g, '\n').split('\n');
  if (lines.length && lines[lines.length - 1] === '') lines.pop();
  if (lines.length && lines[lines.length - 1] === '.') lines.pop();
  const blank = lines.indexOf('');
  return lines.map((l, i) => (i > blank && blank >= 0 && l.startsWith('..') ? l.slice(1) : l)).join('\n');
}

function mmConnected(on) {
  $('mm-go').disabled = on;
  $('mm-close').disabled = !on;
  $('mm-send-go').disabled = !on;
}
mmConnected(false);

$('mm-connect').addEventListener('submit', (ev) => {
  ev.preventDefault();
  if (ws) return;
  const key = $('mm-key').value;
  const sock = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/mm');
  ws = sock;
  let greeting = 0;
  setStatus($('mm-status'), 'connecting…');
  sock.addEventListener('open', () => sock.send(key));
  sock.addEventListener('message', (m) => {
    if (greeting === 0) {
      greeting++;
      if (m.data !== 'MM OK') mmLog(String(m.data), 'err');
      return;
    }
    if (greeting === 1) {
      greeting++;
      setStatus($('mm-status'), `connected as ${m.data}`);
      mmLog(`connected, cid ${m.data}`, 'out');
      mmConnected(true);
      return;
    }
    mmLog(readable(m.data));
  });
  sock.addEventListener('close', (e) => {
    if (ws === sock) ws = null;
    mmConnected(false);
    setStatus($('mm-status'), `closed (${e.code}${e.reason ? ': ' + e.reason : ''})`, e.code !== 1000 && e.code !== 1005);
  });
});

$('mm-close').addEventListener('click', () => { if (ws) ws.close(1000); });

$('mm-send').addEventListener('submit', (ev) => {
  ev.preventDefault();
  if (!ws || ws.readyState !== WebSocket.OPEN) { setStatus($('mm-status'), 'connect first', true); return; }
  const f = frame($('mm-cmd').value, $('mm-topic').value, $('mm-headers').value, $('mm-body').value);
  ws.send(f);
  mmLog('→ ' + readable(f), 'out');
});

$('mm-clear').addEventListener('click', () => $('mm-log').replaceChildren());

// ---------- go ----------

route();
updateDirect();
start();
