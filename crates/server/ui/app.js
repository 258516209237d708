// Capstan's web UI: a single page over the server's JSON APIs (the same ones the CLI and the
// clients use). No framework and no build step; the server embeds this file.
'use strict';

const app = document.getElementById('app');
const TOKEN_KEY = 'capstan.token';
const PAGE_SIZE = 50;
const COLORS = ['#2f6fde', '#e8590c', '#2b8a3e', '#ae3ec9', '#c92a2a', '#1098ad', '#f59f00', '#5c7cfa', '#868e96', '#d6336c'];

// ---------------------------------------------------------------------------------------------
// HTTP

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

function token() { return localStorage.getItem(TOKEN_KEY) || ''; }

function errorMessage(data, text, res) {
  if (data && typeof data === 'object') {
    if (data.message) return (data.error_code ? data.error_code + ': ' : '') + data.message;
    if (data.error && typeof data.error === 'object' && data.error.message) return data.error.message;
    if (typeof data.error === 'string') return data.error;
    if (data.status && typeof data.status === 'object' && data.status.error) return data.status.error;
  }
  return `${res.status} ${res.statusText}${text ? ': ' + text.slice(0, 300) : ''}`;
}

/** Calls the API; a refusal becomes an ApiError with the server's own message. */
async function api(path, { method = 'GET', body, raw = false } = {}) {
  const headers = {};
  if (token()) headers.Authorization = 'Bearer ' + token();
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new ApiError(0, `Cannot reach the Capstan server: ${e.message}`);
  }
  if (raw && res.ok) return res;
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : {}; } catch (_) { data = null; }
  if (!res.ok) throw new ApiError(res.status, errorMessage(data, text, res));
  if (data === null) throw new ApiError(res.status, `The server answered something that is not JSON: ${text.slice(0, 200)}`);
  return data;
}

const mlflow = (p, body) => body === undefined ? api('/api/2.0/mlflow/' + p) : api('/api/2.0/mlflow/' + p, { method: 'POST', body });
const qs = (o) => new URLSearchParams(Object.entries(o).filter(([, v]) => v !== undefined && v !== null && v !== '')).toString();

// ---------------------------------------------------------------------------------------------
// DOM

const SVG_NS = 'http://www.w3.org/2000/svg';

/** `h('a', {href: '#/x', onclick: f}, 'text', child…)`. Styles go through the CSSOM (the page's
 *  content security policy forbids inline style attributes). */
function h(tag, attrs, ...kids) {
  const svg = ['svg', 'g', 'path', 'line', 'rect', 'text', 'circle', 'polyline', 'title'].includes(tag) && (tag !== 'title' || attrs?.svg);
  const el = svg ? document.createElementNS(SVG_NS, tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false || k === 'svg') continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'style') Object.assign(el.style, v);
    else if (k === 'class' && !svg) el.className = v;
    else if (k === 'value' && !svg) el.value = v;
    else if (k === 'checked' && !svg) el.checked = !!v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const kid of kids.flat(Infinity)) {
    if (kid === null || kid === undefined || kid === false) continue;
    el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return el;
}

const link = (href, text) => h('a', { href }, text);
const pill = (text, cls) => h('span', { class: 'pill ' + (cls || text) }, text);
const card = (...kids) => h('div', { class: 'card' }, ...kids);

function fmt(v) {
  if (v === null || v === undefined || v === '') return '';
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) return String(v);
    if (Number.isInteger(v)) return v.toLocaleString('en-US');
    const a = Math.abs(v);
    return a !== 0 && (a < 1e-3 || a >= 1e6) ? v.toExponential(3) : String(+v.toPrecision(5));
  }
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}
const fmtTime = (ms) => ms ? new Date(Number(ms)).toISOString().replace('T', ' ').slice(0, 19) : '';
const fmtUsd = (v) => v === null || v === undefined ? '' : '$' + Number(v).toFixed(Number(v) < 0.01 ? 6 : 4);
function fmtDuration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return '';
  if (ms < 1) return ms.toFixed(3) + ' ms';
  if (ms < 1000) return ms.toFixed(1) + ' ms';
  if (ms < 120000) return (ms / 1000).toFixed(2) + ' s';
  return (ms / 60000).toFixed(1) + ' min';
}

/** A table from column specs `{label, get(row) → node|text, num, sort}` and rows. */
function table(columns, rows, { empty = 'Nothing here yet.', onSort, id } = {}) {
  if (!rows.length) return h('div', { class: 'empty' }, empty);
  const head = h('tr', null, columns.map((c) => {
    const th = h('th', { class: (c.num ? 'num ' : '') + (c.sort && onSort ? 'sortable' : ''), title: c.title }, c.label, c.arrow ? ' ' + c.arrow : '');
    if (c.sort && onSort) th.addEventListener('click', () => onSort(c.sort));
    return th;
  }));
  const body = rows.map((r) => h('tr', null, columns.map((c) => {
    const v = c.get(r);
    return h('td', { class: c.num ? 'num' : (c.cls ? c.cls(r) : null) }, v instanceof Node ? v : fmt(v));
  })));
  return h('div', { class: 'scroll' }, h('table', { id }, h('thead', null, head), h('tbody', null, body)));
}

function kvTable(pairs) {
  return h('table', { class: 'kv' }, h('tbody', null, pairs.filter(([, v]) => v !== undefined).map(([k, v]) => h('tr', null, h('td', null, k), h('td', null, v instanceof Node ? v : fmt(v))))));
}

function errorBox(e) {
  const box = h('div', { class: 'error', role: 'alert' }, e.message || String(e));
  if (e.status === 401 || e.status === 403) {
    box.append(h('div', null, h('button', { onclick: askToken }, e.status === 401 ? 'Enter an API token' : 'Use another token')));
  }
  return box;
}

/** Runs `f` and puts what it builds into `slot`, or the error it met. */
async function fill(slot, f) {
  slot.replaceChildren(h('div', { class: 'loading' }, 'Loading…'));
  try { slot.replaceChildren(await f()); } catch (e) { slot.replaceChildren(errorBox(e)); }
}

function askToken() {
  const t = window.prompt('Capstan API token (sent as a bearer token; kept in this browser only). Leave empty to clear.', token());
  if (t === null) return;
  if (t.trim()) localStorage.setItem(TOKEN_KEY, t.trim()); else localStorage.removeItem(TOKEN_KEY);
  render();
}

// ---------------------------------------------------------------------------------------------
// Charts (SVG)

function niceTicks(lo, hi, n = 5) {
  if (lo === hi) { lo -= 1; hi += 1; }
  const step0 = (hi - lo) / n;
  const mag = Math.pow(10, Math.floor(Math.log10(step0)));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= step0) || step0;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toPrecision(12));
  return out;
}

/** Lines over x: `series = [{name, points: [[x, y]…]}]`. */
function lineChart(title, series, { xLabel = 'step', width = 560, height = 240 } = {}) {
  const pts = series.flatMap((s) => s.points);
  const wrap = h('div', { class: 'chart', 'data-chart': title });
  wrap.append(h('div', { class: 'title' }, title));
  if (!pts.length) { wrap.append(h('div', { class: 'muted' }, 'no values')); return wrap; }
  const m = { l: 56, r: 12, t: 8, b: 30 };
  let [x0, x1] = [Math.min(...pts.map((p) => p[0])), Math.max(...pts.map((p) => p[0]))];
  let [y0, y1] = [Math.min(...pts.map((p) => p[1])), Math.max(...pts.map((p) => p[1]))];
  if (x0 === x1) { x0 -= 1; x1 += 1; }
  if (y0 === y1) { y0 -= Math.abs(y0) * 0.1 || 1; y1 += Math.abs(y1) * 0.1 || 1; }
  const X = (x) => m.l + (x - x0) / (x1 - x0) * (width - m.l - m.r);
  const Y = (y) => height - m.b - (y - y0) / (y1 - y0) * (height - m.t - m.b);
  const svg = h('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': title });
  for (const t of niceTicks(y0, y1)) {
    svg.append(h('line', { x1: m.l, x2: width - m.r, y1: Y(t), y2: Y(t), stroke: '#eceff3' }));
    svg.append(h('text', { x: m.l - 6, y: Y(t) + 4, 'text-anchor': 'end', 'font-size': 11, fill: '#667085' }, fmt(t)));
  }
  for (const t of niceTicks(x0, x1, 6)) {
    svg.append(h('text', { x: X(t), y: height - m.b + 16, 'text-anchor': 'middle', 'font-size': 11, fill: '#667085' }, fmt(t)));
  }
  svg.append(h('text', { x: width - m.r, y: height - 2, 'text-anchor': 'end', 'font-size': 11, fill: '#667085' }, xLabel));
  series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length];
    const sorted = [...s.points].sort((a, b) => a[0] - b[0]);
    if (sorted.length === 1) {
      svg.append(h('circle', { cx: X(sorted[0][0]), cy: Y(sorted[0][1]), r: 3.5, fill: color }, h('title', { svg: true }, `${s.name}: ${fmt(sorted[0][1])}`)));
    } else {
      const d = sorted.map((p, j) => (j ? 'L' : 'M') + X(p[0]).toFixed(1) + ' ' + Y(p[1]).toFixed(1)).join(' ');
      svg.append(h('path', { d, fill: 'none', stroke: color, 'stroke-width': 1.8, class: 'series' }, h('title', { svg: true }, s.name)));
    }
  });
  wrap.append(svg);
  if (series.length > 1 || series[0].name) {
    wrap.append(h('div', { class: 'legend' }, series.map((s, i) => h('span', null, h('i', { style: { background: COLORS[i % COLORS.length] } }), s.name))));
  }
  return wrap;
}

