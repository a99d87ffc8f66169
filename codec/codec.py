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

from . import container, intnet
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
    ):
        if isinstance(model, Model):
            self.model = model
        else:
            info = model if isinstance(model, ModelInfo) else find(model)
            self.model = Model(info, threads=threads, providers=providers)
        self.max_pixels = default_max_pixels() if max_pixels is None else int(max_pixels)
        latent = self.model.info.manifest.get("latent", {})
        try:
            self.stride = int(latent["stride"])
            self.hyper_stride = int(latent.get("hyper_stride") or self.stride)
        except (KeyError, TypeError, ValueError):
            raise ModelError(f"{self.model.path}: manifest lacks latent.stride") from None

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

    def _analyse(self, a: np.ndarray) -> np.ndarray:
        """The analysis transform of the padded image: y [M, h, w] float32."""
        h, w = a.shape[:2]
        ph, pw = self._padded(h, w)
        padded = np.pad(a, ((0, ph - h), (0, pw - w), (0, 0)), mode="edge")
        x = np.ascontiguousarray(padded.transpose(2, 0, 1)[None], np.float32) / np.float32(255)
        y = self._run(self.model.analysis, "y", {"x": x})
        expect = (1, self.model.gain.shape[1], *self._latent_hw(h, w, self.stride))
        if y.shape != expect:
            raise ModelError(f"analysis produced shape {y.shape}, expected {expect}")
        return y[0]

    def _code_latent(self, y: np.ndarray, quality: float | None) -> tuple[list[bytes], float]:
        """Quantize and entropy-code y at a quality; returns (sections, estimated bits)."""
        gain, _ = self.model.gains(quality)
        y_g = y.astype(np.float64) * gain[:, None, None]
        if not np.all(np.isfinite(y_g)):
            raise AecodecError("the model produced non-finite latents for this image")
        if self.model.family == "factorized":
            sym = np.rint(y_g).ravel()
            tables = _channel_index(y_g.shape)
            yt = self.model.y_tables
            return [yt.encode(sym, tables)], yt.estimate_bits(sym, tables)
        z = self._run(self.model.hyper_analysis, "z", {"y": y_g[None].astype(np.float32)})[0]
        z_sym = np.rint(z.astype(np.float64))
        if not np.all(np.isfinite(z_sym)):
            raise AecodecError("the model produced non-finite hyper-latents for this image")
        mu, idx = self._entropy_params(z_sym, y_g.shape)
        sym = np.rint(y_g - mu).ravel()
        zt, yt = self.model.z_tables, self.model.y_tables
        zc = _channel_index(z_sym.shape)
        sections = [zt.encode(z_sym.ravel(), zc), yt.encode(sym, idx)]
        bits = zt.estimate_bits(z_sym.ravel(), zc) + yt.estimate_bits(sym, idx)
        return sections, bits

    def _entropy_params(self, z_sym: np.ndarray, y_shape: tuple) -> tuple[np.ndarray, np.ndarray]:
        """Means and table indices for y from the exact integer hyper-decoder."""
        out = intnet.run(self.model.net, z_sym)
        m = y_shape[0]
        expect = (2 * m, *y_shape[1:])
        if out.shape != expect:
            raise ModelError(f"hyper-decoder produced {out.shape}, expected {expect}")
        mu = out[:m].astype(np.float64) / 2.0**self.model.mean_bits
        return mu, out[m:].ravel()

    def _stream(self, a: np.ndarray, gray: bool, quality: float | None, y: np.ndarray) -> Encoded:
        q = container.quantize_quality(quality) if len(self.model.gain) > 1 else None
        sections, bits = self._code_latent(y, q)
        h, w = a.shape[:2]
        fixed = self.model.info.fixed_size is not None
        header = container.Header(
            self.model.id, None if fixed else w, None if fixed else h, gray, q
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
        if len(sections) != (2 if model.family == "hyperprior" else 1):
            raise CorruptStreamError("stream has the wrong number of sections for its model")
        m = model.gain.shape[1]
        hy, wy = self._latent_hw(h, w, self.stride)
        _, inv = model.gains(header.quality)
        if model.family == "factorized":
            sym = model.y_tables.decode(sections[0], _channel_index((m, hy, wy)))
            y_hat_g = sym.reshape(m, hy, wy).astype(np.float64)
        else:
            nz = len(model.z_tables)
            hz, wz = self._latent_hw(h, w, self.hyper_stride)
            z_sym = model.z_tables.decode(sections[0], _channel_index((nz, hz, wz)))
            mu, idx = self._entropy_params(z_sym.reshape(nz, hz, wz), (m, hy, wy))
            sym = model.y_tables.decode(sections[1], idx)
            y_hat_g = sym.reshape(m, hy, wy) + mu
        y_hat = (y_hat_g * inv[:, None, None]).astype(np.float32)[None]
        x_hat = self._run(model.synthesis, "x_hat", {"y_hat": y_hat})[0]
        if x_hat.shape[1] < h or x_hat.shape[2] < w:
            raise ModelError(f"synthesis produced {x_hat.shape}, too small for {w}x{h}")
        x = np.clip(x_hat[:, :h, :w], 0.0, 1.0) * 255.0
        pixels = np.rint(x).astype(np.uint8).transpose(1, 2, 0)
        if header.gray:
            if pixels.shape[2] == 1:
                return pixels[:, :, 0]
            return np.rint(x.mean(axis=0)).astype(np.uint8)
        if pixels.shape[2] == 1:
            raise CorruptStreamError("stream asks for color output from a grayscale model")
        return pixels

    # ---- helpers ----------------------------------------------------------------------------

    @staticmethod
    def _run(session, output: str, feeds: dict[str, np.ndarray]) -> np.ndarray:
        try:
            return session.run([output], feeds)[0]
        except Exception as e:  # onnxruntime's own exception types
            raise ModelError(f"ONNX model failed to run ({e})") from None


def _channel_index(shape: tuple[int, ...]) -> np.ndarray:
    """Table index of each element of a [C, h, w] tensor in C order: its channel."""
    c, rest = shape[0], int(np.prod(shape[1:]))
    return np.repeat(np.arange(c, dtype=np.int64), rest)


# ---- module-level API with a cache of open codecs --------------------------------------------

_CODECS: dict[tuple, Codec] = {}


def get_codec(model: ModelLike = None, threads: int | None = None) -> Codec:
    """A cached Codec for a model name, folder or None (the default model)."""
    if isinstance(model, Model):
        return Codec(model)
    info = model if isinstance(model, ModelInfo) else find(model)
    key = (str(info.path.resolve()), info.id, threads)
    if key not in _CODECS:
        _CODECS[key] = Codec(info, threads=threads)
    return _CODECS[key]


def compress(
    image: np.ndarray | Image.Image, quality: float = DEFAULT_QUALITY, model: ModelLike = None
) -> bytes:
    """Compress a uint8 H x W x 3 / H x W array or PIL image with a model (default: shipped)."""
    return get_codec(model).compress(image, quality)


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
