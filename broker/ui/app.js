// Herald's web UI: everything comes from the admin API of the server that served this page.
// Plain DOM, no framework; text goes in through textContent only (events are untrusted).
'use strict';

const KINDS = [
  ['Brokers', 'eventing.knative.dev/v1', 'brokers'],
  ['Triggers', 'eventing.knative.dev/v1', 'triggers'],
  ['Channels', 'messaging.knative.dev/v1', 'channels'],
  ['Subscriptions', 'messaging.knative.dev/v1', 'subscriptions'],
  ['Sequences', 'flows.knative.dev/v1', 'sequences'],
  ['Parallels', 'flows.knative.dev/v1', 'parallels'],
];
const EVENTTYPES = '/apis/eventing.knative.dev/v1beta3/eventtypes';
const MAX_SHOWN = 200;
const CHART_POINTS = 60;

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

// ---- the admin API --------------------------------------------------------------------

function authHeaders(extra) {
  const headers = Object.assign({}, extra || {});
  const token = $('token').value.trim();
  if (token) headers['Authorization'] = 'Bearer ' + token;
  return headers;
}

async function api(path, options) {
  const o = Object.assign({}, options || {});
  o.headers = authHeaders(o.headers);
  try {
    const response = await fetch(path, o);
    const text = await response.text();
    let body = text;
    try { body = JSON.parse(text); } catch (_) { /* plain text */ }
    return { ok: response.ok, status: response.status, body, text };
  } catch (e) {
    return { ok: false, status: 0, body: null, text: String(e) };
  }
}

function key(o) { return o.metadata.namespace + '/' + o.metadata.name; }

function readiness(o) {
  const conds = (o.status && o.status.conditions) || [];
  const ready = conds.find((c) => c.type === 'Ready');
  if (!ready) return { text: 'Unknown', cls: 'unknown', why: '' };
  const why = [ready.reason, ready.message].filter(Boolean).join(': ');
  if (ready.status === 'True') return { text: 'Ready', cls: 'ready', why: '' };
  return { text: ready.status === 'False' ? 'NotReady' : 'Unknown', cls: ready.status === 'False' ? 'notready' : 'unknown', why };
}

// ---- metrics (Prometheus text from /metrics, when the server exposes it) ---------------

function parseMetrics(text) {
  const samples = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)/);
    if (!m) continue;
    const labels = {};
    for (const l of (m[3] || '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    samples.push({ name: m[1], labels, value: Number(m[4]) });
  }
  return samples;
}

const isEventCount = (s) => s.name === 'event_count' || s.name === 'event_count_total';
const isTriggerSample = (s) => 'trigger_name' in s.labels || 'trigger' in s.labels;
const matchesName = (labels, names, want) => names.some((n) => labels[n] === want.name || labels[n] === want.key);

function sum(samples, pred) { return samples.filter(pred).reduce((a, s) => a + s.value, 0); }

let metrics = null; // the latest samples, or null while /metrics is absent

// ---- resources --------------------------------------------------------------------------

let brokers = [];
let parkedCount = {}; // trigger key -> parked events

function counters(kind, o) {
  if (!metrics) return '–';
  const want = { name: o.metadata.name, key: key(o) };
  if (kind === 'brokers') {
    return String(sum(metrics, (s) => isEventCount(s) && !isTriggerSample(s) && matchesName(s.labels, ['broker_name', 'broker'], want)));
  }
  if (kind === 'triggers') {
    return String(sum(metrics, (s) => isEventCount(s) && matchesName(s.labels, ['trigger_name', 'trigger'], want)));
  }
  return '–';
}

function detail(kind, o) {
  const spec = o.spec || {};
  const status = o.status || {};
  if (kind === 'brokers') return (status.address && status.address.url) || '';
  if (kind === 'triggers') return 'broker ' + spec.broker + ' → ' + (status.subscriberUri || '');
  if (kind === 'subscriptions') return 'channel ' + ((spec.channel && spec.channel.name) || '');
  return (status.address && status.address.url) || '';
}

