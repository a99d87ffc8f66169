// One .aec stream to pixels, as aecodec.decompress makes them: the container, the latent
// codec of the model's family (hyperprior or factorized), the synthesis on onnxruntime-web by
// squares with a halo (codec/tiles.py), grayscale output. Models come from `web-export`.
import { parse } from './container.js';
import {
  CorruptStreamError, ImageTooLargeError, ModelError, ModelMismatchError, NotSupportedError,
  UnknownModelError, UnsupportedImageError,
} from './errors.js';
import { decodeRegion } from './ctx.js';
import { checkMetadata, decodeAlpha } from './extras.js';
import { invGainsAt } from './gains.js';
import { runIntNet } from './intnet.js';
import { TableSet } from './tables.js';

export const DEFAULT_MAX_PIXELS = 100_000_000;
const UNTILED_MAX_PIXELS = 16 * 1024 * 1024;
const RUN_TILE = 512, RUN_TILE_ABOVE = 1 << 19;
const STRIP_AREA = 4096;
const TYPES = { uint32: Uint32Array, int32: Int32Array, int8: Int8Array, float64: Float64Array };

function tilesOf(h, w, t) {
  const out = [];
  for (let r0 = 0; r0 < h; r0 += t) for (let c0 = 0; c0 < w; c0 += t) out.push([r0, Math.min(r0 + t, h), c0, Math.min(c0 + t, w)]);
  return out;
}

function strips(boxes) {
  const out = [];
  let area = 0;
  boxes.forEach((box, i) => {
    const prev = out.length ? boxes[out[out.length - 1].at(-1)] : null;
    if (!prev || area >= STRIP_AREA || prev[0] !== box[0] || prev[1] !== box[1] || prev[3] !== box[2]) {
      out.push([i]);
      area = 0;
    } else out[out.length - 1].push(i);
    area += (box[1] - box[0]) * (box[3] - box[2]);
  });
  return out;
}

// round half to even, as np.rint
function rint(x) {
  const r = Math.round(x);
  return (r - x === 0.5 && r % 2 !== 0) ? r - 1 : r;
}

export class Model {
  constructor(meta, buffer, session, ort) {
    this.meta = meta;
    this.ort = ort;
    this.session = session;
    const arrays = { __shape: {} };
    for (const [name, a] of Object.entries(meta.arrays)) {
      const T = TYPES[a.dtype];
      arrays[name] = new T(buffer, a.offset, a.length);
      arrays.__shape[name] = a.shape;
    }
    this.arrays = arrays;
    this.tables = {};
    for (const [name, t] of Object.entries(meta.tables)) this.tables[name] = new TableSet(t, arrays, name, meta.head_cdf, meta.head_freq);
    this.legacy = meta.legacy ? arrays[meta.legacy] : null;
    this.m = meta.inv_gain[0].length;
  }

  latentHW(h, w) {
    const pm = this.meta.pad_multiple, s = this.meta.stride;
    const ph = Math.ceil(h / pm) * pm, pw = Math.ceil(w / pm) * pm;
    return [Math.ceil(ph / s), Math.ceil(pw / s)];
  }
}

/** Loads models by id through `load(path) -> Promise<ArrayBuffer>` relative to a models folder. */
export class Decoder {
  constructor(ort, load, { maxPixels = DEFAULT_MAX_PIXELS, decodeImage = null } = {}) {
    this.ort = ort;
    this.decodeImage = decodeImage;
    this.load = load;
    this.maxPixels = maxPixels;
    this.models = new Map();
    this.index = null;
  }