/** Horizontal bars: `items = [{label, value, note}]`. */
function barChart(title, items, { format = fmt, width = 560 } = {}) {
  const wrap = h('div', { class: 'chart', 'data-chart': title });
  wrap.append(h('div', { class: 'title' }, title));
  if (!items.length) { wrap.append(h('div', { class: 'muted' }, 'no values')); return wrap; }
  const row = 24, lw = 170, height = items.length * row + 6;
  const max = Math.max(...items.map((i) => Math.abs(i.value))) || 1;
  const svg = h('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': title });
  items.forEach((it, i) => {
    const y = i * row + 4;
    const w = Math.max(1, Math.abs(it.value) / max * (width - lw - 90));
    svg.append(h('text', { x: lw - 6, y: y + 14, 'text-anchor': 'end', 'font-size': 12, fill: '#1d2330' }, String(it.label).slice(0, 26)));
    svg.append(h('rect', { x: lw, y, width: w, height: row - 8, rx: 3, fill: it.color || COLORS[0] }, h('title', { svg: true }, `${it.label}: ${format(it.value)}`)));
    svg.append(h('text', { x: lw + w + 6, y: y + 14, 'font-size': 12, fill: '#667085' }, format(it.value) + (it.note ? ' ' + it.note : '')));
  });
  wrap.append(svg);
  return wrap;
}

function splitBar(parts) {
  const total = parts.reduce((a, p) => a + p.value, 0) || 1;
  return h('div', { class: 'split' }, parts.map((p, i) => h('div', { style: { width: (p.value / total * 100) + '%', background: COLORS[i % COLORS.length] }, title: `${p.label}: ${(p.value / total * 100).toFixed(1)}%` }, `${p.label} ${(p.value / total * 100).toFixed(0)}%`)));
}

// ---------------------------------------------------------------------------------------------
// Overview

async function settle(promises) {
  const out = await Promise.allSettled(promises);
  const auth = out.find((r) => r.status === 'rejected' && (r.reason.status === 401 || r.reason.status === 403));
  if (auth) throw auth.reason;
  return out.map((r) => r.status === 'fulfilled' ? r.value : null);
}

async function overview() {
  const [exps, models, deps, mons, alerts, jobs, prompts, traces, cols] = await settle([
    mlflow('experiments/search', { max_results: 1000 }),
    api('/api/2.0/mlflow/registered-models/search?max_results=1000'),
    api('/api/2.0/capstan/deployments'),
    api('/api/2.0/capstan/monitors'),
    api('/api/2.0/capstan/alerts?limit=5'),
    api('/api/2.0/capstan/jobs?limit=200'),
    api('/api/2.0/capstan/prompts'),
    api('/api/2.0/capstan/traces?limit=1'),
    api('/collections'),
  ]);
  const experiments = exps?.experiments || [];
  const anyRuns = experiments.length ? (await mlflow('runs/search', { experiment_ids: experiments.map((e) => e.experiment_id), max_results: 1 })).runs?.length : 0;
  const counts = [
    ['Experiments', experiments.length, '#/experiments'],
    ['Registered models', models?.registered_models?.length || 0, '#/models'],
    ['Deployments', deps?.deployments?.length || 0, '#/deployments'],
    ['Monitors', mons?.monitors?.length || 0, '#/monitors'],
    ['Jobs', jobs?.jobs?.length || 0, '#/jobs'],
    ['Prompts', prompts?.prompts?.length || 0, '#/prompts'],
    ['Collections', cols?.result?.collections?.length || 0, '#/collections'],
    ['Traces', traces?.traces?.length ? 'yes' : 0, '#/traces'],
  ];
  const empty = !anyRuns && counts.slice(1).every(([, n]) => !n);
  const page = h('div', null, h('h1', null, 'Overview'));
  if (empty) page.append(gettingStarted());
  page.append(h('div', { class: 'cards' }, counts.map(([label, n, href]) => h('a', { href, class: 'card', style: { textDecoration: 'none', color: 'inherit' } }, h('div', { class: 'muted' }, label), h('div', { class: 'stat' }, fmt(n))))));
  const recent = alerts?.alerts || [];
  if (recent.length) {
    page.append(h('h2', null, 'Latest alerts'), alertTable(recent));
  }
  return page;
}

function gettingStarted() {
  const origin = location.origin;
  return h('div', { class: 'empty', id: 'getting-started' },
    h('h2', null, 'Nothing here yet — how to start'),
    h('p', null, 'Run the whole story (data, training, registry, serving, monitoring, RAG, gateway) on this machine:'),
    h('pre', null, 'capstan demo'),
    h('p', null, 'Or log runs with the MLflow client you already use:'),
    h('pre', null, `export MLFLOW_TRACKING_URI=${origin}\npython -c "import mlflow; mlflow.log_metric('rmse', 0.5)"`),
    h('p', null, 'Train and register a model from a CSV file:'),
    h('pre', null, 'capstan train --data data.csv --target y --algorithm gbm --register my-model'),
    h('p', null, 'Call the LLM gateway with the OpenAI client:'),
    h('pre', null, `OpenAI(base_url="${origin}/v1", api_key="…")`));
}

// ---------------------------------------------------------------------------------------------
// Experiments and runs

async function experimentsPage() {
  const r = await mlflow('experiments/search', { max_results: 1000, order_by: ['last_update_time DESC'] });
  const exps = r.experiments || [];
  return h('div', null, h('h1', null, 'Experiments'),
    exps.length ? table([
      { label: 'Name', get: (e) => link('#/experiments/' + e.experiment_id, e.name) },
      { label: 'ID', get: (e) => e.experiment_id },
      { label: 'Last update', get: (e) => fmtTime(e.last_update_time || e.creation_time) },
      { label: 'Artifacts', get: (e) => e.artifact_location },
    ], exps, { id: 'experiments' }) : gettingStarted());
}

function metricValue(run, key) {
  const m = (run.data.metrics || []).find((x) => x.key === key);
  return m ? m.value : undefined;
}
function paramValue(run, key) {
  const p = (run.data.params || []).find((x) => x.key === key);
  return p ? p.value : undefined;
}
function tagValue(run, key) {
  const t = (run.data.tags || []).find((x) => x.key === key);
  return t ? t.value : undefined;
}
const runName = (run) => run.info.run_name || tagValue(run, 'mlflow.runName') || run.info.run_id.slice(0, 8);

/** Keys over a page of runs, most common first. */
function keysOf(runs, field, limit) {
  const seen = new Map();
  for (const r of runs) for (const x of r.data[field] || []) seen.set(x.key, (seen.get(x.key) || 0) + 1);
  return [...seen.entries()].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])).slice(0, limit).map(([k]) => k).sort();
}

const quoteKey = (k) => /^[A-Za-z_][A-Za-z0-9_.]*$/.test(k) ? k : '`' + k + '`';

function setQuery(base, q) { location.hash = base + (qs(q) ? '?' + qs(q) : ''); }

