// node test/gains.mjs < {"levels": [[...]], "legacy": [...] | null, "qualities": [...]}:
// the inverse gains src/gains.js gives at each quality, as float64 bit patterns (hex).
import { invGainsAt } from '../src/gains.js';

let input = '';
for await (const chunk of process.stdin) input += chunk;
const { levels, legacy, qualities } = JSON.parse(input);
const table = legacy ? Int8Array.from(legacy) : null;
const hex = (v) => {
  const dv = new DataView(new ArrayBuffer(8));
  dv.setFloat64(0, v);
  return dv.getBigUint64(0).toString(16).padStart(16, '0');
};
console.log(JSON.stringify(qualities.map((q) => Array.from(invGainsAt(levels, q, table), hex))));
