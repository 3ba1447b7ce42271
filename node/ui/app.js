// The cluster page (issue 17): polls /v1/cluster, where the serving node
// gathers every member's /status, and /v1/config/history, and draws them.
// Every string from the cluster goes in as text, never as HTML.
'use strict';

const REFRESH_MS = 1500;
const POINTS = 60; // chart points kept per node
const series = new Map(); // node name -> {rps: [], err: [], p99: []}
let historyVersion = -1; // the config version the history was read at
let configDocs = [];

function $(id) { return document.getElementById(id); }

// el makes an element with attributes (class, data-*, ...) and children
// (strings become text nodes).
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(c === undefined || c === null ? '' : String(c)));
  return e;
}

function fill(tbody, rows) { tbody.replaceChildren(...rows); }

function duration(sec) {
  if (sec === undefined || sec === null || !isFinite(sec)) return '–';
  sec = Math.max(0, Math.floor(sec));
  const d = Math.floor(sec / 86400), h = Math.floor(sec % 86400 / 3600), m = Math.floor(sec % 3600 / 60), s = sec % 60;
  if (d) return d + 'd ' + h + 'h';
  if (h) return h + 'h ' + m + 'm';
  if (m) return m + 'm ' + s + 's';
  return s + 's';
}

function pct(x) { return x === undefined || x === null ? '–' : (100 * x).toFixed(x < 0.1 ? 1 : 0) + '%'; }

async function getJSON(path) {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), 5000);
  try {
    const resp = await fetch(path, { signal: ctl.signal, cache: 'no-store' });
    if (!resp.ok) return { ok: false, status: resp.status };
    return { ok: true, body: await resp.json() };
  } catch (e) {
    return { ok: false, status: 0 };
  } finally {
    clearTimeout(timer);
  }
}

function selfOf(view) { return view.members.find(m => m.self) || view.members[0]; }

function renderHeader(view, ok) {
  const conn = $('conn');
  conn.textContent = ok ? 'live' : 'unreachable';
  conn.className = 'badge ' + (ok ? 'ok' : 'bad');
  if (!ok) return;
  $('served-by').textContent = view.node;
  $('updated').textContent = 'updated ' + new Date(view.time).toLocaleTimeString();
}

function memberClass(m) {
  if (m.state === 'dead' || m.state === 'left') return 'bad';
  if (m.state === 'suspect' || (m.status && !m.status.node.ready) || m.meta.state === 'draining') return 'warn';
  return '';
}

function renderMembers(view) {
  fill($('members').tBodies[0], view.members.map(m => {
    const st = m.status;
    const stateCls = m.state === 'alive' ? 'ok' : (m.state === 'suspect' ? 'warn' : 'bad');
    const age = st ? duration(st.node.uptime_seconds) : (m.last_change ? m.state + ' for ' + duration((Date.now() - Date.parse(m.last_change)) / 1000) : '–');
    const note = st ? (st.node.not_ready || '') : (m.error || '');
    return el('tr', { 'data-member': m.name, 'data-state': m.state, class: memberClass(m) },
      el('td', {}, m.name + (m.self ? ' (this node)' : '')),
      el('td', {}, el('span', { class: 'badge ' + stateCls }, m.state), m.state === 'alive' && m.meta.state ? ' ' + m.meta.state : ''),
      el('td', {}, m.meta.zone || '–'),
      el('td', {}, (st && st.node.version) || m.meta.version || '–'),
      el('td', {}, age),
      el('td', { class: 'num' }, pct(m.ring_share)),
      el('td', {}, st ? (st.node.ready ? 'yes' : 'no') : '–'),
      el('td', { class: 'muted' }, note));
  }));
}

