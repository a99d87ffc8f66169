"""What travels beside the pixels: alpha (exact), ICC profile and EXIF (kept, orientation
applied), and the LossWarning for what cannot be kept, through the API and the CLI."""

from __future__ import annotations

import io
import subprocess
import sys
import warnings

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageOps

import aecodec
from aecodec import container
from aecodec.errors import CorruptStreamError, LossWarning
from aecodec.extras import stream_metadata


@pytest.fixture(scope="module")
def codec(synth):
    return aecodec.Codec(synth["hyperprior"], threads=1)


@pytest.fixture(scope="module")
def srgb() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def soft_alpha(h: int, w: int) -> np.ndarray:
    """A disc with a soft edge and every value 0..255 somewhere."""
    y, x = np.mgrid[0:h, 0:w]
    r = np.hypot(y - h / 2, x - w / 2)
    a = np.clip((min(h, w) / 2 - r) * 40, 0, 255).astype(np.uint8)
    a[0, :] = np.arange(w) % 256
    return a


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "aecodec.cli", *map(str, args)],
                          capture_output=True, timeout=300)


class _NoLoss:
    """A context in which a LossWarning is an error."""

    def __enter__(self):
        self._cm = warnings.catch_warnings()
        self._cm.__enter__()
        warnings.simplefilter("error", LossWarning)

    def __exit__(self, *exc):
        return self._cm.__exit__(*exc)


# ---- alpha ----------------------------------------------------------------------------------


def test_rgba_and_la_alpha_exact(codec, photo):
    alpha = soft_alpha(*photo.shape[:2])
    rgba = np.dstack([photo, alpha])
    with _NoLoss():
        data = codec.compress(rgba, 60)
        plain = codec.compress(photo, 60)
    header, sections = container.unpack(data)
    assert header.version == 3 and header.extras == ("alpha",)
    latent, extra = container.split_extras(header, sections)
    assert latent == container.unpack(plain)[1]  # the colour is coded exactly as without alpha
    out = codec.decompress(data)
    assert out.shape == rgba.shape and np.array_equal(out[:, :, 3], alpha)
    assert np.array_equal(out[:, :, :3], codec.decompress(plain))
    # a PIL RGBA image and the LA / H x W x 2 forms
    assert np.array_equal(codec.decompress(codec.compress(Image.fromarray(rgba), 60)), out)
    la = np.dstack([photo[:, :, 1], alpha])
    out_la = codec.decompress(codec.compress(Image.fromarray(la, "LA"), 60))
    assert out_la.shape == la.shape and np.array_equal(out_la[:, :, 1], alpha)
    assert np.array_equal(codec.decompress(codec.compress(la, 60)), out_la)
    # a stream coded by tiles keeps it the same way
    tiled = aecodec.Codec(codec.model, tile=16, tile_above=0)
    data_t = tiled.compress(rgba, 60)
    assert container.unpack(data_t)[0].tile is not None
    assert np.array_equal(tiled.decompress(data_t)[:, :, 3], alpha)
    # palette images with transparency keep it too
    p = Image.fromarray(rgba).quantize(16)
    p.info["transparency"] = 0
    assert codec.decompress(codec.compress(p, 60)).shape == rgba.shape


