"""runtime/data/formats.py: the registry of data formats, keyed by dsl/dataformats.py's names.

One suffix rule (in ``dsl/``, read by the checker and the runtime), one reader per format, and
nothing outside a format's own module deciding anything by the format.
"""
import doctest
import re
from pathlib import Path

import pytest

from dlrun.dsl import dataformats, parse, tables
from dlrun.errors import DataError, DslError
from dlrun.runtime.data import READERS, formats, reader_for
from dlrun.runtime.data.reader import Reader

ROOT = Path(__file__).resolve().parents[2]
# the modules that may know a format by name: the rule, and each format's own reader
FORMAT_MODULES = {"dsl/dataformats.py", *(f"runtime/data/{name}.py" for name in dataformats.FORMATS)}

NAMES = {
    "d.npz": "npz", "D.NPZ": "npz", "x.npy": "npy", "data/iris.csv": "csv", "a.b.csv": "csv",
    "train-images-idx3-ubyte": "idx", "t10k-labels.idx1-ubyte.gz": "idx", "x.idx": "idx", "x.IDX3": "idx",
    "x.txt": "txt", "X.TXT": "txt", "x.txt.gz": None, "x.npz.gz": None, "csv": None, "x.json": None,
}


def test_every_format_the_dsl_knows_has_a_reader_and_back():
    assert set(READERS) == set(dataformats.FORMATS)
    for name, reader in READERS.items():
        assert isinstance(reader, Reader) and reader.name == name
        for method in ("read", "read_labels", "read_inputs"):  # the ones without a default
            assert getattr(type(reader), method) is not getattr(Reader, method), (name, method)
        assert reader.noun, name


def _checker_says(train: str) -> str:
    """The checker's errors for a model whose training file is named ``train`` ('' if none)."""
    text = f'dlrun 1\nmodel m {{\n  input 4\n  dense 2\n  loss mse\n  data {{\n    train "{train}"\n  }}\n}}\n'
    try:
        parse(text)
    except DslError as err:
        return str(err)
    return ""


def test_checker_and_runtime_read_one_suffix_rule():
    assert tables.DATA_FORMATS == dataformats.DATA_FORMATS == tuple(dataformats.FORMATS.values())
    expected = ", ".join(dataformats.DATA_FORMATS)
    for name, fmt in NAMES.items():
        assert dataformats.data_format(name) == fmt, name
        said = _checker_says(name)  # the checker refuses exactly the files that have no reader
        if fmt is None:
            assert f"unsupported data file '{name}': expected {expected}" in said, said
            with pytest.raises(DataError, match="unknown data format") as err:
                reader_for(Path(name))
            assert expected in str(err.value)
        else:
            assert "unsupported data file" not in said, said
            assert reader_for(Path("some/dir") / name) is READERS[fmt], name


def test_dataformats_examples_run():
    result = doctest.testmod(dataformats)
    assert result.attempted >= 1 and result.failed == 0


def _sources():
    for folder in ("dsl", "runtime"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            yield path.relative_to(ROOT).as_posix(), path.read_text()


def test_nothing_outside_a_format_module_branches_on_the_format():
    names = "|".join(dataformats.FORMATS)
    # fmt == "csv", fmt in ("npy", "idx"), `if "npz" ...`: a decision by format name
    branch = re.compile(rf"""(==|!=|\bin)\s*\(?\s*["'](?:{names})["']|["'](?:{names})["']\s*(==|!=)""")
    found = []
    for rel, text in _sources():
        # the checker's data-block statements (x=/y= only for .npz, no labels= for a CSV)
        # still decide by format name: this test holds runtime/ to its readers
        if rel in FORMAT_MODULES or rel.startswith("dsl/"):
            continue
        found += [f"{rel}:{n}: {line.strip()}" for n, line in enumerate(text.splitlines(), 1)
                  if branch.search(line)]
    assert not found, "\n".join(found)
    assert formats.READERS is READERS


def test_the_suffix_rule_is_written_once():
    # the rule, the IDX name pattern and the listing for messages: in dsl/dataformats.py only
    once = {"def data_format(": [], "u?byte": [], "DATA_FORMATS =": [], "DATA_FORMATS: ": []}
    for rel, text in _sources():
        for key, where in once.items():
            if key in text:
                where.append(rel)
    assert once == {"def data_format(": ["dsl/dataformats.py"], "u?byte": ["dsl/dataformats.py"],
                    "DATA_FORMATS =": [], "DATA_FORMATS: ": ["dsl/dataformats.py"]}, once
    assert tables.DATA_FORMATS is dataformats.DATA_FORMATS
