"""The codec: an image to a compact stream and back, with a model's ONNX graphs and tables.

`Codec` keeps a checked model and its ONNX sessions open, so coding many images pays the
loading once. The module functions `compress` / `decompress` use a small cache of codecs.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from . import container, extras, latent, progress, rate, refine, tiles
from . import effort as _effort_mod
from .effort import check_effort
from .encoded import Encoded
from .errors import (
    CorruptStreamError,
    ImageTooLargeError,
    ModelError,
    ModelMismatchError,
    RateWarning,
    UnreadableImageError,
    UnsupportedImageError,
)
from .imageio import as_array, open_image
from .model import Model, ModelInfo, find, find_by_id

DEFAULT_QUALITY = 75.0
DEFAULT_MAX_PIXELS = 100_000_000
ModelLike = Model | ModelInfo | str | Path | None
ImageLike = np.ndarray | Image.Image | str | os.PathLike


def _opened(image: ImageLike) -> np.ndarray | Image.Image:
    """A path (str or PathLike) opened as an image file, as the CLI opens one: alpha, ICC,
    EXIF and bit depth reach the encoder. Arrays and PIL images pass as they are."""
    if isinstance(image, str | os.PathLike):
        return open_image(os.fspath(image))
    return image


def default_max_pixels() -> int:
    """AECODEC_MAX_PIXELS if set, else 100 megapixels."""
    try:
        return int(os.environ.get("AECODEC_MAX_PIXELS", DEFAULT_MAX_PIXELS))
    except ValueError:
        return DEFAULT_MAX_PIXELS


class Codec:
    """A loaded model ready to compress and decompress; keeps its ONNX sessions open.

    Encoding: `prepare` (validate, convert) -> `analyse` (the analysis transform, by tiles)
    -> `code` (quantize, the family's latent codec, the container). Decoding: `decode_latents`
    (container, latent codec) -> `synthesize` (the synthesis transform, by tiles)."""

    def __init__(
        self,
        model: ModelLike = None,
        threads: int | None = None,
        providers: list[str] | None = None,
        max_pixels: int | None = None,
        graph_optimization: str | None = None,
        tile: int = tiles.DEFAULT_TILE,
        tile_above: int | None = tiles.DEFAULT_TILE_ABOVE,
        profile: str = "full",
        refine: int = 0,
    ):
        """`threads`, `providers` and `graph_optimization` ("all", "extended", "basic" or
        "none") configure ONNX Runtime; the entropy decoding never depends on them.
        Images over `tile_above` pixels are coded by tiles of `tile` x `tile` pixels (a
        multiple of the model's pad multiple); `tile_above=None` never tiles.
        `profile="compact"` writes the compact stream profile (docs/format.md): for fixed-size
        grayscale models with a compact index, a 1-3 byte header and integer qualities.
        `refine=N` (kept for old callers; `effort=` on the encode calls is the knob): up to N
        rounds of the encoder-side latent search of fixed-size digit models (codec/refine.py),
        which is what their effort levels run (`effort.REFINE_ROUNDS`)."""
        if isinstance(model, Model):
            self.model = model
        else:
            info = model if isinstance(model, ModelInfo) else find(model)
            self.model = Model(info, threads=threads, providers=providers,
                               graph_optimization=graph_optimization)
        self.max_pixels = default_max_pixels() if max_pixels is None else int(max_pixels)
        self.latent = latent.for_model(self.model)
        self.stride = self.model.stride
        unit = int(np.lcm(self.model.info.pad_multiple, self.model.hyper_stride))
        if self.model.info.fixed_size is None and (tile < unit or tile % unit):
            raise ValueError(f"tile must be a positive multiple of {unit}, got {tile}")
        self.tile = int(tile)
        self.tile_above = tile_above
        # the stream profile (container.FULL / COMPACT): its header, qualities, section coder
        self.stream_profile = container.profile(profile)
        if not self.stream_profile.carries(self.model.id):
            raise ModelError(f"model '{self.model.name}' ({self.model.id}) has no compact-profile "
                             "index (only shipped fixed-size grayscale models have one)")
        self.profile = self.stream_profile.name
        self.refine = int(refine)
        # what lies between pixels and sections: the family's pipeline (codec/pipeline.py)
        self.pipeline = self.latent.pipeline(self)

    def base(self) -> Codec:
        """The default model's codec in this profile: what slower families must beat."""
        return get_codec(None, profile=self.profile)

    # ---- shapes -----------------------------------------------------------------------------

    def latent_hw(self, h: int, w: int) -> tuple[int, int]:
        """The latent grid of an h x w image."""
        return tiles.latent_hw(h, w, self.model.info.pad_multiple, self.stride)

    def _check_size(self, h: int, w: int) -> None:
        """The pixel limit counts the padded image the transforms run on: a 1 x 1,000,000
        image padded to 64 rows costs what 64 MP cost, and is counted so."""
        if h * w > self.max_pixels:
            raise ImageTooLargeError(
                f"a {w}x{h} image is over the limit of {self.max_pixels} pixels"
            )
        pad = self.model.info.pad_multiple
        ph, pw = -(-h // pad) * pad, -(-w // pad) * pad
        if ph * pw > self.max_pixels:
            raise ImageTooLargeError(
                f"a {w}x{h} image is coded padded to {pw}x{ph}, over the limit of "
                f"{self.max_pixels} pixels"
            )
        fixed = self.model.info.fixed_size
        if fixed and (h, w) != fixed:
            raise UnsupportedImageError(
                f"model '{self.model.name}' codes {fixed[1]}x{fixed[0]} images only, got {w}x{h}"
            )

    def _tiled(self, h: int, w: int) -> bool:
        if self.model.info.fixed_size is not None:
            return False
        return h * w > tiles.UNTILED_MAX_PIXELS or (
            self.tile_above is not None and h * w > self.tile_above)

    # ---- encoding ---------------------------------------------------------------------------

    def prepare(self, image: np.ndarray | Image.Image) -> tuple[np.ndarray, bool]:
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

    def analyse(self, a: np.ndarray) -> np.ndarray:
        """The analysis transform of a prepared image, padded: y [M, h, w] float32.

        Large images run by squares of the latent grid (`tiles.run_side`), each with a halo of
        `analysis_halo` latents of image around it (its receptive field), keeping only the
        square's own latents: the same y as one pass, in bounded memory."""
        h, w = a.shape[:2]
        m = self.latent.channels
        hy, wy = self.latent_hw(h, w)
        s = self.stride
        y = np.empty((m, hy, wy), np.float32)
        squares = tiles.halo_tiles(hy, wy, tiles.run_side(hy, wy, s), self.model.analysis_halo)
        for t in progress.counted("analysis", list(squares)):
            R0, R1, C0, C1 = t.outer
            # the image edge-padded to the pad multiple, one square at a time
            rows = np.minimum(np.arange(R0 * s, R1 * s), h - 1)
            cols = np.minimum(np.arange(C0 * s, C1 * s), w - 1)
            part = a[np.ix_(rows, cols)]
            x = np.ascontiguousarray(part.transpose(2, 0, 1)[None], np.float32) / np.float32(255)
            out = self.model.run(self.model.analysis, "y", {"x": x})
            expect = (1, m, R1 - R0, C1 - C0)
            if out.shape != expect:
                raise ModelError(f"analysis produced shape {out.shape}, expected {expect}")
            src, dst = t.crop()
            y[(slice(None), *dst)] = out[(0, slice(None), *src)]
        return y

    def code(self, y: np.ndarray, h: int, w: int, gray: bool, quality: float | None,
             extra: dict[str, bytes] | None = None, image: np.ndarray | None = None,
             effort: int = 0) -> Encoded:
        """Quantize y at a quality, entropy-code it with the model's latent codec and pack the
        stream with any extra sections (alpha, ICC, EXIF: codec/extras.py); the step
        `encode_to_bpp` repeats. `image` (the prepared pixels) lets `refine` search."""
        profile = self.stream_profile
        q = profile.quality(quality) if self.model.variable_rate else None
        gain, _ = self.model.gains(q)
        hy, wy = self.latent_hw(h, w)
        grid = tiles.TileGrid(hy, wy, self.tile // self.stride if self._tiled(h, w) else None)
        search = None
        rounds = self.refine or _effort_mod.REFINE_ROUNDS[effort]
        if rounds and image is not None and (hy, wy) == (1, 1):
            def search(sym: np.ndarray) -> np.ndarray:  # the digit models' effort levels
                return refine.search(self, image, sym, q, rounds)
        if effort and search is None:  # encoder-side optimisation (codec/effort.py)
            sections, bits = _effort_mod.encode(self, y, gain, grid, q, image, gray, effort)
        elif search is not None and self.latent.refines:
            sections, bits = self.latent.encode(y, gain, grid, profile, refine=search)
        else:
            sections, bits = self.latent.encode(y, gain, grid, profile)
        fixed = self.model.info.fixed_size is not None
        extra = extra or {}  # extra sections (codec/extras.py), EXTRA_KINDS order
        header = container.Header(
            self.model.id, None if fixed else w, None if fixed else h, gray, q, tile=grid.tile,
            extras=tuple(extra), profile=self.profile,
        )
        return Encoded(container.pack(header, sections + list(extra.values())), w, h, q, bits)

    def encode(self, image: ImageLike, quality: float = DEFAULT_QUALITY,
               strip: bool = False, effort: int = 0) -> Encoded:
        """Compress and report: stream bytes, recorded quality, the entropy model's estimate.

        Alpha, ICC profile, EXIF, XMP and DPI travel in extra sections (`strip` leaves out
        all but alpha); what cannot be kept is warned as a LossWarning (codec/extras.py)."""
        rate.quantize_quality(quality)  # validate before any work
        effort = check_effort(effort)  # 0..4: encoder-side optimisation, docs/effort.md
        image, extra = extras.prepare(_opened(image), strip)
        a, gray = self.prepare(image)
        return self.pipeline.encode(a, gray, quality, extra, effort)

    def compress(self, image: ImageLike, quality: float = DEFAULT_QUALITY,
                 strip: bool = False, effort: int = 0) -> bytes:
        """Compress an H x W (x 2, 3 or 4) uint8 image, a PIL image or an image file's path at
        quality 1..100."""
        return self.encode(image, quality, strip, effort).data

    def estimate_bits(
        self, image: np.ndarray | Image.Image, quality: float = DEFAULT_QUALITY
    ) -> float:
        """Information content of the coded latents (bits, no header or coder overhead)."""
        return self.encode(image, quality).estimated_bits

    def encode_to_bpp(self, image: ImageLike, bpp: float,
                      strip: bool = False, effort: int = 0) -> Encoded:
        """The highest quality (in steps of 0.1) whose stream is at most `bpp` bits per pixel.

        The analysis transform runs once; only quantization and coding repeat (bisection).
        If even quality 1 is over the target, that smallest stream is returned with a
        `RateWarning`, and so is quality 100 when the target is above what it reaches (the
        CLI's `--strict-bpp` makes either an error). Extra sections
        (alpha, metadata) count in the stream's bits.
        """
        effort = check_effort(effort)
        image, extra = extras.prepare(_opened(image), strip)
        a, gray = self.prepare(image)
        return self.pipeline.encode_to_bpp(a, gray, bpp, extra, effort)

    def search_bpp(self, code, bpp: float) -> Encoded:
        """Bisection on the recordable qualities with `code(quality) -> Encoded`: the highest
        whose stream is within `bpp`, else the smallest with a RateWarning."""
        tried: dict[float, Encoded] = {}

        def fits(q: float) -> bool:
            tried[q] = code(q)
            return tried[q].bpp <= bpp

        enc = tried[rate.search_highest(fits)]
        if enc.bpp > bpp:
            import warnings

            warnings.warn(f"{bpp:g} bpp cannot be met: the smallest stream is {enc.bpp:.4f} "
                          f"bpp (quality {enc.quality:g})", RateWarning, stacklevel=3)
        elif enc.quality == rate.QUALITY_MAX and enc.bpp < bpp:
            import warnings

            warnings.warn(f"{bpp:g} bpp is above what the top quality reaches: quality 100 "
                          f"is {enc.bpp:.4f} bpp, and more bits buy nothing with model "
                          f"'{self.model.name}'", RateWarning, stacklevel=3)
        return enc

    # ---- decoding ---------------------------------------------------------------------------

    def decompress(self, data: bytes | container.Stream) -> np.ndarray:
        """Decode a stream of this codec's model (its bytes, or a `container.Stream` already
        read) to H x W x 3 (or H x W) uint8 pixels; with an alpha section, H x W x 4 (or
        H x W x 2). The stream is parsed and its CRC checked once for every step."""
        stream = container.parse(data, self.max_pixels)
        pixels = self.pipeline.decode(stream)
        return extras.attach_alpha(pixels, stream) if stream.header.extras else pixels

    def decode_latents(self, data: bytes | container.Stream) -> dict[str, np.ndarray]:
        """The entropy-decoded latents of a stream (for checks across runtimes): `y_hat`
        (the synthesis input, float32), `y_sym`, and for hyperprior models `z_sym`, `mean`
        and `index` (the integer hyper-decoder's outputs), all whole-image arrays."""
        stream = container.parse(data, self.max_pixels)
        _, _, _, y_hat, extra = self._decode_latents(stream, keep=True)
        return {"y_hat": y_hat, **extra}

    def check_header(self, stream: container.Stream) -> tuple[container.Header, int, int]:
        """The header checked against this codec's model: (header, height, width)."""
        header = stream.header
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
        if model.info.channels == 1 and not header.gray:  # H x W or H x W x 3, nothing else
            raise CorruptStreamError(f"a stream of the 1-channel model '{model.name}' must "
                                     "have its gray flag set")
        if (header.quality is None) == model.variable_rate:
            raise CorruptStreamError("stream's quality field does not fit its model")
        if header.tile is not None and model.info.fixed_size:
            raise CorruptStreamError("invalid tile size for this model")
        return header, h, w

    def _decode_latents(self, stream: container.Stream, keep: bool = False):
        """The header checked against the model, then the latent codec's decode."""
        header, h, w = self.check_header(stream)
        sections, model = stream.latent, self.model
        if header.tile is None and h * w > tiles.UNTILED_MAX_PIXELS and not model.info.fixed_size:
            raise ImageTooLargeError(
                f"an untiled (version 1) stream of a {w}x{h} image is over the limit of "
                f"{tiles.UNTILED_MAX_PIXELS} pixels for untiled streams: its single section "
                "cannot be decoded in bounded memory (encoders tile images this large)")
        grid = tiles.TileGrid(*self.latent_hw(h, w), header.tile)
        _, inv = model.gains(header.quality)
        y_hat, extra = self.latent.decode(sections, grid, inv, keep, header.stream_profile)
        return header, h, w, y_hat, extra

    def synthesize(self, y_hat: np.ndarray, h: int, w: int, gray: bool = False,
                   tile: int | None = None) -> np.ndarray:
        """Pixels from decoded latents [M, h', w'] float32, as `decompress` makes them
        (`tile`: run by squares of that many latents instead of `tiles.run_side`'s)."""
        return self._synthesize(np.asarray(y_hat, np.float32), h, w, gray, tile)

    def _synthesize(self, y_hat: np.ndarray, h: int, w: int, gray: bool,
                    tile: int | None = None) -> np.ndarray:
        """The synthesis transform by squares of the latent grid (one for small images), each
        run with a halo of `synthesis_halo` latents that is cropped away: every output pixel
        sees its whole receptive field, so the squares leave no seams."""
        hy, wy = y_hat.shape[1:]
        s = self.stride
        if tile is None:
            tile = tiles.run_side(hy, wy, s)
        channels = 1 if gray or self.model.info.channels == 1 else 3
        out = np.empty((h, w, channels), np.uint8)
        # an 8-bit synthesis gives the pixels themselves (uint8), a float one x_hat in [0, 1]
        out_name = self.model.synthesis.get_outputs()[0].name
        squares = list(tiles.halo_tiles(hy, wy, tile, self.model.synthesis_halo))
        for t in progress.counted("synthesis", squares):
            r0, _, c0, _ = t.box
            if r0 * s >= h or c0 * s >= w:
                continue  # a tile of padding only
            R0, R1, C0, C1 = t.outer
            part = np.ascontiguousarray(y_hat[None, :, R0:R1, C0:C1])
            x_hat = self.model.run(self.model.synthesis, out_name, {"y_hat": part})[0]
            src, dst = t.crop(scale=s, limit=(h, w))
            if x_hat.shape[1] < src[0].stop or x_hat.shape[2] < src[1].stop:
                raise ModelError(f"synthesis produced {x_hat.shape}, too small for {w}x{h}")
            x = x_hat[(slice(None), *src)]
            if x.dtype != np.uint8:
                x = np.clip(x, 0.0, 1.0) * 255.0
            if x.shape[0] == 1 or not gray:
                if x.shape[0] != channels:
                    raise CorruptStreamError("stream asks for color output from a grayscale model")
                px = (x if x.dtype == np.uint8 else np.rint(x).astype(np.uint8)).transpose(1, 2, 0)
            else:
                px = np.rint(x.mean(axis=0)).astype(np.uint8)[:, :, None]
            out[dst] = px
        return out[:, :, 0] if gray else out


# ---- module-level API with a cache of open codecs --------------------------------------------

_CODECS: dict[tuple, Codec] = {}


def get_codec(model: ModelLike = None, threads: int | None = None,
              profile: str = "full", max_pixels: int | None = None) -> Codec:
    """A cached Codec for a model name, folder or None (the default model)."""
    if isinstance(model, Model):
        return Codec(model, profile=profile, max_pixels=max_pixels)
    info = model if isinstance(model, ModelInfo) else find(model)
    key = (str(info.path.resolve()), info.id, threads, profile, max_pixels)
    if key not in _CODECS:
        _CODECS[key] = Codec(info, threads=threads, profile=profile, max_pixels=max_pixels)
    return _CODECS[key]


def compress(
    image: ImageLike, quality: float | None = None, model: ModelLike = None,
    strip: bool = False, profile: str = "full", bpp: float | None = None, effort: int = 0,
) -> bytes:
    """Compress an H x W (x 2, 3 or 4) array, a PIL image or the path of an image file
    (str or PathLike, opened as the CLI opens it) with a model (default: shipped)
    at `quality` (default 75) or, with `bpp`, the highest quality within that many bits per
    pixel (a `RateWarning` if even quality 1 is over it, or quality 100 under it; both
    `quality` and `bpp` at once is a ValueError).
    `strip` leaves out ICC profile, EXIF, XMP and DPI; `profile="compact"`: the compact
    stream profile of fixed-size digit models.

    Samples, arrays and PIL images alike (`aecodec.imageio.to_uint8`): uint8 as is; bool as
    0/255; uint16 (and I;16) scaled to 8 bits; float (and F) read on the 0..255 scale, rounded
    and clipped; other integers clipped; each lossy case one LossWarning. Other dtypes
    (complex, object) are an UnsupportedImageError naming the dtype."""
    codec = get_codec(model, profile=profile)
    if bpp is None:
        return codec.compress(image, DEFAULT_QUALITY if quality is None else quality, strip,
                              effort)
    if quality is not None:
        raise ValueError("give either quality or bpp, not both")
    return codec.encode_to_bpp(image, bpp, strip, effort).data


def decompress(data: bytes | str | os.PathLike | container.Stream, model: ModelLike = None,
               threads: int | None = None, max_pixels: int | None = None) -> np.ndarray:
    """Decode a stream (its bytes, the path of a .aec file, or a `container.Stream`); its
    model is found among the shipped ones by id unless given. `max_pixels` caps the declared
    size (default 100 MP, or AECODEC_MAX_PIXELS) before anything is allocated.

    The stream is read once (`container.read`): the model lookup takes its header fields, then
    the codec checks the same object (CRC, sizes, sections) and decodes it."""
    if isinstance(data, str | os.PathLike):
        try:
            data = Path(data).read_bytes()
        except OSError as e:
            raise UnreadableImageError(f"{data}: cannot read ({e.strerror or e})") from None
    stream = container.read(data)
    if model is None:
        model = find_by_id(stream.header.model_id)
    return get_codec(model, threads, max_pixels=max_pixels).decompress(stream)


def stream_info(data: bytes | container.Stream) -> dict:
    """Header fields of a stream, its model if installed, and its bits per pixel."""
    stream = container.parse(data)
    header, sections = stream.header, stream.sections
    info = {
        "profile": header.profile,
        "format_version": header.version,
        "model_id": header.model_id,
        "model": None,
        "width": header.width,
        "height": header.height,
        "gray": header.gray,
        "quality": header.quality,
        "extras": {k: len(v) for k, v in stream.extra.items()},
        "sections": [len(s) for s in sections],
        "header_bytes": stream.header_bytes,
        "bytes": len(stream.data),
    }
    try:
        m = find_by_id(header.model_id)
        info["model"] = m.name
        if header.width is None and m.fixed_size:
            info["height"], info["width"] = m.fixed_size
        info["channels"] = 1 if header.gray or m.channels == 1 else 3
    except ModelError:
        info["channels"] = 1 if header.gray else None
    if info["channels"] and "alpha" in header.extras:
        info["channels"] += 1
    if info["width"]:
        info["bpp"] = len(stream.data) * 8 / (info["width"] * info["height"])
    return info
