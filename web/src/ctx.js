// The context family's y sections (codec/ctxnet.py decode_region): per tile, steps of
// channel slices x checkerboard phases, each step's means (1/16) and scale indices refined by
// exact integer networks from the symbols already decoded, all steps in one ANS stream.
import { AnsDecoder } from './ans.js';
import { CorruptStreamError } from './errors.js';

const SCALE_LEVELS = 64;

function layer(L, arrays, acc, n, o) {
  const b = arrays[L.b], m = arrays[L.m], lo = arrays[L.lo], hi = arrays[L.hi];
  const half = 2 ** (L.shift - 1), div = 2 ** L.shift;
  for (let r = 0; r < n; r++) {
    for (let c = 0; c < o; c++) {
      const q = r * o + c;
      let v = Math.floor(((acc[q] + b[c]) * m[c] + half) / div);
      if (v < lo[c]) v = lo[c];
      if (v > hi[c]) v = hi[c];
      acc[q] = v;
    }
  }
  return acc;
}

// rows [n, C] times w [O, C] (integers) -> [n, O], added into acc
function matmulInto(acc, rows, n, cdim, w, o) {
  for (let r = 0; r < n; r++) {
    const ro = r * cdim, ao = r * o;
    for (let c = 0; c < o; c++) {
      let s = 0;
      const wo = c * cdim;
      for (let k = 0; k < cdim; k++) s += rows[ro + k] * w[wo + k];
      acc[ao + c] += s;
    }
  }
}

/** One tile's section: {sym, mean16, idx} (Float64Array [M, h, w]) from the hyper-decoder's
 * means (1/16 units) and indices. */
export function decodeRegion(ctx, arrays, tables, data, meanH, idxH, m, h, w, r0, c0) {
  const { slices, phases, ctx_limit: lim } = ctx;
  const ms = m / slices, plane = h * w;
  const mask = (p) => {
    const out = [];
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
      if (phases === 1 || (y + r0 + x + c0) % 2 === p) out.push(y * w + x);
    }
    return out;
  };
  // room for the first step's symbols, before any network runs
  const first = mask(0);
  const counts = new Float64Array(tables.count);
  for (let c = 0; c < ms; c++) for (const q of first) counts[idxH[c * plane + q]]++;
  if (data.length && data[data.length - 1] === 0) throw new CorruptStreamError('section does not end in a non-zero byte');
  tables.checkRoom(data, counts);
  const coder = new AnsDecoder(data);
  const clip = (v) => Math.min(Math.max(v, -lim), lim);
  const hyp = new Float64Array(2 * m * plane);
  for (let i = 0; i < m * plane; i++) { hyp[i] = clip(meanH[i]); hyp[m * plane + i] = clip(16 * idxH[i]); }
  const mean16 = Float64Array.from(meanH), idx = Float64Array.from(idxH);
  const sym = new Float64Array(m * plane), cx = new Float64Array(m * plane);
  for (let s = 0; s < slices; s++) {
    for (let p = 0; p < phases; p++) {
      const pos = mask(p), n = pos.length;
      if (s !== 0 || p !== 0) {
        const L = ctx.steps[`${s}_${p}`];
        const wh = arrays[L[0].wh], o0 = arrays.__shape[L[0].wh][0];
        const rows = new Float64Array(n * 2 * m);
        for (let r = 0; r < n; r++) for (let c = 0; c < 2 * m; c++) rows[r * 2 * m + c] = hyp[c * plane + pos[r]];
        let acc = new Float64Array(n * o0);
        matmulInto(acc, rows, n, 2 * m, wh, o0);
        if (L[0].w) {
          const [, cctx, k] = arrays.__shape[L[0].w];
          const pad = k >> 1, cdim = cctx * k * k;
          const patches = new Float64Array(n * cdim);
          for (let r = 0; r < n; r++) {
            const y = Math.floor(pos[r] / w), x = pos[r] % w;
            for (let c = 0; c < cctx; c++) for (let i = 0; i < k; i++) for (let j = 0; j < k; j++) {
              const yy = y + i - pad, xx = x + j - pad;
              patches[r * cdim + (c * k + i) * k + j] = yy < 0 || yy >= h || xx < 0 || xx >= w ? 0 : cx[c * plane + yy * w + xx];
            }
          }
          matmulInto(acc, patches, n, cdim, arrays[L[0].w], o0);
        }
        acc = layer(L[0], arrays, acc, n, o0);
        const o1 = arrays.__shape[L[1].w][0];
        let a1 = new Float64Array(n * o1);
        matmulInto(a1, acc, n, o0, arrays[L[1].w], o1);
        a1 = layer(L[1], arrays, a1, n, o1);
        const o2 = arrays.__shape[L[2].w][0];
        let a2 = new Float64Array(n * o2);
        matmulInto(a2, a1, n, o1, arrays[L[2].w], o2);
        a2 = layer(L[2], arrays, a2, n, o2);
        for (let c = 0; c < ms; c++) {
          const ch = s * ms + c;
          for (let r = 0; r < n; r++) {
            const q = ch * plane + pos[r];
            mean16[q] = meanH[q] + a2[r * o2 + c];
            idx[q] = Math.min(Math.max(idxH[q] + a2[r * o2 + ms + c], 0), SCALE_LEVELS - 1);
          }
        }
      }
      const tabs = new Int32Array(ms * n);
      for (let c = 0; c < ms; c++) for (let r = 0; r < n; r++) tabs[c * n + r] = idx[(s * ms + c) * plane + pos[r]];
      const got = tables.decodeFrom(coder, tabs);
      for (let c = 0; c < ms; c++) {
        const ch = s * ms + c;
        for (let r = 0; r < n; r++) {
          const q = ch * plane + pos[r];
          sym[q] = got[c * n + r];
          cx[q] = clip(16 * sym[q] + mean16[q] - meanH[q]);
        }
      }
    }
  }
  if (!coder.isEmpty()) throw new CorruptStreamError('section has data left over after decoding');
  return { sym, mean16, idx };
}