def test_alpha_of_a_real_rgba_image_costs_little(codec):
    """An opaque plane takes ~100 bytes; the stream of an RGB image has no extra bytes."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (64, 96, 3), np.uint8)
    opaque = codec.compress(np.dstack([rgb, np.full((64, 96), 255, np.uint8)]), 50)
    plain = codec.compress(rgb, 50)
    assert 0 < len(opaque) - len(plain) < 120
    assert container.unpack(plain)[0].version == 1


def test_corrupt_alpha_section_is_refused(codec, photo):
    data = codec.compress(np.dstack([photo, soft_alpha(*photo.shape[:2])]), 60)
    header, sections = container.unpack(data)
    latent, extra = container.split_extras(header, sections)
    for bad in (b"", b"RIFF" + bytes(20), extra["alpha"][:-5],
                _png(np.zeros((photo.shape[0] + 1, photo.shape[1]), np.uint8))):
        with pytest.raises(CorruptStreamError):
            codec.decompress(container.pack(header, latent + [bad]))


def _png48(rgb: np.ndarray) -> bytes:
    """A 16-bit-per-sample RGB PNG (Pillow opens it as 8-bit RGB, silently)."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(
            ">I", zlib.crc32(kind + body))

    h, w = rgb.shape[:2]
    rows = b"".join(b"\0" + (rgb[r].astype(">u2") * 257).tobytes() for r in range(h))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def _png(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG")
    return buf.getvalue()


# ---- metadata -------------------------------------------------------------------------------


def _jpeg(upright: np.ndarray, orientation: int, icc: bytes | None = None) -> bytes:
    """A JPEG whose stored pixels, shown with `orientation` (6: turn 90 degrees clockwise),
    are `upright`."""
    stored = np.ascontiguousarray(np.rot90(upright, 1))  # 90 degrees counter-clockwise
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "aecodec test"
    exif.get_ifd(0x8769)[0x9003] = "2026:11:25 01:00:00"
    buf = io.BytesIO()
    Image.fromarray(stored).save(buf, "JPEG", quality=95, exif=exif.tobytes(),
                                 **({"icc_profile": icc} if icc else {}))
    return buf.getvalue()


def test_orientation_6_decodes_upright(codec, photo):
    upright = np.zeros((48, 80, 3), np.uint8)
    upright[:16, :24] = (250, 10, 10)  # red block top left of the upright picture
    jpeg = _jpeg(upright, 6)
    reference = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(jpeg))))
    assert reference.shape == upright.shape  # the JPEG does need turning
    src = Image.open(io.BytesIO(jpeg))
    data = codec.compress(src, 90)
    assert src.getexif()[0x0112] == 6 and src.size == (48, 80)  # the input is left as it was
    out = codec.decompress(data)
    assert out.shape == upright.shape
    assert out[:16, :24, 0].mean() > 200 and out[:16, :24, 1].mean() < 60
    assert out[32:, 56:, 0].mean() < 40
    exif = Image.Exif()
    exif.load(stream_metadata(data)["exif"])
    assert exif[0x0112] == 1 and exif[0x010F] == "aecodec test"
    assert exif.get_ifd(0x8769)[0x9003] == "2026:11:25 01:00:00"


def test_icc_profile_survives_to_png_byte_for_byte(synth, tmp_path, photo, srgb):
    src = tmp_path / "p3.jpg"
    src.write_bytes(_jpeg(photo, 1, srgb))
    r = run_cli("compress", src, "-o", tmp_path / "x.aec", "--model", synth["hyperprior"])
    assert r.returncode == 0 and not r.stderr, r.stderr
    for name in ("x.png", "x.jpg", "x.webp"):
        r = run_cli("decompress", tmp_path / "x.aec", "-o", tmp_path / name,
                    "--model", synth["hyperprior"])
        # the JPEG's resolution travels too, and WebP has no field for it: said, not hidden
        said = [b"dpi not written (WEBP output)"] if name == "x.webp" else []
        assert r.returncode == 0 and [s.split(b": ")[-1] for s in r.stderr.splitlines()] \
            == said, r.stderr
        with Image.open(tmp_path / name) as im:
            assert im.info["icc_profile"] == srgb, name
            assert im.getexif()[0x010F] == "aecodec test", name
            assert im.size == (photo.shape[0], photo.shape[1])  # stored turned, orientation 1
    # --strip leaves both out, and the stream is that much smaller
    r = run_cli("compress", src, "-o", tmp_path / "s.aec", "--strip", "--model",
                synth["hyperprior"])
    assert r.returncode == 0, r.stderr
    stripped, kept = (tmp_path / "s.aec").read_bytes(), (tmp_path / "x.aec").read_bytes()
    assert container.unpack(stripped)[0].version == 1
    assert len(kept) - len(stripped) >= len(srgb)
    run_cli("decompress", tmp_path / "s.aec", "-o", tmp_path / "s.png", "--model",
            synth["hyperprior"])
    assert "icc_profile" not in Image.open(tmp_path / "s.png").info


