// The gains a quality selects, bit for bit as codec/rate.py and codec/exact_pow.py give them:
// x ** a in integer arithmetic (BigInt, 120 fraction bits), no Math.pow or Math.exp anywhere
// (docs/format.md, Quality), plus the shipped tables' legacy ULP deltas.
const P = 120n;
const ONE = 1n << P;

function atanh2(u) {
  const u2 = (u * u) >> P;
  let total = u, term = u, k = 1n;
  while (term) {
    term = (term * u2) >> P;
    k += 2n;
    total += term / k; // non-negative: truncation is floor
  }
  return 2n * total;
}

const LN2 = atanh2(ONE / 3n);

// a float64's exact value as num / 2^shift (num an odd-or-whole BigInt, shift >= 0 or < 0)
const view = new DataView(new ArrayBuffer(8));
function ratio(x) {
  view.setFloat64(0, x);
  const hi = view.getUint32(0), lo = view.getUint32(4);
  const exp = (hi >>> 20) & 0x7ff;
  let mant = (BigInt(hi & 0xfffff) << 32n) | BigInt(lo);
  let e;
  if (exp === 0) e = -1074; else { mant |= 1n << 52n; e = exp - 1075; }
  return [mant, e]; // x = mant * 2^e
}

function bitLength(n) { return n === 0n ? 0 : n.toString(2).length; }

const lnCache = new Map();
function lnFixed(x) {
  let v = lnCache.get(x);
  if (v !== undefined) return v;
  const [mant, e2] = ratio(x);
  const e = bitLength(mant) - 1 + e2; // x / 2^e in [1, 2)
  const shift = BigInt(e2 - e) + P; // f * 2^P = mant * 2^(e2 - e + P)
  const f = shift >= 0n ? mant << shift : mant >> -shift;
  const u = ((f - ONE) << P) / (f + ONE);
  v = atanh2(u) + BigInt(e) * LN2;
  lnCache.set(x, v);
  return v;
}

function floorDiv(a, b) { // b > 0
  const q = a / b;
  return (a % b !== 0n && a < 0n) ? q - 1n : q;
}

function pow2(n) { // exact 2^n as a float64 (normal range)
  let r = 1;
  for (; n > 0; n--) r *= 2;
  for (; n < 0; n++) r /= 2;
  return r;
}

function expFixed(y) {
  const k = floorDiv(y, LN2);
  const r = y - k * LN2;
  let total = ONE, term = ONE, n = 0n;
  while (term) {
    n += 1n;
    term = ((term * r) >> P) / n;
    total += term;
  }
  // Number(BigInt) rounds to nearest, ties to even: the one rounding; the scaling is exact
  return Number(total) * pow2(Number(k - P));
}

export function powExact(x, a) {
  if (a === 0) return 1.0;
  if (x === 0) return 0.0;
  const [num, e] = ratio(a); // a = num * 2^e, e < 0 for a in (0, 1]
  const prod = num * lnFixed(x);
  const y = e >= 0 ? prod << BigInt(e) : prod >> BigInt(-e);
  return expFixed(y);
}

/** (i, a): the quality's place between levels i and i + 1 of K (rate.position). */
export function position(k, quality) {
  const t = (quality - 1.0) / (100.0 - 1.0) * (k - 1);
  const i = Math.min(Math.floor(t), k - 2);
  return [i, t - i];
}

/** Inverse gains [M] at a quality: levels [K][M] (float64), legacy deltas Int8Array [991 * M] or null. */
export function invGainsAt(levels, quality, legacy) {
  const k = levels.length;
  if (k === 1 || quality === null) return Float64Array.from(levels[0]);
  const [i, a] = position(k, quality);
  const m = levels[0].length;
  const out = new Float64Array(m);
  for (let c = 0; c < m; c++) out[c] = powExact(levels[i][c], 1 - a) * powExact(levels[i + 1][c], a);
  if (legacy) {
    const code = Math.round(quality * 10) - 10;
    const bits = new BigInt64Array(out.buffer);
    for (let c = 0; c < m; c++) bits[c] += BigInt(legacy[code * m + c]);
  }
  return out;
}
