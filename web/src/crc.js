// CRC-32 (zlib) of the full profile, CRC-8/AUTOSAR of the compact one (docs/format.md).
const CRC32 = new Uint32Array(256);
for (let n = 0; n < 256; n++) {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  CRC32[n] = c >>> 0;
}

export function crc32(bytes, crc = 0) {
  let c = ~crc >>> 0;
  for (let i = 0; i < bytes.length; i++) c = CRC32[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

const CRC8 = new Uint8Array(256);
for (let n = 0; n < 256; n++) {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 0x80 ? ((c << 1) ^ 0x2f) & 0xff : (c << 1) & 0xff;
  CRC8[n] = c;
}

export function crc8(bytes, crc = 0xff) {
  let c = crc;
  for (let i = 0; i < bytes.length; i++) c = CRC8[c ^ bytes[i]];
  return c ^ 0xff;
}
