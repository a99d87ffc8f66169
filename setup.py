"""Packages found, never listed: each top folder maps onto a name under ``aecodec``.

A module missing from the wheel is invisible to an editable install, so the list is computed from
the folders (every directory with an ``__init__.py``); tests/test_wheel.py builds the wheel and
checks that every module under codec/, export/ and bench/ is in it.
"""

from setuptools import find_packages, setup

ROOTS = {"aecodec": "codec", "aecodec.export": "export", "aecodec.bench": "bench"}
# Data only: the shipped model weights a fine-tune starts from (`--init hyperprior`).
DATA = {"aecodec.checkpoints": "checkpoints"}


def _packages() -> tuple[list[str], dict[str, str]]:
    names: list[str] = []
    dirs: dict[str, str] = {}
    for name, folder in ROOTS.items():
        names.append(name)
        dirs[name] = folder
        for sub in find_packages(folder):
            names.append(f"{name}.{sub}")
            dirs[f"{name}.{sub}"] = f"{folder}/{sub.replace('.', '/')}"
    names += DATA
    dirs |= DATA
    return names, dirs


packages, package_dir = _packages()
setup(packages=packages, package_dir=package_dir)
