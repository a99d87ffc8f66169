"""``python -m aecodec.bench``: the same command as ``aecodec bench``."""

from .cli import bench

bench()
