"""What the numbers were measured with: codec library versions, CPU, threads, date.

Results are only comparable across runs with the same libraries and hardware, so every
results.json records them.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import re
from importlib import metadata
from pathlib import Path
from typing import Any


def _dist_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _libjxl_version() -> str | None:
    """pillow-jxl-plugin embeds libjxl through the jpegxl-rs crate; its version is in the .so."""
    try:
        import pillow_jxl
    except ImportError:
        return None
    for so in Path(pillow_jxl.__file__).parent.glob("*.so"):
        m = re.search(rb"jpegxl-rs-([0-9.]+)\+libjxl-([0-9.]+)", so.read_bytes())
        if m:
            return f"{m.group(2).decode()} (jpegxl-rs {m.group(1).decode()})"
    return None


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def environment(threads: int) -> dict[str, Any]:
    """Versions of every codec library and the machine, for results.json."""
    from PIL import __version__ as pillow_version
    from PIL import features

    def feat(name: str) -> str | None:
        try:
            return features.version(name)
        except ValueError:
            return None

    try:
        import onnxruntime

        ort = onnxruntime.__version__
    except ImportError:
        ort = None
    return {
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "versions": {
            "aecodec": _dist_version("aecodec"),
            "pillow": pillow_version,
            "libjpeg-turbo": feat("libjpeg_turbo"),
            "libjpeg": feat("jpg"),
            "libwebp": feat("webp"),
            "openjpeg": feat("jpg_2000"),
            "libavif": feat("avif"),
            "pillow-jxl-plugin": _dist_version("pillow-jxl-plugin"),
            "libjxl": _libjxl_version(),
            "onnxruntime": ort,
            "numpy": _dist_version("numpy"),
            "python": platform.python_version(),
        },
        "cpu": cpu_name(),
        "cores": available_cores(),
        "threads": threads,
        "platform": platform.platform(),
    }
