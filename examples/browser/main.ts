// The demo page: controls, the live block-pool map, throughput and memory charts, and the final
// summary, fed by the simulation worker. Invariants: the page never runs GPU work itself; the final
// result is exposed as window.__simResult (and a failure as window.__simError) at the same moment
// #status gets data-state="done" (or "error"), after the summary DOM has been written.
import { formatBytes, formatCount } from '../../src/sim/format';
import type { SimResult } from '../../src/sim/result';
import { BlockMapView } from './block-map-view';
import { COLORS } from './colors';
import { bindSliderLabel, readControls } from './controls';
import { byId } from './dom';
import { LineChart, niceCeilBytes } from './line-chart';
import type { PageToWorker, ProgressMessage, WorkerToPage } from './protocol';
import { renderSummary } from './summary-view';

declare global {
  interface Window {
    __simResult?: SimResult;
    __simError?: { name: string; message: string; code?: string };
  }
}

type State = 'idle' | 'running' | 'done' | 'error';

const startButton = byId<HTMLButtonElement>('start');
const status = byId('status');
const banner = byId('banner');
const adapter = byId('adapter');
const live = byId('live');
const verification = byId('verification');
const blockMap = new BlockMapView(byId<HTMLCanvasElement>('block-map'));
const throughputChart = new LineChart(byId<HTMLCanvasElement>('throughput-chart'), formatCount);
const memoryChart = new LineChart(byId<HTMLCanvasElement>('memory-chart'), formatBytes, niceCeilBytes);

let worker: Worker | undefined;
let points: ProgressMessage['point'][] = [];
let chartsQueued = false;

function setStatus(state: State, text: string): void {
  status.dataset.state = state;
  status.textContent = text;
  startButton.disabled = state === 'running' || startButton.dataset.blocked === 'true';
}

function showBanner(kind: 'warning' | 'error', html: string): void {
  banner.className = `banner ${kind}`;
  banner.innerHTML = html;
  banner.hidden = false;
}

function checkEnvironment(): void {
  if (!('gpu' in navigator)) {
    startButton.dataset.blocked = 'true';
    showBanner(
      'error',
      '<strong>WebGPU is not available in this browser.</strong> Use Chrome or Edge 113+ (or start Chromium with ' +
        '<code>--enable-unsafe-webgpu</code>), over https or localhost.',
    );
  } else if (!globalThis.crossOriginIsolated) {
    startButton.dataset.blocked = 'true';
    showBanner(
      'error',
      '<strong>This page is not cross-origin isolated</strong>, so SharedArrayBuffer is unavailable. Serve it with ' +
        '<code>Cross-Origin-Opener-Policy: same-origin</code> and <code>Cross-Origin-Embedder-Policy: require-corp</code> ' +
        '(<code>npm run dev</code> does).',
    );
  }
}

function drawCharts(): void {
  chartsQueued = false;
  throughputChart.draw([{ label: 'tokens/s', color: COLORS.throughput, points: points.map((p) => [p.timeSec, p.tokensPerSec] as const) }]);
  memoryChart.draw([
    { label: 'paged KV in use', color: COLORS.paged, points: points.map((p) => [p.timeSec, p.pagedBytes] as const) },
    { label: 'cached (evictable)', color: COLORS.cached, points: points.map((p) => [p.timeSec, p.evictableBytes] as const), dashed: true },
    { label: 'contiguous at max length', color: COLORS.contiguous, points: points.map((p) => [p.timeSec, p.contiguousMaxBytes] as const) },
  ]);
}

function queueCharts(): void {
  if (chartsQueued) return;
  chartsQueued = true;
  requestAnimationFrame(drawCharts);
}

function onProgress(m: ProgressMessage): void {
  points.push(m.point);
  queueCharts();
  if (m.blockMap) blockMap.draw(m.blockMap);
  live.textContent =
    `${m.completedRequests}/${m.totalRequests} requests · step ${m.point.step} · ${formatCount(m.point.tokensPerSec)} tok/s · ` +
    `${m.running} running, ${m.waiting} waiting · blocks ${m.blocks.used} used, ${m.blocks.evictable} cached, ${m.blocks.free} free · ` +
    `${m.verified} outputs verified`;
  setStatus('running', `Running… ${Math.round((100 * m.completedRequests) / Math.max(1, m.totalRequests))}%`);
}

function onDone(result: SimResult): void {
  drawCharts();
  renderSummary(byId('summary'), result);
  const v = result.verification;
  verification.dataset.checked = String(v.checked);
  verification.dataset.mismatches = String(v.mismatches);
  verification.className = 'verification ok';
  verification.textContent =
    `✓ ${v.checked} attention outputs matched the CPU reference (max |error| ${v.maxAbsError.toExponential(2)}, ` +
    `tolerance ${v.atol} + ${v.rtol}·|ref|); cache invariants hold; every sequence freed.`;
  window.__simResult = result;
  setStatus('done', `Done in ${result.metrics.elapsedSec.toFixed(1)} s`);
}

function onError(error: { name: string; message: string; code?: string }): void {
  verification.className = 'verification failed';
  verification.textContent = `✗ ${error.name}: ${error.message}`;
  if (error.code === 'NO_ADAPTER') showBanner('error', `<strong>No WebGPU adapter.</strong> ${escapeHtml(error.message)}`);
  window.__simError = error;
  setStatus('error', `Failed: ${error.name}`);
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function onMessage(event: MessageEvent<WorkerToPage>): void {
  const m = event.data;
  switch (m.type) {
    case 'adapter':
      adapter.textContent = m.description;
      adapter.dataset.fallback = String(m.isFallback);
      if (m.isFallback) {
        showBanner(
          'warning',
          '<strong>Software adapter (SwiftShader).</strong> WebGPU runs on the CPU here: results are verified and correct, ' +
            'but throughput figures are far below what a GPU gives.',
        );
      }
      break;
    case 'progress':
      onProgress(m);
      break;
    case 'done':
      onDone(m.result);
      break;
    case 'error':
      onError(m);
      break;
  }
}

function start(): void {
  worker ??= new Worker(new URL('./sim-worker.ts', import.meta.url), { type: 'module' });
  worker.onmessage = onMessage;
  worker.onerror = (e) => onError({ name: 'WorkerError', message: e.message || 'the simulation worker failed to load' });
  points = [];
  delete window.__simResult;
  delete window.__simError;
  byId('summary').replaceChildren();
  verification.className = 'verification';
  verification.textContent = 'Verifying a sample of attention outputs against the CPU reference as the run goes…';
  setStatus('running', 'Starting…');
  const message: PageToWorker = { type: 'start', options: readControls() };
  worker.postMessage(message);
}

bindSliderLabel('prefix-sharing', 'prefix-sharing-value');
startButton.addEventListener('click', start);
checkEnvironment();
setStatus('idle', startButton.disabled ? 'Unavailable' : 'Ready');
