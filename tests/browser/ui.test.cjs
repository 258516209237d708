// Browser test of the web UI: the real `capstan` binary serves a platform filled by its own demo
// and by the public APIs (runs, a registry, an A/B deployment with traffic, monitors and alerts,
// jobs, feature views, a collection, prompts, gateway calls, traces), and Debian's Chromium,
// driven by playwright-core, walks every page, filters and sorts runs, opens a comparison chart,
// opens a trace and its span tree, and checks that a bad filter and an empty platform read well.
// Screenshots go to $CAPSTAN_UI_ARTIFACTS (default ~/.cache/capstan/ci-artifacts/ui); the
// first-screen times of pages over 10,000 runs and 100,000 spans are printed and written there
// as ui-timings.md (measured, not asserted).
//
//   CAPSTAN_BIN=target/debug/capstan NODE_PATH=~/.cache/capstan/npm/node_modules node tests/browser/ui.test.cjs
'use strict';

const assert = require('node:assert/strict');
const { spawn, execFileSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { chromium } = require('playwright-core');

const BIN = process.env.CAPSTAN_BIN;
if (!BIN) throw new Error('set CAPSTAN_BIN to the capstan executable');
const ROOT = path.resolve(__dirname, '../..');
const CACHE = process.env.CAPSTAN_CACHE || path.join(os.homedir(), '.cache/capstan');
const OUT = process.env.CAPSTAN_UI_ARTIFACTS || path.join(CACHE, 'ci-artifacts/ui');
const RUNS = Number(process.env.CAPSTAN_UI_RUNS || 10000);
const SPANS = Number(process.env.CAPSTAN_UI_SPANS || 100000);
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

const children = [];
process.on('exit', () => children.forEach((c) => c.kill('SIGKILL')));

function newHome(prefix) {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  // Share the machine's model cache (the Rust tests fetch MiniLM there once).
  const models = path.join(CACHE, 'models');
  if (fs.existsSync(models)) fs.symlinkSync(models, path.join(home, 'models'));
  return home;
}

function startServer(home) {
  return new Promise((resolve, reject) => {
    const child = spawn(BIN, ['--home', home, 'server', '--port', '0'], { stdio: ['ignore', 'pipe', 'inherit'] });
    children.push(child);
    let seen = '';
    child.stdout.on('data', (d) => {
      seen += d;
      const m = seen.match(/http:\/\/[0-9.]+:\d+/);
      if (m) resolve(m[0]);
    });
    child.on('exit', (code) => reject(new Error(`capstan server exited (${code}): ${seen}`)));
  });
}

async function call(base, method, p, body) {
  const res = await fetch(base + p, { method, headers: body === undefined ? {} : { 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${p} → ${res.status}: ${text.slice(0, 300)}`);
  return text ? JSON.parse(text) : {};
}

/** Runs `f` over `items` with `n` in flight. */
async function pool(items, n, f) {
  let i = 0;
  await Promise.all(Array.from({ length: n }, async () => { while (i < items.length) { const k = i++; await f(items[k], k); } }));
}

const hex = (n) => crypto.randomBytes(n).toString('hex');
const kv = (key, value) => ({ key, value: typeof value === 'number' ? (Number.isInteger(value) ? { intValue: String(value) } : { doubleValue: value }) : { stringValue: value } });

/** A traced RAG-style call: root → retrieve + llm (GenAI attributes) + a failing tool call. */
function traceSpans(i, t0) {
  const trace = hex(16), root = hex(8);
  const ms = 1e6, start = t0 + i * 10 * ms;
  const span = (name, parent, a, b, attrs, error) => ({ traceId: trace, spanId: parent === null ? root : hex(8), parentSpanId: parent || '', name, kind: 1,
    startTimeUnixNano: String(start + a * ms), endTimeUnixNano: String(start + b * ms), attributes: attrs, status: error ? { code: 2, message: 'tool timed out' } : { code: 1 } });
  const model = i % 2 ? 'gpt-4o-mini' : 'smollm2';
  const spans = [span('rag.query', null, 0, 40, [kv('user.id', 'user-' + (i % 7))])];
  spans.push(span('embed', root, 1, 3, [kv('gen_ai.operation.name', 'embeddings'), kv('gen_ai.request.model', 'all-MiniLM-L6-v2')]));
  spans.push(span('retrieve', root, 3, 6, [kv('rag.hits', 5)]));
  spans.push(span('chat ' + model, root, 6, 38, [kv('gen_ai.operation.name', 'chat'), kv('gen_ai.provider.name', 'openai'), kv('gen_ai.request.model', model),
    kv('gen_ai.usage.input_tokens', 120 + i % 50), kv('gen_ai.usage.output_tokens', 30 + i % 20), kv('gen_ai.usage.cost_usd', 0.0001 * (1 + i % 5))]));
  spans.push(span('tool lookup', root, 7, 12, [kv('tool.name', 'lookup')], i % 10 === 0));
  return spans;
}

async function postSpans(base, spans, service) {
  await call(base, 'POST', '/v1/traces', { resourceSpans: [{ resource: { attributes: [kv('service.name', service)] }, scopeSpans: [{ scope: { name: 'ui-test' }, spans }] }] });
}

async function seed(base, home) {
  const t = Date.now();
  // A/B deployment over the demo's model, with traffic and outcomes.
  await call(base, 'POST', '/api/2.0/capstan/deployments', { name: 'ui-ab', mode: 'split', variants: [
    { name: 'champion', model: 'diabetes-regressor', alias: 'champion', weight: 50 },
    { name: 'challenger', model: 'diabetes-regressor', version: 1, weight: 50 }] });
  const rows = fs.readFileSync(path.join(ROOT, 'data/diabetes.csv'), 'utf8').trim().split('\n').slice(1, 121).map((l) => l.split(',').map(Number));
  await pool(rows, 8, async (r, k) => {
    const ans = await call(base, 'POST', '/deployments/ui-ab/infer', { id: 'req-' + k, inputs: [{ name: 'rows', shape: [1, 10], datatype: 'FP64', data: r.slice(0, 10) }] });
    const pred = ans.outputs[0].data[0];
    await call(base, 'POST', '/deployments/ui-ab/feedback', { request_id: ans.id, outcome: Math.abs(pred - r[10]) });
  });
  // Prompts with two versions and a label.
  await call(base, 'POST', '/api/2.0/capstan/prompts', { name: 'qa', template: { text: 'Answer: {{ question }}' }, commit_message: 'first' });
  await call(base, 'POST', '/api/2.0/capstan/prompts', { name: 'qa', template: { messages: [{ role: 'system', content: 'Answer briefly from the context.' }, { role: 'user', content: 'Question: {{ question }}' }] }, commit_message: 'chat form' });
  await call(base, 'PUT', '/api/2.0/capstan/prompts/qa/labels/production', { version: 2 });
  // Jobs.
  await call(base, 'POST', '/api/2.0/capstan/jobs', { kind: 'noop', payload: { note: 'ui test' } });
  const delayed = await call(base, 'POST', '/api/2.0/capstan/jobs', { kind: 'retrain', payload: { model: 'diabetes-regressor', reason: 'drift alert on bmi' }, delay_seconds: 3600 });
  // A collection with points.
  await call(base, 'PUT', '/collections/docs', { vectors: { size: 4, distance: 'Cosine' } });
  await call(base, 'PUT', '/collections/docs/points', { points: Array.from({ length: 20 }, (_, i) => ({ id: i + 1, vector: [1, i, i % 3, 0.5], payload: { text: 'chunk ' + i } })) });
  // Gateway calls to the local SmolLM2; the repeated greedy question is answered from the cache.
  for (const q of ['What is ownership in Rust?', 'What is borrowing?', 'What is ownership in Rust?']) {
    await call(base, 'POST', '/v1/chat/completions', { model: 'smollm2', messages: [{ role: 'user', content: q }], max_tokens: 8, temperature: 0, user: 'ui-tester' });
  }
  // Traces: one named trace to open, then SPANS spans in all.
  const named = traceSpans(0, Date.now() * 1e6);
  named[0].name = 'ui-test trace';
  await postSpans(base, named, 'rag-service');
  const perTrace = 5, traces = Math.ceil((SPANS - perTrace) / perTrace);
  const t0 = (Date.now() - 86400000) * 1e6;
  const batches = [];
  for (let i = 1; i <= traces; i += 1000) batches.push(i);
  await pool(batches, 2, async (first) => {
    const spans = [];
    for (let i = first; i < Math.min(first + 1000, traces + 1); i++) spans.push(...traceSpans(i, t0));
    await postSpans(base, spans, 'rag-service');
  });
  // Many runs in one experiment, each with a metric to sort by.
  const exp = await call(base, 'POST', '/api/2.0/mlflow/experiments/create', { name: 'ui-scale' });
  await pool(Array.from({ length: RUNS }, (_, i) => i), 16, async (i) => {
    const run = await call(base, 'POST', '/api/2.0/mlflow/runs/create', { experiment_id: exp.experiment_id, run_name: 'scale-' + i, start_time: t + i });
    await call(base, 'POST', '/api/2.0/mlflow/runs/log-batch', { run_id: run.run.info.run_id, params: [{ key: 'i', value: String(i) }], metrics: [{ key: 'loss', value: (i * 7919) % 10007 / 10007, timestamp: t, step: 0 }] });
  });
  return { scaleExperiment: exp.experiment_id, delayedJob: delayed.job.id, seconds: (Date.now() - t) / 1000 };
}

async function main() {
  fs.mkdirSync(OUT, { recursive: true });
  const home = newHome('capstan-ui-');
  // The demo fills experiments, runs with metric histories, a registry with lineage, monitors and
  // alerts (its last step, the LoRA fine-tune, adds nothing these pages need: skipped).
  execFileSync(BIN, ['--home', home, 'demo', '--no-serve', '--until', '7'], { stdio: ['ignore', 'ignore', fs.openSync(path.join(OUT, 'demo.log'), 'w')] });
  execFileSync(BIN, ['--home', home, 'features', 'apply', path.join(ROOT, 'data/features/nyc_weather.yaml')], { stdio: 'ignore' });
  const base = await startServer(home);
  const seeded = await seed(base, home);
  console.log(`seeded ${RUNS} runs and ${SPANS} spans in ${seeded.seconds.toFixed(1)} s`);

  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'] });
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  const consoleErrors = [];
  page.on('pageerror', (e) => consoleErrors.push(e.message));
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  const timings = [];
  const shot = (name) => page.screenshot({ path: path.join(OUT, name + '.png'), fullPage: true });
  const ready = () => page.waitForSelector('body[data-state=ready]', { timeout: 30000 });
  async function visit(hash, name) {
    const started = Date.now();
    await page.evaluate(() => { document.body.dataset.state = 'loading'; }).catch(() => {});
    if (page.url().startsWith(base)) await page.evaluate((h) => { location.hash = h; }, hash); else await page.goto(base + '/' + hash);
    await ready();
    const ms = Date.now() - started;
    await shot(name);
    return ms;
  }
  const text = (sel) => page.locator(sel).innerText();
  const noError = async (where) => assert.equal(await page.locator('.error').count(), 0, `${where}: ${await page.locator('.error').allInnerTexts()}`);

  // Every page renders with data and without an error.
  await visit('#/', 'overview');
  await noError('overview');
  assert.match(await text('main'), /Registered models\s+2/);
  assert.match(await text('#alerts'), /bmi/);

  await visit('#/experiments', 'experiments');
  assert.match(await text('#experiments'), /diabetes-demo/);
  assert.match(await text('#experiments'), /ui-scale/);

  const demoExp = (await call(base, 'GET', '/api/2.0/mlflow/experiments/get-by-name?experiment_name=diabetes-demo')).experiment.experiment_id;
  await visit(`#/experiments/${demoExp}`, 'runs');
  await noError('runs');
  assert.equal(await page.locator('#runs tbody tr').count(), 3);
  assert.match(await text('#runs thead'), /learning_rate/);
  assert.match(await text('#runs thead'), /test_rmse/);

  // Filter with the API's grammar.
  await page.fill('#run-filter', 'params.learning_rate = "0.05"');
  await page.press('#run-filter', 'Enter');
  await page.waitForFunction(() => document.body.dataset.state === 'ready' && document.querySelectorAll('#runs tbody tr').length === 1);
  assert.match(await text('#runs tbody'), /gd-lr0.05/);
  await shot('runs-filtered');
  // A bad filter reads as the server's message, not a blank page.
  await page.fill('#run-filter', 'metrics.test_rmse <<< 3');
  await page.press('#run-filter', 'Enter');
  await page.waitForSelector('.error');
  assert.match(await text('.error'), /INVALID_PARAMETER_VALUE/);
  await shot('runs-bad-filter');

  // Sort by a metric (server-side), then compare two runs.
  await visit(`#/experiments/${demoExp}`, 'runs');
  await page.locator('#runs th', { hasText: 'test_rmse' }).click();
  await page.waitForFunction(() => location.hash.includes('order='));
  await ready();
  const sorted = await page.locator('#runs tbody tr td:last-child').allInnerTexts();
  const firstCol = await page.locator('#runs thead th').allInnerTexts();
  const rmseIdx = firstCol.findIndex((c) => c.startsWith('test_rmse'));
  const rmse = (await page.locator(`#runs tbody tr td:nth-child(${rmseIdx + 1})`).allInnerTexts()).map(Number);
  assert.deepEqual(rmse, [...rmse].sort((a, b) => b - a), `runs sorted by test_rmse DESC: ${rmse} (${sorted})`);
  await page.locator('input.run-select').nth(0).check();
  await page.locator('input.run-select').nth(1).check();
  await page.click('#compare-runs');
  await page.waitForSelector('#compare-charts [data-chart=test_rmse] path.series');
  assert.equal(await page.locator('#compare-charts [data-chart=test_rmse] path.series').count(), 2);
  assert.match(await text('#compare-table'), /learning_rate/);
  await shot('compare');

  // A run: metric history chart and the artifact browser.
  await page.locator('#compare-table thead a, #compare-table thead th').first().isVisible();
  const runId = (await call(base, 'POST', '/api/2.0/mlflow/runs/search', { experiment_ids: [demoExp], max_results: 1 })).runs[0].info.run_id;
  await visit(`#/runs/${runId}`, 'run');
  await page.waitForSelector('#run-charts path.series');
  await page.waitForSelector('#artifacts table');
  assert.match(await text('#artifacts'), /model\//);
  await page.locator('#artifacts a', { hasText: 'model/' }).click();
  await ready();
  await page.waitForSelector('#artifacts table');
  assert.match(await text('#artifacts'), /model\.json/);
  await page.locator('#artifacts a', { hasText: 'model.json' }).click();
  await page.waitForSelector('#artifact-view pre');
  const artifactPath = `${demoExp}/${runId}/artifacts/model/model.json`;
  const served = await (await fetch(`${base}/api/2.0/mlflow-artifacts/artifacts/${artifactPath}`)).text();
  assert.equal((await text('#artifact-view pre')).trim(), served.trim());
  await shot('run-artifact');

  await visit('#/models', 'models');
  assert.match(await text('#models'), /diabetes-regressor/);
  await visit('#/models/diabetes-regressor', 'model');
  await page.waitForSelector('#lineage .lineage');
  assert.match(await text('#lineage'), /diabetes/);
  assert.match(await text('#versions'), /champion/);

  await visit('#/deployments', 'deployments');
  assert.match(await text('#deployments'), /champion 50%/);
  await visit('#/deployments/ui-ab', 'deployment');
  await page.waitForSelector('#variants');
  const reqs = await page.locator('#variants tbody tr td:nth-child(4)').allInnerTexts();
  assert.equal(reqs.map(Number).reduce((a, b) => a + b, 0), 120, `requests per variant ${reqs}`);
  assert.match(await text('main'), /continuous/);

  await visit('#/monitors', 'monitors');
  assert.match(await text('#monitors'), /diabetes-regressor-health/);
  await visit('#/monitors/diabetes-regressor-health', 'monitor');
  assert.match(await text('#drift-columns'), /bmi\s+ks/);
  assert.equal(await page.locator('[data-chart^="Drift score"] rect').count(), 10);

  await visit('#/jobs', 'jobs');
  assert.match(await text('#jobs'), /noop/);
  assert.match(await text('#retrainings'), /drift alert on bmi/);
  // The demo's own retraining: started by the monitor's alert, promoted, with its candidate.
  assert.match(await text('#retrainings'), /monitor bike-health: .*drift/);
  assert.match(await text('#retrainings'), /promoted candidate rmse/);
  await page.locator('#jobs a', { hasText: new RegExp(`^#${seeded.delayedJob}$`) }).click();
  await ready();
  await page.click('#cancel-job');
  await page.waitForFunction(() => document.body.innerText.includes('cancelled'));
  // The job's log tells its story: queued, then cancelled.
  assert.match(await text('#job-log'), /#0\s+queued \(retrain\)[\s\S]*#0\s+cancelled/);
  await shot('job-cancelled');

  await visit('#/features', 'features');
  assert.match(await text('#feature-views'), /weather/);
  assert.match(await text('#feature-views'), /wind_speed: float/);

  await visit('#/collections', 'collections');
  assert.match(await text('#collections'), /docs\s+20\s+4\s+Cosine/);
  await visit('#/collections/docs', 'collection');
  await page.fill('#rag-question', 'what is a chunk?');
  await page.click('#rag-ask');
  await page.waitForSelector('#rag-answer .error, #rag-answer .card');
  // This collection has no embedding model: the playground says so instead of failing silently.
  assert.match(await text('#rag-answer'), /embed|model|rag/i);
  await shot('rag-playground');

  await visit('#/gateway', 'gateway');
  // What the page shows is what the usage API holds: the demo's calls and this test's three.
  const usage = (await call(base, 'GET', `/api/2.0/capstan/gateway/usage?since_ms=${Date.now() - 7 * 86400000}&limit=500`)).records;
  assert.ok(usage.length >= 3);
  assert.equal(await text('#usage-calls'), String(usage.length));
  assert.match(await text('#usage'), /smollm2/);
  assert.match(await text('#usage'), /ui-tester/);
  const hitRows = usage.slice(0, 100).filter((r) => r.cache === 'hit').length;
  assert.ok(hitRows >= 1, 'the repeated question was a cache hit');
  assert.equal(await page.locator('#usage td', { hasText: /^hit$/ }).count(), hitRows);

  await visit('#/prompts', 'prompts');
  assert.match(await text('#prompts'), /production → v2/);
  await visit('#/prompts/qa', 'prompt');
  await page.waitForSelector('#prompt-diff .add');
  assert.match(await text('#prompt-diff'), /\+ Answer briefly from the context\./);
  assert.match(await text('#prompt-diff'), /- Answer: \{\{ question \}\}/);

  await visit('#/evaluations', 'evaluations');
  await noError('evaluations');
  // The demo's evaluation of its RAG answers, with its report one click away.
  assert.match(await text('#evaluations'), /smollm2 × rust-qa@production/);
  assert.match(await text('#evaluations thead'), /context_recall/);
  await page.locator('#evaluations a', { hasText: 'report' }).first().click();
  await page.waitForSelector('a[href^="blob:"]');
  assert.match(await page.locator('a[href^="blob:"]').innerText(), /Open report\.html/);

  // Traces: filter, open one, its span tree and a span's attributes.
  await visit('#/traces', 'traces');
  assert.equal(await page.locator('#traces tbody tr').count(), 50);
  await page.fill('#trace-q', 'ui-test trace');
  await page.press('#trace-q', 'Enter');
  await page.waitForFunction(() => document.body.dataset.state === 'ready' && document.querySelectorAll('#traces tbody tr').length === 1);
  await page.locator('#traces a', { hasText: 'ui-test trace' }).click();
  await page.waitForSelector('#span-tree .span-row');
  assert.equal(await page.locator('#span-tree .span-row').count(), 5);
  await page.locator('#span-tree .span-row', { hasText: 'chat smollm2' }).click();
  assert.match(await text('#span-detail'), /gen_ai\.request\.model\s+smollm2/);
  assert.match(await text('#span-detail'), /input_tokens\s+120/);
  assert.equal(await page.locator('#span-tree .span-bar div.failed').count(), 1, 'the failed tool call is marked');
  assert.match(await text('main'), /\$0\.000100/);
  await shot('trace');

  // A page that does not exist, and an API error, read as messages.
  await visit('#/models/no-such-model', 'model-missing');
  assert.match(await text('.error'), /RESOURCE_DOES_NOT_EXIST/);

  // Scale: the first screen of 10,000 runs and of 100,000 spans, timed in the browser.
  for (let i = 0; i < 3; i++) {
    await page.goto(base + '/#/');
    await ready();
    timings.push(['runs', `experiment with ${RUNS} runs (first 50, newest first)`, await visit(`#/experiments/${seeded.scaleExperiment}`, 'runs-10k')]);
    assert.equal(await page.locator('#runs tbody tr').count(), 50);
    timings.push(['runs sorted', `${RUNS} runs ordered by metrics.loss`, await visit(`#/experiments/${seeded.scaleExperiment}?order=metrics.loss%20ASC`, 'runs-10k-sorted')]);
    timings.push(['traces', `${SPANS} spans (first 50 traces)`, await visit('#/traces', 'traces-100k')]);
    timings.push(['traces filtered', `${SPANS} spans, model=gpt-4o-mini, min 30 ms`, await visit('#/traces?model=gpt-4o-mini&min_duration_ms=30', 'traces-100k-filtered')]);
  }
  assert.equal(await page.locator('#traces tbody tr').count(), 50);

  // An empty platform shows how to start.
  const emptyBase = await startServer(newHome('capstan-ui-empty-'));
  await page.goto(emptyBase + '/#/');
  await ready();
  await page.waitForSelector('#getting-started');
  assert.match(await text('#getting-started'), /capstan demo/);
  await shot('empty');

  assert.deepEqual(consoleErrors.filter((e) => !/status of 4\d\d/.test(e)), [], 'no script errors');
  await browser.close();

  const byPage = new Map();
  for (const [name, what, ms] of timings) { if (!byPage.has(name)) byPage.set(name, { what, all: [] }); byPage.get(name).all.push(ms); }
  const lines = ['| page | data | first screen (median of 3) | worst |', '|---|---|---:|---:|'];
  for (const [name, { what, all }] of byPage) {
    const s = [...all].sort((a, b) => a - b);
    lines.push(`| ${name} | ${what} | ${s[1]} ms | ${s[2]} ms |`);
  }
  const table = lines.join('\n');
  fs.writeFileSync(path.join(OUT, 'ui-timings.md'), table + '\n');
  console.log(table);
  console.log(`screenshots: ${OUT}`);
  console.log('ui browser test: ok');
}

main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
