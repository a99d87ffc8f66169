// Table sets with escapes over the ANS decoder (codec/entropy.py TableSet.decode).
import { AnsDecoder } from './ans.js';
import { CorruptStreamError } from './errors.js';

const MAX_EXP = 31;
const MAX_ABS = 2 ** 31 - 1;

export class TableSet {
  constructor(meta, arrays, name, headCdf) {
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
    if (!coder.isEmpty()) throw new CorruptStreamError('section has data left over after decoding');
    return out;
  }
}
