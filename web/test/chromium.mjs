// node test/chromium.mjs STREAMS_DIR MODELS_DIR: serve web/, the streams and the models over
// HTTP on localhost, decode every stream of STREAMS_DIR/list.json in headless Chromium (the
// worker, onnxruntime-web's wasm backend) and print {file: {sha256 of RGBA | error}} as JSON.
import path from 'node:path';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { chromium } from 'playwright-core';
import { serve } from './serve.mjs';

const [streams, models] = process.argv.slice(2).map((p) => path.resolve(p));
const server = await serve(streams, models);
const profile = mkdtempSync(path.join(os.tmpdir(), 'aec-chromium-'));
// a fresh profile folder (--user-data-dir), removed afterwards
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const browser = context.browser();
try {
  const page = await context.newPage();
  const logs = [];
  page.on('console', (m) => logs.push(m.text()));
  page.on('pageerror', (e) => logs.push(String(e)));
  await page.goto(`http://127.0.0.1:${server.address().port}/test/harness.html`);
  await page.waitForFunction(() => window.__results !== undefined, null,
    { timeout: Number(process.env.AEC_TIMEOUT_MS || 240000) });
  const results = await page.evaluate(() => window.__results);
  console.log(JSON.stringify({ browser: browser ? browser.version() : await page.evaluate(() => navigator.userAgent), results, logs }));
} finally {
  await context.close();
  server.close();
  rmSync(profile, { recursive: true, force: true });
}