async function experimentRunsPage({ id }, query) {
  const filter = query.get('filter') || '';
  const order = query.get('order') || 'attributes.start_time DESC';
  const pageToken = query.get('page') || '';
  const offset = Number(query.get('offset') || 0);
  const exp = (await mlflow('experiments/get?' + qs({ experiment_id: id }))).experiment;
  const base = '#/experiments/' + encodeURIComponent(id);
  const page = h('div', null, h('h1', null, exp.name, ' ', h('span', { class: 'muted' }, '#' + id)));
  const input = h('input', { class: 'wide', id: 'run-filter', value: filter, placeholder: 'metrics.rmse < 60 and params.learning_rate = "0.01"', 'aria-label': 'filter' });
  const apply = () => setQuery(base, { filter: input.value.trim(), order });
  input.addEventListener('keydown', (e) => { if (e.key === 'Enter') apply(); });
  const compareButton = h('button', { id: 'compare-runs', disabled: true, onclick: () => {
    const ids = [...page.querySelectorAll('input.run-select:checked')].map((c) => c.dataset.run);
    location.hash = '#/compare?' + qs({ runs: ids.join(',') });
  } }, 'Compare selected');
  page.append(h('div', { class: 'toolbar' }, input, h('button', { class: 'primary', onclick: apply, id: 'apply-filter' }, 'Filter'),
    filter ? h('button', { onclick: () => setQuery(base, { order }) }, 'Clear') : null, compareButton,
    h('span', { class: 'muted' }, 'Same grammar as the API: metrics.*, params.*, tags.*, attributes.*; and; = != < <= > >= LIKE ILIKE IN')));
  let found;
  try {
    found = await mlflow('runs/search', { experiment_ids: [id], filter, order_by: [order], max_results: PAGE_SIZE, page_token: pageToken || undefined });
  } catch (e) {
    page.append(errorBox(e));
    return page;
  }
  const runs = found.runs || [];
  const params = keysOf(runs, 'params', 6);
  const metrics = keysOf(runs, 'metrics', 8);
  const om = order.match(/^(.*?)(?:\s+(ASC|DESC))?$/i);
  const orderKey = om[1];
  const orderDesc = /desc/i.test(om[2] || '');
  const sortBy = (key) => setQuery(base, { filter, order: key + (orderKey === key && orderDesc ? ' ASC' : ' DESC') });
  const arrow = (key) => orderKey === key ? (orderDesc ? '▼' : '▲') : null;
  const onCheck = () => { compareButton.disabled = page.querySelectorAll('input.run-select:checked').length < 2; };
  const columns = [
    { label: '', get: (r) => h('input', { type: 'checkbox', class: 'run-select', 'data-run': r.info.run_id, 'aria-label': 'select ' + runName(r), onchange: onCheck }) },
    { label: 'Run', sort: 'attributes.run_name', arrow: arrow('attributes.run_name'), get: (r) => link('#/runs/' + r.info.run_id, runName(r)) },
    { label: 'Status', get: (r) => pill(r.info.status) },
    { label: 'Started', sort: 'attributes.start_time', arrow: arrow('attributes.start_time'), get: (r) => fmtTime(r.info.start_time) },
    { label: 'Duration', get: (r) => r.info.end_time ? fmtDuration(r.info.end_time - r.info.start_time) : '' },
    ...params.map((k) => ({ label: k, title: 'param ' + k, sort: 'params.' + quoteKey(k), arrow: arrow('params.' + quoteKey(k)), get: (r) => paramValue(r, k) })),
    ...metrics.map((k) => ({ label: k, title: 'metric ' + k, num: true, sort: 'metrics.' + quoteKey(k), arrow: arrow('metrics.' + quoteKey(k)), get: (r) => metricValue(r, k) })),
  ];
  page.append(table(columns, runs, { id: 'runs', onSort: sortBy, empty: filter ? 'No run matches this filter.' : 'No runs in this experiment yet.' }));
  const pager = h('div', { class: 'pager' }, h('span', { class: 'muted', id: 'runs-range' }, runs.length ? `runs ${offset + 1}–${offset + runs.length}` : ''));
  if (pageToken) pager.append(h('button', { onclick: () => history.back() }, '← Previous'));
  if (found.next_page_token) pager.append(h('button', { id: 'next-page', onclick: () => setQuery(base, { filter, order, page: found.next_page_token, offset: offset + runs.length }) }, 'Next →'));
  page.append(pager);
  return page;
}

async function metricHistories(runId, keys) {
  const out = {};
  await Promise.all(keys.map(async (k) => {
    const r = await mlflow('metrics/get-history?' + qs({ run_id: runId, metric_key: k, max_results: 25000 }));
    out[k] = (r.metrics || []).map((m) => [Number(m.step || 0), m.value]);
  }));
  return out;
}

async function runPage({ id }, query) {
  const run = (await mlflow('runs/get?' + qs({ run_id: id }))).run;
  const info = run.info;
  const page = h('div', null, h('h1', null, runName(run), ' ', pill(info.status)));
  page.append(card(kvTable([
    ['Run ID', info.run_id],
    ['Experiment', link('#/experiments/' + info.experiment_id, info.experiment_id)],
    ['Started', fmtTime(info.start_time)],
    ['Duration', info.end_time ? fmtDuration(info.end_time - info.start_time) : 'running'],
    ['Source', tagValue(run, 'mlflow.source.name')],
    ['Git commit', tagValue(run, 'mlflow.source.git.commit')],
    ['Artifacts', info.artifact_uri],
  ])));
  const metrics = run.data.metrics || [];
  const grid = h('div', { class: 'grid2' },
    h('div', null, h('h2', null, 'Parameters'), table([{ label: 'Key', get: (p) => p.key }, { label: 'Value', get: (p) => p.value }], run.data.params || [], { empty: 'No parameters.' })),
    h('div', null, h('h2', null, 'Metrics (latest)'), table([{ label: 'Key', get: (m) => m.key }, { label: 'Value', num: true, get: (m) => m.value }, { label: 'Step', num: true, get: (m) => m.step }], metrics, { empty: 'No metrics.' })));
  page.append(grid);
  if (metrics.length) {
    const charts = h('div', { class: 'grid2', id: 'run-charts' });
    page.append(h('h2', null, 'Metric history'), charts);
    const keys = metrics.map((m) => m.key).slice(0, 12);
    fill(charts, async () => {
      const hist = await metricHistories(id, keys);
      return h('div', { class: 'grid2' }, keys.map((k) => lineChart(k, [{ name: '', points: hist[k] }])));
    });
  }
  const inputs = run.inputs?.dataset_inputs || [];
  if (inputs.length) {
    page.append(h('h2', null, 'Dataset inputs'), table([
      { label: 'Name', get: (d) => d.dataset.name }, { label: 'Digest', get: (d) => d.dataset.digest },
      { label: 'Source', get: (d) => d.dataset.source }, { label: 'Context', get: (d) => (d.tags || []).map((t) => t.value).join(', ') },
    ], inputs));
  }
  page.append(h('h2', null, 'Tags'), table([{ label: 'Key', get: (t) => t.key }, { label: 'Value', get: (t) => t.value }], (run.data.tags || []).filter((t) => !t.key.startsWith('mlflow.log-model')), { empty: 'No tags.' }));
  const artifacts = h('div', { id: 'artifacts' });
  page.append(h('h2', null, 'Artifacts'), artifacts);
  fill(artifacts, () => artifactBrowser(info, query.get('path') || ''));
  return page;
}

/** The run's artifact root as the artifact API names it (`EXP/RUN/artifacts`). */
function artifactRoot(info) {
  const uri = info.artifact_uri || '';
  const m = uri.match(/^mlflow-artifacts:\/+(.*)$/);
  return m ? m[1].replace(/\/+$/, '') : null;
}

async function artifactBrowser(info, sub) {
  const root = artifactRoot(info);
  if (root === null) return h('div', { class: 'muted' }, `Artifacts live at ${info.artifact_uri}, outside this server.`);
  const dir = sub ? root + '/' + sub : root;
  const listing = await api('/api/2.0/mlflow-artifacts/artifacts?' + qs({ path: dir }));
  const files = listing.files || [];
  const viewer = h('div', { id: 'artifact-view' });
  const crumbs = h('div', { class: 'toolbar' }, link('#/runs/' + info.run_id, 'artifacts'),
    sub.split('/').filter(Boolean).map((part, i, all) => [' / ', link('#/runs/' + info.run_id + '?' + qs({ path: all.slice(0, i + 1).join('/') }), part)]));
  const name = (f) => f.path.split('/').pop();
  const rel = (f) => (sub ? sub + '/' : '') + name(f);
  return h('div', null, crumbs, table([
    { label: 'Name', get: (f) => f.is_dir ? link('#/runs/' + info.run_id + '?' + qs({ path: rel(f) }), name(f) + '/') : h('a', { href: '#', onclick: (e) => { e.preventDefault(); openArtifact(root + '/' + rel(f), viewer); } }, name(f)) },
    { label: 'Size', num: true, get: (f) => f.is_dir ? '' : fmt(Number(f.file_size || 0)) },
  ], files, { empty: 'No artifacts.' }), viewer);
}