def test_corrupt_metadata_is_refused(codec, photo, srgb):
    im = Image.fromarray(photo)
    im.info["icc_profile"] = srgb
    data = codec.compress(im, 50)
    header, sections = container.unpack(data)
    latent, extra = container.split_extras(header, sections)
    assert header.extras == ("icc",)
    for bad in (srgb[:-1], srgb[:36] + b"xxxx" + srgb[40:], b""):
        with pytest.raises(CorruptStreamError, match="ICC"):
            codec.decompress(container.pack(header, latent + [bad]))
    h2 = container.Header(header.model_id, header.width, header.height, False, header.quality,
                          extras=("exif",))
    for bad in (b"Exif\0\0XX", b"II*\0" + bytes(10)):
        with pytest.raises(CorruptStreamError, match="EXIF"):
            codec.decompress(container.pack(h2, latent + [bad]))


def test_icc_of_another_colour_space_is_not_attached(codec, photo, srgb):
    gray = Image.fromarray(photo[:, :, 0])
    gray.info["icc_profile"] = srgb  # an RGB profile on a gray image
    with pytest.warns(LossWarning, match="ICC profile"):
        data = codec.compress(gray, 50)
    assert container.unpack(data)[0].extras == ()


# ---- what is lost is said -------------------------------------------------------------------


def test_loss_warnings(codec, photo):
    deep = Image.fromarray(photo[:, :, 0].astype(np.uint16) * 257)  # I;16
    with pytest.warns(LossWarning, match="16-bit samples reduced to 8 bits") as rec:
        out = codec.decompress(codec.compress(deep, 90))
    assert len(rec) == 1 and out.shape == photo.shape[:2]
    assert np.abs(out.astype(int) - photo[:, :, 0]).mean() < 8  # scaled, not clipped

    frames = [Image.fromarray(np.roll(photo, 5 * i, axis=1)) for i in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    with pytest.warns(LossWarning, match="first of 3 frames") as rec:
        codec.compress(Image.open(io.BytesIO(buf.getvalue())), 50)
    assert len(rec) == 1

    with pytest.warns(LossWarning, match="16-bit samples") as rec:  # 48-bit RGB PNG
        out = codec.decompress(codec.compress(Image.open(io.BytesIO(_png48(photo))), 90))
    assert len(rec) == 1 and out.shape == photo.shape

    cmyk = Image.fromarray(photo).convert("CMYK")
    with pytest.warns(LossWarning, match="CMYK image converted to RGB"):
        codec.compress(cmyk, 50)

    with _NoLoss():  # nothing lost: no warning
        codec.compress(Image.fromarray(photo), 50)
        codec.compress(Image.fromarray(photo).convert("P"), 50)
        codec.compress(Image.fromarray(photo[:, :, 0]).convert("1"), 50)


def test_cli_says_what_is_lost_once(synth, tmp_path, photo):
    deep = tmp_path / "deep.png"
    Image.fromarray(photo[:, :, 0].astype(np.uint16) * 257).save(deep)
    r = run_cli("compress", deep, "--model", synth["hyperprior"])
    assert r.returncode == 0
    lines = [ln for ln in r.stderr.decode().splitlines() if ln.startswith("Warning")]
    assert lines == [f"Warning: {deep}: 16-bit samples reduced to 8 bits"]
    # an RGBA stream decoded to JPEG: alpha cannot go there, which is said
    Image.fromarray(np.dstack([photo, soft_alpha(*photo.shape[:2])])).save(tmp_path / "a.png")
    assert run_cli("compress", tmp_path / "a.png", "--model", synth["hyperprior"]).returncode == 0
    r = run_cli("decompress", tmp_path / "a.aec", "-o", tmp_path / "a.jpg", "--model",
                synth["hyperprior"])
    assert r.returncode == 0 and b"alpha dropped (JPEG output" in r.stderr
    assert Image.open(tmp_path / "a.jpg").mode == "RGB"
    r = run_cli("decompress", tmp_path / "a.aec", "-o", tmp_path / "b.png", "--model",
                synth["hyperprior"])
    assert r.returncode == 0 and not r.stderr
    assert np.array_equal(np.asarray(Image.open(tmp_path / "b.png"))[:, :, 3],
                          soft_alpha(*photo.shape[:2]))
