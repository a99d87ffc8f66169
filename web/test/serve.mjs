// The test pages' HTTP server on localhost, shared by chromium.mjs and browser.mjs: web/ at /,
// STREAMS_DIR at /streams/, MODELS_DIR at /models/ (nothing outside them), and each POST's
// body handed to `onPost` (the harness posts its results).
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const web = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const types = { '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript',
  '.json': 'application/json', '.wasm': 'application/wasm' };

export async function serve(streams, models, onPost = () => {}) {
  const server = createServer(async (req, res) => {
    if (req.method === 'POST') {
      let body = '';
      for await (const chunk of req) body += chunk;
      res.writeHead(204).end();
      onPost(body);
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
  return server;
}
