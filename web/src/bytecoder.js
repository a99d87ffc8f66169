// The compact profile's exact arithmetic coder (codec/bytecoder.py) over BigInt: decoding,
// and the re-encoding that refuses any payload but the canonical one.
import { CorruptStreamError } from './errors.js';

export class IntModel {
  constructor(freqs, precision = 24) {
    this.precision = BigInt(precision);
    this.freqs = Array.from(freqs, (f) => BigInt(f));
    this.cum = [0n];
    for (const f of this.freqs) this.cum.push(this.cum.at(-1) + f);
  }

  find(u) { // bisect_right(cum, u) - 1
    let lo = 0, hi = this.cum.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.cum[mid] <= u) lo = mid + 1; else hi = mid;
    }
    return lo - 1;
  }
}

export const UNIFORM_BIT = new IntModel([1, 1], 1);

export class ByteDecoder {
  constructor(data) {
    this.value = data.length ? BigInt(`0x${Array.from(data, (b) => b.toString(16).padStart(2, '0')).join('')}`) : 0n;
    this.bits = BigInt(8 * data.length);
    this.low = 0n; this.width = 1n; this.scale = 0n;
    this.steps = [];
  }

  decode(model) {
    const p = model.precision;
    const num = (this.value << (this.scale + p)) - (this.low << (p + this.bits));
    const den = this.width << this.bits;
    // floor division (num may be negative only for invalid data)
    let u = num / den;
    if (num % den !== 0n && num < 0n) u -= 1n;
    if (u < 0n || u >= 1n << p) throw new CorruptStreamError('invalid arithmetic-coded data');
    const s = model.find(u);
    this.step(model.cum[s], model.freqs[s], p);
    return s;
  }

  step(cum, freq, p) {
    this.low = (this.low << p) + cum * this.width;
    this.width *= freq;
    this.scale += p;
    this.steps.push(null);
  }
}

/** The shortest byte string inside [low, low + width) / 2^scale (bytecoder.encode). */
export function finalBytes(low, width, scale) {
  let n = 0n, b;
  for (;;) {
    const shift = scale - 8n * n;
    if (shift <= 0n) { b = low << -shift; break; }
    b = -((-low) >> shift);
    if ((b << shift) < low + width) break;
    n += 1n;
  }
  const out = new Uint8Array(Number(n));
  for (let i = out.length - 1; i >= 0; i--) { out[i] = Number(b & 255n); b >>= 8n; }
  return out;
}