function renderResources(lists) {
  const root = $('resources');
  root.replaceChildren();
  for (const [title, , plural] of KINDS) {
    const items = lists[plural] || [];
    if (!items.length && plural !== 'brokers' && plural !== 'triggers') continue;
    root.append(el('h3', {}, title + ' (' + items.length + ')'));
    const counterTitle = plural === 'brokers' ? 'Accepted' : plural === 'triggers' ? 'Dispatched' : '';
    const head = el('tr', {}, el('th', {}, 'Name'), el('th', {}, 'Ready'), el('th', {}, 'Details'),
      counterTitle ? el('th', {}, counterTitle) : null, plural === 'triggers' ? el('th', {}, 'Parked') : null);
    const table = el('table', { id: 'table-' + plural }, el('thead', {}, head));
    const body = el('tbody');
    for (const o of items) {
      const r = readiness(o);
      body.append(el('tr', { 'data-key': key(o) },
        el('td', {}, key(o)),
        el('td', { class: r.cls, title: r.why }, r.text, r.why ? el('div', { class: 'hint' }, r.why) : null),
        el('td', {}, detail(plural, o)),
        counterTitle ? el('td', {}, counters(plural, o)) : null,
        plural === 'triggers' ? el('td', {}, String(parkedCount[key(o)] || 0)) : null));
    }
    if (!items.length) body.append(el('tr', {}, el('td', { colspan: '5', class: 'hint' }, 'None.')));
    table.append(body);
    root.append(table);
  }
}

function fillBrokerSelects() {
  for (const select of document.querySelectorAll('.broker-select')) {
    const was = select.value;
    select.replaceChildren(...brokers.map((b) => el('option', { value: key(b) }, key(b))));
    if (brokers.some((b) => key(b) === was)) select.value = was;
  }
}

async function refreshResources() {
  const lists = {};
  let failed = null;
  await Promise.all(KINDS.map(async ([, group, plural]) => {
    const r = await api('/apis/' + group + '/' + plural);
    if (r.ok) lists[plural] = r.body.items || [];
    else if (!failed) failed = r;
  }));
  if (failed && (failed.status === 401 || failed.status === 403)) {
    $('resources').replaceChildren(el('p', { class: 'error' }, 'The admin API answered ' + failed.status + ': enter the admin token above.'));
    return;
  }
  brokers = lists.brokers || [];
  fillBrokerSelects();
  renderResources(lists);
}

async function refreshHealth() {
  const r = await api('/readyz');
  const pill = $('health');
  pill.textContent = r.ok ? 'ready' : r.status ? 'not ready' : 'unreachable';
  pill.className = 'pill ' + (r.ok ? 'ok' : 'bad');
  pill.title = r.body && r.body.notReady ? JSON.stringify(r.body.notReady) : '';
}

// ---- event types ------------------------------------------------------------------------

async function refreshEventTypes() {
  const root = $('eventtypes');
  const r = await api(EVENTTYPES);
  if (!r.ok) {
    root.replaceChildren(el('p', { class: 'error' }, 'Event types: ' + (r.status || 'unreachable') + ' ' + r.text));
    return;
  }
  const items = r.body && Array.isArray(r.body.items) ? r.body.items : [];
  if (!items.length) {
    root.replaceChildren(el('p', { class: 'hint', id: 'eventtypes-empty' }, 'No event types recorded yet.'));
    return;
  }
  const body = el('tbody');
  for (const t of items) {
    const spec = t.spec || {};
    const attrs = Array.isArray(spec.attributes) ? spec.attributes : [];
    const attr = (name) => { const a = attrs.find((x) => x.name === name); return (a && a.value) || ''; };
    const ref = spec.reference ? (spec.reference.kind || '') + ' ' + (spec.reference.name || '') : '';
    const recorded = spec.description === 'Event Type auto-created by controller';
    body.append(el('tr', { 'data-key': key(t), 'data-type': attr('type'), 'data-source': attr('source') },
      el('td', {}, attr('type')), el('td', {}, attr('source')),
      el('td', {}, attr('dataschema') || attr('schemaurl')), el('td', {}, ref),
      (() => { const rd = readiness(t); return el('td', { class: rd.cls, title: rd.why }, rd.text); })(),
      el('td', {}, recorded ? 'recorded' : 'declared'), el('td', {}, key(t))));
  }
  root.replaceChildren(el('table', { id: 'table-eventtypes' },
    el('thead', {}, el('tr', {}, el('th', {}, 'Type'), el('th', {}, 'Source'), el('th', {}, 'Schema'),
      el('th', {}, 'Seen by'), el('th', {}, 'Ready'), el('th', {}, 'How'), el('th', {}, 'Name'))),
    body));
}

