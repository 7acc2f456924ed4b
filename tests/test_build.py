"""The build (issue 16, item 4): setup.py compiles the kernels in parallel and without debug
information, the switches DLRUN_BUILD_JOBS / DLRUN_CYTHON_DEBUG / DLRUN_KERNELS keep working,
and the instruction-set clones are declared in one place.

setup.py is run with ``setuptools.setup`` and ``cythonize`` replaced by recorders, so nothing
is translated or compiled here; it needs the build tools (skipped where only the installed
package is present)."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# setup.py's arguments, as JSON: setup() and cythonize() recorded, build_ext finalized
RECORD = r"""
import json, runpy, sys
import setuptools, Cython.Build
seen = {}
def cythonize(exts, **kw):
    seen["cythonize"] = {k: v for k, v in kw.items() if k in ("nthreads", "force")}
    seen["extensions"] = [{"name": e.name, "args": e.extra_compile_args} for e in exts]
    return exts
def setup(**kw):
    from setuptools.dist import Distribution
    cmd = kw["cmdclass"]["build_ext"](Distribution({"ext_modules": kw["ext_modules"]}))
    cmd.initialize_options(); cmd.finalize_options()
    seen["parallel"] = cmd.parallel
Cython.Build.cythonize = cythonize
setuptools.setup = setup
runpy.run_path("setup.py", run_name="__main__")
print(json.dumps(seen))
"""


def record(**env):
    pytest.importorskip("Cython")
    pytest.importorskip("setuptools")
    if not (ROOT / "setup.py").exists():
        pytest.skip("no setup.py (tests run outside the source tree)")
    full = {k: v for k, v in os.environ.items() if not k.startswith("DLRUN_")} | env
    r = subprocess.run([sys.executable, "-c", RECORD], cwd=ROOT, env=full, capture_output=True,
                       text=True, timeout=120)
    return r


def test_release_build_is_parallel_and_carries_no_debug_information():
    r = record(DLRUN_BUILD_JOBS="3")
    assert r.returncode == 0, r.stderr
    seen = json.loads(r.stdout)
    assert seen["cythonize"] == {"nthreads": 3, "force": False}
    assert seen["parallel"] == 3
    assert len(seen["extensions"]) == len(list((ROOT / "kernels").glob("*.pyx")))
    for ext in seen["extensions"]:
        assert ext["args"][-1] == "-g0" and "-O3" in ext["args"], ext


def test_one_job_builds_serially():
    seen = json.loads(record(DLRUN_BUILD_JOBS="1").stdout)
    assert seen["cythonize"]["nthreads"] == 0 and not seen["parallel"]


def test_debug_build_keeps_debug_information_and_kernels_selects_modules():
    r = record(DLRUN_CYTHON_DEBUG="1", DLRUN_KERNELS="dense,blas")
    assert r.returncode == 0, r.stderr
    seen = json.loads(r.stdout)
    assert seen["cythonize"]["force"] is True
    assert [e["name"] for e in seen["extensions"]] == ["dlrun.kernels.blas", "dlrun.kernels.dense"]
    assert all(e["args"] == ["-O0", "-g"] for e in seen["extensions"])


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_a_bad_job_count_is_refused(value):
    r = record(DLRUN_BUILD_JOBS=value)
    assert r.returncode != 0
    assert f"DLRUN_BUILD_JOBS={value!r}: expected a whole number >= 1" in r.stderr


def test_instruction_set_clones_are_declared_once():
    # every multi-versioned loop uses _common.pxd's DL_CLONES / DL_CLONES_AVX2
    sources = sorted((ROOT / "kernels").glob("*.p[xy][xd]"))
    declaring = [p.name for p in sources if "target_clones" in p.read_text(encoding="utf-8")]
    assert declaring == ["_common.pxd"]
    common = (ROOT / "kernels" / "_common.pxd").read_text(encoding="utf-8")
    assert re.search(r'#define DL_CLONES_AVX2 __attribute__\(\(target_clones\("arch=x86-64-v3", "default"\)\)\)',
                     common)
