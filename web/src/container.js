// The .aec container (codec/container.py): header fields, CRC, section framing, size limits.
import { crc32, crc8 } from './crc.js';
import { CorruptStreamError, ImageTooLargeError } from './errors.js';

export const MAX_SIDE = 1 << 24;
const EXTRA_KINDS = ['icc', 'exif', 'alpha', 'xmp', 'dpi'];
const FLAG_GRAY = 1, FLAG_SIZE = 2, FLAG_QUALITY = 4, FLAG_TWO = 8;
const truncatedField = 'stream is truncated (inside a header field)';
const truncated = 'stream is truncated (inside the header)';

function varint(data, pos) {
  let value = 0;
  for (let i = 0; i < 5; i++) {
    if (pos + i >= data.length) throw new CorruptStreamError(truncatedField);
    const byte = data[pos + i];
    value += (byte & 0x7f) * 2 ** (7 * i);
    if (!(byte & 0x80)) {
      if (byte === 0 && i > 0) throw new CorruptStreamError('non-canonical varint in header');
      return [value, pos + i + 1];
    }
  }
  throw new CorruptStreamError('varint in header is too long');
}

function quality(data, pos) {
  if (pos >= data.length) throw new CorruptStreamError(truncatedField);
  const b0 = data[pos];
  if (b0 < 100) return [b0 + 1, pos + 1];
  if (b0 > 103 || pos + 1 >= data.length) throw new CorruptStreamError('invalid quality code in header');
  const code = ((b0 - 100) << 8) | data[pos + 1];
  if (code > 990 || code % 10 === 0) throw new CorruptStreamError('invalid quality code in header');
  return [(code + 10) / 10, pos + 2];
}

const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');

/** Header fields, CRC checked, sections split; the same checks as container.parse. */
export function parse(data, maxPixels) {
  if (data.length > 0 && data[0] < 0x80) { // the compact profile: checked, then refused
    let pos = 1;
    if (data[0] & 0x40) {
      if (data.length < 2) throw new CorruptStreamError(truncated);
      if (data[1] > 99) throw new CorruptStreamError('invalid quality code in header');
      pos = 2;
    }
    if (data.length < pos + 1) throw new CorruptStreamError(truncated);
    if (crc8(data.subarray(pos + 1), crc8(data.subarray(0, pos)) ^ 0xff) !== data[pos]) {
      throw new CorruptStreamError('checksum mismatch: the stream is truncated or damaged');
    }
    const q = data[0] & 0x40 ? data[1] + 1 : null;
    return {
      header: { modelId: null, compactIndex: data[0] & 0x3f, width: null, height: null, gray: true, quality: q, version: 1, tile: null, extras: [], profile: 'compact' },
      latent: [data.subarray(pos + 1)], extra: {},
    };
  }
  if (data.length < 3 || data[0] !== 0xae || data[1] !== 0xcd) {
    throw new CorruptStreamError('not an aecodec stream (bad magic bytes)');
  }
  const version = data[2] >> 4, flags = data[2] & 15;
  if (![1, 2, 3].includes(version)) {
    throw new CorruptStreamError(`unsupported format version ${version} (this reads 1, 2 and 3)`);
  }
  let pos = 3;
  if (data.length < pos + 4) throw new CorruptStreamError(truncated);
  const modelId = hex(data.subarray(pos, pos + 4));
  pos += 4;
  let width = null, height = null, q = null, tile = null, extras = [];
  if (flags & FLAG_SIZE) {
    [width, pos] = varint(data, pos);
    [height, pos] = varint(data, pos);
  }
  if (flags & FLAG_QUALITY) [q, pos] = quality(data, pos);
  const lengths = [];
  const tiled = version === 2 || (version === 3 && (flags & FLAG_TWO) !== 0);
  if (version === 2 && (!(flags & FLAG_SIZE) || flags & FLAG_TWO)) {
    throw new CorruptStreamError('invalid flags for a tiled stream');
  }
  if (tiled) {
    if (!(flags & FLAG_SIZE)) throw new CorruptStreamError('invalid flags for a tiled stream');
    [tile, pos] = varint(data, pos);
  }
  if (version === 3) {
    if (pos >= data.length) throw new CorruptStreamError(truncatedField);
    const bits = data[pos++];
    if (bits >> EXTRA_KINDS.length) {
      throw new CorruptStreamError(`unknown extra sections (bits 0x${bits.toString(16).padStart(2, '0')}) in header`);
    }
    extras = EXTRA_KINDS.filter((_, i) => bits & (1 << i));
  }
  if (tiled || version === 3) {
    let count;
    [count, pos] = varint(data, pos);
    if (tiled && (tile < 1 || count < 1)) throw new CorruptStreamError('invalid tile field in header');
    if (tiled && tile % 4) throw new CorruptStreamError(`tile side ${tile} is not a multiple of 4 latents`);
    if (count < 1 || (!tiled && count > 2)) throw new CorruptStreamError('invalid section count in header');
    count += extras.length;
    if (count - 1 > data.length - pos) throw new CorruptStreamError(truncated);
    for (let i = 0; i < count - 1; i++) {
      let n;
      [n, pos] = varint(data, pos);
      lengths.push(n);
    }
  } else if (flags & FLAG_TWO) {
    let n;
    [n, pos] = varint(data, pos);
    lengths.push(n);
  }
  if (data.length < pos + 4) throw new CorruptStreamError(truncated);
  // Stream.check: the CRC, the size, the sections
  const want = (data[pos] | (data[pos + 1] << 8) | (data[pos + 2] << 16) | (data[pos + 3] << 24)) >>> 0;
  if (crc32(data.subarray(pos + 4), crc32(data.subarray(0, pos))) !== want) {
    throw new CorruptStreamError('checksum mismatch: the stream is truncated or damaged');
  }
  if (width !== null && !(width > 0 && width < MAX_SIDE && height > 0 && height < MAX_SIDE)) {
    throw new CorruptStreamError(`invalid image size ${width}x${height} in header`);
  }
  if (width !== null && maxPixels != null && width * height > maxPixels) {
    throw new ImageTooLargeError(
      `stream declares a ${width}x${height} image, over the limit of ${maxPixels} pixels`);
  }
  const payload = data.subarray(pos + 4);
  const sections = [];
  let start = 0;
  for (const n of lengths) {
    if (start + n > payload.length) throw new CorruptStreamError('section length runs past the end of the stream');
    sections.push(payload.subarray(start, start + n));
    start += n;
  }
  sections.push(payload.subarray(start));
  const nLatent = sections.length - extras.length;
  const extra = {};
  extras.forEach((k, i) => { extra[k] = sections[nLatent + i]; });
  return {
    header: { modelId, width, height, gray: (flags & FLAG_GRAY) !== 0, quality: q, version, tile, extras, profile: 'full' },
    latent: sections.slice(0, nLatent), extra,
  };
}
