// Table sets with escapes over the ANS decoder (codec/entropy.py TableSet.decode).
import { AnsDecoder } from './ans.js';
import { ByteDecoder, IntModel, UNIFORM_BIT, finalBytes } from './bytecoder.js';
import { CorruptStreamError } from './errors.js';

const MAX_EXP = 31;
const MAX_ABS = 2 ** 31 - 1;

export class TableSet {
  constructor(meta, arrays, name, headCdf, headFreq) {
    this.freq = arrays[`${name}_freq`] ?? null;
    this.headFreq = headFreq;
    this.intModels = null;
    this.count = meta.count;
    this.minBits = Float64Array.from(meta.min_bits);
    this.cdf = arrays[`${name}_cdf`];
    this.start = arrays[`${name}_cdf_start`];
    this.lengths = arrays[`${name}_len`];
    this.offsets = arrays[`${name}_offset`];
    this.head = Uint32Array.from(headCdf);
  }

  checkTables(tables) {
    for (let i = 0; i < tables.length; i++) {
      if (tables[i] < 0 || tables[i] >= this.count) throw new CorruptStreamError('table index out of range');
    }
  }

  counts(tables) {
    const c = new Float64Array(this.count);
    for (let i = 0; i < tables.length; i++) c[tables[i]]++;
    return c;
  }

  leastBits(counts) {
    let s = 0;
    for (let i = 0; i < counts.length; i++) s += counts[i] * this.minBits[i];
    return s;
  }

  /** Integer values of the symbols (one table index each, C order) of one section. */
  decode(data, tables) {
    this.checkTables(tables);
    if (data.length && data[data.length - 1] === 0) throw new CorruptStreamError('section does not end in a non-zero byte');
    const counts = this.counts(tables);
    if (8 * data.length + 64 < 0.99 * this.leastBits(counts) - 64) {
      throw new CorruptStreamError('section is too short for the image size its header declares');
    }
    const coder = new AnsDecoder(data);
    const out = this.decodeFrom(coder, tables, counts);
    if (!coder.isEmpty()) throw new CorruptStreamError('section has data left over after decoding');
    return out;
  }

  checkRoom(data, counts) {
    if (8 * data.length + 64 < 0.99 * this.leastBits(counts) - 64) {
      throw new CorruptStreamError('section is too short for the image size its header declares');
    }
  }

  /** One group of symbols popped from a coder (TableSet.decode_from): by table, then the
   * escapes' heads, then their mantissa bits. */
  decodeFrom(coder, tables, counts = null) {
    this.checkTables(tables);
    if (!counts) counts = this.counts(tables);
    // positions grouped by table (stable)
    const n = tables.length;
    const groupStart = new Int32Array(this.count + 1);
    for (let t = 0; t < this.count; t++) groupStart[t + 1] = groupStart[t] + counts[t];
    const fill = groupStart.slice(0, this.count);
    const order = new Int32Array(n);
    for (let i = 0; i < n; i++) order[fill[tables[i]]++] = i;
    const out = new Int32Array(n);
    const escPos = [];
    for (let t = 0; t < this.count; t++) {
      const len = this.lengths[t], off = this.offsets[t], s = this.start[t];
      for (let g = groupStart[t]; g < groupStart[t + 1]; g++) {
        const a = coder.decode(this.cdf, s, len + 1);
        if (a === len) escPos.push(order[g]);
        out[order[g]] = a + off;
      }
    }
    if (escPos.length) {
      const heads = escPos.map(() => coder.decode(this.head, 0, 2 * (MAX_EXP + 1)));
      const exps = heads.map((h) => h % (MAX_EXP + 1));
      const mant = exps.map((e) => { let v = 0; for (let k = 0; k < e; k++) v = v * 2 + coder.decodeBit(); return v; });
      escPos.forEach((p, j) => {
        const t = tables[p], lo = this.offsets[t], len = this.lengths[t];
        const d = (exps[j] < 31 ? 1 << exps[j] : 2147483648) + mant[j];
        const v = heads[j] >= MAX_EXP + 1 ? lo + len + d - 1 : lo - d;
        if (Math.abs(v) > MAX_ABS) throw new CorruptStreamError('escaped latent value out of range');
        out[p] = v;
      });
    }
    return out;
  }

  /** The compact profile's byte-coded section (TableSet.decode_bytes), canonical or refused. */
  decodeBytes(data, tables) {
    this.checkTables(tables);
    if (8 * data.length > tables.length * (2 * 24 + MAX_EXP) + 8) {
      throw new CorruptStreamError('section is longer than any coding of its symbols');
    }
    if (!this.intModels) {
      this.intModels = [];
      for (let t = 0; t < this.count; t++) {
        const s = this.start[t] - t; // freq rows are len + 1 long: cdf rows are len + 2
        this.intModels.push(new IntModel(this.freq.subarray(s, s + this.lengths[t] + 1)));
      }
      this.headModel = new IntModel(this.headFreq);
    }
    const n = tables.length;
    const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => tables[a] - tables[b] || a - b);
    const dec = new ByteDecoder(data);
    const out = new Float64Array(n);
    const esc = [];
    for (const p of order) {
      const t = tables[p];
      const a = dec.decode(this.intModels[t]);
      if (a === this.lengths[t]) esc.push(p);
      out[p] = a + this.offsets[t];
    }
    const heads = esc.map(() => dec.decode(this.headModel));
    const exps = heads.map((h) => h % (MAX_EXP + 1));
    const mant = exps.map((e) => { let v = 0; for (let k = 0; k < e; k++) v = v * 2 + dec.decode(UNIFORM_BIT); return v; });
    esc.forEach((p, j) => {
      const t = tables[p], lo = this.offsets[t], len = this.lengths[t];
      const d = (exps[j] < 31 ? 1 << exps[j] : 2147483648) + mant[j];
      out[p] = heads[j] >= MAX_EXP + 1 ? lo + len + d - 1 : lo - d;
    });
    for (let i = 0; i < n; i++) if (Math.abs(out[i]) > MAX_ABS) throw new CorruptStreamError('section decodes to a latent out of range');
    const canonical = finalBytes(dec.low, dec.width, dec.scale);
    if (canonical.length !== data.length || canonical.some((b, i) => b !== data[i])) {
      throw new CorruptStreamError('section is not the canonical coding of its symbols');
    }
    return Int32Array.from(out);
  }
}