// ---- dead letters -----------------------------------------------------------------------

async function redrive(brokerKey, trigger, id, button) {
  button.disabled = true;
  const [ns, name] = brokerKey.split('/');
  const r = await api('/admin/v1/dlq/' + ns + '/' + name + '/' + encodeURIComponent(trigger) + '/' + id + '/redrive', { method: 'POST' });
  $('dlq-result').textContent = r.ok
    ? 'Redrove #' + id + ' of ' + trigger + ': ' + (r.body.disposition || 'done')
    : 'Redrive of #' + id + ' failed (' + r.status + '): ' + r.text;
  $('dlq-result').className = r.ok ? '' : 'error';
  await refreshDlq();
}

async function refreshDlq() {
  const rows = [];
  const counts = {};
  await Promise.all(brokers.map(async (b) => {
    const r = await api('/admin/v1/dlq/' + b.metadata.namespace + '/' + b.metadata.name);
    if (!r.ok || !Array.isArray(r.body)) return;
    for (const list of r.body) {
      const trigger = String(list.trigger || '').split('/').pop();
      counts[list.trigger] = (list.items || []).length;
      for (const e of list.items || []) rows.push({ broker: key(b), trigger, entry: e, durable: list.durable });
    }
  }));
  parkedCount = counts;
  for (const [trigger, n] of Object.entries(counts)) {
    const cell = document.querySelector('#table-triggers tr[data-key="' + CSS.escape(trigger) + '"] td:last-child');
    if (cell) cell.textContent = String(n);
  }
  const root = $('dlq-list');
  if (!rows.length) {
    root.replaceChildren(el('p', { class: 'hint', id: 'dlq-empty' }, 'No parked events.'));
    return;
  }
  const body = el('tbody');
  for (const { broker, trigger, entry } of rows) {
    const ev = entry.event || {};
    const button = el('button', { type: 'button', class: 'redrive', 'data-event-id': String(ev.id || '') }, 'Redrive');
    button.addEventListener('click', () => redrive(broker, trigger, entry.id, button));
    body.append(el('tr', { 'data-event-id': String(ev.id || '') },
      el('td', {}, broker + ' / ' + trigger), el('td', {}, '#' + entry.id), el('td', {}, ev.type || ''),
      el('td', {}, ev.id || ''),
      el('td', { title: entry.parkedAt || '' }, entry.why || '', el('div', { class: 'hint' }, entry.reason || '')),
      el('td', {}, button)));
  }
  root.replaceChildren(el('table', { id: 'table-dlq' },
    el('thead', {}, el('tr', {}, ...['Trigger', 'Entry', 'Type', 'Event id', 'Why', ''].map((h) => el('th', {}, h)))),
    body));
}

// ---- sending ----------------------------------------------------------------------------

function newId() {
  if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
  return 'ui-' + Date.now() + '-' + Math.random().toString(16).slice(2);
}