function renderRaft(view) {
  const rows = view.members.filter(m => m.status && m.status.raft);
  $('raft').hidden = rows.length === 0;
  if (rows.length === 0) return;
  const maxApplied = Math.max(...rows.map(m => m.status.raft.applied_index));
  const maxConfig = Math.max(...rows.map(m => (m.status.config && m.status.config.version) || 0));
  const leaders = new Set(rows.map(m => m.status.raft.leader_id).filter(Boolean));
  const terms = rows.map(m => m.status.raft.term);
  $('raft-summary').textContent = leaders.size === 1
    ? 'leader ' + [...leaders][0] + ', term ' + Math.max(...terms)
    : (leaders.size === 0 ? 'no leader' : 'nodes disagree on the leader: ' + [...leaders].join(', '));
  $('raft-summary').className = leaders.size === 1 ? '' : 'bad-text';
  fill($('raft').tBodies[0], rows.map(m => {
    const r = m.status.raft, cv = (m.status.config && m.status.config.version) || 0;
    const behind = r.applied_index < maxApplied || cv < maxConfig;
    const cls = [r.state === 'Leader' ? 'leader' : '', behind ? 'behind' : ''].join(' ').trim();
    return el('tr', { 'data-raft': m.name, class: cls },
      el('td', {}, m.name),
      el('td', {}, r.state),
      el('td', {}, r.leader_id || '–'),
      el('td', { class: 'num' }, r.term),
      el('td', { class: 'num' }, r.applied_index + (r.applied_index < maxApplied ? ' (behind ' + (maxApplied - r.applied_index) + ')' : '')),
      el('td', { class: 'num' }, r.commit_index),
      el('td', { class: 'num' }, cv + (cv < maxConfig ? ' (behind)' : '')));
  }));
}

async function renderConfig(view) {
  const self = selfOf(view);
  const cfg = self && self.status && self.status.config;
  $('config-version').textContent = cfg ? cfg.version : '–';
  $('config-hash').textContent = cfg ? cfg.hash : '';
  $('config-error').textContent = cfg && cfg.error ? 'last apply failed: ' + cfg.error : '';
  if (!cfg || !self.status.raft || cfg.version === historyVersion) return;
  const res = await getJSON('/v1/config/history');
  if (!res.ok || !Array.isArray(res.body)) return;
  configDocs = res.body;
  historyVersion = cfg.version;
  renderHistory();
}

function renderHistory() {
  $('history-wrap').hidden = configDocs.length === 0;
  const docs = configDocs.slice().reverse(); // newest first
  fill($('history').tBodies[0], docs.map(d => el('tr', { 'data-version': d.version },
    el('td', { class: 'num' }, d.version),
    el('td', {}, d.time ? new Date(d.time).toLocaleString() : '–'),
    el('td', {}, d.node || '–'),
    el('td', { class: 'muted' }, d.hash))));
  const defaults = { 'diff-to': docs[0], 'diff-from': docs[1] || docs[0] };
  for (const id of ['diff-from', 'diff-to']) {
    const sel = $(id), prev = sel.value;
    sel.replaceChildren(...docs.map(d => el('option', { value: d.version }, 'version ' + d.version)));
    const keep = sel.dataset.chosen === '1' && docs.some(d => String(d.version) === prev);
    sel.value = keep ? prev : (defaults[id] ? String(defaults[id].version) : '');
  }
  renderDiff();
}

function renderDiff() {
  const from = configDocs.find(d => String(d.version) === $('diff-from').value);
  const to = configDocs.find(d => String(d.version) === $('diff-to').value);
  if (!from || !to) { $('diff').replaceChildren(); return; }
  const ops = diffLines(from.content.split('\n'), to.content.split('\n'));
  let adds = 0, dels = 0;
  $('diff').replaceChildren(...ops.map(([op, line]) => {
    if (op === '+') adds++;
    if (op === '-') dels++;
    return el('span', { class: op === '+' ? 'add' : op === '-' ? 'del' : 'ctx' }, op + ' ' + line);
  }));
  $('diff-stat').textContent = from.version === to.version ? 'same version' : '+' + adds + ' −' + dels + ' lines';
}

// diffLines is a line diff by longest common subsequence: a list of
// [op, line] with op '+', '-' or ' '.
function diffLines(a, b) {
  const n = a.length, m = b.length;
  if (n * m > 4e6) return [...a.map(l => ['-', l]), ...b.map(l => ['+', l])];
  const lcs = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      lcs[i][j] = a[i] === b[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
    }
  }
  const out = [];
  let i = 0, j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && a[i] === b[j]) { out.push([' ', a[i]]); i++; j++; }
    else if (i < n && (j === m || lcs[i + 1][j] >= lcs[i][j + 1])) { out.push(['-', a[i]]); i++; }
    else { out.push(['+', b[j]]); j++; }
  }
  return out;
}

