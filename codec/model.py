"""Model folders (docs/model-format.md): checked loading, ONNX sessions, the shipped registry.

A model is trusted only after every file's SHA-256 and the folder's combined hash match the
manifest: the manifest `id` goes into every stream, so a stream can only ever be decoded by the
exact weights and tables that wrote it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from . import legacy_gains, manifest_fields
from .entropy import TableSet
from .errors import ModelError, UnknownModelError
from .fast_synthesis import rewrite as rewrite_synthesis
from .latent import LATENT_CODECS as TRANSFORM_CODECS
from .latent import LatentCodec
from .overfit.family import OverfitCodec
from .rate import QUALITY_MIN, STEPS, gains_at

# Codec(graph_optimization=...) -> onnxruntime.GraphOptimizationLevel member
GRAPH_OPTIMIZATION = {
    "none": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}
MODELS_DIR = Path(__file__).parent / "models"
# The families and the files each reads are the latent codecs' (aecodec.latent.LATENT_CODECS,
# `LatentCodec.files`): this module reads manifests, checks hashes and opens what is asked.
# every family's part of a loaded model: the transform families' latent codecs, and the
# overfit family's (its own package: no analysis, the synthesis in the stream)
LATENT_CODECS: dict[str, type[LatentCodec]] = {**TRANSFORM_CODECS,
                                               OverfitCodec.family: OverfitCodec}
FAMILIES = tuple(LATENT_CODECS)


MAX_NPZ_BYTES = 1 << 28  # 256 MiB of arrays in one npz: 10x the largest a model ships

def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def folder_sha256(files: dict[str, str]) -> str:
    """SHA-256 over `name + NUL + sha256 + LF` for the files sorted by name (the format doc)."""
    text = "".join(f"{name}\0{files[name]}\n" for name in sorted(files))
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class ModelInfo:
    """What a manifest says about a model, read without loading or checking any weights."""

    name: str
    path: Path
    family: str
    id: str
    channels: int
    pad_multiple: int
    fixed_size: tuple[int, int] | None  # (height, width)
    levels: int
    bpp_range: tuple[float, float] | None
    default: bool
    manifest: dict[str, Any] = field(repr=False, compare=False)

    @property
    def results(self) -> dict[str, Any]:
        return self.manifest.get("results") or {}

    @property
    def description(self) -> str:
        return str(self.manifest.get("description", ""))


def read_manifest(folder: str | Path) -> ModelInfo:
    """Parse a folder's manifest.json into a ModelInfo; ModelError if it is not a model."""
    path = Path(folder)
    try:
        m = json.loads((path / "manifest.json").read_text())
    except FileNotFoundError:
        raise ModelError(f"{path}: not a model folder (no manifest.json)") from None
    except (OSError, ValueError) as e:
        raise ModelError(f"{path}/manifest.json: unreadable ({e})") from None
    try:
        if not isinstance(m, dict) or m.get("format") != 1 or m.get("format") is True:
            version = m.get("format") if isinstance(m, dict) else None
            raise ModelError(f"{path}: model format {version!r:.20} is not supported")
        manifest_fields.check(m, path)
        if m["format"] != 1:
            raise ModelError(f"{path}: model format {m['format']} is not supported")
        family = m["family"]
        if family not in LATENT_CODECS:
            raise ModelError(f"{path}: unknown model family '{family}'")
        image = m["image"]
        channels = int(image["channels"])
        if channels not in (1, 3):
            raise ModelError(f"{path}: image channels must be 1 or 3")
        fixed = image.get("fixed_size")
        bpp = m.get("rate", {}).get("bpp_range")
        return ModelInfo(
            name=str(m["name"]),
            path=path,
            family=family,
            id=str(m["id"]).lower(),
            channels=channels,
            pad_multiple=int(image.get("pad_multiple") or 1),
            fixed_size=(int(fixed[0]), int(fixed[1])) if fixed else None,
            levels=int(m.get("rate", {}).get("levels", 1)),
            bpp_range=(float(bpp[0]), float(bpp[1])) if bpp else None,
            default=bool(m.get("default", False)),
            manifest=m,
        )
    except (KeyError, TypeError, IndexError, ValueError) as e:
        raise ModelError(f"{path}/manifest.json: missing or malformed field ({e!r})") from None


