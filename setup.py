"""Packages found, never listed: each top folder maps onto a name under ``aecodec``.

A module missing from the wheel is invisible to an editable install, so the list is computed from
the folders: every directory with an ``__init__.py``, and the data folders whose names Python
could import (``aecodec.data``, ``aecodec.models.hyperprior``), which setuptools otherwise warns
about as packages left out; tests/test_wheel.py builds the wheel, checks that every module under
codec/, export/ and bench/ is in it and that the build warns of nothing.
"""

from setuptools import find_namespace_packages, setup

ROOTS = {"aecodec": "codec", "aecodec.export": "export", "aecodec.bench": "bench"}
# Data only: the shipped model weights a fine-tune starts from (`--init hyperprior`).
DATA = {"aecodec.checkpoints": "checkpoints"}


def _packages() -> tuple[list[str], dict[str, str]]:
    names: list[str] = []
    dirs: dict[str, str] = {}
    for name, folder in ROOTS.items():
        names.append(name)
        dirs[name] = folder
        for sub in find_namespace_packages(folder, exclude=["*__pycache__*"]):
            if not all(part.isidentifier() for part in sub.split(".")):
                continue  # hyperprior-fast: data only (package-data), never importable
            names.append(f"{name}.{sub}")
            dirs[f"{name}.{sub}"] = f"{folder}/{sub.replace('.', '/')}"
    names += DATA
    dirs |= DATA
    return names, dirs


packages, package_dir = _packages()
setup(packages=packages, package_dir=package_dir)
