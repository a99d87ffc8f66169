"""An input's bytes and an output's atomic write, with `-` for stdin and stdout.

Kept apart so the planner (does an output exist?), the coder (a path to read) and the Ray
runner (this process reads and writes) share one definition of each.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import AecodecError


def read(src: str) -> bytes:
    """An input file's bytes (`-`: all of stdin), an unreadable one as a one-line error."""
    if src == "-":
        import click

        return click.get_binary_stream("stdin").read()
    try:
        return Path(src).read_bytes()
    except OSError as e:
        raise AecodecError(f"cannot read: {e.strerror or e}") from None


def write(dst: str, data: bytes, force: bool) -> None:
    """Put an output in place whole or not at all (`-`: stdout), never replacing a file
    unless `force`."""
    from ..imageio import write_atomic

    if dst == "-":
        import click

        click.get_binary_stream("stdout").write(data)
        return
    write_atomic(dst, data, force)


def occupied(dst: str) -> bool:
    """Whether writing `dst` would replace something: anything but a character device or a
    FIFO (`-o /dev/null`), which are written through instead (imageio.write_atomic)."""
    from ..imageio import writes_through

    return Path(dst).exists() and not writes_through(dst)
