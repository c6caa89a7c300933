"""logsync's build backend: setuptools', deciding when ``setup.py`` compiles the hot modules.

pyproject.toml names it (``build-backend``, ``backend-path = ["scripts"]``). Rules:

- a wheel build (``pip install .``, ``pip wheel .``) compiles with mypyc when it can
  (``LOGSYNC_COMPILE=auto``, the default), so the build needs mypy: it is added to that build's
  requirements only; ``LOGSYNC_COMPILE=0`` builds pure Python, ``LOGSYNC_COMPILE=1`` fails
  instead of falling back;
- an editable install (``pip install -e``: ``scripts/serve``, ``scripts/test``) is always pure
  Python, so an edited ``.py`` is what runs, and needs no mypy or C compiler;
- metadata and sdists never compile.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F403 (every other hook is setuptools' own)

# The mypy that compiles (any recent one makes the same extensions; this is the one CI checks with).
MYPYC = "mypy>=2.4"

Settings = dict[str, Any] | None


def _wheel_mode() -> str:
    mode = os.environ.get("LOGSYNC_COMPILE", "auto")
    if mode not in ("auto", "0", "1"):
        raise ValueError(f"LOGSYNC_COMPILE must be auto, 0 or 1, not {mode!r}")
    return mode


@contextmanager
def _compiling(mode: str) -> Iterator[None]:
    """setup.py's LOGSYNC_COMPILE for one hook (each hook may run in the same process)."""
    before = os.environ.get("LOGSYNC_COMPILE")
    os.environ["LOGSYNC_COMPILE"] = mode
    try:
        yield
    finally:
        if before is None:
            del os.environ["LOGSYNC_COMPILE"]
        else:
            os.environ["LOGSYNC_COMPILE"] = before


def _typed_dependencies() -> list[str]:
    """The packages the hot modules' imports reach (the base dependencies and the ``server``
    extra): mypyc type-checks with the package's strict mypy settings, and without them every
    import of pydantic, aiohttp … is an error (a fresh build environment has none of them)."""
    with open("pyproject.toml", "rb") as file:
        project = tomllib.load(file)["project"]
    return [*project["dependencies"], *project["optional-dependencies"]["server"]]


def get_requires_for_build_wheel(config_settings: Settings = None) -> list[str]:
    mode = _wheel_mode()
    with _compiling("0"):
        needed = list(_setuptools.get_requires_for_build_wheel(config_settings))
    return needed if mode == "0" else [*needed, MYPYC, *_typed_dependencies()]


def prepare_metadata_for_build_wheel(
    metadata_directory: str, config_settings: Settings = None
) -> str:
    with _compiling("0"):
        return _setuptools.prepare_metadata_for_build_wheel(metadata_directory, config_settings)


def build_wheel(
    wheel_directory: str, config_settings: Settings = None, metadata_directory: str | None = None
) -> str:
    with _compiling(_wheel_mode()):
        return _setuptools.build_wheel(wheel_directory, config_settings, metadata_directory)


def get_requires_for_build_editable(config_settings: Settings = None) -> list[str]:
    with _compiling("0"):
        return list(_setuptools.get_requires_for_build_editable(config_settings))


def prepare_metadata_for_build_editable(
    metadata_directory: str, config_settings: Settings = None
) -> str:
    with _compiling("0"):
        return _setuptools.prepare_metadata_for_build_editable(metadata_directory, config_settings)


def build_editable(
    wheel_directory: str, config_settings: Settings = None, metadata_directory: str | None = None
) -> str:
    with _compiling("0"):
        return _setuptools.build_editable(wheel_directory, config_settings, metadata_directory)


def get_requires_for_build_sdist(config_settings: Settings = None) -> list[str]:
    with _compiling("0"):
        return list(_setuptools.get_requires_for_build_sdist(config_settings))


def build_sdist(sdist_directory: str, config_settings: Settings = None) -> str:
    with _compiling("0"):
        return _setuptools.build_sdist(sdist_directory, config_settings)
