"""Which files a job codes and where each output goes, decided before any coding starts.

Planning errors (no inputs, two inputs onto one output, an unwritable output folder) are
raised here as one `AecodecError`, so a job either starts with a sound plan or not at all;
`resume` leaves out the files a stopped run already wrote.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import AecodecError
from .fileio import occupied

SUFFIX = {"compress": ".aec", "decompress": ".png"}  # output suffix when -o is a folder
# decompress's default output (no -o) beside its stream: photo.aec -> photo.decoded.png, never
# the name of the photo.png it was made from (compress's own default is photo.aec)
DECODED = ".decoded"


def _file_suffixes() -> set[str]:
    from ..imageio import FORMAT_SUFFIX, IMAGE_SUFFIXES

    return {".aec", ".jxl", ".avif", *IMAGE_SUFFIXES, *FORMAT_SUFFIX.values()}


FILE_SUFFIXES = _file_suffixes()  # an -o with one of these names a file, not a folder

Pair = tuple[str, str]  # (input, output); "-" is stdin or stdout


def expand(
    inputs: tuple[str, ...] | list[str], suffixes: set[str]
) -> list[tuple[str, Path | None]]:
    """Each input file with its path relative to the folder it was found in (None for files
    named directly): folders are walked recursively, sorted, hidden names left out, and only
    regular files (or links to them) taken: a FIFO or a link to /dev/zero under an image
    name would block the job or read without end. A file named directly is read as given
    (`<(cmd)` is a pipe)."""
    out: list[tuple[str, Path | None]] = []
    for item in inputs:
        root = Path(item)
        if item == "-" or not root.is_dir():
            out.append((item, None))
            continue
        for folder, dirs, files in os.walk(root):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                f = Path(folder) / name
                if not name.startswith(".") and f.suffix.lower() in suffixes and f.is_file():
                    out.append((str(f), f.relative_to(root)))
    if not out:
        raise AecodecError("no input files found")
    return out


def plan(found: list[tuple[str, Path | None]], output: str | None, suffix: str,
         mark: str = "") -> list[Pair]:
    """(input, output) pairs: outputs next to the inputs by default (`mark` inserted before
    the suffix: DECODED for decompress); with -o, one input named directly may go to a file,
    otherwise -o is a folder that mirrors the input folders' trees."""
    if sum(f == "-" for f, _ in found) > 1:  # the second read would get nothing
        raise AecodecError("- (stdin) can be read only once: give it once")
    if output == "-" and len(found) > 1:
        raise AecodecError("-o - (stdout) takes a single input")
    several = len(found) > 1 or found[0][1] is not None  # a folder's files: -o is a folder
    if (several and output not in (None, "-") and Path(output).suffix.lower() in FILE_SUFFIXES
            and not Path(output).is_dir()):
        raise AecodecError(f"-o {output} names one file, but there are {len(found)} inputs "
                           "(a folder's files): give a folder for -o")
    if output is None:
        dsts = ["-" if f == "-" else str(Path(f).with_suffix(mark + suffix)) for f, _ in found]
    elif (len(found) == 1 and found[0][1] is None and not Path(output).is_dir()
          and not output.endswith(("/", "\\"))):
        dsts = [output]
    else:
        dsts = []
        for f, rel in found:
            stem = "stdin" if f == "-" else str(rel.with_suffix("") if rel else Path(f).stem)
            dsts.append(str(Path(output) / (stem + suffix)))
    pairs = list(zip((f for f, _ in found), dsts, strict=True))
    seen: dict[str, str] = {}
    for src, dst in pairs:
        key = dst if dst == "-" else str(Path(dst).resolve())
        if dst != "-" and key in seen:
            raise AecodecError(f"{seen[key]} and {src} would both write {dst}")
        seen[key] = src
    return pairs


def check_writable(pairs: list[Pair]) -> None:
    """Fail before any coding when an output folder cannot be written (read-only, a file in
    the way, no permission), naming the output, not the input."""
    import tempfile

    for folder in sorted({Path(dst).parent for _, dst in pairs if dst != "-"}):
        probe = folder
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        try:
            if not probe.is_dir():
                raise NotADirectoryError(f"{probe} is not a folder")
            with tempfile.TemporaryFile(dir=probe):
                pass
        except OSError as e:
            raise AecodecError(f"cannot write outputs into {folder}: "
                               f"{e.strerror or e}") from None


def resume(pairs: list[Pair], skip_existing: bool) -> tuple[list[Pair], list[Pair]]:
    """(to code, to skip): with `skip_existing`, the pairs whose output is already there
    (outputs are written whole, so one that exists is complete) are skipped."""
    todo: list[Pair] = []
    skipped: list[Pair] = []
    for src, dst in pairs:
        done = skip_existing and dst != "-" and occupied(dst)
        (skipped if done else todo).append((src, dst))
    return todo, skipped
