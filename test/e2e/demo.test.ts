// End to end: build the browser demo, serve it cross-origin isolated on loopback, run a short
// simulation in headless Chromium (WebGPU on SwiftShader without a GPU), and check that what the page
// shows agrees with the simulation's verified result. Saves a screenshot to test-results/demo.png.
import { existsSync, mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SimResult } from '../../src/sim/result';
import { buildDemo, DEMO_DIR, REPO_ROOT } from './build-demo';
import type { Browser } from 'playwright-core';
import { CHROMIUM_PATH, launchChromium, loopbackOnly } from './chromium';
import { serveDirectory, type StaticServer } from './static-server';

const hasChromium = existsSync(CHROMIUM_PATH);
const suiteName = hasChromium
  ? 'browser demo in headless Chromium'
  : `browser demo — SKIPPED: no Chromium at ${CHROMIUM_PATH} (Debian/Ubuntu: apt-get install -y chromium)`;

describe.skipIf(!hasChromium)(suiteName, () => {
  let server: StaticServer;
  let browser: Browser;

  beforeAll(async () => {
    buildDemo();
    server = await serveDirectory(DEMO_DIR);
    browser = await launchChromium();
  });

  afterAll(async () => {
    await browser?.close();
    await server?.close();
  });

  it('runs a verified simulation in a worker and shows its figures', { timeout: 90_000 }, async () => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const pageErrors: string[] = [];
    page.on('pageerror', (e) => pageErrors.push(e.message));
    await loopbackOnly(page);
    await page.goto(server.url);
    expect(await page.evaluate(() => globalThis.crossOriginIsolated)).toBe(true);

    await page.fill('#requests', '8');
    await page.fill('#pool-blocks', '32');
    await page.fill('#output-length', '8');
    await page.click('[data-testid=start]');
    const status = page.locator('[data-testid=sim-status]');
    await expect.poll(() => status.getAttribute('data-state'), { timeout: 60_000, interval: 250 }).toMatch(/done|error/);
    const error = await page.evaluate(() => window.__simError);
    expect(error, `simulation failed in the page: ${JSON.stringify(error)}`).toBeUndefined();
    expect(await status.getAttribute('data-state')).toBe('done');

    const result = (await page.evaluate(() => window.__simResult)) as SimResult;
    expect(result.requests.completed).toBe(8);
    expect(result.verification.checked).toBeGreaterThan(0);
    expect(result.verification.mismatches).toBe(0);
    expect(result.invariants.sequencesLeft).toBe(0);
    expect(result.environment.backend).toBe('browser');

    const shown = async (id: string): Promise<number> =>
      Number(await page.locator(`[data-testid=summary-${id}]`).getAttribute('data-value'));
    expect(await shown('verified')).toBe(result.verification.checked);
    expect(await shown('mismatches')).toBe(0);
    expect(await shown('requests')).toBe(result.requests.completed);
    expect(await shown('tokens-per-sec')).toBe(result.metrics.tokensPerSec);
    expect(await shown('prefix-hit-rate')).toBe(result.prefix.hitRate);
    expect(await shown('kv-peak')).toBe(result.metrics.memory.peakPagedBytes);
    expect(await shown('cow')).toBe(result.cache.cowCopies);
    expect(await page.locator('[data-testid=verification]').getAttribute('data-checked')).toBe(String(result.verification.checked));
    expect(await page.locator('[data-testid=adapter]').textContent()).toBe(result.environment.adapter);
    expect(await page.locator('[data-testid=block-map]').evaluate((c: HTMLCanvasElement) => c.width > 0 && c.height > 0)).toBe(true);
    expect(pageErrors).toEqual([]);

    mkdirSync(resolve(REPO_ROOT, 'test-results'), { recursive: true });
    await page.screenshot({ path: resolve(REPO_ROOT, 'test-results/demo.png'), fullPage: true });
    await page.close();
  });
});
