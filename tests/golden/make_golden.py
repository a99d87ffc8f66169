"""Build (and with --write, regenerate) the golden streams in tests/golden/.

    python tests/golden/make_golden.py --write            # container + entropy goldens
    python tests/golden/make_golden.py --write --models   # also re-record shipped-model streams
    python tests/golden/make_golden.py --write --models --only hyperprior-extras  # one of them

Container and entropy goldens are model-independent: they change only when the format (or
constriction's integer model) changes, which must be a deliberate, documented decision. The
shipped-model goldens change whenever weights are retrained; re-record them then.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
MODEL_CROP = (slice(0, 128), slice(0, 192))  # of the bundled sample photo
MODEL_QUALITY = 50.0
TILE = 64  # the tiled golden: 2 x 3 tiles of the 128 x 192 crop


def container_cases():
    """(name, header, sections) triples covering every header flag."""
    from aecodec.container import Header

    payload = bytes(range(1, 40))
    return [
        ("container-fixed.bin", Header("0123abcd"), [payload[:9]]),
        ("container-gray-q.bin", Header("0123abcd", 28, 28, True, 37.5), [payload]),
        ("container-two.bin", Header("deadbeef", 768, 512, False, 75.0), [payload[:7], payload]),
        # version 3: extra sections after the latent ones
        ("container-extras.bin",
         Header("deadbeef", 640, 480, False, 75.0, version=3, extras=("icc", "exif", "alpha")),
         [payload[:7], payload[7:20], b"icc" * 3, b"Exif\0\0MM\0*", payload[20:]]),
        ("container-tiled-alpha.bin",
         Header("0123abcd", 192, 128, True, 50.5, version=3, tile=4, extras=("alpha",)),
         [payload[:5], payload[5:9], payload[9:30], payload[30:]]),
    ]


def entropy_case():
    """A table set and symbols (with escapes on both sides) defined by formulas only."""
    from aecodec.entropy import TableSet

    x = np.arange(-12, 13, dtype=np.float64)
    scales = np.array([0.3, 1.0, 2.5, 6.0])
    pmf = np.exp(-np.abs(x)[None] / scales[:, None])
    pmf = pmf / pmf.sum(axis=1, keepdims=True) * (1 - 2.0**-12)
    tables = TableSet(pmf, np.full(4, 25), np.full(4, -12))
    i = np.arange(4000)
    idx = (i * 7) % 4
    spread = np.array([0, 1, 3, 8])[idx]  # integer hash, no float rounding anywhere
    sym = ((i * 2654435761) % 2**32 >> 8) % (2 * spread + 1) - spread
    sym[::397] = [13, -13, 40, -1000, 2**31 - 1, -(2**31 - 1), 100, -100, 77, 12, -12][:11]
    return tables, sym, idx


def model_case(info, tile: int | None = None):
    """Stream of the bundled photo's crop with a shipped model, and its decoded pixels; with
    `tile`, a tiled (version 2) stream of tile x tile pixel tiles."""
    from aecodec import Codec
    from aecodec.demo import SAMPLE
    from aecodec.imageio import read_image

    image = read_image(SAMPLE)[MODEL_CROP]
    if info.channels == 1:
        image = image.mean(axis=2).astype(np.uint8)
    if info.fixed_size:
        image = image[: info.fixed_size[0], : info.fixed_size[1]]
    codec = Codec(info, threads=1) if tile is None else Codec(info, threads=1, tile=tile,
                                                              tile_above=0)
    data = codec.compress(image, MODEL_QUALITY)
    return data, codec.decompress(data)


def extras_case() -> tuple[np.ndarray, bytes, bytes]:
    """The model golden's crop with an alpha plane, an ICC profile and EXIF, all by formula
    (the profile is a bare 132-byte header: the format checks only its size and signature)."""
    from aecodec.demo import SAMPLE
    from aecodec.imageio import read_image

    rgb = read_image(SAMPLE)[MODEL_CROP]
    y, x = np.mgrid[0 : rgb.shape[0], 0 : rgb.shape[1]]
    alpha = np.clip(np.hypot(y - 64, x - 96) * -6 + 400, 0, 255).astype(np.uint8)
    icc = bytearray(132)
    icc[0:4] = (132).to_bytes(4, "big")
    icc[8:20] = b"\x04\x30\x00\x00mntrRGB "
    icc[20:24] = b"XYZ "
    icc[36:40] = b"acsp"
    exif = b"Exif\0\0MM\0*" + (8).to_bytes(4, "big") + (1).to_bytes(2, "big") + (
        0x0112).to_bytes(2, "big") + (3).to_bytes(2, "big") + (1).to_bytes(4, "big") + (
        1 << 16).to_bytes(4, "big") + bytes(4)  # IFD0: Orientation = 1
    return np.dstack([rgb, alpha]), bytes(icc), exif


def extras_stream(info) -> tuple[bytes, np.ndarray]:
    """The version 3 golden: the crop with alpha, ICC and EXIF, through the default model."""
    from aecodec import Codec

    rgba, icc, exif = extras_case()
    im = Image.fromarray(rgba)
    im.info["icc_profile"] = icc
    im.info["exif"] = exif
    codec = Codec(info, threads=1)
    data = codec.compress(im, MODEL_QUALITY)
    return data, codec.decompress(data)


def main(write: bool, models: bool, only: str | None = None) -> None:
    from aecodec.container import pack
    from aecodec.model import default_info, shipped

    out = {name: pack(h, s) for name, h, s in container_cases()}
    tables, sym, idx = entropy_case()
    out["entropy.bin"] = tables.encode(sym, idx)
    for name, data in out.items():
        same = (HERE / name).is_file() and (HERE / name).read_bytes() == data
        print(f"{name}: {len(data)} bytes, {'unchanged' if same else 'CHANGED'}")
        if write:
            (HERE / name).write_bytes(data)
    if models:
        cases = [(info, info.name, None) for info in shipped()]
        info = default_info()
        cases.append((info, f"{info.name}-tiled", TILE))
        cases.append((info, f"{info.name}-extras", None))
        for info, name, tile in cases:
            if only and name != only:
                continue
            if name.endswith("-extras"):
                data, pixels = extras_stream(info)
            else:
                data, pixels = model_case(info, tile)
            digest = hashlib.sha256(pixels.tobytes()).hexdigest()
            print(f"{name}.aec: {len(data)} bytes, pixels {digest[:16]}")
            if write:
                (HERE / f"{name}.aec").write_bytes(data)
                Image.fromarray(pixels).save(HERE / f"{name}.png")
                meta = {"id": info.id, "quality": MODEL_QUALITY, "pixels_sha256": digest}
                if tile:
                    meta["tile"] = tile
                (HERE / f"{name}.json").write_text(json.dumps(meta, indent=2) + "\n")


if __name__ == "__main__":
    main("--write" in sys.argv, "--models" in sys.argv,
         sys.argv[sys.argv.index("--only") + 1] if "--only" in sys.argv else None)
