"""What a model's top quality reaches, from the measurements its manifest holds.

Quality 100 is the most a model can spend: above it, more bits buy nothing. The CLI's
`models`, `info` and `--help`, and the README, state that point from the model's own
measured curve (the bench's `results` entry, e.g. Kodak), never from a number written by hand.
"""

from __future__ import annotations

from dataclasses import dataclass

import click

from .errors import AecodecError
from .model import ModelInfo


@dataclass(frozen=True)
class TopEnd:
    """The highest quality of a measured curve: its mean bits per pixel and PSNR."""

    quality: float
    bpp: float
    psnr: float
    dataset: str
    images: int | None

    def text(self) -> str:
        n = f", {self.images} images" if self.images else ""
        return (f"quality {self.quality:g} reaches {self.bpp:.2f} bpp, {self.psnr:.2f} dB PSNR "
                f"({self.dataset}{n})")


def top_end(info: ModelInfo) -> TopEnd | None:
    """The top of the model's measured curve (Kodak first), or None when it holds none."""
    results = info.results
    for key in sorted(results, key=lambda k: k != "kodak"):
        entry = results[key]
        curve = entry.get("curve") if isinstance(entry, dict) else None
        try:
            top = max(curve, key=lambda p: float(p["setting"]))
            return TopEnd(float(top["setting"]), float(top["bpp"]), float(top["psnr"]),
                          "Kodak" if key == "kodak" else key, entry.get("images"))
        except (TypeError, ValueError, KeyError):
            continue
    return None


class TopEndHelp(click.Option):
    """An option whose help ends with what the default model's top quality reaches, read from
    its manifest when help is shown (not on every run)."""

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        from .model import default_info

        base = self.help
        try:
            top = top_end(default_info())
        except AecodecError:
            top = None
        if top is not None:
            self.help = (f"{base} Quality {top.quality:g} is the top: "
                         f"{top.bpp:.2f} bpp, {top.psnr:.2f} dB on {top.dataset} with the "
                         "default model; a --bpp above that buys nothing (aecodec models).")
        try:
            return super().get_help_record(ctx)
        finally:
            self.help = base
