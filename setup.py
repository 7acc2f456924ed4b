"""Build script: maps the source folders onto the ``dlrun`` package and compiles the kernels.

Layout (source folder -> installed package):
    dlrun/    -> dlrun            (public API, errors, version, ``python -m dlrun``)
    dsl/      -> dlrun.dsl        (grammar, IR, checker)
    kernels/  -> dlrun.kernels    (Cython kernels: one extension per ``.pyx``)
    runtime/  -> dlrun.runtime    (layers, training, data, checkpoints, CLI)

``DLRUN_CYTHON_DEBUG=1`` rebuilds the kernels with bounds checking, wrap-around and
Python division semantics turned back on, and without ``-O3``, for debugging.
"""
import glob
import os

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

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
COMPILE_ARGS = ["-O0", "-g"] if DEBUG else ["-O3", "-fno-math-errno"]


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
    ),
    zip_safe=False,
)