def shipped() -> list[ModelInfo]:
    """The models bundled in aecodec/models/, sorted by name (broken folders are skipped)."""
    out = []
    if MODELS_DIR.is_dir():
        for d in sorted(MODELS_DIR.iterdir()):
            if (d / "manifest.json").is_file():
                try:
                    out.append(read_manifest(d))
                except ModelError:
                    continue
    return sorted(out, key=lambda i: i.name)


def default_info() -> ModelInfo:
    """The manifest flagged `"default": true`, else the first 3-channel hyperprior model."""
    models = shipped()
    for pick in (
        lambda i: i.default,
        lambda i: i.family == "hyperprior" and i.channels == 3 and not i.fixed_size,
        lambda i: not i.fixed_size,
    ):
        for info in models:
            if pick(info):
                return info
    raise UnknownModelError("no shipped model is installed (see `aecodec models`)")


def find(name_or_path: str | Path | None) -> ModelInfo:
    """Resolve None (the default), a shipped model's name or folder name, or a folder path."""
    if name_or_path is None:
        return default_info()
    text = str(name_or_path)
    for info in shipped():
        if text in (info.name, info.path.name):
            return info
    path = Path(text)
    if path.is_dir():
        return read_manifest(path)
    names = ", ".join(i.name for i in shipped()) or "none installed"
    raise UnknownModelError(f"unknown model '{text}' (shipped models: {names}; or give a folder)")


def find_by_id(model_id: str) -> ModelInfo:
    for info in shipped():
        if info.id == model_id:
            return info
    raise UnknownModelError(
        f"the stream was written by model id {model_id}, which is not installed "
        "(pass the model folder with --model / model=...)"
    )