  async model(id) {
    if (this.models.has(id)) return this.models.get(id);
    if (!this.index) this.index = JSON.parse(new TextDecoder().decode(await this.load('index.json')));
    const entry = this.index[id];
    if (!entry) {
      throw new UnknownModelError(`stream was written by model id ${id}, which this decoder does not hold (exported: ${Object.values(this.index).map((e) => e.name).join(', ') || 'none'})`);
    }
    if (entry.unsupported) throw new NotSupportedError(`model '${entry.name}' (${id}): ${entry.unsupported}`);
    const meta = JSON.parse(new TextDecoder().decode(await this.load(`${entry.folder}/model.json`)));
    const buffer = await this.load(`${entry.folder}/arrays.bin`);
    const onnx = new Uint8Array(await this.load(`${entry.folder}/synthesis.onnx`));
    const session = await this.ort.InferenceSession.create(onnx, { executionProviders: ['wasm'], graphOptimizationLevel: 'all' });
    const model = new Model(meta, buffer, session, this.ort);
    if (meta.intnet) { // the hyper-decoder's 8-bit ConvInteger layers, opened on first use
      const sessions = new Map();
      model.convInteger = async (i, x, zp, c, h, w) => {
        if (!sessions.has(i)) {
          const g = new Uint8Array(await this.load(`${entry.folder}/${meta.intnet[i].graph}`));
          sessions.set(i, await this.ort.InferenceSession.create(g, { executionProviders: ['wasm'] }));
        }
        const out = await sessions.get(i).run({
          x: new this.ort.Tensor('uint8', x, [1, c, h, w]),
          x_zp: new this.ort.Tensor('uint8', Uint8Array.of(zp), []),
        });
        return out.y.data;
      };
    }
    this.models.set(id, model);
    return model;
  }

  async compactModel(index) {
    if (!this.index) this.index = JSON.parse(new TextDecoder().decode(await this.load('index.json')));
    const hit = Object.entries(this.index).find(([, e]) => e.compact_index === index);
    if (!hit) throw new UnknownModelError(`compact stream names model index ${index}, which no model this decoder holds has`);
    return hit[0];
  }

  /** {width, height, channels (1 or 3, as the Python decoder returns), pixels, rgba}. */
  async decode(bytes) {
    const data = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
    const stream = parse(data, this.maxPixels);
    const { header } = stream;
    if (header.profile === 'compact') header.modelId = await this.compactModel(header.compactIndex);
    const model = await this.model(header.modelId);
    const meta = model.meta;
    if (header.modelId !== meta.id) throw new ModelMismatchError(`the stream was written by model id ${header.modelId}, not by '${meta.name}' (${meta.id})`);
    let h, w;
    if (header.width === null) {
      if (!meta.fixed_size) throw new CorruptStreamError('stream lacks the image size');
      [h, w] = meta.fixed_size;
    } else [h, w] = [header.height, header.width];
    if (h * w > this.maxPixels) throw new ImageTooLargeError(`a ${w}x${h} image is over the limit of ${this.maxPixels} pixels`);
    if (meta.fixed_size && (h !== meta.fixed_size[0] || w !== meta.fixed_size[1])) {
      throw new UnsupportedImageError(`model '${meta.name}' codes ${meta.fixed_size[1]}x${meta.fixed_size[0]} images only, got ${w}x${h}`);
    }
    if (meta.channels === 1 && !header.gray) throw new CorruptStreamError(`a stream of the 1-channel model '${meta.name}' must have its gray flag set`);
    if ((header.quality === null) === (meta.inv_gain.length > 1)) throw new CorruptStreamError("stream's quality field does not fit its model");
    if (header.tile !== null && meta.fixed_size) throw new CorruptStreamError('invalid tile size for this model');
    if (header.tile === null && h * w > UNTILED_MAX_PIXELS && !meta.fixed_size) {
      throw new ImageTooLargeError(`an untiled (version 1) stream of a ${w}x${h} image is over the limit of ${UNTILED_MAX_PIXELS} pixels for untiled streams`);
    }
    const [hy, wy] = model.latentHW(h, w);
    const side = header.tile ?? Math.max(hy, wy, 1);
    const boxes = tilesOf(hy, wy, side);
    const inv = invGainsAt(meta.inv_gain, header.quality, model.legacy);
    const yHat = meta.family !== 'factorized'
      ? await this.hyperprior(model, stream.latent, boxes, header, hy, wy, inv)
      : this.factorized(model, stream.latent, boxes, hy, wy, inv, header.profile === 'compact');
    const pixels = await this.synthesize(model, yHat, hy, wy, h, w, header.gray);
    checkMetadata(stream.extra);
    if (stream.extra.alpha) {
      const plane = await decodeAlpha(stream.extra.alpha, h, w, this.decodeImage);
      for (let i = 0; i < h * w; i++) pixels.rgba[4 * i + 3] = plane[i];
      pixels.channels += 1; // H x W x 4, or H x W x 2 for gray, as the Python decoder returns
    }
    return { width: w, height: h, ...pixels };
  }