async function sendEvent(ev) {
  ev.preventDefault();
  const brokerKey = $('send-broker').value;
  const out = $('send-result');
  if (!brokerKey) { out.textContent = 'No Broker to send to.'; out.className = 'error'; return; }
  const event = { specversion: '1.0', id: newId(), type: $('send-type').value, source: $('send-source').value };
  if ($('send-subject').value) event.subject = $('send-subject').value;
  const text = $('send-data').value;
  if (text.trim()) {
    try { event.data = JSON.parse(text); event.datacontenttype = 'application/json'; }
    catch (_) { event.data = text; event.datacontenttype = 'text/plain'; }
  }
  const [ns, name] = brokerKey.split('/');
  const started = performance.now();
  const r = await api('/admin/v1/brokers/' + ns + '/' + name + '/events', {
    method: 'POST', headers: { 'Content-Type': 'application/cloudevents+json' }, body: JSON.stringify(event),
  });
  const ms = Math.round(performance.now() - started);
  out.textContent = r.ok ? 'Sent ' + event.id + ' to ' + brokerKey + ': ' + r.status + ' (' + ms + ' ms)'
    : 'Refused (' + r.status + '): ' + r.text.trim();
  out.className = r.ok ? '' : 'error';
  out.dataset.eventId = event.id;
}

// ---- the live stream (SSE over fetch, so the token can go in a header) -----------------

let watching = null; // the AbortController of the open stream
let seenSinceTick = 0;

function showEvent(data) {
  let event;
  try { event = JSON.parse(data); } catch (_) { event = { id: '?', type: '?', source: '?' }; }
  seenSinceTick += 1;
  const list = $('stream');
  list.prepend(el('li', { 'data-event-id': String(event.id) },
    el('div', { class: 'meta' }, [event.time || '', event.type, event.source, event.id].filter(Boolean).join('  ')),
    el('pre', {}, JSON.stringify(event, null, 2))));
  while (list.children.length > MAX_SHOWN) list.lastChild.remove();
}

function showMissed(data) {
  let n = '?';
  try { n = JSON.parse(data).missed; } catch (_) { /* keep ? */ }
  $('stream').prepend(el('li', { class: 'missed' }, 'Missed ' + n + ' event(s): this page fell behind.'));
}

function handleMessage(block) {
  let name = 'message';
  const data = [];
  for (const line of block.split('\n')) {
    const at = line.indexOf(':');
    const field = at < 0 ? line : line.slice(0, at);
    let value = at < 0 ? '' : line.slice(at + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') name = value;
    else if (field === 'data') data.push(value);
  }
  const text = data.join('\n');
  if (name === 'watching') {
    const w = JSON.parse(text);
    $('stream-status').textContent = 'Watching ' + w.broker + (w.filter ? ' for ' + w.filter : '') + '.';
    $('stream-status').className = 'hint watching';
  } else if (name === 'cloudevent') showEvent(text);
  else if (name === 'missed') showMissed(text);
}

async function startStream(ev) {
  if (ev) ev.preventDefault();
  stopStream();
  const brokerKey = $('stream-broker').value;
  const status = $('stream-status');
  if (!brokerKey) { status.textContent = 'No Broker to watch.'; status.className = 'error'; return; }
  const [ns, name] = brokerKey.split('/');
  const filter = $('stream-filter').value;
  const controller = new AbortController();
  watching = controller;
  $('stream-stop').disabled = false;
  status.textContent = 'Connecting…';
  status.className = 'hint';
  let response;
  try {
    response = await fetch('/admin/v1/brokers/' + ns + '/' + name + '/events?filter=' + encodeURIComponent(filter),
      { headers: authHeaders({ Accept: 'text/event-stream' }), signal: controller.signal });
  } catch (e) {
    if (watching === controller) { status.textContent = 'Cannot connect: ' + e; status.className = 'error'; }
    return;
  }
  if (!response.ok) {
    status.textContent = 'Refused (' + response.status + '): ' + (await response.text()).trim();
    status.className = 'error';
    $('stream-stop').disabled = true;
    watching = null;
    return;
  }
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, '\n');
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        handleMessage(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
      }
    }
    if (watching === controller) { status.textContent = 'The stream ended (Broker deleted or Herald stopped).'; status.className = 'hint'; }
  } catch (e) {
    if (watching === controller) { status.textContent = 'The stream broke: ' + e; status.className = 'error'; }
  }
  if (watching === controller) { watching = null; $('stream-stop').disabled = true; }
}