async function openArtifact(path, viewer) {
  try {
    const res = await api('/api/2.0/mlflow-artifacts/artifacts/' + path.split('/').map(encodeURIComponent).join('/'), { raw: true });
    const blob = await res.blob();
    const type = res.headers.get('content-type') || '';
    if (path.endsWith('.html')) {
      const url = URL.createObjectURL(new Blob([blob], { type: 'text/html' }));
      viewer.replaceChildren(h('p', null, h('a', { href: url, target: '_blank', rel: 'noopener' }, 'Open ' + path.split('/').pop() + ' in a new tab')));
    } else if (blob.size < 256 * 1024 && (/^text\/|json|yaml|csv/.test(type) || /\.(txt|json|ya?ml|csv|md|log|toml|py|MLmodel)$/.test(path) || !/[\x00-\x08]/.test(await blob.slice(0, 512).text()))) {
      viewer.replaceChildren(h('h2', null, path.split('/').pop()), h('pre', null, await blob.text()));
    } else {
      const url = URL.createObjectURL(blob);
      viewer.replaceChildren(h('p', null, h('a', { href: url, download: path.split('/').pop() }, `Download ${path.split('/').pop()} (${fmt(blob.size)} bytes)`)));
    }
  } catch (e) {
    viewer.replaceChildren(errorBox(e));
  }
}

async function comparePage(_, query) {
  const ids = (query.get('runs') || '').split(',').filter(Boolean);
  if (ids.length < 2) throw new ApiError(400, 'Pick at least two runs to compare (tick them in an experiment\'s run table).');
  const runs = await Promise.all(ids.map(async (id) => (await mlflow('runs/get?' + qs({ run_id: id }))).run));
  const page = h('div', null, h('h1', null, `Comparing ${runs.length} runs`));
  const params = [...new Set(runs.flatMap((r) => (r.data.params || []).map((p) => p.key)))].sort();
  const metrics = [...new Set(runs.flatMap((r) => (r.data.metrics || []).map((m) => m.key)))].sort();
  const rows = [
    ...params.map((k) => ({ kind: 'param', key: k, values: runs.map((r) => paramValue(r, k)) })),
    ...metrics.map((k) => ({ kind: 'metric', key: k, values: runs.map((r) => metricValue(r, k)) })),
  ];
  const differs = (row) => new Set(row.values.map((v) => JSON.stringify(v))).size > 1;
  page.append(table([
    { label: '', get: (row) => row.kind },
    { label: 'Key', get: (row) => row.key },
    ...runs.map((r, i) => ({ label: runName(r), num: false, get: (row) => fmt(row.values[i]), cls: (row) => differs(row) ? 'diffcell' : null })),
  ], rows, { id: 'compare-table' }));
  const charts = h('div', { id: 'compare-charts' });
  page.append(h('h2', null, 'Metrics over steps'), charts);
  fill(charts, async () => {
    const hist = await Promise.all(runs.map((r) => metricHistories(r.info.run_id, metrics.slice(0, 12))));
    return h('div', { class: 'grid2' }, metrics.slice(0, 12).map((k) => lineChart(k, runs.map((r, i) => ({ name: runName(r), points: hist[i][k] || [] })))));
  });
  return page;
}

// ---------------------------------------------------------------------------------------------
// Models and lineage

async function modelsPage() {
  const r = await api('/api/2.0/mlflow/registered-models/search?max_results=1000');
  const models = r.registered_models || [];
  return h('div', null, h('h1', null, 'Registered models'), table([
    { label: 'Name', get: (m) => link('#/models/' + encodeURIComponent(m.name), m.name) },
    { label: 'Aliases', get: (m) => h('span', null, (m.aliases || []).map((a) => pill(`${a.alias} → v${a.version}`, 'alias'))) },
    { label: 'Latest version', get: (m) => (m.latest_versions || []).map((v) => v.version).sort((a, b) => b - a)[0] },
    { label: 'Description', get: (m) => m.description },
    { label: 'Updated', get: (m) => fmtTime(m.last_updated_timestamp) },
  ], models, { id: 'models', empty: 'No registered models. Register one with `capstan train … --register NAME` or mlflow.register_model.' }));
}

async function modelPage({ name }) {
  const model = (await api('/api/2.0/mlflow/registered-models/get?' + qs({ name }))).registered_model;
  const versions = (await api('/api/2.0/mlflow/model-versions/search?' + qs({ filter: `name='${name.replace(/'/g, "\\'")}'`, max_results: 1000 }))).model_versions || [];
  versions.sort((a, b) => Number(b.version) - Number(a.version));
  const page = h('div', null, h('h1', null, model.name), model.description ? h('p', { class: 'muted' }, model.description) : null);
  const checks = (model.tags || []).filter((t) => t.key.startsWith('capstan.check.'));
  if (checks.length) page.append(card(h('strong', null, 'Promotion checks: '), checks.map((c) => pill(c.value, 'check'))));
  page.append(h('h2', null, 'Versions'), table([
    { label: 'Version', get: (v) => 'v' + v.version },
    { label: 'Aliases', get: (v) => h('span', null, (v.aliases || []).map((a) => pill(a, 'alias'))) },
    { label: 'Status', get: (v) => pill(v.status) },
    { label: 'Source run', get: (v) => v.run_id ? link('#/runs/' + v.run_id, v.run_id.slice(0, 12)) : '' },
    { label: 'Created', get: (v) => fmtTime(v.creation_timestamp) },
    { label: 'Tags', get: (v) => (v.tags || []).map((t) => `${t.key}=${t.value}`).join(', ') },
  ], versions, { id: 'versions' }));
  const lineage = h('div', { id: 'lineage' });
  page.append(h('h2', null, 'Lineage'), lineage);
  fill(lineage, async () => h('div', null, await Promise.all(versions.slice(0, 10).map(versionLineage))));
  return page;
}

/** dataset(s) → run (its parameters) → version → aliases. */
async function versionLineage(v) {
  const nodes = [];
  if (v.run_id) {
    try {
      const run = (await mlflow('runs/get?' + qs({ run_id: v.run_id }))).run;
      const data = (run.inputs?.dataset_inputs || []).map((d) => h('div', { class: 'node' }, 'dataset ', h('strong', null, d.dataset.name), ' ', h('span', { class: 'muted' }, d.dataset.digest)));
      if (data.length) nodes.push(h('div', null, data), h('span', { class: 'arrow' }, '→'));
      const params = (run.data.params || []).filter((p) => p.value.length <= 24).slice(0, 4).map((p) => `${p.key}=${p.value}`).join(', ');
      nodes.push(h('div', { class: 'node' }, 'run ', link('#/runs/' + v.run_id, runName(run)), h('div', { class: 'muted' }, params)), h('span', { class: 'arrow' }, '→'));
    } catch (e) {
      nodes.push(h('div', { class: 'node' }, 'run ' + v.run_id + ' (', e.message, ')'), h('span', { class: 'arrow' }, '→'));
    }
  }
  nodes.push(h('div', { class: 'node' }, h('strong', null, `${v.name} v${v.version}`)));
  if ((v.aliases || []).length) nodes.push(h('span', { class: 'arrow' }, '→'), h('div', null, v.aliases.map((a) => pill(a, 'alias'))));
  return h('div', { class: 'lineage' }, nodes);
}

// ---------------------------------------------------------------------------------------------
// Deployments (A/B, canary, shadow)

function variantLabel(v) {
  return `${v.name}: ${v.model}${v.version ? ' v' + v.version : '@' + (v.alias || 'champion')}`;
}

async function deploymentsPage() {
  const r = await api('/api/2.0/capstan/deployments');
  return h('div', null, h('h1', null, 'Deployments'), table([
    { label: 'Name', get: (d) => link('#/deployments/' + encodeURIComponent(d.deployment.name), d.deployment.name) },
    { label: 'Mode', get: (d) => typeof d.deployment.mode === 'string' ? d.deployment.mode : JSON.stringify(d.deployment.mode) },
    { label: 'Variants', get: (d) => d.deployment.variants.map(variantLabel).join('; ') },
    { label: 'Traffic now', get: (d) => splitBar(d.deployment.variants.map((v, i) => ({ label: v.name, value: d.current_weights[i] || 0 }))) },
    { label: 'Created', get: (d) => fmtTime(d.created) },
  ], r.deployments || [], { id: 'deployments', empty: 'No deployments. `capstan deploy create NAME --variant a=MODEL@champion:50 --variant b=MODEL@challenger:50` starts an A/B test.' }));
}

