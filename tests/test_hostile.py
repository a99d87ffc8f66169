"""Hostile streams built from docs/format.md alone: refused, or bounded, on every path."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image

import aecodec
from aecodec import container, extras
from aecodec.errors import AecodecError, CorruptStreamError

GOLDEN = Path(__file__).parent / "golden"


def _gray_flag_cleared() -> bytes:
    header, sections = container.unpack((GOLDEN / "mnist-rd.aec").read_bytes())
    return container.pack(replace(header, gray=False), sections)


def test_one_channel_stream_without_gray_flag_is_corrupt_everywhere(tmp_path):
    data = _gray_flag_cleared()
    with pytest.raises(CorruptStreamError, match="gray flag"):
        aecodec.decompress(data)
    (tmp_path / "x.aec").write_bytes(data)
    with pytest.raises(CorruptStreamError):  # an OSError too: Pillow's convention
        Image.open(tmp_path / "x.aec").load()
    r = subprocess.run([sys.executable, "-m", "aecodec.cli", "decompress", tmp_path / "x.aec"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "gray flag" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "x.png").exists()


def test_corrupt_stream_error_is_an_oserror_and_an_aecodec_error():
    assert issubclass(CorruptStreamError, OSError) and issubclass(CorruptStreamError, AecodecError)


def test_pillow_applies_the_pixel_limit_at_open_even_without_pillows_own(tmp_path):
    model_id = aecodec.models()[0].id
    for info in aecodec.models():
        if not info.fixed_size:
            model_id = info.id
    data = container.pack(container.Header(model_id, 65535, 65535, False, 75.0), [b"\x00"])
    assert len(data) < 32
    (tmp_path / "bomb.aec").write_bytes(data)
    code = (
        "from PIL import Image; import aecodec\n"
        "Image.MAX_IMAGE_PIXELS = None\n"
        "try:\n"
        f"    Image.open({str(tmp_path / 'bomb.aec')!r}).load()\n"
        "    print('decoded')\n"
        "except aecodec.ImageTooLargeError:\n"
        "    print('refused')\n"
        # the peak of this process's own memory (ru_maxrss can carry the parent's over exec)
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
        "print(int(hwm.split()[1]) // 1024)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    verdict, mb = r.stdout.split()
    assert verdict == "refused" and int(mb) < 200, r.stderr


def _copy_model(tmp_path: Path, name: str) -> Path:
    import shutil

    src = next(i.path for i in aecodec.models() if i.name == name)
    dst = tmp_path / "models" / name
    shutil.copytree(src, dst)
    return dst


def test_model_bytes_are_read_once_and_used_as_checked(tmp_path, monkeypatch):
    folder = _copy_model(tmp_path, "factorized")
    model = aecodec.Model(folder)
    good = (folder / "synthesis.onnx").read_bytes()
    (folder / "synthesis.onnx").write_bytes(b"\x00" * len(good))  # changed after the check
    assert model.blob("synthesis.onnx") == good
    model.synthesis  # noqa: B018 - the session is built from the checked bytes
    import numpy as np

    pixels = np.full((32, 48, 3), 120, np.uint8)
    codec = aecodec.Codec(model)
    assert codec.decompress(codec.compress(pixels)).shape == pixels.shape


def test_model_folder_cannot_make_the_loader_allocate_gigabytes(tmp_path):
    import hashlib
    import io
    import json

    import numpy as np

    from aecodec.errors import ModelError
    from aecodec.model import folder_sha256

    folder = _copy_model(tmp_path, "factorized")
    with np.load(folder / "tables.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays, huge=np.zeros(3 << 28, np.uint8))  # 768 MiB of zeros
    assert len(buf.getvalue()) < 8 << 20
    (folder / "tables.npz").write_bytes(buf.getvalue())
    m = json.loads((folder / "manifest.json").read_text())
    m["files"]["tables.npz"] = hashlib.sha256(buf.getvalue()).hexdigest()
    m["sha256"] = folder_sha256(m["files"])
    m["id"] = m["sha256"][:8]
    (folder / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ModelError, match="declares"):
        aecodec.Model(folder)


@pytest.mark.parametrize("ref", ["/etc/passwd", "../../outside", "sub/../../x"])
def test_model_file_references_stay_inside(tmp_path, ref):
    import json

    from aecodec.errors import ModelError

    folder = _copy_model(tmp_path, "factorized")
    m = json.loads((folder / "manifest.json").read_text())
    m["files"][ref] = "0" * 64
    (folder / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ModelError):
        aecodec.Model(folder)
    m["files"].pop(ref)
    m["shares_files_with"] = ref
    (folder / "synthesis.onnx").unlink()
    (folder / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ModelError):
        aecodec.Model(folder)


def test_trailing_bytes_after_the_alpha_image_are_refused():
    import numpy as np

    rgba = np.dstack([np.full((20, 30, 3), 90, np.uint8), np.full((20, 30), 7, np.uint8)])
    data = aecodec.compress(rgba)
    header, sections = container.unpack(data)
    assert np.array_equal(aecodec.decompress(data)[:, :, 3], rgba[:, :, 3])
    for tail in (b"\x00", b"junk!!"):
        bad = container.pack(header, sections[:-1] + [sections[-1] + tail])
        with pytest.raises(CorruptStreamError, match="beyond its image"):
            aecodec.decompress(bad)


def test_trailing_bytes_after_the_exif_structure_are_refused():
    import numpy as np
    from PIL import Image

    im = Image.fromarray(np.full((20, 30, 3), 90, np.uint8))
    exif = im.getexif()
    exif[0x010F] = "Maker"
    exif.get_ifd(0x8769)[0x927C] = b"note" * 10
    im.info["exif"] = exif.tobytes()
    data = aecodec.compress(im)
    header, sections = container.unpack(data)
    assert extras.stream_metadata(data)["exif"] == im.info["exif"]
    at = list(header.extras).index("exif") + len(sections) - len(header.extras)
    for tail in (b"\x00\x00", b"junk!!"):
        bad = list(sections)
        bad[at] = bad[at] + tail
        with pytest.raises(CorruptStreamError, match="after its last directory"):
            aecodec.decompress(container.pack(header, bad))
    bad = list(sections)  # a directory pointing past the block
    bad[at] = bad[at][:10] + b"\xff\xff\xff\x00" + bad[at][14:]
    with pytest.raises(CorruptStreamError, match="EXIF"):
        aecodec.decompress(container.pack(header, bad))


@pytest.mark.parametrize("tile", [1, 2, 4, 8])
def test_kilobytes_cannot_declare_minutes_of_decoding(tile):
    import time

    info = next(i for i in aecodec.models() if i.name == "factorized")
    side = 2048
    n = (-(-side // 16 // tile)) ** 2  # one section per tile of the 128 x 128 latent grid
    data = container.pack(container.Header(info.id, side, side, False, 75.0, tile=tile),
                          [b"\x00\x00\x00\x00"] * n)
    assert len(data) < 100 * 1024
    start = time.perf_counter()
    with pytest.raises(CorruptStreamError, match="multiple of 4|too short"):
        aecodec.decompress(data)
    assert time.perf_counter() - start < 30  # refused before any section is decoded


@pytest.mark.parametrize("name", ["hyperprior-fast", "hyperprior-ctx"])
def test_hyperprior_sections_are_checked_for_room_per_stream(name):
    """A valid z and 4-latent tiles whose y sections hold 4 bytes each: every section passes
    its own check (the coder's slack), all together cannot carry 2048^2 pixels' symbols."""
    import time

    import numpy as np

    from aecodec.latent.base import channel_index

    codec = aecodec.Codec(name, threads=1)
    side, tile = 2048, 4
    hy = side // 16
    zs = codec.latent.z_shape(aecodec.tiles.TileGrid(hy, hy, tile))
    z = codec.model.z_tables.encode(np.zeros(zs).ravel(), channel_index(zs))
    n = (hy // tile) ** 2
    data = container.pack(container.Header(codec.model.id, side, side, False, 75.0, tile=tile),
                          [z] + [b"\x00\x00\x00\x00"] * n)
    assert len(data) < 100 * 1024
    start = time.perf_counter()
    with pytest.raises(CorruptStreamError, match="sections are too short"):  # the stream's
        codec.decompress(data)
    assert time.perf_counter() - start < 30


def test_guided_fuzzer_short_fixed_seed_round(tmp_path):
    pytest.importorskip("atheris")
    import json

    # limits off here (libFuzzer's RSS reading inherits this test runner's peak over exec: a
    # 4 GB runner "used" 4 GB before the first input); the long run keeps them
    r = subprocess.run([sys.executable, "-m", "aecodec.bench.guided_fuzz", "--runs", "300",
                        "--sessions", "2", "--seed", "1", "--out", str(tmp_path),
                        "--timeout", "120", "--rss-mb", "0"], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    counts = json.loads((tmp_path / "campaign.json").read_text())  # two sessions, one corpus
    assert [s["seed"] for s in counts["sessions"]] == [1, 2]
    assert counts["runs"] >= 598 and counts["outcomes"].get("ok", 0) > 0  # seeds decode
    assert counts["slowest_input_cpu_s"] < 120
    assert not list(tmp_path.glob("crash-*")) and not list(tmp_path.glob("timeout-*"))