function stopStream() {
  if (watching) { watching.abort(); watching = null; }
  $('stream-stop').disabled = true;
  $('stream-status').textContent = 'Not watching.';
  $('stream-status').className = 'hint';
}

// ---- charts -----------------------------------------------------------------------------

const series = { rate: [], latency: [] };
let last = null; // {at, accepted, latencySum, latencyCount}

function draw(svgId, points) {
  const svg = $(svgId);
  const max = Math.max(1, ...points);
  const step = 300 / (CHART_POINTS - 1);
  const offset = CHART_POINTS - points.length;
  const coords = points.map((v, i) => ((offset + i) * step).toFixed(1) + ',' + (78 - (v / max) * 74).toFixed(1)).join(' ');
  const line = document.createElementNS('http://www.w3.org/2000/svg', 'polyline');
  line.setAttribute('points', coords);
  const label = document.createElementNS('http://www.w3.org/2000/svg', 'text');
  label.setAttribute('x', '4'); label.setAttribute('y', '12'); label.setAttribute('font-size', '10'); label.setAttribute('fill', '#667085');
  label.textContent = 'max ' + (Math.round(max * 10) / 10);
  svg.replaceChildren(line, label);
}

function push(name, v) {
  series[name].push(v);
  if (series[name].length > CHART_POINTS) series[name].shift();
}

async function tick() {
  const r = await api('/metrics');
  const now = performance.now();
  if (r.ok && typeof r.body === 'string') {
    metrics = parseMetrics(r.text);
    const accepted = sum(metrics, (s) => isEventCount(s) && !isTriggerSample(s));
    const latencySum = sum(metrics, (s) => s.name === 'event_dispatch_latencies_sum');
    const latencyCount = sum(metrics, (s) => s.name === 'event_dispatch_latencies_count');
    if (last) {
      const secs = Math.max(0.001, (now - last.at) / 1000);
      push('rate', Math.max(0, accepted - last.accepted) / secs);
      const dn = latencyCount - last.latencyCount;
      push('latency', dn > 0 ? (latencySum - last.latencySum) / dn : 0);
    }
    last = { at: now, accepted, latencySum, latencyCount };
    $('chart-source').textContent = 'From /metrics (event_count, event_dispatch_latencies), every 2 s.';
  } else {
    metrics = null;
    // Without /metrics: the rate of events this page's live stream saw.
    if (last) push('rate', seenSinceTick / Math.max(0.001, (now - last.at) / 1000));
    last = { at: now, accepted: 0, latencySum: 0, latencyCount: 0 };
    $('chart-source').textContent = 'No /metrics on this server: the rate is what the live stream shows; no latency.';
  }
  seenSinceTick = 0;
  const fmt = (v) => (v === undefined ? '' : '(' + (Math.round(v * 10) / 10) + ')');
  $('rate-now').textContent = fmt(series.rate[series.rate.length - 1]);
  $('latency-now').textContent = fmt(series.latency[series.latency.length - 1]);
  draw('chart-rate', series.rate);
  draw('chart-latency', series.latency);
}

// ---- wiring -----------------------------------------------------------------------------

async function refreshAll() {
  await Promise.all([refreshHealth(), refreshResources()]);
  await Promise.all([refreshDlq(), refreshEventTypes()]);
  if (!watching && !$('stream-status').classList.contains('error') && brokers.length) startStream();
}

function init() {
  $('token').value = sessionStorage.getItem('heraldToken') || '';
  $('token').addEventListener('change', () => {
    sessionStorage.setItem('heraldToken', $('token').value.trim());
    refreshAll();
    if (watching) startStream();
  });
  $('refresh').addEventListener('click', refreshAll);
  $('send-form').addEventListener('submit', sendEvent);
  $('stream-form').addEventListener('submit', startStream);
  $('stream-stop').addEventListener('click', stopStream);
  $('stream-clear').addEventListener('click', () => $('stream').replaceChildren());
  $('dlq').append(el('output', { id: 'dlq-result' }), el('div', { id: 'dlq-list' }));
  refreshAll();
  setInterval(refreshAll, 3000);
  tick();
  setInterval(tick, 2000);
}

init();
