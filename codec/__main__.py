"""``python -m aecodec``: the same command as ``aecodec``."""

from .cli import main

main(prog_name="aecodec")
