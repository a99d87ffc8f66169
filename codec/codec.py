"""The codec: an image to a compact stream and back, with a model's ONNX graphs and tables.

`Codec` keeps a checked model and its ONNX sessions open, so coding many images pays the
loading once. The module functions `compress` / `decompress` use a small cache of codecs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from . import container, intnet, refine
from .errors import (
    AecodecError,
    CorruptStreamError,
    ImageTooLargeError,
    ModelError,
    ModelMismatchError,
    UnsupportedImageError,
)
from .imageio import as_array
from .model import Model, ModelInfo, find, find_by_id

DEFAULT_QUALITY = 75.0
DEFAULT_MAX_PIXELS = 100_000_000
DEFAULT_TILE = 1024  # tile side in pixels for images coded by tiles
DEFAULT_TILE_ABOVE = 2 * 1024 * 1024  # images with more pixels are coded by tiles
# Untiled streams of images over this many pixels are synthesised in DEFAULT_TILE tiles, so a
# decoder's memory stays bounded whatever wrote the stream (docs/format.md, Tiles).
SYNTHESIS_TILE_ABOVE = 2 * 1024 * 1024
INTNET_BLOCK = 32  # z latents a side per hyper-decoder run (exact whatever the blocks)
ModelLike = Model | ModelInfo | str | Path | None


def default_max_pixels() -> int:
    """AECODEC_MAX_PIXELS if set, else 100 megapixels."""
    try:
        return int(os.environ.get("AECODEC_MAX_PIXELS", DEFAULT_MAX_PIXELS))
    except ValueError:
        return DEFAULT_MAX_PIXELS


@dataclass(frozen=True)
class Encoded:
    """A compressed image with what the encoder knows about it."""

    data: bytes
    width: int
    height: int
    quality: float | None  # as recorded in the stream; None for single-rate models
    estimated_bits: float  # payload information content under the model's tables

    @property
    def bpp(self) -> float:
        return len(self.data) * 8 / (self.width * self.height)

    @property
    def header_bytes(self) -> int:
        return container.header_size(self.data)


class Codec:
    """A loaded model ready to compress and decompress; keeps its ONNX sessions open."""

    def __init__(
        self,
        model: ModelLike = None,
        threads: int | None = None,
        providers: list[str] | None = None,
        max_pixels: int | None = None,
        graph_optimization: str | None = None,
        tile: int = DEFAULT_TILE,
        tile_above: int | None = DEFAULT_TILE_ABOVE,
        profile: str = "full",
        refine: int = 0,
    ):
        """`threads`, `providers` and `graph_optimization` ("all", "extended", "basic" or
        "none") configure ONNX Runtime; the entropy decoding never depends on them.
        Images over `tile_above` pixels are coded by tiles of `tile` x `tile` pixels (a
        multiple of the model's pad multiple); `tile_above=None` never tiles.
        `profile="compact"` writes the compact stream profile (docs/format.md): for fixed-size
        grayscale models with a compact index, a 1-3 byte header and integer qualities.
        `refine=N`: up to N rounds of encoder-side latent search (codec/refine.py; fixed-size
        factorized models with one latent position): smaller or better streams, same decoder."""
        if isinstance(model, Model):
            self.model = model
        else:
            info = model if isinstance(model, ModelInfo) else find(model)
            self.model = Model(info, threads=threads, providers=providers,
                               graph_optimization=graph_optimization)
        self.max_pixels = default_max_pixels() if max_pixels is None else int(max_pixels)
        latent = self.model.info.manifest.get("latent", {})
        try:
            self.stride = int(latent["stride"])
            self.hyper_stride = int(latent.get("hyper_stride") or self.stride)
            # receptive-field margins in latents (docs/model-format.md); 4 covers the shipped
            self.analysis_halo = int(latent.get("analysis_halo", 4))
            self.synthesis_halo = int(latent.get("synthesis_halo", 4))
        except (KeyError, TypeError, ValueError):
            raise ModelError(f"{self.model.path}: manifest lacks latent.stride") from None
        self.z_factor = max(self.hyper_stride // self.stride, 1)  # y latents per z latent
        self.z_halo = _intnet_halo(self.model.net) if self.model.net else 0
        unit = int(np.lcm(self.model.info.pad_multiple, self.hyper_stride))
        if self.model.info.fixed_size is None and (tile < unit or tile % unit):
            raise ValueError(f"tile must be a positive multiple of {unit}, got {tile}")
        self.tile = int(tile)
        self.tile_above = tile_above
        if profile not in container.PROFILES:
            raise ValueError(f"profile must be one of {container.PROFILES}, got {profile!r}")
        if profile == "compact" and container.compact_index(self.model.id) is None:
            raise ModelError(f"model '{self.model.name}' ({self.model.id}) has no compact-profile "
                             "index (only shipped fixed-size grayscale models have one)")
        self.profile = profile
        self.refine = int(refine)

    # ---- shapes -----------------------------------------------------------------------------

    def _padded(self, h: int, w: int) -> tuple[int, int]:
        m = self.model.info.pad_multiple
        return -(-h // m) * m, -(-w // m) * m

    def _latent_hw(self, h: int, w: int, stride: int) -> tuple[int, int]:
        ph, pw = self._padded(h, w)
        return -(-ph // stride), -(-pw // stride)

    def _check_size(self, h: int, w: int) -> None:
        if h * w > self.max_pixels:
            raise ImageTooLargeError(
                f"a {w}x{h} image is over the limit of {self.max_pixels} pixels"
            )
        fixed = self.model.info.fixed_size
        if fixed and (h, w) != fixed:
            raise UnsupportedImageError(
                f"model '{self.model.name}' codes {fixed[1]}x{fixed[0]} images only, got {w}x{h}"
            )

    # ---- encoding ---------------------------------------------------------------------------

    def _prepare(self, image: np.ndarray | Image.Image) -> tuple[np.ndarray, bool]:
        """Validate and convert to the model's channels; returns (H x W x C uint8, gray)."""
        a = as_array(image)
        gray = a.ndim == 2
        channels = self.model.info.channels
        if channels == 1 and not gray:
            raise UnsupportedImageError(
                f"model '{self.model.name}' codes grayscale (H x W) images only"
            )
        self._check_size(a.shape[0], a.shape[1])
        a = a[:, :, None] if gray else a
        if channels == 3 and gray:
            a = np.repeat(a, 3, axis=2)
        return a, gray

    def _tiled(self, h: int, w: int) -> bool:
        return (
            self.tile_above is not None
            and h * w > self.tile_above
            and self.model.info.fixed_size is None
        )

    def _analyse(self, a: np.ndarray) -> np.ndarray:
        """The analysis transform of the padded image: y [M, h, w] float32.

        Large images run by tiles of the latent grid, each with a halo of `analysis_halo`
        latents of image around it (its receptive field), keeping only the tile's own latents:
        the same y as one pass, in bounded memory."""
        h, w = a.shape[:2]
        ph, pw = self._padded(h, w)
        padded = np.pad(a, ((0, ph - h), (0, pw - w), (0, 0)), mode="edge")
        m = self.model.gain.shape[1]
        hy, wy = self._latent_hw(h, w, self.stride)
        t = self.tile // self.stride if self._tiled(h, w) else max(hy, wy)
        s, halo = self.stride, self.analysis_halo
        y = np.empty((m, hy, wy), np.float32)
        for r0, r1, c0, c1 in _tiles(hy, wy, t):
            R0, R1, C0, C1 = max(r0 - halo, 0), min(r1 + halo, hy), max(c0 - halo, 0), min(
                c1 + halo, wy)
            part = padded[R0 * s : R1 * s, C0 * s : C1 * s]
            x = np.ascontiguousarray(part.transpose(2, 0, 1)[None], np.float32) / np.float32(255)
            out = self._run(self.model.analysis, "y", {"x": x})
            expect = (1, m, R1 - R0, C1 - C0)
            if out.shape != expect:
                raise ModelError(f"analysis produced shape {out.shape}, expected {expect}")
            y[:, r0:r1, c0:c1] = out[0, :, r0 - R0 : r1 - R0, c0 - C0 : c1 - C0]
        return y

    def _code_latent(
        self, y: np.ndarray, quality: float | None, tile: int | None = None,
        image: np.ndarray | None = None,
    ) -> tuple[list[bytes], float]:
        """Quantize and entropy-code y at a quality; returns (sections, estimated bits).

        Untiled: [z,] y. Tiled (`tile` latents a side): [z,] then one y section per tile."""
        gain, _ = self.model.gains(quality)
        if tile is None and self.model.family == "factorized":
            y_g = y.astype(np.float64) * gain[:, None, None]
            if not np.all(np.isfinite(y_g)):
                raise AecodecError("the model produced non-finite latents for this image")
            sym = np.rint(y_g).ravel()
            if self.refine and image is not None and y_g.shape[1:] == (1, 1):
                sym = refine.search(self, image, sym, quality, self.refine).astype(np.float64)
            tables = _channel_index(y_g.shape)
            yt = self.model.y_tables
            code = yt.encode_bytes if self.profile == "compact" else yt.encode
            return [code(sym, tables)], yt.estimate_bits(sym, tables)
        if tile is None:
            tile = max(y.shape[1:])
        sections, bits = [], 0.0
        z_sym = None
        if self.model.family == "hyperprior":
            if not np.all(np.isfinite(y)):
                raise AecodecError("the model produced non-finite latents for this image")
            y_g32 = (y.astype(np.float64) * gain[:, None, None]).astype(np.float32)
            z = self._run(self.model.hyper_analysis, "z", {"y": y_g32[None]})[0]
            del y_g32
            z_sym = np.rint(z.astype(np.float64))
            if not np.all(np.isfinite(z_sym)):
                raise AecodecError("the model produced non-finite hyper-latents for this image")
            zt, zc = self.model.z_tables, _channel_index(z_sym.shape)
            sections.append(zt.encode(z_sym.ravel(), zc))
            bits += zt.estimate_bits(z_sym.ravel(), zc)
        yt = self.model.y_tables
        for r0, r1, c0, c1 in _tiles(y.shape[1], y.shape[2], tile):
            y_g = y[:, r0:r1, c0:c1].astype(np.float64) * gain[:, None, None]
            if not np.all(np.isfinite(y_g)):
                raise AecodecError("the model produced non-finite latents for this image")
            if z_sym is None:
                sym, idx = np.rint(y_g).ravel(), _channel_index(y_g.shape)
            else:
                mu, idx = self._entropy_params(z_sym, y_g.shape, r0, c0)
                sym = np.rint(y_g - mu).ravel()
            sections.append(yt.encode(sym, idx))
            bits += yt.estimate_bits(sym, idx)
        return sections, bits

    def _entropy_params(
        self, z_sym: np.ndarray, y_shape: tuple, r0: int = 0, c0: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        """Means and table indices for the y tile of `y_shape` at latent (r0, c0), from the
        exact integer hyper-decoder run on the z tile plus a halo covering its receptive
        field (integer arithmetic: identical to a whole-image run)."""
        m, th, tw = y_shape
        f = self.z_factor
        block = INTNET_BLOCK * f
        if self.z_halo and (th > block or tw > block):  # big regions by blocks: less memory
            mu = np.empty((m, th, tw), np.float64)
            idx = np.empty((m, th, tw), np.int64)
            for b0, b1, d0, d1 in _tiles(th, tw, block):
                mb, ib = self._entropy_params(z_sym, (m, b1 - b0, d1 - d0), r0 + b0, c0 + d0)
                mu[:, b0:b1, d0:d1] = mb
                idx[:, b0:b1, d0:d1] = ib.reshape(m, b1 - b0, d1 - d0)
            return mu, idx.ravel()
        halo = self.z_halo
        hz, wz = z_sym.shape[1:]
        z0, z1 = r0 // f, -(-(r0 + th) // f)
        x0, x1 = c0 // f, -(-(c0 + tw) // f)
        Z0, Z1, X0, X1 = max(z0 - halo, 0), min(z1 + halo, hz), max(x0 - halo, 0), min(
            x1 + halo, wz)
        out = intnet.run(self.model.net, z_sym[:, Z0:Z1, X0:X1])
        expect = (2 * m, (Z1 - Z0) * f, (X1 - X0) * f)
        if out.shape != expect:
            raise ModelError(f"hyper-decoder produced {out.shape}, expected {expect}")
        top, left = r0 - Z0 * f, c0 - X0 * f
        out = out[:, top : top + th, left : left + tw]
        if out.shape[1:] != (th, tw):
            raise ModelError("hyper-decoder output does not cover the latent grid")
        mu = out[:m].astype(np.float64) / 2.0**self.model.mean_bits
        return mu, out[m:].ravel()

    def _stream(self, a: np.ndarray, gray: bool, quality: float | None, y: np.ndarray) -> Encoded:
        compact = self.profile == "compact"
        rounding = container.compact_quality if compact else container.quantize_quality
        q = rounding(quality) if len(self.model.gain) > 1 else None
        h, w = a.shape[:2]
        tile = self.tile // self.stride if self._tiled(h, w) else None
        sections, bits = self._code_latent(y, q, tile, a)
        fixed = self.model.info.fixed_size is not None
        header = container.Header(
            self.model.id, None if fixed else w, None if fixed else h, gray, q, tile=tile,
            profile=self.profile,
        )
        return Encoded(container.pack(header, sections), w, h, q, bits)

    def encode(self, image: np.ndarray | Image.Image, quality: float = DEFAULT_QUALITY) -> Encoded:
        """Compress and report: stream bytes, recorded quality, the entropy model's estimate."""
        container.quantize_quality(quality)  # validate before any work
        a, gray = self._prepare(image)
        return self._stream(a, gray, quality, self._analyse(a))

    def compress(self, image: np.ndarray | Image.Image, quality: float = DEFAULT_QUALITY) -> bytes:
        """Compress an H x W x 3 or H x W uint8 image (or a PIL image) at quality 1..100."""
        return self.encode(image, quality).data

    def estimate_bits(
        self, image: np.ndarray | Image.Image, quality: float = DEFAULT_QUALITY
    ) -> float:
        """Information content of the coded latents (bits, no header or coder overhead)."""
        return self.encode(image, quality).estimated_bits

    def encode_to_bpp(self, image: np.ndarray | Image.Image, bpp: float) -> Encoded:
        """The highest quality (in steps of 0.1) whose stream is at most `bpp` bits per pixel.

        The analysis transform runs once; only quantization and coding repeat (bisection).
        If even quality 1 is over the target, that smallest stream is returned.
        """
        a, gray = self._prepare(image)
        y = self._analyse(a)
        if len(self.model.gain) == 1:
            return self._stream(a, gray, None, y)
        lo, hi = 10, 1000  # quality codes: tenths
        best = self._stream(a, gray, lo / 10, y)
        if best.bpp > bpp:
            return best
        top = self._stream(a, gray, hi / 10, y)
        if top.bpp <= bpp:
            return top
        while hi - lo > 1:
            mid = (lo + hi) // 2
            enc = self._stream(a, gray, mid / 10, y)
            if enc.bpp <= bpp:
                lo, best = mid, enc
            else:
                hi = mid
        return best

    # ---- decoding ---------------------------------------------------------------------------

    def decompress(self, data: bytes) -> np.ndarray:
        """Decode a stream of this codec's model to H x W x 3 (or H x W) uint8 pixels."""
        header, h, w, y_hat, _ = self._decode_latents(data)
        return self._synthesize(y_hat, h, w, header.gray, header.tile)

    def decode_latents(self, data: bytes) -> dict[str, np.ndarray]:
        """The entropy-decoded latents of a stream (for checks across runtimes): `y_hat`
        (the synthesis input, float32), `y_sym`, and for hyperprior models `z_sym`, `mean`
        and `index` (the integer hyper-decoder's outputs), all whole-image arrays."""
        _, _, _, y_hat, extra = self._decode_latents(data, keep=True)
        return {"y_hat": y_hat, **extra}

    def _decode_latents(self, data: bytes, keep: bool = False):
        header, sections = container.unpack(data, self.max_pixels)
        model = self.model
        if header.model_id != model.id:
            raise ModelMismatchError(
                f"the stream was written by model id {header.model_id}, "
                f"not by '{model.name}' ({model.id})"
            )
        if header.width is None:
            if model.info.fixed_size is None:
                raise CorruptStreamError("stream lacks the image size")
            h, w = model.info.fixed_size
        else:
            h, w = header.height, header.width
        self._check_size(h, w)
        if (header.quality is None) != (len(model.gain) == 1):
            raise CorruptStreamError("stream's quality field does not fit its model")
        m = model.gain.shape[1]
        hy, wy = self._latent_hw(h, w, self.stride)
        hyper = model.family == "hyperprior"
        t = max(hy, wy) if header.tile is None else header.tile
        if header.tile is not None and (model.info.fixed_size or t % self.z_factor):
            raise CorruptStreamError("invalid tile size for this model")
        tiles = list(_tiles(hy, wy, t))
        expect = (1 if hyper else 0) + (len(tiles) if header.tile is not None else 1)
        if len(sections) != expect:
            raise CorruptStreamError("stream has the wrong number of sections for its model")
        _, inv = model.gains(header.quality)
        inv = inv[:, None, None]
        extra: dict[str, np.ndarray] = {}
        z_sym = None
        if hyper:
            nz = len(model.z_tables)
            hz, wz = self._latent_hw(h, w, self.hyper_stride)
            z_sym = model.z_tables.decode(sections[0], _channel_index((nz, hz, wz)))
            z_sym = z_sym.reshape(nz, hz, wz)
            extra["z_sym"] = z_sym
        if keep:
            extra["y_sym"] = np.empty((m, hy, wy), np.int64)
            if hyper:
                extra["mean"] = np.empty((m, hy, wy), np.float64)
                extra["index"] = np.empty((m, hy, wy), np.int64)
        y_hat = np.empty((m, hy, wy), np.float32)
        for (r0, r1, c0, c1), section in zip(tiles, sections[int(hyper):], strict=True):
            shape = (m, r1 - r0, c1 - c0)
            if z_sym is None:
                decode = model.y_tables.decode_bytes if header.compact else model.y_tables.decode
                sym = decode(section, _channel_index(shape)).reshape(shape)
                y_hat_g = sym.astype(np.float64)
            else:
                mu, idx = self._entropy_params(z_sym, shape, r0, c0)
                sym = model.y_tables.decode(section, idx).reshape(shape)
                y_hat_g = sym + mu
                if keep:
                    extra["mean"][:, r0:r1, c0:c1] = mu
                    extra["index"][:, r0:r1, c0:c1] = idx.reshape(shape)
            if keep:
                extra["y_sym"][:, r0:r1, c0:c1] = sym
            y_hat[:, r0:r1, c0:c1] = y_hat_g * inv
        return header, h, w, y_hat, extra

    def synthesize(self, y_hat: np.ndarray, h: int, w: int, gray: bool = False,
                   tile: int | None = None) -> np.ndarray:
        """Pixels from decoded latents [M, h', w'] float32, as `decompress` makes them."""
        return self._synthesize(np.asarray(y_hat, np.float32), h, w, gray, tile)

    def _synthesize(self, y_hat: np.ndarray, h: int, w: int, gray: bool,
                    tile: int | None) -> np.ndarray:
        """The synthesis transform by tiles of the latent grid (one tile for small images),
        each run with a halo of `synthesis_halo` latents that is cropped away: every output
        pixel sees its whole receptive field, so tiles leave no seams."""
        hy, wy = y_hat.shape[1:]
        if tile is None:
            big = h * w > SYNTHESIS_TILE_ABOVE and self.model.info.fixed_size is None
            tile = DEFAULT_TILE // self.stride if big else max(hy, wy)
        s, halo = self.stride, self.synthesis_halo
        channels = 1 if gray or self.model.info.channels == 1 else 3
        out = np.empty((h, w, channels), np.uint8)
        # an 8-bit synthesis gives the pixels themselves (uint8), a float one x_hat in [0, 1]
        out_name = self.model.synthesis.get_outputs()[0].name
        for r0, r1, c0, c1 in _tiles(hy, wy, tile):
            if r0 * s >= h or c0 * s >= w:
                continue  # a tile of padding only
            R0, R1, C0, C1 = max(r0 - halo, 0), min(r1 + halo, hy), max(c0 - halo, 0), min(
                c1 + halo, wy)
            part = np.ascontiguousarray(y_hat[None, :, R0:R1, C0:C1])
            x_hat = self._run(self.model.synthesis, out_name, {"y_hat": part})[0]
            top, left = (r0 - R0) * s, (c0 - C0) * s
            th, tw = min(r1 * s, h) - r0 * s, min(c1 * s, w) - c0 * s
            if x_hat.shape[1] < top + th or x_hat.shape[2] < left + tw:
                raise ModelError(f"synthesis produced {x_hat.shape}, too small for {w}x{h}")
            x = x_hat[:, top : top + th, left : left + tw]
            if x.dtype != np.uint8:
                x = np.clip(x, 0.0, 1.0) * 255.0
            if x.shape[0] == 1 or not gray:
                if x.shape[0] != channels:
                    raise CorruptStreamError("stream asks for color output from a grayscale model")
                px = (x if x.dtype == np.uint8 else np.rint(x).astype(np.uint8)).transpose(1, 2, 0)
            else:
                px = np.rint(x.mean(axis=0)).astype(np.uint8)[:, :, None]
            out[r0 * s : r0 * s + th, c0 * s : c0 * s + tw] = px
        return out[:, :, 0] if gray else out

    # ---- helpers ----------------------------------------------------------------------------

    @staticmethod
    def _run(session, output: str, feeds: dict[str, np.ndarray]) -> np.ndarray:
        try:
            return session.run([output], feeds)[0]
        except Exception as e:  # onnxruntime's own exception types
            raise ModelError(f"ONNX model failed to run ({e})") from None


def _tiles(h: int, w: int, t: int):
    """(r0, r1, c0, c1) of the t x t tiles of an h x w grid, row by row (docs/format.md)."""
    for r0 in range(0, h, t):
        for c0 in range(0, w, t):
            yield r0, min(r0 + t, h), c0, min(c0 + t, w)


def _intnet_halo(net) -> int:
    """z latents of margin covering the integer hyper-decoder's receptive field."""
    halo, scale = 0, 1
    for i in range(intnet.layer_count(net)):
        k = int(np.shape(net[f"w{i}"])[-1])
        halo += -(-(k // 2) // scale)
        scale *= int(net[f"ps{i}"])
    return halo


def _channel_index(shape: tuple[int, ...]) -> np.ndarray:
    """Table index of each element of a [C, h, w] tensor in C order: its channel."""
    c, rest = shape[0], int(np.prod(shape[1:]))
    return np.repeat(np.arange(c, dtype=np.int64), rest)


# ---- module-level API with a cache of open codecs --------------------------------------------

_CODECS: dict[tuple, Codec] = {}


def get_codec(model: ModelLike = None, threads: int | None = None,
              profile: str = "full") -> Codec:
    """A cached Codec for a model name, folder or None (the default model)."""
    if isinstance(model, Model):
        return Codec(model, profile=profile)
    info = model if isinstance(model, ModelInfo) else find(model)
    key = (str(info.path.resolve()), info.id, threads, profile)
    if key not in _CODECS:
        _CODECS[key] = Codec(info, threads=threads, profile=profile)
    return _CODECS[key]


def compress(
    image: np.ndarray | Image.Image, quality: float = DEFAULT_QUALITY, model: ModelLike = None,
    profile: str = "full",
) -> bytes:
    """Compress a uint8 H x W x 3 / H x W array or PIL image with a model (default: shipped).
    `profile="compact"`: the compact stream profile of fixed-size digit models."""
    return get_codec(model, profile=profile).compress(image, quality)


def decompress(data: bytes, model: ModelLike = None) -> np.ndarray:
    """Decode a stream; its model is found among the shipped ones by id unless given."""
    if model is None:
        header, _ = container.unpack(data)
        model = find_by_id(header.model_id)
    return get_codec(model).decompress(data)


def stream_info(data: bytes) -> dict:
    """Header fields of a stream, its model if installed, and its bits per pixel."""
    header, sections = container.unpack(data)
    info = {
        "profile": header.profile,
        "format_version": header.version,
        "model_id": header.model_id,
        "model": None,
        "width": header.width,
        "height": header.height,
        "gray": header.gray,
        "quality": header.quality,
        "sections": [len(s) for s in sections],
        "header_bytes": len(data) - sum(len(s) for s in sections),
        "bytes": len(data),
    }
    try:
        m = find_by_id(header.model_id)
        info["model"] = m.name
        if header.width is None and m.fixed_size:
            info["height"], info["width"] = m.fixed_size
        info["channels"] = 1 if header.gray or m.channels == 1 else 3
    except ModelError:
        info["channels"] = 1 if header.gray else None
    if info["width"]:
        info["bpp"] = len(data) * 8 / (info["width"] * info["height"])
    return info
