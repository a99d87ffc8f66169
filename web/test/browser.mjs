// node test/browser.mjs STREAMS_DIR MODELS_DIR BROWSER [ARGS...]: as chromium.mjs, for any
// browser started as a plain command (e.g. firefox-esr --headless): the harness page POSTs
// its results back; printed as JSON, then the browser is stopped.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const [streamsArg, modelsArg, command, ...args] = process.argv.slice(2);
const [streams, models] = [streamsArg, modelsArg].map((p) => path.resolve(p));
const web = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const types = { '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript',
  '.json': 'application/json', '.wasm': 'application/wasm' };
let done;
const posted = new Promise((r) => { done = r; });
const server = createServer(async (req, res) => {
  if (req.method === 'POST') {
    let body = '';
    for await (const chunk of req) body += chunk;
    res.writeHead(204).end();
    done(JSON.parse(body));
    return;
  }
  const url = decodeURIComponent(new URL(req.url, 'http://x').pathname);
  const [root, rest] = url.startsWith('/streams/') ? [streams, url.slice(9)]
    : url.startsWith('/models/') ? [models, url.slice(8)] : [web, url.slice(1)];
  const file = path.resolve(root, rest);
  if (!file.startsWith(root)) { res.writeHead(403).end(); return; }
  try {
    const body = await readFile(file);
    res.writeHead(200, { 'content-type': types[path.extname(file)] || 'application/octet-stream' }).end(body);
  } catch { res.writeHead(404).end(); }
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
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