class Model:
    """A checked model folder: its files' bytes (hash-checked), ONNX sessions opened on first
    use, and its family's latent codec (`latent`), which loads its own tables and networks."""

    def __init__(
        self,
        folder: str | Path | ModelInfo,
        threads: int | None = None,
        providers: list[str] | None = None,
        graph_optimization: str | None = None,
        rewrite: bool = True,
        spinning: bool = False,
    ):
        """`rewrite=False` runs the model files as they are: the 8-bit synthesis graph of the
        file, not the faster equivalent built at load time (codec/fast_synthesis.py), and the
        hyper-decoder in float64 only (no 8-bit convolutions). Same latents, same pixels.
        `spinning=True` lets ONNX Runtime's idle threads spin between operators (its own
        default): a little faster on an idle machine, much slower on a busy one."""
        self.info = folder if isinstance(folder, ModelInfo) else read_manifest(folder)
        self.threads = threads
        self.rewrite = rewrite
        self.spinning = spinning
        self.providers = list(providers or ["CPUExecutionProvider"])
        self.graph_optimization = graph_optimization or "all"
        if self.graph_optimization not in GRAPH_OPTIMIZATION:
            raise ValueError(
                f"graph_optimization must be one of {sorted(GRAPH_OPTIMIZATION)}, "
                f"got {graph_optimization!r}"
            )
        self._verify()
        self._arrays: dict[str, dict[str, np.ndarray]] = {}
        self._sessions: dict[str, Any] = {}
        try:
            self.tables = self.arrays("tables.npz")
            # families without gains (the overfit one) still record a quality per level
            ones = np.ones((max(self.info.levels, 1), 1))
            self.gain = np.asarray(self.tables.get("gain", ones), np.float64)
            self.inv_gain = np.asarray(self.tables.get("inv_gain", ones), np.float64)
        except (OSError, ValueError, KeyError) as e:
            raise ModelError(f"{self.path}/tables.npz: unreadable ({e!r})") from None
        if self.gain.ndim != 2 or self.gain.shape != self.inv_gain.shape:
            raise ModelError(f"{self.path}: gain and inv_gain must both be [K, M]")
        if len(self.gain) != self.info.levels:
            raise ModelError(f"{self.path}: the manifest says {self.info.levels} rate levels, "
                             f"tables.npz has gains for {len(self.gain)}")
        channels = self.info.manifest.get("latent", {}).get("channels")
        if channels is not None and self.gain.shape[1] != channels:
            raise ModelError(f"{self.path}: the manifest says {channels} latent channels, "
                             f"tables.npz has gains for {self.gain.shape[1]}")
        if not (np.all(self.gain > 0) and np.all(self.inv_gain > 0)
                and np.all(np.isfinite(self.gain)) and np.all(np.isfinite(self.inv_gain))):
            raise ModelError(f"{self.path}: gains must be positive and finite")
        self._gains: dict[float | None, tuple[np.ndarray, np.ndarray]] = {}
        self._legacy = legacy_gains.deltas(self.inv_gain) if len(self.inv_gain) > 1 else None
        latent = self.info.manifest.get("latent", {})
        try:
            self.stride = int(latent["stride"])
            self.hyper_stride = int(latent.get("hyper_stride") or self.stride)
            # receptive-field margins in latents (docs/model-format.md); 4 covers the shipped
            self.analysis_halo = int(latent.get("analysis_halo", 4))
            self.synthesis_halo = int(latent.get("synthesis_halo", 4))
            # y latents of margin for the hyper-analysis (3x3, 5x5/2, 5x5/2 convs reach 7)
            self.hyper_analysis_halo = int(latent.get("hyper_analysis_halo", 8))
        except (KeyError, TypeError, ValueError):
            raise ModelError(f"{self.path}: manifest lacks latent.stride") from None
        self.z_factor = max(self.hyper_stride // self.stride, 1)  # y latents per z latent
        # the family's latent codec loads its own tables and networks (aecodec.latent)
        self.latent: LatentCodec = LATENT_CODECS[self.family](self)

    def arrays(self, name: str) -> dict[str, np.ndarray]:
        """The arrays of an npz file of the manifest, loaded once (`_npz`'s checks)."""
        if name not in self._arrays:
            self._arrays[name] = self._npz(name)
        return self._arrays[name]

    def _npz(self, name: str) -> dict[str, np.ndarray]:
        """The arrays of an npz file of the folder, each member's declared size checked
        before it is inflated: a small file cannot make the loader allocate gigabytes."""
        import io
        import zipfile

        data = self.blob(name)
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as z:
                sizes = [i.file_size for i in z.infolist()]
            if sum(sizes) > MAX_NPZ_BYTES:
                raise ModelError(f"{self.path}/{name}: declares {sum(sizes):,} bytes of arrays, "
                                 f"over the {MAX_NPZ_BYTES:,} a model may hold")
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                return {k: npz[k] for k in npz.files}
        except (OSError, ValueError, zipfile.BadZipFile) as e:
            raise ModelError(f"{self.path}/{name}: unreadable ({e})") from None

    # -- manifest shortcuts ---------------------------------------------------------------

    @property
    def path(self) -> Path:
        return self.info.path

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def id(self) -> str:
        return self.info.id

    @property
    def family(self) -> str:
        return self.info.family

    @property
    def mean_bits(self) -> int:
        return int(self.info.manifest.get("mean_bits") or 0)

    def file(self, name: str) -> Path:
        """Where a file of the manifest lies: in the folder, or, where the folder lacks it, in
        the folder named by `shares_files_with` (relative to this one). Either way it is
        checked against this manifest's SHA-256, so sharing changes no id. A reference that
        leaves the folder (absolute, `..`), or a shared one that leaves the models folder
        around it, is a ModelError."""
        if Path(name).is_absolute() or len(Path(name).parts) != 1 or name in (".", ".."):
            raise ModelError(f"{self.path}: file name {name!r} is not a plain name")
        own = self.path / name
        base = self.info.manifest.get("shares_files_with")
        if own.is_file() or not base:
            return own
        if Path(str(base)).is_absolute():
            raise ModelError(f"{self.path}: shares_files_with must be relative, not {base!r}")
        shared = self.path / str(base) / name
        models = self.path.resolve().parent
        if not shared.resolve().is_relative_to(models):
            raise ModelError(f"{self.path}: shares_files_with {base!r} leaves {models}")
        return shared

    def blob(self, name: str) -> bytes:
        """A file's bytes exactly as hashed by `_verify`: ONNX Runtime and numpy get these,
        never the path, so bytes changed after the check are never used."""
        try:
            return self._blobs[name]
        except KeyError:
            raise ModelError(f"{self.path}: {name} is not a file of its manifest") from None

    def _verify(self) -> None:
        files = self.info.manifest.get("files") or {}
        needed = set(LATENT_CODECS[self.family].files())
        if missing := needed - set(files):
            raise ModelError(f"{self.path}: manifest does not list {sorted(missing)}")
        self._blobs: dict[str, bytes] = {}
        for name, digest in files.items():
            f = self.file(name)
            if not f.is_file():
                raise ModelError(f"{self.path}: file {name} is missing")
            data = f.read_bytes()
            if hashlib.sha256(data).hexdigest() != str(digest).lower():
                raise ModelError(f"{self.path}: {name} does not match its sha256 in the manifest")
            self._blobs[name] = data
        total = folder_sha256({k: str(v).lower() for k, v in files.items()})
        if total != str(self.info.manifest.get("sha256", "")).lower():
            raise ModelError(f"{self.path}: the manifest's sha256 does not match its files")
        if self.id != total[:8]:
            raise ModelError(f"{self.path}: the manifest's id is not the first 8 digits of sha256")

    # -- runtime pieces -------------------------------------------------------------------

    def _session(self, filename: str, data: bytes | None = None):
        """A session of a model file, or of `data`: a graph rebuilt from that file."""
        import onnxruntime as ort

        ort.disable_telemetry_events()  # a codec library phones nowhere

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads or 0
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        opts.add_session_config_entry("session.intra_op.allow_spinning", str(int(self.spinning)))
        opts.graph_optimization_level = getattr(
            ort.GraphOptimizationLevel, GRAPH_OPTIMIZATION[self.graph_optimization]
        )
        if data is not None:  # no fusion of its Quantize/DequantizeLinear steps: exact as built
            opts.add_session_config_entry("session.disable_quant_qdq", "1")
        try:
            return ort.InferenceSession(
                data if data is not None else self.blob(filename), sess_options=opts,
                providers=self.providers,
            )
        except Exception as e:  # onnxruntime raises its own exception types
            raise ModelError(f"{self.path}/{filename}: cannot be loaded ({e})") from None

    def session(self, filename: str):
        """The ONNX session of a graph of the manifest, opened once (on first use)."""
        if filename not in self._sessions:
            self._sessions[filename] = self._session(filename)
        return self._sessions[filename]

    @cached_property
    def analysis(self):
        return self.session("analysis.onnx")

    @cached_property
    def synthesis(self):
        fast = None
        if self.rewrite and self.providers == ["CPUExecutionProvider"]:
            try:
                fast = rewrite_synthesis(self.blob("synthesis.onnx"))
            except OSError as e:
                raise ModelError(f"{self.path}/synthesis.onnx: unreadable ({e})") from None
        if fast is not None:
            try:
                return self._session("synthesis.onnx", fast)
            except ModelError:  # an ONNX Runtime without one of its operators: the file
                pass
        return self._session("synthesis.onnx")

    @property
    def hyper_analysis(self):
        return self.session("hyper_analysis.onnx")

    # -- the latent codec's parts, where callers look for them ---------------------------

    @property
    def y_tables(self) -> TableSet:
        return self.latent.y_tables

    @property
    def z_tables(self) -> TableSet:
        """The hyperprior's z tables (AttributeError for other families)."""
        return self.latent.z_tables

    @property
    def net(self) -> dict[str, np.ndarray]:
        """The hyperprior's integer hyper-decoder (an intnet.IntNet unless rewrite=False)."""
        return self.latent.hyper.net

    @property
    def ctx_net(self) -> dict[str, np.ndarray]:
        """The context family's step networks (context.npz)."""
        return self.latent.y.net

    def gains(self, quality: float | None) -> tuple[np.ndarray, np.ndarray]:
        """(gain, inv_gain) [M] at a quality (see `aecodec.rate.gains_at`); a shipped table's
        inverse gains as its streams were always decoded (`aecodec.legacy_gains`)."""
        key = None if quality is None else float(quality)
        cache = self._gains
        if key not in cache:
            gain, inv = gains_at(self.gain, self.inv_gain, key)
            if key is not None and len(self.inv_gain) > 1:
                if self._legacy is not None:
                    code = round(key * STEPS) - round(QUALITY_MIN * STEPS)
                    if 0 <= code < len(self._legacy) and abs(code + 10 - key * STEPS) < 1e-6:
                        inv = legacy_gains.apply(inv, self._legacy[code])
            if len(cache) > 1024:
                cache.clear()
            cache[key] = (gain, inv)
        gain, inv = cache[key]
        return gain.copy(), inv.copy()

    @property
    def variable_rate(self) -> bool:
        """Whether the model has several rate levels, so its streams record a quality."""
        return len(self.gain) > 1

    @staticmethod
    def run(session, output: str, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """One output of an ONNX session; runtime failures become ModelError."""
        try:
            return session.run([output], feeds)[0]
        except Exception as e:  # onnxruntime's own exception types
            raise ModelError(f"ONNX model failed to run ({e})") from None
