"""Decode time of the browser decoder (headless Chromium) against the Python decoder, one run:
kodim23 and a 12-megapixel mosaic of Kodak photos, `hyperprior-fast` at quality 75.

    python web/test/bench_decode.py ../shared/data/kodak OUT_DIR
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

import aecodec

WEB = Path(__file__).resolve().parents[1]


def main(kodak: Path, out: Path) -> None:
    files = sorted(kodak.glob("kodim*.png"))
    k23 = np.asarray(Image.open(kodak / "kodim23.png").convert("RGB"))
    tiles = [np.asarray(Image.open(f).convert("RGB").resize((768, 512))) for f in files]
    rows = [np.concatenate([tiles[(r * 6 + c) % len(tiles)] for c in range(6)], 1)
            for r in range(6)]
    big = np.concatenate(rows, 0)[:2832, :4256]  # 12.05 MP
    streams, models = out / "streams", out / "models"
    streams.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "aecodec.cli", "web-export", "hyperprior-fast",
                    str(models)], check=True, capture_output=True)
    codec = aecodec.Codec("hyperprior-fast")
    data = {"kodim23.aec": codec.compress(k23, 75), "12mp.aec": codec.compress(big, 75)}
    for name, d in data.items():
        (streams / name).write_bytes(d)
    # each stream twice: the second decode is warm (models loaded, wasm compiled)
    listing = [{"file": n} for n in data for _ in range(2)]
    (streams / "list.json").write_text(json.dumps(listing))
    python = {}
    for name, d in data.items():
        codec.decompress(d)
        t0 = time.perf_counter()
        codec.decompress(d)
        python[name] = time.perf_counter() - t0
    run = subprocess.run(["node", str(WEB / "test" / "chromium.mjs"), str(streams), str(models)],
                         capture_output=True, text=True, check=True,
                         env={**os.environ, "AEC_TIMEOUT_MS": "1500000"})
    chromium = json.loads(run.stdout)
    for name, d in data.items():
        ms = chromium["results"][name]["ms"]
        same = chromium["results"][name]["sha256"]
        print(f"{name}: {len(d)} bytes; Python {python[name]:.2f} s, "
              f"Chromium {chromium['browser']} {ms / 1000:.2f} s (sha256 {same[:12]})")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