  factorized(model, sections, boxes, hy, wy, inv, compact) {
    const m = model.m, yt = model.tables.y;
    if (compact && !yt.freq) throw new CorruptStreamError(`the compact profile has no streams of model '${model.meta.name}'`);
    if (sections.length !== boxes.length) throw new CorruptStreamError('stream has the wrong number of sections for its model');
    // ChannelCodec.check_room: every channel's hy * wy symbols, the slack once
    const counts = new Float64Array(yt.count);
    for (let c = 0; c < m; c++) counts[c] += hy * wy;
    if (!compact && 8 * sections.reduce((s, x) => s + x.length, 0) + 128 < 0.99 * yt.leastBits(counts)) {
      throw new CorruptStreamError('sections are too short for the image size the header declares');
    }
    const y = new Float32Array(m * hy * wy);
    boxes.forEach(([r0, r1, c0, c1], k) => {
      const th = r1 - r0, tw = c1 - c0;
      const idx = new Int32Array(m * th * tw);
      for (let c = 0; c < m; c++) idx.fill(c, c * th * tw, (c + 1) * th * tw);
      const sym = compact ? yt.decodeBytes(sections[k], idx) : yt.decode(sections[k], idx);
      for (let c = 0; c < m; c++) for (let r = 0; r < th; r++) for (let x = 0; x < tw; x++) {
        y[(c * hy + r0 + r) * wy + c0 + x] = sym[(c * th + r) * tw + x] * inv[c];
      }
    });
    return y;
  }

  async hyperprior(model, sections, boxes, header, hy, wy, inv) {
    const meta = model.meta, m = model.m, f = meta.z_factor;
    const zt = model.tables.z, yt = model.tables.y;
    if (header.tile !== null && header.tile % f) throw new CorruptStreamError('invalid tile size for this model');
    if (sections.length !== 1 + boxes.length) throw new CorruptStreamError('stream has the wrong number of sections for its model');
    const zc = zt.count, hz = Math.ceil(hy / f), wz = Math.ceil(wy / f);
    const zIdx = new Int32Array(zc * hz * wz);
    for (let c = 0; c < zc; c++) zIdx.fill(c, c * hz * wz, (c + 1) * hz * wz);
    const z = zt.decode(sections[0], zIdx);
    const net = await runIntNet(meta.intnet, model.arrays, z, zc, hz, wz, model.convInteger);
    if (net.c !== 2 * m || net.h < hy || net.w < wy) throw new ModelError(`hyper-decoder produced [${net.c}, ${net.h}, ${net.w}]`);
    const H = net.h, W = net.w, out = net.out;
    const scale = 2 ** meta.mean_bits;
    const y = new Float32Array(m * hy * wy);
    const levels = yt.count;
    const params = (r0, r1, c0, c1) => {
      const th = r1 - r0, tw = c1 - c0;
      const mu = new Float64Array(m * th * tw), idx = new Int32Array(m * th * tw);
      for (let c = 0; c < m; c++) for (let r = 0; r < th; r++) for (let x = 0; x < tw; x++) {
        const o = (c * th + r) * tw + x;
        mu[o] = out[(c * H + r0 + r) * W + c0 + x] / scale;
        const v = out[((m + c) * H + r0 + r) * W + c0 + x];
        if (v < 0 || v >= levels) throw new ModelError('hyper-decoder produced a scale index outside the tables');
        idx[o] = v;
      }
      return [mu, idx];
    };
    const secs = sections.slice(1);
    let have = 0, need = 0;
    let pending = [];
    const flush = () => {
      for (const i of pending) {
        const [r0, r1, c0, c1] = boxes[i];
        const th = r1 - r0, tw = c1 - c0;
        const [mu, idx] = params(r0, r1, c0, c1);
        let sym = null;
        if (meta.context) { // means on the 1/16 grid, refined step by step
          const mean16 = mu.map((v) => v * 16);
          const res = decodeRegion(meta.context, model.arrays, yt, secs[i], mean16, idx, m, th, tw, r0, c0);
          sym = res.sym;
          for (let o = 0; o < mu.length; o++) mu[o] = res.mean16[o] / 16;
        } else sym = yt.decode(secs[i], idx);
        for (let c = 0; c < m; c++) for (let r = 0; r < th; r++) for (let x = 0; x < tw; x++) {
          const o = (c * th + r) * tw + x;
          y[(c * hy + r0 + r) * wy + c0 + x] = (sym[o] + mu[o]) * inv[c];
        }
      }
      pending = [];
    };
    let area = 0;
    for (const group of strips(boxes)) {
      const [r0, r1] = boxes[group[0]];
      for (const i of group) {
        pending.push(i);
        const [, , c0, c1] = boxes[i];
        const [, idx] = params(r0, r1, c0, c1);
        have += 8 * secs[i].length;
        need += yt.leastBits(yt.counts(idx));
      }
      if (have + 128 < 0.99 * need) throw new CorruptStreamError('sections are too short for the image size the header declares');
      area += (r1 - r0) * (boxes[group.at(-1)][3] - boxes[group[0]][2]);
      if (area >= STRIP_AREA) { flush(); area = 0; }
    }
    flush();
    return y;
  }

