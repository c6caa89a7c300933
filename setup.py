"""The compiled hot path: mypyc extensions of logsync.compiled.HOT_MODULES, in wheel builds only.

Everything else about the distribution is in pyproject.toml. ``scripts/build_backend.py`` (the
build backend pyproject.toml names) decides whether to compile and says so in LOGSYNC_COMPILE:

- ``auto`` (a wheel build: ``pip install .``, ``pip wheel .``): compile when mypyc and a C
  compiler work; on any failure print why and build the pure-Python distribution instead;
- ``1`` (the Docker image): compile, and fail the build if that fails;
- ``0`` (editable installs always, or asked for): pure Python, nothing compiled.

The compiled modules keep their ``.py`` next to them in the wheel; an editable install never has
an extension beside a source file, so an edited ``.py`` is always what runs (README, "Compiled
hot path").
"""

from __future__ import annotations

import importlib.util
import os
import sys
import sysconfig
import tempfile
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent


def hot_modules() -> tuple[str, ...]:
    # logsync/compiled.py imports only the standard library: load it without logsync's package
    # (whose dependencies the build environment does not have).
    spec = importlib.util.spec_from_file_location(
        "_logsync_compiled", HERE / "logsync" / "compiled.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return tuple(module.HOT_MODULES)


def warn(text: str) -> None:
    print(f"logsync setup.py: {text}", file=sys.stderr)


class OptionalBuildExt(build_ext):
    """build_ext that, in ``auto`` mode, drops every extension when one fails: mypyc's modules
    share one library, so it is all of them or none (then the wheel is pure Python)."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as error:  # the compiler missing or failing: CCompilerError, …
            if os.environ.get("LOGSYNC_COMPILE") != "auto":
                raise
            warn(f"compiling failed ({error!r}); building the pure-Python distribution")
            for ext in self.extensions:
                built = self.get_ext_fullpath(ext.name)
                if os.path.exists(built):
                    os.remove(built)
            self.extensions = []
            self.distribution.ext_modules = []


def c_compiler_fails() -> str | None:
    """Why the C compiler cannot build against Python's headers, or None when it can.

    ``auto`` asks before mypyc runs: mypyc type-checks and translates every hot module (about a
    minute) before the compiler is first called, which a machine without one would spend for
    nothing."""
    # setuptools provides distutils (the standard library's is gone from Python 3.12).
    from distutils.ccompiler import new_compiler
    from distutils.sysconfig import customize_compiler

    compiler = new_compiler()
    customize_compiler(compiler)  # CC, CFLAGS, … from the environment, as build_ext does
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder, "probe.c")
        source.write_text("#include <Python.h>\nint logsync_probe(void) { return 0; }\n")
        try:
            compiler.compile(
                [str(source)], output_dir=folder, include_dirs=[sysconfig.get_paths()["include"]]
            )
        except Exception as error:  # CompileError, the compiler missing, …
            return repr(error)
    return None


def extensions() -> list[object]:
    mode = os.environ.get("LOGSYNC_COMPILE", "0")
    if mode not in ("auto", "1"):
        return []
    if mode == "auto" and (why := c_compiler_fails()) is not None:
        warn(f"no working C compiler ({why}); building the pure-Python distribution")
        return []
    sources = [str(Path(*name.split(".")).with_suffix(".py")) for name in hot_modules()]
    try:
        from mypyc.build import mypycify

        # opt_level 3 is mypyc's default; the package's own mypy settings (pyproject.toml,
        # strict) are what it type-checks with.
        return list(mypycify(sources, opt_level="3", group_name="logsync"))
    except (Exception, SystemExit) as error:  # mypyc missing, or a type error it refuses
        if mode == "1":
            raise
        warn(f"mypyc could not prepare the hot modules ({error!r}); building pure Python")
        return []


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
