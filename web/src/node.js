// The decoder under Node: models from a folder written by `aecodec web-export`.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { deflateSync } from 'node:zlib';
import * as ort from 'onnxruntime-web';
import { crc32 } from './crc.js';
import { Decoder } from './decoder.js';

export function nodeDecoder(modelsDir, options = {}) {
  ort.env.wasm.numThreads = options.threads ?? 1;
  const load = async (p) => {
    const b = await readFile(path.join(modelsDir, p));
    return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength);
  };
  return new Decoder(ort, load, options);
}

/** A PNG of 8-bit gray (1 channel) or RGB / RGBA pixels. */
export function png(width, height, channels, pixels) {
  const type = { 1: 0, 3: 2, 4: 6 }[channels];
  const row = width * channels;
  const raw = new Uint8Array((row + 1) * height);
  for (let y = 0; y < height; y++) raw.set(pixels.subarray(y * row, (y + 1) * row), y * (row + 1) + 1);
  const chunk = (name, body) => {
    const out = Buffer.alloc(12 + body.length);
    out.writeUInt32BE(body.length, 0);
    out.write(name, 4, 'latin1');
    Buffer.from(body).copy(out, 8);
    out.writeUInt32BE(crc32(out.subarray(4, 8 + body.length)), 8 + body.length);
    return out;
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8;
  ihdr[9] = type;
  return Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(raw)), chunk('IEND', Buffer.alloc(0))]);
}
