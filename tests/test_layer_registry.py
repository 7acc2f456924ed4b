"""Adding a layer kind means: its spec (dsl/layers/), its runtime layer (runtime/layers/),
its kernel (kernels/, when it computes), an entry in the layer contract test, a bad file in
tests/dsl/bad/ and its section of docs/language.md. This test walks the spec registry and
fails naming what a kind lacks."""
import importlib
import importlib.util
import re
from pathlib import Path

from dlrun.dsl import tables as T
from dlrun.dsl.layers import SPECS, LayerSpec
from dlrun.runtime.layers import LAYERS

TESTS = Path(__file__).resolve().parent
DOC = TESTS.parent / "docs" / "language.md"


def _contract_kinds():
    import sys

    if str(TESTS / "runtime") not in sys.path:   # its helpers (irfactory) live beside it
        sys.path.insert(0, str(TESTS / "runtime"))
    path = TESTS / "runtime" / "test_layers.py"
    spec = importlib.util.spec_from_file_location("layer_contract", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {case[1].kind for case in module.CASES}


def _layers_section():
    doc = DOC.read_text(encoding="utf-8")
    start = doc.index("\n## Layers\n")
    return doc[start:doc.index("\n## ", start + 1)]


def test_every_layer_kind_is_complete():
    contract = _contract_kinds()
    bad = {p.name for p in (TESTS / "dsl" / "bad").glob("*.net")}
    section = _layers_section()
    missing = []
    for kind, spec in SPECS.items():
        if not isinstance(spec, LayerSpec) or spec.kind != kind:
            missing.append(f"{kind}: its spec is not a LayerSpec registered under its keyword")
        if kind not in LAYERS:
            missing.append(f"{kind}: no runtime layer in runtime/layers/ (@register('{kind}'))")
        for module in spec.kernels:
            try:
                importlib.import_module(f"dlrun.kernels.{module}")
            except ImportError:
                missing.append(f"{kind}: its kernel module kernels/{module}.pyx does not import")
        if kind not in contract:
            missing.append(f"{kind}: no case in the layer contract test (tests/runtime/test_layers.py)")
        if not any(name.startswith(kind + "_") for name in bad):
            missing.append(f"{kind}: no bad file tests/dsl/bad/{kind}_*.net")
        word = "activation" if kind == "activation" else f"`{kind}`"
        if not re.search(rf"^\| {re.escape(word)} \|", section, re.M):
            missing.append(f"{kind}: no row in the Layers table of docs/language.md")
        for p in spec.params:
            if not p.doc:
                missing.append(f"{kind}: parameter '{p.name}' has no doc")
    assert not missing, "\n".join(missing)


def test_runtime_has_no_layer_without_a_spec():
    assert set(LAYERS) == set(SPECS)


def test_specs_are_consistent():
    for kind, spec in SPECS.items():
        names = [p.name for p in spec.params]
        assert len(set(names)) == len(names), kind
        assert 0 <= spec.positional <= len(spec.params), kind
        assert spec.training_only <= set(names), kind
        for p in spec.params:
            if not p.required and p.default is not None and p.type in ("int", "float"):
                assert p.in_range(p.default), (kind, p.name)
        assert "from" not in names, kind   # from= is every layer's, handled by the elaborator
    assert not set(SPECS) & set(T.ACTIVATIONS)
