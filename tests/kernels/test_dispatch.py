"""The float32/float64 choice of every kernel wrapper goes through one helper.

A nogil core is written once on the fused type ``floating``; its wrapper calls
``float_dispatch(is_float32(ref), core[float], core[double], args...)`` (kernels/_common.pxd)
with the arguments written once. This test reads the kernel sources and fails on a hand-written
dispatch: a comparison of a dtype with float32 outside ``is_float32``, or an array's data cast
to ``float*`` (the float32 arm of a hand-written pair of calls).
"""
import pathlib
import re

KERNELS = pathlib.Path(__file__).resolve().parents[2] / "kernels"

HAND_DISPATCH = [
    (re.compile(r"==\s*cnp\.NPY_FLOAT(32)?\b"), "a dtype compared with float32"),
    (re.compile(r"==\s*np\.float32\b"), "a dtype compared with float32"),
    (re.compile(r"<\s*(const\s+)?float\s*\*\s*>\s*(cnp\.PyArray_DATA|data)\("),
     "an array's data cast to float*"),
]


def _code_lines(path):
    for number, line in enumerate(path.read_text().splitlines(), 1):
        code = line.split("#", 1)[0]
        if code.strip():
            yield number, code


def test_kernel_sources_exist():
    assert len(list(KERNELS.glob("*.pyx"))) >= 10


def test_no_hand_written_float_dispatch():
    found = []
    for path in sorted(KERNELS.glob("*.pyx")):
        for number, code in _code_lines(path):
            for pattern, what in HAND_DISPATCH:
                if pattern.search(code):
                    found.append(f"kernels/{path.name}:{number}: {what}: {code.strip()}")
    assert not found, ("pick the float32/float64 specialization with float_dispatch "
                       "(kernels/_common.pxd):\n" + "\n".join(found))


def test_every_wrapper_module_uses_the_helper():
    for path in sorted(KERNELS.glob("*.pyx")):
        assert "float_dispatch" in path.read_text(), f"kernels/{path.name}"
