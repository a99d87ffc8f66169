// The decoder in a Web Worker: post {id, bytes, models} (models: the URL of a web-export
// folder), get back {id, width, height, channels, rgba, ms} or {id, error: {name, message}}.
import * as ort from '../node_modules/onnxruntime-web/dist/ort.wasm.min.mjs';
import { Decoder } from './decoder.js';
import { browserDecodeImage } from './extras.js';

ort.env.wasm.numThreads = 1;
ort.env.wasm.wasmPaths = new URL('../node_modules/onnxruntime-web/dist/', import.meta.url).href;
const decoders = new Map();

function decoderFor(models, maxPixels) {
  const key = `${models}|${maxPixels}`;
  if (!decoders.has(key)) {
    const base = new URL(models.endsWith('/') ? models : `${models}/`, self.location.href);
    const load = async (p) => {
      const r = await fetch(new URL(p, base));
      if (!r.ok) throw new Error(`${p}: HTTP ${r.status}`);
      return r.arrayBuffer();
    };
    decoders.set(key, new Decoder(ort, load, { decodeImage: browserDecodeImage, ...(maxPixels ? { maxPixels } : {}) }));
  }
  return decoders.get(key);
}

self.onmessage = async ({ data }) => {
  const { id, bytes, models, maxPixels } = data;
  try {
    const t0 = performance.now();
    const img = await decoderFor(models, maxPixels).decode(new Uint8Array(bytes));
    const ms = performance.now() - t0;
    self.postMessage({ id, width: img.width, height: img.height, channels: img.channels, rgba: img.rgba, ms }, [img.rgba.buffer]);
  } catch (e) {
    self.postMessage({ id, error: { name: e.name || 'Error', message: String(e.message || e) } });
  }
};