async function deploymentPage({ name }) {
  const page = h('div', null, h('h1', null, 'Deployment ', name, ' ', h('span', { class: 'muted' }, '(live: refreshed every 5 s)')));
  const body = h('div');
  page.append(body);
  const load = async () => {
    const [d, stats] = await Promise.all([
      api('/api/2.0/capstan/deployments/' + encodeURIComponent(name)),
      api('/deployments/' + encodeURIComponent(name) + '/stats'),
    ]);
    return h('div', null,
      h('h2', null, 'Traffic split now'),
      splitBar(d.deployment.variants.map((v, i) => ({ label: v.name, value: d.current_weights[i] || 0 }))),
      h('h2', null, 'Variants'),
      table([
        { label: 'Variant', get: (v) => v.name },
        { label: 'Model', get: (v) => variantLabel(d.deployment.variants.find((x) => x.name === v.name) || { name: v.name, model: '?' }) },
        { label: 'Weight', num: true, get: (v) => v.weight },
        { label: 'Requests', num: true, get: (v) => v.requests },
        { label: 'Shadow', num: true, get: (v) => v.shadow_requests },
        { label: 'Errors', num: true, get: (v) => v.errors },
        { label: 'p50 ms', num: true, get: (v) => v.latency_p50_ms },
        { label: 'p99 ms', num: true, get: (v) => v.latency_p99_ms },
        { label: 'Feedback', num: true, get: (v) => v.feedback },
        { label: 'Outcome mean', num: true, get: (v) => v.outcome_mean },
      ], stats.variants || [], { id: 'variants' }),
      h('p', { class: 'muted' }, `Sample-ratio check p = ${fmt(stats.sample_ratio_p)} (a small p means the split is not what was configured).`),
      h('h2', null, 'Statistics against the control'),
      table([
        { label: 'Variant', get: (c) => `${c.variant} vs ${c.control}` },
        { label: 'Metric', get: (c) => c.metric },
        { label: 'Difference', num: true, get: (c) => c.difference },
        { label: '95% interval', get: (c) => `[${fmt(c.ci95[0])}, ${fmt(c.ci95[1])}]` },
        { label: 'p', num: true, get: (c) => c.p_value },
        { label: 'P(variant better)', num: true, get: (c) => c.prob_variant_better },
        { label: 'Always-valid p', num: true, get: (c) => c.always_valid_p },
        { label: 'n needed / arm', num: true, get: (c) => Math.ceil(c.required_sample_size) },
        { label: 'Verdict', get: (c) => h('strong', null, c.verdict) },
      ], stats.comparisons || [], { empty: 'No outcomes yet: send feedback to POST /deployments/' + name + '/feedback.' }));
  };
  await fill(body, load);
  every(5000, () => { if (body.isConnected) fill(body, load); });
  return page;
}

// ---------------------------------------------------------------------------------------------
// Monitors and alerts

function alertTable(alerts) {
  return table([
    { label: 'When', get: (a) => fmtTime(a.created_ms) },
    { label: 'Monitor', get: (a) => link('#/monitors/' + encodeURIComponent(a.monitor), a.monitor) },
    { label: 'Model', get: (a) => a.model },
    { label: 'Check', get: (a) => a.check },
    { label: 'Message', get: (a) => a.message },
  ], alerts, { id: 'alerts', empty: 'No alerts.' });
}

async function monitorsPage() {
  const [mons, alerts] = await Promise.all([api('/api/2.0/capstan/monitors'), api('/api/2.0/capstan/alerts?limit=100')]);
  return h('div', null, h('h1', null, 'Monitors'), table([
    { label: 'Name', get: (m) => link('#/monitors/' + encodeURIComponent(m.monitor.name), m.monitor.name) },
    { label: 'Model', get: (m) => m.monitor.model },
    { label: 'Every', get: (m) => m.monitor.interval_seconds + ' s' },
    { label: 'Last evaluation', get: (m) => fmtTime(m.last_evaluation?.at_ms) },
    { label: 'Checks', get: (m) => h('span', null, (m.last_evaluation?.results || []).map((r) => pill(r.check + (r.failing ? ' FAILING' : ' ok'), r.failing ? 'bad' : 'ok'))) },
  ], mons.monitors || [], { id: 'monitors', empty: 'No monitors. `capstan monitors create …` watches a served model for drift, errors and latency.' }),
  h('h2', null, 'Alert history'), alertTable(alerts.alerts || []));
}

async function monitorPage({ name }) {
  const [m, alerts] = await Promise.all([
    api('/api/2.0/capstan/monitors/' + encodeURIComponent(name)),
    api('/api/2.0/capstan/alerts?' + qs({ monitor: name, limit: 200 })),
  ]);
  const ev = m.last_evaluation;
  const page = h('div', null, h('h1', null, 'Monitor ', name), card(kvTable([
    ['Model', m.monitor.model], ['Reference', m.monitor.reference], ['Window', m.monitor.window_seconds + ' s'],
    ['Last evaluation', ev ? fmtTime(ev.at_ms) : 'not yet'], ['Predictions in window', ev?.predictions],
  ])));
  if (ev) {
    page.append(h('h2', null, 'Checks'), table([
      { label: 'Check', get: (r) => r.check },
      { label: 'State', get: (r) => pill(r.failing ? 'FAILING' : 'ok', r.failing ? 'bad' : 'ok') },
      { label: 'Observed', num: true, get: (r) => r.value },
      { label: 'Threshold', num: true, get: (r) => r.threshold },
      { label: 'Message', get: (r) => r.message },
    ], ev.results || [], { id: 'checks' }));
    const cols = ev.drift_columns || [];
    if (cols.length) {
      page.append(h('h2', null, 'Drift by column'), h('div', { class: 'grid2' },
        table([
          { label: 'Column', get: (c) => c.column }, { label: 'Test', get: (c) => c.method },
          { label: 'Score (p-value or distance)', num: true, get: (c) => c.score },
          { label: 'Drifted', get: (c) => c.drifted ? pill('drifted', 'bad') : pill('no', 'ok') },
        ], cols, { id: 'drift-columns' }),
        barChart('Drift score per column (red: drifted)', cols.map((c) => ({ label: c.column, value: c.score, color: c.drifted ? '#c4302b' : '#2f6fde' })))));
    }
  }
  page.append(h('h2', null, 'Alert history'), alertTable(alerts.alerts || []));
  return page;
}

// ---------------------------------------------------------------------------------------------
// Jobs and retraining

async function jobsPage(_, query) {
  const state = query.get('state') || '';
  const r = await api('/api/2.0/capstan/jobs?' + qs({ state, limit: 500 }));
  const jobs = r.jobs || [];
  const select = h('select', { id: 'job-state', onchange: () => setQuery('#/jobs', { state: select.value }) },
    ['', 'queued', 'running', 'succeeded', 'failed', 'cancelled'].map((s) => h('option', { value: s, selected: s === state }, s || 'all states')));
  const retrains = jobs.filter((j) => j.kind === 'retrain' || j.kind === 'rollout-check');
  const page = h('div', null, h('h1', null, 'Jobs'), h('div', { class: 'toolbar' }, select));
  page.append(jobTable(jobs));
  page.append(h('h2', null, 'Retrainings'), table([
    { label: 'Job', get: (j) => link('#/jobs/' + j.id, '#' + j.id) },
    { label: 'Model', get: (j) => j.payload?.model },
    { label: 'Why it started', get: (j) => j.payload?.deployment ? `canary check ${j.payload.round || 1} of ${j.payload.deployment}` : j.payload?.monitor ? `monitor ${j.payload.monitor}: ${(j.payload.alerts || []).map((a) => a.message || a.check).join('; ')}` : (j.payload?.reason || j.dedupe_key) },
    { label: 'State', get: (j) => pill(j.state) },
    { label: 'Decision', get: (j) => j.result?.outcome ? h('span', null, pill(j.result.outcome, j.result.outcome === 'rejected' ? 'bad' : 'ok'), ' ', j.result.reason || '') : j.last_error },
    { label: 'Candidate', get: (j) => j.result?.candidate_version ? link('#/models/' + encodeURIComponent(j.payload.model), 'v' + j.result.candidate_version) : '' },
    { label: 'When', get: (j) => fmtTime(j.created_ms) },
  ], retrains, { id: 'retrainings', empty: 'No retraining has run yet.' }));
  return page;
}

function jobTable(jobs) {
  return table([
    { label: 'ID', get: (j) => link('#/jobs/' + j.id, '#' + j.id) },
    { label: 'Kind', get: (j) => j.kind },
    { label: 'State', get: (j) => pill(j.state) },
    { label: 'Attempts', num: true, get: (j) => `${j.attempts}/${j.max_attempts}` },
    { label: 'Worker', get: (j) => j.lease_owner },
    { label: 'Created', get: (j) => fmtTime(j.created_ms) },
    { label: 'Updated', get: (j) => fmtTime(j.updated_ms) },
    { label: 'Last error', get: (j) => j.last_error },
  ], jobs, { id: 'jobs', empty: 'No jobs. `capstan jobs submit KIND` queues one; `capstan worker` runs them.' });
}

