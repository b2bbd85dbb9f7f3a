// Launches the system Chromium with WebGPU enabled for the end-to-end test. Invariants: a fresh profile
// directory per launch (playwright creates a temporary one and removes it on close); no network besides
// loopback (background services off, and the page's requests to other hosts are aborted); WebGPU runs
// on SwiftShader when there is no GPU.
import { chromium, type Browser, type Page } from 'playwright-core';

export const CHROMIUM_PATH = '/usr/bin/chromium';

/** The flags that give headless Chromium a WebGPU adapter (SwiftShader's Vulkan when there is no GPU). */
export const WEBGPU_FLAGS = [
  '--enable-unsafe-webgpu',
  '--enable-features=Vulkan',
  '--use-vulkan=swiftshader',
  '--use-webgpu-adapter=swiftshader',
];

const QUIET_FLAGS = [
  '--no-sandbox',
  '--disable-dev-shm-usage',
  '--disable-quic',
  '--no-first-run',
  '--no-default-browser-check',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-domain-reliability',
  '--metrics-recording-only',
];

export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: ['--headless=new', ...WEBGPU_FLAGS, ...QUIET_FLAGS],
  });
}

/** Aborts every request of the page that does not go to the loopback server. */
export async function loopbackOnly(page: Page): Promise<void> {
  await page.route('**/*', (route) => {
    const host = new URL(route.request().url()).hostname;
    return host === '127.0.0.1' ? route.continue() : route.abort();
  });
}
