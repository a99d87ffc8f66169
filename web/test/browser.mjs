// node test/browser.mjs STREAMS_DIR MODELS_DIR BROWSER [ARGS...]: as chromium.mjs, for any
// browser started as a plain command (e.g. firefox-esr --headless): the harness page POSTs
// its results back; printed as JSON, then the browser is stopped.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { serve } from './serve.mjs';

const [streamsArg, modelsArg, command, ...args] = process.argv.slice(2);
const [streams, models] = [streamsArg, modelsArg].map((p) => path.resolve(p));
let done;
const posted = new Promise((r) => { done = r; });
const server = await serve(streams, models, (body) => done(JSON.parse(body)));
const profile = mkdtempSync(path.join(os.tmpdir(), 'aec-browser-'));
const url = `http://127.0.0.1:${server.address().port}/test/harness.html`;
const full = args.map((a) => a.replace('{profile}', profile));
const child = spawn(command, [...full, url], { stdio: 'ignore', detached: true });
const timer = setTimeout(() => { console.error('timed out'); process.exit(1); },
  Number(process.env.AEC_TIMEOUT_MS || 240000));
const out = await posted;
clearTimeout(timer);
console.log(JSON.stringify(out));
try { process.kill(-child.pid); } catch { /* already gone */ }
server.close();
setTimeout(() => { rmSync(profile, { recursive: true, force: true }); process.exit(0); }, 500);