async function jobPage({ id }) {
  const r = await api('/api/2.0/capstan/jobs/' + encodeURIComponent(id));
  const j = r.job || r;
  const page = h('div', null, h('h1', null, `Job #${j.id} `, pill(j.state)));
  page.append(card(kvTable([
    ['Kind', j.kind], ['Attempts', `${j.attempts} of ${j.max_attempts}`], ['Worker', j.lease_owner], ['Lease until', fmtTime(j.lease_until_ms)],
    ['Run after', fmtTime(j.run_after_ms)], ['Dedupe key', j.dedupe_key], ['Created', fmtTime(j.created_ms)], ['Updated', fmtTime(j.updated_ms)],
    ['Last error', j.last_error],
  ])));
  if (j.state === 'queued' || j.state === 'running') {
    page.append(h('button', { id: 'cancel-job', onclick: async (e) => {
      e.target.disabled = true;
      try { await api(`/api/2.0/capstan/jobs/${j.id}/cancel`, { method: 'POST', body: {} }); render(); } catch (err) { page.append(errorBox(err)); }
    } }, 'Cancel job'));
  }
  page.append(h('h2', null, 'Payload'), h('pre', null, JSON.stringify(j.payload, null, 2)));
  if (j.result !== null && j.result !== undefined) page.append(h('h2', null, 'Result'), h('pre', null, JSON.stringify(j.result, null, 2)));
  const log = await api(`/api/2.0/capstan/jobs/${j.id}/logs?limit=10000`);
  const lines = (log.lines || []).map((l) => `${fmtTime(l.time_ms)}  #${l.attempt}  ${l.line}`);
  page.append(h('h2', null, 'Log'), h('pre', { id: 'job-log' }, lines.length ? lines.join('\n') : 'Nothing logged yet.'));
  return page;
}

// ---------------------------------------------------------------------------------------------
// Feature store

async function featuresPage() {
  const d = await api('/api/2.0/capstan/features');
  const page = h('div', null, h('h1', null, 'Feature store'));
  if (!d.applied_ms) {
    page.append(h('div', { class: 'empty' }, 'No feature definitions applied. Write entities, sources and feature views in YAML and run ', h('code', null, 'capstan features apply defs.yaml'), '.'));
    return page;
  }
  page.append(h('p', { class: 'muted' }, 'Applied ' + fmtTime(d.applied_ms)));
  page.append(h('h2', null, 'Feature views'), table([
    { label: 'View', get: (v) => v.name },
    { label: 'Entities', get: (v) => (v.entities || []).join(', ') },
    { label: 'Source', get: (v) => v.source },
    { label: 'TTL', get: (v) => v.ttl_seconds ? v.ttl_seconds + ' s' : 'forever' },
    { label: 'Features', get: (v) => (v.features || []).map((f) => `${f.name}: ${f.dtype || f.type || ''}`).join(', ') },
    { label: 'Materialised until', get: (v) => v.materialized_until_ms ? fmtTime(v.materialized_until_ms) : 'never' },
  ], d.feature_views || [], { id: 'feature-views' }));
  page.append(h('h2', null, 'Entities'), table([
    { label: 'Name', get: (e) => e.name }, { label: 'Join keys', get: (e) => (e.join_keys || [e.join_key]).filter(Boolean).join(', ') }, { label: 'Description', get: (e) => e.description },
  ], d.entities || []));
  page.append(h('h2', null, 'Feature services'), table([
    { label: 'Service', get: (s) => s.name }, { label: 'Features', get: (s) => s.features.join(', ') },
  ], d.feature_services || [], { empty: 'No feature services.' }));
  if ((d.on_demand_views || []).length) page.append(h('h2', null, 'On-demand views'), h('pre', null, JSON.stringify(d.on_demand_views, null, 2)));
  return page;
}

// ---------------------------------------------------------------------------------------------
// Vector collections and the RAG playground

async function collectionsPage() {
  const r = await api('/collections');
  const names = (r.result?.collections || []).map((c) => c.name);
  const infos = await Promise.all(names.map(async (n) => {
    try { return { name: n, ...(await api('/collections/' + encodeURIComponent(n))).result }; } catch (e) { return { name: n, error: e.message }; }
  }));
  return h('div', null, h('h1', null, 'Collections'), table([
    { label: 'Name', get: (c) => link('#/collections/' + encodeURIComponent(c.name), c.name) },
    { label: 'Points', num: true, get: (c) => c.points_count },
    { label: 'Dimension', num: true, get: (c) => c.config?.params?.vectors?.size },
    { label: 'Distance', get: (c) => c.config?.params?.vectors?.distance },
    { label: 'Embedding model', get: (c) => c.config?.embedding_model || '' },
    { label: 'Status', get: (c) => c.error ? c.error : pill(c.status, c.status === 'green' ? 'ok' : 'bad') },
  ], infos, { id: 'collections', empty: 'No collections. `capstan rag ingest NAME DOCS_DIR` chunks, embeds and indexes documents.' }));
}

async function collectionPage({ name }) {
  const info = (await api('/collections/' + encodeURIComponent(name))).result;
  const page = h('div', null, h('h1', null, 'Collection ', name));
  page.append(card(kvTable([
    ['Points', info.points_count], ['Dimension', info.config?.params?.vectors?.size], ['Distance', info.config?.params?.vectors?.distance],
    ['HNSW', `m=${info.config?.hnsw_config?.m}, ef_construct=${info.config?.hnsw_config?.ef_construct}`],
    ['Quantized', String(!!info.quantized)], ['Embedding model', info.config?.embedding_model || 'none (vectors given by the client)'],
  ])));
  const question = h('textarea', { id: 'rag-question', placeholder: 'Ask a question about the documents in this collection' });
  const topK = h('input', { id: 'rag-top-k', value: '5', size: 3, 'aria-label': 'top k' });
  const mode = h('select', { id: 'rag-mode' }, ['hybrid', 'vector', 'keyword'].map((m) => h('option', { value: m }, m)));
  const out = h('div', { id: 'rag-answer' });
  const ask = async () => {
    if (!question.value.trim()) { out.replaceChildren(errorBox(new Error('Type a question first.'))); return; }
    await fill(out, async () => {
      const r = await api('/rag/' + encodeURIComponent(name) + '/query', { method: 'POST', body: { query: question.value, top_k: Number(topK.value) || 5, mode: mode.value } });
      const a = r.result;
      return h('div', null,
        card(h('strong', null, 'Answer'), h('p', null, a.answer || '(no answer)'),
          r.trace_id ? h('p', { class: 'muted' }, 'Trace: ', link('#/traces/' + r.trace_id, r.trace_id)) : null),
        barChart('Step timings (ms)', (a.steps || []).map((s) => ({ label: s.name, value: s.duration_ms })), { format: (v) => v.toFixed(2) }),
        h('h2', null, 'Retrieved chunks'),
        table([
          { label: 'Score', num: true, get: (x) => x.score },
          { label: 'Source', get: (x) => x.source + (x.headings?.length ? ' › ' + x.headings.join(' › ') : '') },
          { label: 'Text', get: (x) => x.text.length > 400 ? x.text.slice(0, 400) + '…' : x.text },
        ], a.hits || [], { id: 'rag-hits', empty: 'Nothing retrieved.' }));
    });
  };
  page.append(h('h2', null, 'RAG playground'), question, h('div', { class: 'toolbar' }, 'mode ', mode, ' top k ', topK, h('button', { class: 'primary', id: 'rag-ask', onclick: ask }, 'Ask')), out);
  return page;
}

// ---------------------------------------------------------------------------------------------
// LLM gateway: usage, cost and cache

