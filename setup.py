"""Build script: maps the source folders onto the ``dlrun`` package and compiles the kernels.

Layout (source folder -> installed package):
    dlrun/    -> dlrun            (public API, errors, version, ``python -m dlrun``)
    dsl/      -> dlrun.dsl        (grammar, IR, checker)
    kernels/  -> dlrun.kernels    (Cython kernels: one extension per ``.pyx``)
    runtime/  -> dlrun.runtime    (layers, training, data, checkpoints, CLI)

``DLRUN_CYTHON_DEBUG=1`` rebuilds the kernels with bounds checking, wrap-around and
Python division semantics turned back on, and without ``-O3``, for debugging.

The build runs on every core this process may use (``DLRUN_BUILD_JOBS=N`` to choose): Cython
translates the ``.pyx`` files in parallel, then the compiler builds the extensions in parallel,
largest first. Release builds carry no debug information (``-g0``): it changes no instruction
and cost 12-24% of the compiler's CPU time.
"""
import glob
import os

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

DEBUG = os.environ.get("DLRUN_CYTHON_DEBUG", "") not in ("", "0")

DIRECTIVES = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "cdivision": not DEBUG,
    "initializedcheck": DEBUG,
    "nonecheck": DEBUG,
    "embedsignature": True,
}
# -g0 overrides the interpreter's -g: debug information is no part of the code (GCC emits the
# same instructions with or without it; -fcompare-debug checks exactly that)
COMPILE_ARGS = ["-O0", "-g"] if DEBUG else ["-O3", "-fno-math-errno", "-g0"]


def build_jobs() -> int:
    """Parallel jobs of the build: ``DLRUN_BUILD_JOBS``, else the cores this process may run on."""
    value = os.environ.get("DLRUN_BUILD_JOBS", "")
    if value:
        if not value.isdigit() or int(value) < 1:
            raise SystemExit(f"setup.py: DLRUN_BUILD_JOBS={value!r}: expected a whole number >= 1")
        return int(value)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


JOBS = build_jobs()


class parallel_build_ext(build_ext):
    """``build_ext`` compiling ``JOBS`` extensions at a time, the largest C file first (the
    longest compile starts first, so the jobs finish together)."""

    def finalize_options(self):
        super().finalize_options()
        if not self.parallel and JOBS > 1:
            self.parallel = JOBS

    def build_extensions(self):
        def size(ext):
            try:
                return os.path.getsize(ext.sources[0])
            except OSError:
                return 0

        self.extensions.sort(key=size, reverse=True)
        super().build_extensions()


def kernel_extensions():
    """One extension per ``kernels/*.pyx``: ``kernels/dense.pyx`` -> ``dlrun.kernels.dense``."""
    # DLRUN_KERNELS=dense,blas limits an in-place development build to those modules.
    only = {n for n in os.environ.get("DLRUN_KERNELS", "").split(",") if n}
    exts = []
    for pyx in sorted(glob.glob(os.path.join("kernels", "*.pyx"))):
        name = os.path.splitext(os.path.basename(pyx))[0]
        if only and name not in only:
            continue
        exts.append(
            Extension(
                f"dlrun.kernels.{name}",
                [pyx],
                include_dirs=[np.get_include(), "kernels"],
                define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
                extra_compile_args=COMPILE_ARGS,
            )
        )
    return exts


# source folder -> installed package; sub-packages (folders with __init__.py) follow
ROOTS = {"dlrun": "dlrun", "dlrun.dsl": "dsl", "dlrun.kernels": "kernels", "dlrun.runtime": "runtime"}


def package_layout():
    """Every package under the four roots with its folder, e.g. dlrun.runtime.layers -> runtime/layers."""
    packages, package_dir = [], {}
    for package, folder in ROOTS.items():
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "_")))
            if "__init__.py" not in filenames:
                continue
            rel = os.path.relpath(dirpath, folder)
            name = package if rel == "." else package + "." + rel.replace(os.sep, ".")
            packages.append(name)
            package_dir[name] = dirpath
    return packages, package_dir


PACKAGES, PACKAGE_DIR = package_layout()

setup(
    packages=PACKAGES,
    package_dir=PACKAGE_DIR,
    package_data={
        "dlrun.dsl": ["*.lark"],
        "dlrun.kernels": ["*.pxd", "*.pyx"],
    },
    ext_modules=cythonize(
        kernel_extensions(),
        compiler_directives=DIRECTIVES,
        include_path=["kernels"],
        force=DEBUG,
        nthreads=JOBS if JOBS > 1 else 0,
    ),
    cmdclass={"build_ext": parallel_build_ext},
    zip_safe=False,
)
