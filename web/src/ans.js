// constriction's stack ANS decoder (`constriction.stream.stack.AnsCoder`: 32-bit words,
// 64-bit state, 24-bit probabilities), after its Rust source (src/stream/stack.rs): the state
// is held as two 32-bit halves in float64 numbers, every step exact.
import { CorruptStreamError } from './errors.js';

const PRECISION = 24;
const MASK = 0xffffff;
const TWO32 = 4294967296;

export class AnsDecoder {
  /** The words of one section (its bytes re-padded with zeros to whole little-endian words). */
  constructor(bytes) {
    if (bytes.length && bytes[bytes.length - 1] === 0) {
      throw new CorruptStreamError('section does not end in a non-zero byte');
    }
    const n = Math.ceil(bytes.length / 4);
    const padded = new Uint8Array(n * 4);
    padded.set(bytes);
    this.words = new Uint32Array(padded.buffer);
    this.pos = n; // words are read from the end (a stack)
    // read_initial_state: the last word, then more until the state fills past 2^32
    this.hi = 0;
    this.lo = 0;
    if (this.pos > 0) {
      this.lo = this.words[--this.pos];
      if (this.pos > 0) {
        this.hi = this.lo;
        this.lo = this.words[--this.pos];
      }
    }
  }

  isEmpty() { return this.hi === 0 && this.lo === 0; }

  /** One symbol of a model given as left cumulatives `cdf[start .. start + n]` (the last 2^24). */
  decode(cdf, start, n) {
    const quantile = this.lo & MASK;
    let a = start, b = start + n; // cdf[a] <= quantile < cdf[b]
    while (b - a > 1) {
      const mid = (a + b) >> 1;
      if (cdf[mid] <= quantile) a = mid; else b = mid;
    }
    this.advance(quantile, cdf[a], cdf[a + 1] - cdf[a]);
    return a - start;
  }

  /** One bit of `Uniform(2)`: probability 2^23 each. */
  decodeBit() {
    const quantile = this.lo & MASK;
    const bit = quantile >>> 23;
    this.advance(quantile, bit << 23, 1 << 23);
    return bit;
  }

  // state = (state >> 24) * prob + (quantile - left), then refill one word if below 2^32
  advance(quantile, left, prob) {
    const sHi = this.hi >>> 24;
    const sLo = (((this.hi & MASK) * 256) + (this.lo >>> 24)); // < 2^32
    const a = Math.floor(sLo / 65536), b = sLo % 65536;
    const t1 = b * prob + (quantile - left); // < 2^41
    const t2 = a * prob; // < 2^40
    const x = (t2 % 65536) * 65536 + t1;
    const lo = x % TWO32;
    const hi = sHi * prob + Math.floor(t2 / 65536) + Math.floor(x / TWO32);
    if (hi >= TWO32) throw new CorruptStreamError('invalid entropy-coded data (state overflow)');
    this.hi = hi;
    this.lo = lo;
    if (hi === 0 && this.pos > 0) {
      this.hi = lo;
      this.lo = this.words[--this.pos];
    }
  }
}