async function gatewayPage(_, query) {
  const days = Number(query.get('days') || 7);
  const since = Date.now() - days * 86400000;
  const [byModel, byDeployment, byUser, recent] = await Promise.all(['model', 'deployment', 'user'].map((by) => api('/api/2.0/capstan/gateway/usage/summary?' + qs({ by, since_ms: since })))
    .concat([api('/api/2.0/capstan/gateway/usage?' + qs({ since_ms: since, limit: 500 }))]));
  const records = recent.records || [];
  const page = h('div', null, h('h1', null, 'LLM gateway'));
  const range = h('select', { id: 'usage-days', onchange: () => setQuery('#/gateway', { days: range.value }) }, [1, 7, 30, 365].map((d) => h('option', { value: d, selected: d === days }, `last ${d} day${d > 1 ? 's' : ''}`)));
  page.append(h('div', { class: 'toolbar' }, range));
  const hits = records.filter((r) => r.cache === 'hit' || r.cache === 'semantic-hit').length;
  const errors = records.filter((r) => r.status >= 400).length;
  const cost = records.reduce((a, r) => a + (r.cost_usd || 0), 0);
  page.append(h('div', { class: 'cards' },
    card(h('div', { class: 'muted' }, 'Calls (latest 500)'), h('div', { class: 'stat', id: 'usage-calls' }, fmt(records.length))),
    card(h('div', { class: 'muted' }, 'Cost'), h('div', { class: 'stat' }, fmtUsd(cost))),
    card(h('div', { class: 'muted' }, 'Cache hit rate'), h('div', { class: 'stat' }, records.length ? (hits / records.length * 100).toFixed(1) + '%' : '–')),
    card(h('div', { class: 'muted' }, 'Errors'), h('div', { class: 'stat' }, fmt(errors)))));
  const groups = (r) => (r.groups || []).slice(0, 15);
  const label = (g) => g.value || '(none)';
  page.append(h('div', { class: 'grid2' },
    barChart('Cost by model group (USD)', groups(byModel).map((g) => ({ label: label(g), value: g.cost_usd || 0 })), { format: fmtUsd }),
    barChart('Tokens by model group', groups(byModel).map((g) => ({ label: label(g), value: (g.prompt_tokens || 0) + (g.completion_tokens || 0) }))),
    barChart('Calls by deployment', groups(byDeployment).map((g) => ({ label: label(g), value: g.requests || 0 }))),
    barChart('Cost by user (USD)', groups(byUser).map((g) => ({ label: label(g), value: g.cost_usd || 0 })), { format: fmtUsd }),
    barChart('Cache', ['hit', 'semantic-hit', 'miss', 'off'].map((c, i) => ({ label: c, value: records.filter((r) => r.cache === c).length, color: COLORS[i] }))),
    lineChart('Latency of recent calls (ms)', [{ name: 'latency', points: [...records].reverse().map((r, i) => [i + 1, r.latency_ms]) }], { xLabel: 'call (oldest first)' })));
  page.append(h('h2', null, 'Recent calls'), table([
    { label: 'When', get: (r) => fmtTime(r.ts_ms) },
    { label: 'Model', get: (r) => r.model },
    { label: 'Answered by', get: (r) => r.deployment },
    { label: 'User', get: (r) => r.user || '' },
    { label: 'In', num: true, get: (r) => r.usage?.prompt_tokens },
    { label: 'Out', num: true, get: (r) => r.usage?.completion_tokens },
    { label: 'Cost', num: true, get: (r) => fmtUsd(r.cost_usd) },
    { label: 'Latency', num: true, get: (r) => fmtDuration(r.latency_ms) },
    { label: 'Cache', get: (r) => r.cache },
    { label: 'Status', get: (r) => pill(String(r.status), r.status < 400 ? 'ok' : 'bad') },
    { label: 'Trace', get: (r) => r.trace_id ? link('#/traces/' + r.trace_id, 'trace') : '' },
  ], records.slice(0, 100), { id: 'usage', empty: 'No gateway calls yet. Point the OpenAI client at ' + location.origin + '/v1.' }));
  return page;
}

// ---------------------------------------------------------------------------------------------
// Prompts

async function promptsPage() {
  const r = await api('/api/2.0/capstan/prompts');
  return h('div', null, h('h1', null, 'Prompts'), table([
    { label: 'Name', get: (p) => link('#/prompts/' + encodeURIComponent(p.name), p.name) },
    { label: 'Latest version', num: true, get: (p) => p.latest_version },
    { label: 'Labels', get: (p) => h('span', null, Object.entries(p.labels || {}).map(([l, v]) => pill(`${l} → v${v}`, 'alias'))) },
  ], r.prompts || [], { id: 'prompts', empty: 'No prompts. `capstan prompts create NAME --template …` stores a versioned prompt.' }));
}

function templateText(t) {
  if (t.text !== undefined) return t.text;
  return (t.messages || []).map((m) => `[${m.role}]\n${m.content}`).join('\n');
}

async function promptPage({ name }, query) {
  const p = await api('/api/2.0/capstan/prompts/' + encodeURIComponent(name));
  const versions = p.versions || [];
  const labelsOf = (v) => Object.entries(p.labels || {}).filter(([, n]) => n === v).map(([l]) => l);
  const page = h('div', null, h('h1', null, 'Prompt ', name));
  page.append(table([
    { label: 'Version', get: (v) => 'v' + v.version },
    { label: 'Labels', get: (v) => h('span', null, labelsOf(v.version).map((l) => pill(l, 'alias'))) },
    { label: 'Commit message', get: (v) => v.commit_message },
    { label: 'Variables', get: (v) => Object.entries(v.variables || {}).map(([k, t]) => `${k}: ${t}`).join(', ') },
    { label: 'Parameters', get: (v) => Object.keys(v.params || {}).length ? JSON.stringify(v.params) : '' },
    { label: 'Created', get: (v) => fmtTime(v.created_ms) },
  ], versions, { id: 'prompt-versions' }));
  const last = versions.length ? versions[versions.length - 1].version : 1;
  const from = Number(query.get('from') || Math.max(1, last - 1));
  const to = Number(query.get('to') || last);
  const pick = (id, value) => h('select', { id }, versions.map((v) => h('option', { value: v.version, selected: v.version === value }, 'v' + v.version)));
  const a = pick('diff-from', from), b = pick('diff-to', to);
  page.append(h('h2', null, 'Diff'), h('div', { class: 'toolbar' }, 'from ', a, ' to ', b,
    h('button', { id: 'show-diff', onclick: () => setQuery('#/prompts/' + encodeURIComponent(name), { from: a.value, to: b.value }) }, 'Show')));
  const diff = h('div', { class: 'diff card', id: 'prompt-diff' });
  page.append(diff);
  if (versions.length > 1 || from !== to) {
    fill(diff, async () => {
      const d = await api(`/api/2.0/capstan/prompts/${encodeURIComponent(name)}/diff?` + qs({ from, to }));
      return h('div', null, d.lines.map((l) => h('div', { class: l.startsWith('+') ? 'add' : l.startsWith('-') ? 'del' : '' }, l)));
    });
  }
  const shown = versions.find((v) => v.version === to);
  if (shown) page.append(h('h2', null, `Template v${shown.version}`), h('pre', null, templateText(shown.template)));
  return page;
}

// ---------------------------------------------------------------------------------------------
// Evaluations (runs of the `evaluations` experiment, side by side)

async function evaluationsPage() {
  const page = h('div', null, h('h1', null, 'Evaluations'));
  let exp;
  try {
    exp = (await mlflow('experiments/get-by-name?' + qs({ experiment_name: 'evaluations' }))).experiment;
  } catch (e) {
    if (e.status !== 404) throw e;
    page.append(h('div', { class: 'empty' }, 'No evaluation runs yet. ', h('code', null, 'capstan eval run --cases cases.jsonl --model GROUP'), ' scores a model or RAG pipeline and records the run here.'));
    return page;
  }
  const found = await mlflow('runs/search', { experiment_ids: [exp.experiment_id], order_by: ['attributes.start_time DESC'], max_results: 200 });
  const runs = found.runs || [];
  const metrics = keysOf(runs, 'metrics', 12);
  const compare = h('button', { id: 'compare-evals', onclick: () => {
    const ids = [...page.querySelectorAll('input.run-select:checked')].map((c) => c.dataset.run);
    location.hash = '#/compare?' + qs({ runs: ids.join(',') });
  } }, 'Side by side');
  page.append(h('div', { class: 'toolbar' }, compare, h('span', { class: 'muted' }, 'tick two or more runs')));
  page.append(table([
    { label: '', get: (r) => h('input', { type: 'checkbox', class: 'run-select', 'data-run': r.info.run_id, 'aria-label': 'select ' + runName(r) }) },
    { label: 'Run', get: (r) => link('#/runs/' + r.info.run_id, runName(r)) },
    { label: 'Model', get: (r) => paramValue(r, 'model') },
    { label: 'Cases', get: (r) => paramValue(r, 'cases') },
    { label: 'Started', get: (r) => fmtTime(r.info.start_time) },
    { label: 'Gate', get: (r) => tagValue(r, 'capstan.eval.gate') ? pill(tagValue(r, 'capstan.eval.gate'), tagValue(r, 'capstan.eval.gate') === 'passed' ? 'ok' : 'bad') : '' },
    ...metrics.map((k) => ({ label: k, num: true, get: (r) => metricValue(r, k) })),
    { label: 'Report', get: (r) => h('a', { href: '#', onclick: (e) => { e.preventDefault(); const root = artifactRoot(r.info); if (root) openArtifact(root + '/eval/report.html', viewer); } }, 'report') },
  ], runs, { id: 'evaluations', empty: 'No evaluation runs yet.' }));
  const viewer = h('div');
  page.append(viewer);
  return page;
}

// ---------------------------------------------------------------------------------------------
// Traces

