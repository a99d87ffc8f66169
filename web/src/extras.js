// The extra sections' checks (codec/extras.py metadata, codec/alpha.py decode): ICC, EXIF,
// XMP and DPI are checked and skipped; the alpha plane is decoded by `decodeImage`
// (the browser's image decoder; none under Node).
import { CorruptStreamError, NotSupportedError } from './errors.js';

const TYPE_SIZE = { 1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8 };
const SUB_IFDS = [0x8769, 0x8825, 0xa005];
const BLOBS = [[0x0201, 0x0202], [0x0111, 0x0117]];
const ascii = (b, s, e) => String.fromCharCode(...b.subarray(s, e));

function exifExtent(t) {
  const little = t[0] === 0x49;
  const u = (pos, n) => {
    if (pos < 0 || pos + n > t.length) throw new CorruptStreamError('EXIF section points outside itself');
    let v = 0;
    for (let i = 0; i < n; i++) v += t[pos + (little ? i : n - 1 - i)] * 2 ** (8 * i);
    return v;
  };
  let end = 8;
  const todo = [u(4, 4)], seen = new Set();
  while (todo.length) {
    const ifd = todo.pop();
    if (ifd === 0) continue;
    if (seen.has(ifd) || seen.size > 64) throw new CorruptStreamError("EXIF section's directories loop");
    seen.add(ifd);
    const n = u(ifd, 2);
    todo.push(u(ifd + 2 + 12 * n, 4));
    end = Math.max(end, ifd + 6 + 12 * n);
    const tags = new Map();
    for (let k = 0; k < n; k++) {
      const e = ifd + 2 + 12 * k;
      const tag = u(e, 2), typ = u(e + 2, 2), count = u(e + 4, 4);
      const size = (TYPE_SIZE[typ] ?? 1) * count;
      const where = size > 4 ? u(e + 8, 4) : e + 8;
      if (size > 4) {
        u(where, size);
        end = Math.max(end, where + size);
      }
      if (SUB_IFDS.includes(tag)) todo.push(u(e + 8, 4));
      if ((typ === 3 || typ === 4) && count <= 4096) {
        const step = TYPE_SIZE[typ];
        tags.set(tag, Array.from({ length: count }, (_, i) => u(where + step * i, step)));
      }
    }
    for (const [offTag, lenTag] of BLOBS) {
      const offs = tags.get(offTag) ?? [], lens = tags.get(lenTag) ?? [];
      for (let i = 0; i < Math.min(offs.length, lens.length); i++) {
        u(offs[i], lens[i]);
        end = Math.max(end, offs[i] + lens[i]);
      }
    }
  }
  return end;
}

/** CorruptStreamError for an ICC, EXIF, XMP or DPI section that is not what it says. */
export function checkMetadata(extra) {
  const icc = extra.icc;
  if (icc) {
    const size = ((icc[0] << 24) >>> 0) + (icc[1] << 16) + (icc[2] << 8) + icc[3];
    if (icc.length < 128 || size !== icc.length || ascii(icc, 36, 40) !== 'acsp') {
      throw new CorruptStreamError('ICC section is not an ICC profile');
    }
  }
  const exif = extra.exif;
  if (exif) {
    const head = ascii(exif, 6, 10);
    if (ascii(exif, 0, 6) !== 'Exif\0\0' || (head !== 'II*\0' && head !== 'MM\0*')) {
      throw new CorruptStreamError('EXIF section is not an EXIF block');
    }
    const end = exifExtent(exif.subarray(6)) + 6;
    if (exif.length > end + 1) throw new CorruptStreamError(`EXIF section has ${exif.length - end} bytes after its last directory and value`);
  }
  const xmp = extra.xmp;
  if (xmp) {
    let text;
    try { text = new TextDecoder('utf-8', { fatal: true }).decode(xmp); } catch { throw new CorruptStreamError('XMP section is not UTF-8 text'); }
    if (!text.includes('<')) throw new CorruptStreamError('XMP section is not XML');
  }
  const dpi = extra.dpi;
  if (dpi) {
    if (dpi.length !== 8) throw new CorruptStreamError(`DPI section is ${dpi.length} bytes, not 8`);
    const v = new DataView(dpi.buffer, dpi.byteOffset, 8);
    if (!(v.getUint32(0) && v.getUint32(4))) throw new CorruptStreamError('DPI section holds a zero resolution');
  }
}

/** The H x W alpha plane (Uint8Array) of an alpha section, as codec/alpha.py decodes it. */
export async function decodeAlpha(data, height, width, decodeImage) {
  let end = data.length, mime = null;
  if (ascii(data, 0, 4) === 'RIFF' && data.length >= 8) {
    end = 8 + new DataView(data.buffer, data.byteOffset + 4, 4).getUint32(0, true);
    end += end & 1;
    mime = 'image/webp';
  } else if (data.length >= 8 && [137, 80, 78, 71, 13, 10, 26, 10].every((b, i) => data[i] === b)) {
    let iend = -1;
    for (let i = data.length - 4; i >= 0; i--) if (ascii(data, i, i + 4) === 'IEND') { iend = i; break; }
    end = iend >= 0 ? iend + 8 : data.length;
    mime = 'image/png';
  }
  if (data.length !== end) throw new CorruptStreamError(`alpha section has ${data.length - end > 0 ? '+' : ''}${data.length - end} bytes beyond its image`);
  if (!mime) throw new CorruptStreamError('alpha section cannot be decoded (not a WebP or PNG image)');
  if (!decodeImage) throw new NotSupportedError('alpha planes need an image decoder (a browser: createImageBitmap); none is set');
  let img;
  try { img = await decodeImage(data, mime); } catch (e) { throw new CorruptStreamError(`alpha section cannot be decoded (${e.message})`); }
  if (img.width !== width || img.height !== height) {
    throw new CorruptStreamError(`alpha section holds a ${img.width}x${img.height} image, not a ${width}x${height} plane`);
  }
  const plane = new Uint8Array(width * height);
  for (let i = 0; i < plane.length; i++) plane[i] = img.rgba[4 * i];
  return plane;
}

/** The browser's decoder for `decodeAlpha`: createImageBitmap on an OffscreenCanvas. */
export async function browserDecodeImage(data, mime) {
  const bitmap = await createImageBitmap(new Blob([data], { type: mime }),
    { premultiplyAlpha: 'none', colorSpaceConversion: 'none' });
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const ctx = canvas.getContext('2d');
  ctx.drawImage(bitmap, 0, 0);
  const { data: rgba } = ctx.getImageData(0, 0, bitmap.width, bitmap.height);
  return { width: bitmap.width, height: bitmap.height, rgba };
}
