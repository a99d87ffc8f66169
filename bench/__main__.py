"""``python -m aecodec.bench`` runs the bench command (until ``aecodec bench`` is wired)."""

from .cli import bench

bench()
