// The integer hyper-decoder (codec/intnet.py run): every value an integer below 2^53, so the
// float64 sums are exact in any order and the means and scale indices are those of Python.
const Z_CLIP = 2 ** 15;

function convSame(a, c, h, w, wt, o, k) {
  const p = k >> 1;
  const out = new Float64Array(o * h * w);
  const plane = h * w;
  for (let oc = 0; oc < o; oc++) {
    const dst = out.subarray(oc * plane, (oc + 1) * plane);
    for (let ic = 0; ic < c; ic++) {
      const src = a.subarray(ic * plane, (ic + 1) * plane);
      const wbase = (oc * c + ic) * k * k;
      for (let i = 0; i < k; i++) {
        for (let j = 0; j < k; j++) {
          const wv = wt[wbase + i * k + j];
          if (wv === 0) continue;
          const dy = i - p, dx = j - p;
          const y0 = Math.max(0, -dy), y1 = Math.min(h, h - dy);
          const x0 = Math.max(0, -dx), x1 = Math.min(w, w - dx);
          for (let y = y0; y < y1; y++) {
            const srow = (y + dy) * w + dx, drow = y * w;
            for (let x = x0; x < x1; x++) dst[drow + x] += wv * src[srow + x];
          }
        }
      }
    }
  }
  return out;
}

function depthToSpace(a, c, h, w, r) {
  const oc = c / (r * r);
  const out = new Float64Array(a.length);
  const W = w * r;
  for (let o = 0; o < oc; o++) {
    for (let i = 0; i < r; i++) {
      for (let j = 0; j < r; j++) {
        const src = ((o * r + i) * r + j) * h * w;
        for (let y = 0; y < h; y++) {
          for (let x = 0; x < w; x++) out[o * h * r * W + (y * r + i) * W + x * r + j] = a[src + y * w + x];
        }
      }
    }
  }
  return out;
}

const INT32_SAFE = 2 ** 31 - 1;

/** z symbols [C, h, w] (Int32Array) -> the network's output [O, H, W] as Float64Array.
 * `convInteger(i, x Uint8Array, zp, c, h, w)`, where given, runs layer i's sums as an 8-bit
 * ConvInteger wherever its input fits 8 bits, as codec/intnet.py does with MatMulInteger:
 * the same integers, in a fraction of the time of the float64 loops. */
export async function runIntNet(layers, arrays, z, c, h, w, convInteger = null) {
  let a = new Float64Array(z.length);
  let lo = Infinity, hi = -Infinity;
  for (let i = 0; i < z.length; i++) {
    a[i] = Math.min(Math.max(z[i], -Z_CLIP), Z_CLIP - 1);
    if (a[i] < lo) lo = a[i];
    if (a[i] > hi) hi = a[i];
  }
  if (!z.length) { lo = 0; hi = 0; }
  for (const [li, L] of layers.entries()) {
    const wt = arrays[L.w];
    const [o, , k] = [arrays.__shape[L.w][0], arrays.__shape[L.w][1], arrays.__shape[L.w][2]];
    let zp = null;
    if (lo >= 0 && hi <= 255) zp = 0; else if (lo >= -128 && hi <= 127) zp = 128;
    if (L.row_sum === null || L.row_sum * Math.max(Math.abs(lo), Math.abs(hi)) > INT32_SAFE) zp = null;
    let acc;
    if (convInteger && zp !== null && a.length) {
      const x = new Uint8Array(a.length);
      for (let i = 0; i < a.length; i++) x[i] = a[i] + zp;
      acc = Float64Array.from(await convInteger(li, x, zp, c, h, w));
    } else acc = convSame(a, c, h, w, wt, o, k);
    const b = arrays[L.b], m = arrays[L.m], lo_ = arrays[L.lo], hi_ = arrays[L.hi];
    const half = 2 ** (L.shift - 1), div = 2 ** L.shift;
    const plane = h * w;
    for (let oc = 0; oc < o; oc++) {
      for (let q = oc * plane; q < (oc + 1) * plane; q++) {
        let v = Math.floor(((acc[q] + b[oc]) * m[oc] + half) / div);
        if (v < lo_[oc]) v = lo_[oc];
        if (v > hi_[oc]) v = hi_[oc];
        acc[q] = v;
      }
    }
    a = acc;
    c = o;
    lo = Math.min(...lo_); hi = Math.max(...hi_);
    if (L.ps > 1) {
      a = depthToSpace(a, c, h, w, L.ps);
      c /= L.ps * L.ps;
      h *= L.ps;
      w *= L.ps;
    }
  }
  return { out: a, c, h, w };
}