function renderUpstreams(view) {
  const nodes = view.members.filter(m => m.status);
  const keys = new Map(); // "upstream peer" -> [upstream, peer]
  for (const m of nodes) {
    for (const u of m.status.upstreams || []) {
      for (const p of u.peers || []) keys.set(u.name + ' ' + p.addr, [u.name, p.addr]);
    }
  }
  const table = $('upstreams');
  table.tHead.replaceChildren(el('tr', {}, el('th', {}, 'upstream'), el('th', {}, 'peer'), ...nodes.map(m => el('th', {}, m.name))));
  fill(table.tBodies[0], [...keys.values()].sort().map(([up, addr]) => el('tr', { 'data-peer': addr },
    el('td', {}, up), el('td', {}, addr),
    ...nodes.map(m => {
      const u = (m.status.upstreams || []).find(x => x.name === up);
      const p = u && (u.peers || []).find(x => x.addr === addr);
      if (!p) return el('td', { class: 'muted' }, '–');
      if (p.disabled) return el('td', { class: 'disabled' }, 'disabled');
      return el('td', { class: p.healthy ? 'healthy' : 'down', title: p.last_error || '' }, p.healthy ? 'healthy' : 'down');
    }))));
}

function record(view) {
  for (const m of view.members) {
    const t = m.status && m.status.traffic;
    if (!series.has(m.name)) series.set(m.name, { rps: [], err: [], p99: [] });
    const s = series.get(m.name);
    const push = (arr, v) => { arr.push(v); if (arr.length > POINTS) arr.shift(); };
    push(s.rps, t && t.window_seconds ? t.requests_per_second : null);
    push(s.err, t && t.window_seconds ? 100 * t.error_ratio : null);
    push(s.p99, t && t.window_seconds ? 1000 * t.p99_seconds : null);
  }
}

function renderTraffic(view) {
  const box = $('traffic');
  const cards = view.members.map(m => {
    const t = (m.status && m.status.traffic) || {};
    const s = series.get(m.name);
    const charts = [['requests/s', s.rps, '#2457a6'], ['5xx %', s.err, '#b3261e'], ['p99 ms', s.p99, '#1f7a3a']].map(([label, data, color]) => {
      const c = el('canvas', { 'aria-label': m.name + ' ' + label });
      requestAnimationFrame(() => spark(c, data, color));
      return [el('div', { class: 'label' }, label), c];
    }).flat();
    return el('div', { class: 'card', 'data-traffic': m.name },
      el('h3', {}, m.name),
      el('div', { class: 'figs' },
        el('span', {}, 'req/s'), el('b', {}, t.window_seconds ? t.requests_per_second.toFixed(1) : '–'),
        el('span', {}, '5xx'), el('b', {}, t.window_seconds ? pct(t.error_ratio) : '–'),
        el('span', {}, 'p99'), el('b', {}, t.window_seconds ? (1000 * t.p99_seconds).toFixed(1) + ' ms' : '–'),
        el('span', {}, 'cache hits'), el('b', {}, pct(t.cache_hit_ratio)),
        el('span', {}, 'rate limited/s'), el('b', {}, t.window_seconds ? t.rate_limited_per_second.toFixed(1) : '–')),
      ...charts);
  });
  box.replaceChildren(...cards);
}

// spark draws data (nulls are gaps) as a line scaled to its maximum.
function spark(canvas, data, color) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, h = canvas.clientHeight;
  if (!w || !h) return;
  canvas.width = w * dpr;
  canvas.height = h * dpr;
  const g = canvas.getContext('2d');
  g.scale(dpr, dpr);
  g.strokeStyle = '#d9dcde';
  g.beginPath(); g.moveTo(0, h - 0.5); g.lineTo(w, h - 0.5); g.stroke();
  const max = Math.max(1e-9, ...data.filter(v => v !== null));
  g.strokeStyle = color;
  g.lineWidth = 1.5;
  g.beginPath();
  let drawing = false;
  data.forEach((v, i) => {
    if (v === null) { drawing = false; return; }
    const x = (i + POINTS - data.length) * w / (POINTS - 1), y = h - 2 - (h - 4) * v / max;
    if (drawing) g.lineTo(x, y); else g.moveTo(x, y);
    drawing = true;
  });
  g.stroke();
}

async function tick() {
  const res = await getJSON('/v1/cluster');
  renderHeader(res.body, res.ok);
  if (res.ok) {
    const view = res.body;
    record(view);
    renderMembers(view);
    renderRaft(view);
    renderUpstreams(view);
    renderTraffic(view);
    await renderConfig(view);
  }
  setTimeout(tick, REFRESH_MS);
}

document.addEventListener('DOMContentLoaded', () => {
  for (const id of ['diff-from', 'diff-to']) {
    $(id).addEventListener('change', () => { $(id).dataset.chosen = '1'; renderDiff(); });
  }
  tick();
});