  async synthesize(model, yHat, hy, wy, h, w, gray) {
    const meta = model.meta, s = meta.stride, m = model.m, halo = meta.synthesis_halo;
    const side = hy * wy * s * s <= RUN_TILE_ABOVE ? Math.max(hy, wy, 1) : Math.max(Math.floor(RUN_TILE / s), 1);
    const channels = gray || meta.channels === 1 ? 1 : 3;
    const px = new Uint8Array(h * w * channels);
    for (const [r0, r1, c0, c1] of tilesOf(hy, wy, side)) {
      if (r0 * s >= h || c0 * s >= w) continue;
      const R0 = Math.max(r0 - halo, 0), R1 = Math.min(r1 + halo, hy);
      const C0 = Math.max(c0 - halo, 0), C1 = Math.min(c1 + halo, wy);
      const th = R1 - R0, tw = C1 - C0;
      const part = new Float32Array(m * th * tw);
      for (let c = 0; c < m; c++) for (let r = 0; r < th; r++) {
        const src = (c * hy + R0 + r) * wy + C0;
        part.set(yHat.subarray(src, src + tw), (c * th + r) * tw);
      }
      const feeds = { y_hat: new this.ort.Tensor('float32', part, [1, m, th, tw]) };
      const result = await model.session.run(feeds);
      const x = result[meta.synthesis_output];
      const [, xc, XH, XW] = x.dims;
      const data = x.data;
      const y0 = r0 * s, y1 = Math.min(r1 * s, h), x0 = c0 * s, x1 = Math.min(c1 * s, w);
      if (XH < y1 - R0 * s || XW < x1 - C0 * s) throw new ModelError(`synthesis produced ${x.dims}, too small for ${w}x${h}`);
      const u8 = x.type === 'uint8';
      const val = (c, yy, xx) => {
        const v = data[(c * XH + yy - R0 * s) * XW + xx - C0 * s];
        if (u8) return v;
        const cl = Math.fround(Math.min(Math.max(v, 0), 1) * 255);
        return cl;
      };
      for (let yy = y0; yy < y1; yy++) for (let xx = x0; xx < x1; xx++) {
        const o = (yy * w + xx) * channels;
        if (xc === 1 || !gray) {
          if (xc !== channels) throw new CorruptStreamError('stream asks for color output from a grayscale model');
          for (let c = 0; c < xc; c++) px[o + c] = u8 ? val(c, yy, xx) : rint(val(c, yy, xx));
        } else {
          // np.mean over the channels: float64 for uint8 pixels, float32 for float ones
          const a = val(0, yy, xx), b = val(1, yy, xx), cc = val(2, yy, xx);
          px[o] = u8 ? rint((a + b + cc) / 3) : rint(Math.fround(Math.fround(Math.fround(a + b) + cc) / 3));
        }
      }
    }
    const rgba = new Uint8ClampedArray(h * w * 4);
    for (let i = 0; i < h * w; i++) {
      if (channels === 3) { rgba[4 * i] = px[3 * i]; rgba[4 * i + 1] = px[3 * i + 1]; rgba[4 * i + 2] = px[3 * i + 2]; } else { rgba[4 * i] = rgba[4 * i + 1] = rgba[4 * i + 2] = px[i]; }
      rgba[4 * i + 3] = 255;
    }
    return { channels, pixels: px, rgba };
  }
}