async function tracesPage(_, query) {
  const f = Object.fromEntries(['q', 'model', 'user', 'service', 'status', 'min_duration_ms'].map((k) => [k, query.get(k) || '']));
  const pageToken = query.get('page') || '';
  const offset = Number(query.get('offset') || 0);
  const inputs = {};
  const field = (k, ph, size = 14) => (inputs[k] = h('input', { id: 'trace-' + k, value: f[k], placeholder: ph, size, 'aria-label': k }));
  const status = h('select', { id: 'trace-status' }, ['', 'ok', 'error'].map((s) => h('option', { value: s, selected: s === f.status }, s || 'any status')));
  const apply = () => setQuery('#/traces', { ...Object.fromEntries(Object.entries(inputs).map(([k, el]) => [k, el.value.trim()])), status: status.value });
  const page = h('div', null, h('h1', null, 'Traces'), h('div', { class: 'toolbar' },
    field('q', 'text in names or attributes', 24), field('model', 'model'), field('user', 'user'), field('service', 'service'), status,
    field('min_duration_ms', 'min ms', 7), h('button', { class: 'primary', id: 'trace-apply', onclick: apply }, 'Filter')));
  page.querySelectorAll('input').forEach((i) => i.addEventListener('keydown', (e) => { if (e.key === 'Enter') apply(); }));
  let r;
  try {
    r = await api('/api/2.0/capstan/traces?' + qs({ ...f, limit: PAGE_SIZE, page_token: pageToken }));
  } catch (e) {
    page.append(errorBox(e));
    return page;
  }
  const traces = r.traces || [];
  page.append(table([
    { label: 'Started', get: (t) => fmtTime(t.start_ns / 1e6) },
    { label: 'Name', get: (t) => link('#/traces/' + t.trace_id, t.name || t.trace_id) },
    { label: 'Service', get: (t) => t.service },
    { label: 'Model', get: (t) => t.model },
    { label: 'User', get: (t) => t.user },
    { label: 'Duration', num: true, get: (t) => fmtDuration(t.duration_ms) },
    { label: 'Spans', num: true, get: (t) => t.spans },
    { label: 'Tokens in/out', num: true, get: (t) => `${t.input_tokens} / ${t.output_tokens}` },
    { label: 'Cost', num: true, get: (t) => fmtUsd(t.cost_usd) },
    { label: 'Status', get: (t) => pill(t.status, t.status === 'error' ? 'bad' : 'ok') },
  ], traces, { id: 'traces', empty: 'No traces match. Send OTLP/HTTP to ' + location.origin + '/v1/traces, or call the gateway or a RAG pipeline.' }));
  const pager = h('div', { class: 'pager' }, h('span', { class: 'muted', id: 'traces-range' }, traces.length ? `traces ${offset + 1}–${offset + traces.length}` : ''));
  if (pageToken) pager.append(h('button', { onclick: () => history.back() }, '← Newer'));
  if (r.next_page_token) pager.append(h('button', { id: 'traces-next', onclick: () => setQuery('#/traces', { ...f, page: r.next_page_token, offset: offset + traces.length }) }, 'Older →'));
  page.append(pager);
  return page;
}

async function tracePage({ id }) {
  const t = await api('/api/2.0/capstan/traces/' + encodeURIComponent(id));
  const page = h('div', null, h('h1', null, 'Trace ', h('span', { class: 'muted' }, t.trace_id)));
  page.append(h('div', { class: 'cards' },
    card(h('div', { class: 'muted' }, 'Duration'), h('div', { class: 'stat' }, fmtDuration(t.duration_ms))),
    card(h('div', { class: 'muted' }, 'Spans'), h('div', { class: 'stat' }, fmt(t.span_count))),
    card(h('div', { class: 'muted' }, 'Errors'), h('div', { class: 'stat' }, fmt(t.errors))),
    card(h('div', { class: 'muted' }, 'Tokens in / out'), h('div', { class: 'stat' }, `${fmt(t.input_tokens)} / ${fmt(t.output_tokens)}`)),
    card(h('div', { class: 'muted' }, 'Cost'), h('div', { class: 'stat' }, fmtUsd(t.cost_usd)))));
  const total = Math.max(1, t.end_ns - t.start_ns);
  const detail = h('div', { id: 'span-detail' });
  const rows = t.spans.map((s) => {
    const row = h('div', { class: 'span-row', 'data-span': s.span_id },
      h('div', { class: 'span-name', style: { paddingLeft: (s.depth * 16) + 'px' }, title: s.name }, s.depth ? '└ ' : '', s.name),
      h('div', { class: 'span-bar' }, h('div', { class: s.status === 'error' ? 'failed' : '', style: { left: ((s.start_ns - t.start_ns) / total * 100) + '%', width: ((s.end_ns - s.start_ns) / total * 100) + '%' } })),
      h('div', { class: 'num' }, fmtDuration(s.duration_ms)));
    row.addEventListener('click', () => {
      page.querySelectorAll('.span-row.selected').forEach((r) => r.classList.remove('selected'));
      row.classList.add('selected');
      detail.replaceChildren(spanDetail(s));
    });
    return row;
  });
  page.append(h('h2', null, 'Spans'), h('div', { id: 'span-tree', class: 'card' }, rows), detail);
  if (t.spans.length) detail.replaceChildren(spanDetail(t.spans[0]));
  return page;
}

function spanDetail(s) {
  const g = s.genai || {};
  return card(h('h2', null, s.name, ' ', pill(s.status || 'unset', s.status === 'error' ? 'bad' : 'ok')),
    kvTable([
      ['Span ID', s.span_id], ['Parent', s.parent_span_id || '(root)'], ['Service', s.service], ['Scope', s.scope],
      ['Duration', fmtDuration(s.duration_ms)], ['Status message', s.status_message || undefined],
      ...Object.entries(g).filter(([, v]) => v !== null && v !== undefined && v !== '').map(([k, v]) => ['gen_ai ' + k, v]),
    ]),
    h('h2', null, 'Attributes'), kvTable(Object.entries(s.attributes || {}).map(([k, v]) => [k, typeof v === 'string' && v.length > 2000 ? v.slice(0, 2000) + '…' : v])),
    (s.events || []).length ? [h('h2', null, 'Events'), h('pre', null, JSON.stringify(s.events, null, 2))] : null);
}

// ---------------------------------------------------------------------------------------------
// Routing

const NAV = [
  ['experiments', 'Experiments'], ['models', 'Models'], ['deployments', 'Deployments'], ['monitors', 'Monitors'],
  ['jobs', 'Jobs'], ['features', 'Features'], ['collections', 'Collections'], ['gateway', 'Gateway'],
  ['prompts', 'Prompts'], ['evaluations', 'Evaluations'], ['traces', 'Traces'],
];

const ROUTES = [
  ['', overview], ['experiments', experimentsPage], ['experiments/:id', experimentRunsPage], ['runs/:id', runPage],
  ['compare', comparePage], ['models', modelsPage], ['models/:name', modelPage], ['deployments', deploymentsPage],
  ['deployments/:name', deploymentPage], ['monitors', monitorsPage], ['monitors/:name', monitorPage], ['jobs', jobsPage],
  ['jobs/:id', jobPage], ['features', featuresPage], ['collections', collectionsPage], ['collections/:name', collectionPage],
  ['gateway', gatewayPage], ['prompts', promptsPage], ['prompts/:name', promptPage], ['evaluations', evaluationsPage],
  ['traces', tracesPage], ['traces/:id', tracePage],
];

let timers = [];
function every(ms, f) { timers.push(setInterval(f, ms)); }

function match(path) {
  const parts = path.split('/').filter(Boolean);
  for (const [pattern, page] of ROUTES) {
    const want = pattern.split('/').filter(Boolean);
    if (want.length !== parts.length) continue;
    const params = {};
    if (want.every((w, i) => w.startsWith(':') ? (params[w.slice(1)] = decodeURIComponent(parts[i]), true) : w === parts[i])) return [page, params];
  }
  return null;
}

let renderSeq = 0;
async function render() {
  timers.forEach(clearInterval);
  timers = [];
  const seq = ++renderSeq;
  const hash = location.hash.replace(/^#\/?/, '');
  const [path, search] = hash.split('?');
  const query = new URLSearchParams(search || '');
  document.querySelectorAll('#nav a').forEach((a) => a.classList.toggle('active', path.split('/')[0] === a.dataset.section));
  document.getElementById('token-button').textContent = token() ? 'token ✓' : 'token';
  const found = match(path);
  const started = performance.now();
  document.body.dataset.state = 'loading';
  app.replaceChildren(h('div', { class: 'loading' }, 'Loading…'));
  let node;
  if (!found) {
    node = errorBox(new ApiError(404, `No page at #/${path}.`));
  } else {
    try { node = await found[0](found[1], query); } catch (e) { node = errorBox(e); }
  }
  if (seq !== renderSeq) return;
  app.replaceChildren(node);
  document.body.dataset.state = 'ready';
  window.capstanRenderMs = performance.now() - started;
}

document.getElementById('nav').append(...NAV.map(([section, label]) => h('a', { href: '#/' + section, 'data-section': section }, label)));
document.getElementById('token-button').addEventListener('click', askToken);
window.addEventListener('hashchange', render);
render();
