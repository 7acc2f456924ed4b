"""Weights files: ``.npz`` archives without pickle, written atomically.

Contents (array names in the archive):

    meta.format_version   int64, FORMAT_VERSION (files from a newer format are refused)
    meta.dlrun_version    str, the dlrun that wrote the file
    meta.model_name       str
    meta.dtype            str, 'float32' or 'float64'
    meta.architecture     str, JSON of ``ir.architecture_dict(model)``
    meta.arch_hash        str, sha256 of that JSON (sorted keys)
    param.{i}.{kind}.{name}   every trainable tensor (layer index i, e.g. param.1.dense.w)
    state.{i}.{kind}.{name}   batch-norm running statistics
    preprocess.{key}          fitted preprocessing statistics (``Preprocessor.state()``;
                              ``preprocess.target.mean`` / ``.std`` of ``target standardize``)
    loss.balanced_class_weight  float64, one per class: the weights ``class_weight=balanced``
                              computed from the training split (``LossHead.fit_class_weight``)
    class_names               unicode array, when the labels had names
    data.preprocess           str, JSON of the preprocessing steps (``Preprocessor.spec()``)
    data.feature_names        unicode array: the training CSV's feature columns, in order
    data.split                str, JSON {"files": {role: [file, sha256]}, "fractions": {role: f},
                              "seed": int or null}: the data trained on (``data.DataRecord``)
    data.split_rows           uint8 per training-file row: 0 training, 1 validation, 2 test
    data.tokenizer            str, JSON of a text model's tokenizer settings (``tokens.Tokenizer``)
    data.vocab                unicode array: its vocabulary, the tokens of ids 2, 3, ...
    data.vocab_size           int64: the ids in use, the reserved 0 (padding) and 1 (OOV) included

The ``data.*`` arrays are optional: files written before them load as before (CSV features
matched by position, the split drawn again from the seed, preprocessing checked only by the
statistics' names).

Loading checks, in order: the file exists and is an intact zip of plain arrays (no pickled
objects: ``allow_pickle=False``, and an object array is refused), the format version, the
architecture (the first layer whose kind, output shape or inference-relevant settings
differ is named), then every tensor's presence, shape and finiteness. Any failure is a
``WeightsError``; the network is only modified once everything has been checked.

Writing goes to a temporary file in the destination folder, is flushed and fsync'ed, then
renamed over the destination (and the folder fsync'ed), so a crash leaves either the old
file or the new one, never a torn file.
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
import zipfile

import numpy as np

from dlrun._version import __version__
from dlrun.dsl import ir
from dlrun.dsl.layers import SPECS
from dlrun.runtime.data import PREPROCESS_KINDS, SPLIT_CODES, DataRecord
from dlrun.runtime.data.tokens import Tokenizer
from dlrun.runtime.fileio import replace_atomically
from dlrun.errors import UsageError, WeightsError
from dlrun.fileopen import NotReadable, open_regular
from dlrun.runtime import npzio

FORMAT_VERSION = 1
#: the class weights of ``class_weight=balanced``, as computed when training started
BALANCED_KEY = "loss.balanced_class_weight"



# -- atomic archive I/O ------------------------------------------------------------------
def _destination(path):
    path = os.path.abspath(os.fspath(path))
    folder = os.path.dirname(path)
    if os.path.isdir(path):
        raise WeightsError(f"{path}: is a directory; expected a file name")
    if not os.path.isdir(folder):
        raise WeightsError(f"{path}: the folder {folder} does not exist")
    return path, folder


def check_writable(path) -> str:
    """Raise ``WeightsError`` unless a file can be created at ``path`` (checked by creating
    and removing a temporary file next to it). Returns the absolute path."""
    path, folder = _destination(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=".dlrun-write-test-", dir=folder)
        os.close(fd)
        os.unlink(tmp)
    except OSError as err:
        raise WeightsError(f"{path}: cannot write in {folder} ({err.strerror or err})") from None
    return path


def is_weights_file(path) -> bool:
    """True when ``path`` is a regular file holding a zip with ``meta.format_version``: a
    dlrun weights file or checkpoint (only the zip's directory is read)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False
        with zipfile.ZipFile(path) as z:
            return "meta.format_version.npy" in z.namelist()
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zipfile.LargeZipFile):
        return False


def check_replaceable(path, flag: str, force: bool = False, force_hint: str = "pass --force") -> None:
    """Raise ``UsageError`` when ``path`` exists and is not a dlrun weights file, unless
    ``force``: an output must not silently replace a file of another kind. ``force_hint``
    says how the caller's user asks for it anyway."""
    if force or not os.path.lexists(path) or is_weights_file(path):
        return
    if os.path.islink(path) and not os.path.exists(path):
        kind = "a dangling symbolic link"
    elif not os.path.isfile(path):
        kind = "not a regular file"
    else:
        kind = "not a dlrun weights file"
    raise UsageError(f"{flag} {path}: exists and is {kind}; refusing to replace it "
                       f"({force_hint} to replace it anyway)")


def write_npz(path, arrays: dict) -> str:
    """Write ``arrays`` to ``path`` as an uncompressed ``.npz``, atomically."""
    return write_file(path, lambda f: np.savez(f, **arrays))


def write_file(path, write) -> str:
    """Atomically create ``path``: ``write(f)`` fills a temporary file in the same folder,
    which is flushed, fsync'ed and renamed over ``path``; the folder is then fsync'ed."""
    path, folder = _destination(path)
    try:
        replace_atomically(path, write)
    except OSError as err:
        raise WeightsError(f"{path}: cannot write in {folder} ({err.strerror or err})") from None
    return path


def read_npz(path, what="weights file") -> dict:
    """Every array of an ``.npz``, refusing pickled data; damage becomes ``WeightsError``."""
    path = os.fspath(path)
    try:
        f = open_regular(path)
    except NotReadable as err:
        raise WeightsError(f"{path}: {err.reason(what)}") from None
    with f:
        return _read_npz(f, path, what)


def _read_npz(f, path, what) -> dict:
    try:
        magic = f.read(4)
        f.seek(0)
    except OSError as err:
        raise WeightsError(f"{path}: cannot read ({err.strerror or err})") from None
    if magic[:1] == b"\x80":
        raise WeightsError(f"{path}: is a Python pickle; refused (dlrun never unpickles)")
    if magic not in (b"PK\x03\x04", b"PK\x05\x06"):
        what_it_is = "empty" if not magic else "not an .npz archive"
        raise WeightsError(f"{path}: not a {what} ({what_it_is})")
    return npzio.read_npz(f, path, WeightsError, what)


# -- architecture ------------------------------------------------------------------------
def architecture(model) -> dict:
    return ir.architecture_dict(model)


def architecture_hash(model) -> str:
    text = json.dumps(architecture(model), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _inference_view(layer: dict) -> dict:
    kind = layer.get("kind")
    training_only = SPECS[kind].training_only if kind in SPECS else frozenset()
    params = {k: v for k, v in layer.get("params", {}).items() if k not in training_only}
    # the settings that matter only in training are the spec's (dsl/layers/): weights trained
    # with other values fit; the wiring of a graph (inputs) matters as much as the shapes
    return {"kind": layer.get("kind"), "params": params, "shape": list(layer.get("shape", [])),
            "inputs": list(layer.get("inputs", []))}


def _describe(layer: dict) -> str:
    params = ", ".join(f"{k}={_short(v)}" for k, v in layer["params"].items())
    return f"{layer['kind']}({params}) -> shape {tuple(layer['shape'])}"


def _short(v):
    if isinstance(v, dict) and v.get("node") == "Activation":
        args = {k: x for k, x in v.get("params", {}).items()}
        return v["name"] + (f"({', '.join(f'{k}={x}' for k, x in args.items())})" if args else "")
    return json.dumps(v) if isinstance(v, (dict, list)) else str(v)


def compare_architecture(saved: dict, net, path) -> None:
    """Raise ``WeightsError`` naming the first layer that differs."""
    cur = architecture(net.model)["layers"]
    old = saved.get("layers")
    if not isinstance(old, list):
        raise WeightsError(f"{path}: damaged metadata (no layer list in meta.architecture)")
    for i, (a, b) in enumerate(zip(old, cur)):
        if not isinstance(a, dict):
            raise WeightsError(f"{path}: damaged metadata (layer {i} of meta.architecture)")
        va, vb = _inference_view(a), _inference_view(b)
        if va != vb:
            layer = net.layers[i]
            raise WeightsError(
                f"{path}: the weights are for a different architecture: {layer.describe()} is "
                f"{_describe(vb)} in the model but {_describe(va)} in the file"
            )
    if len(old) != len(cur):
        raise WeightsError(
            f"{path}: the weights are for a different architecture: the file has {len(old)} layers, "
            f"the model has {len(cur)} (first extra layer: {_describe(_inference_view((old + cur)[min(len(old), len(cur))]))})"
        )


# -- weights ------------------------------------------------------------------------------
def _text(value) -> np.ndarray:
    return np.array(str(value))


def weights_arrays(net, preprocessor=None, class_names=None, data: DataRecord | None = None) -> dict:
    """The archive contents for ``net`` (see the module docstring)."""
    arch = architecture(net.model)
    arrays = {
        "meta.format_version": np.array(FORMAT_VERSION, np.int64),
        "meta.dlrun_version": _text(__version__),
        "meta.model_name": _text(net.model.name),
        "meta.dtype": _text(net.dtype.name),
        "meta.architecture": _text(json.dumps(arch, sort_keys=True)),
        "meta.arch_hash": _text(architecture_hash(net.model)),
    }
    for layer, name, a in net.named_params():
        arrays[f"param.{layer.key}.{name}"] = a
    for layer, name, a in net.named_state():
        arrays[f"state.{layer.key}.{name}"] = a
    if preprocessor is not None and preprocessor.fitted:
        for k, v in preprocessor.state().items():
            arrays[f"preprocess.{k}"] = v
    if class_names is not None:
        arrays["class_names"] = np.array([str(c) for c in class_names], dtype=np.str_)
    if net.loss.balanced and net.loss.class_weight is not None:
        arrays[BALANCED_KEY] = np.array(net.loss.class_weight, dtype=np.float64)
    if preprocessor is not None:
        arrays["data.preprocess"] = _text(json.dumps(preprocessor.spec()))
    if data is not None:
        arrays.update(data_arrays(data))
    return arrays


def data_arrays(data: DataRecord) -> dict:
    """The ``data.*`` arrays of a ``DataRecord`` (preprocessing aside)."""
    arrays = {}
    if data.feature_names is not None:
        arrays["data.feature_names"] = np.array([str(c) for c in data.feature_names], dtype=np.str_)
    if data.files:
        arrays["data.split"] = _text(json.dumps({
            "files": {role: list(v) for role, v in data.files.items()},
            "fractions": dict(data.fractions),
            "seed": data.split_seed,
        }, sort_keys=True))
    if data.rows is not None:
        arrays["data.split_rows"] = np.asarray(data.rows, dtype=np.uint8)
    if data.tokenizer is not None:
        arrays.update(data.tokenizer.arrays())
    return arrays


def read_data_record(arrays, path) -> DataRecord | None:
    """The ``DataRecord`` of a weights file's ``data.*`` arrays (None when it has none)."""
    names = arrays.get("data.feature_names")
    split = arrays.get("data.split")
    rows = arrays.get("data.split_rows")
    tokenizer = Tokenizer.from_arrays(arrays, path)
    if names is None and split is None and tokenizer is None:
        return None
    record = DataRecord(origin=f"the weights {path}", tokenizer=tokenizer)
    if names is not None:
        if names.dtype.kind != "U" or names.ndim != 1 or len(set(names.tolist())) != names.shape[0]:
            raise WeightsError(f"{path}: damaged data.feature_names (expected distinct strings)")
        record.feature_names = [str(s) for s in names]
    if split is not None:
        try:
            if split.dtype.kind != "U" or split.ndim != 0:
                raise ValueError
            d = json.loads(str(split))
            files = {str(r): (str(v[0]), str(v[1])) for r, v in d["files"].items()}
            fractions = {str(r): float(f) for r, f in d["fractions"].items()}
            seed = None if d["seed"] is None else int(d["seed"])
        except (ValueError, TypeError, KeyError, IndexError, AttributeError):
            raise WeightsError(f"{path}: damaged data.split") from None
        if "train" not in files or not set(fractions) <= set(SPLIT_CODES):
            raise WeightsError(f"{path}: damaged data.split")
        record.files, record.fractions, record.split_seed = files, fractions, seed
        if fractions:
            if rows is None or rows.dtype != np.uint8 or rows.ndim != 1:
                raise WeightsError(f"{path}: damaged data.split_rows (expected one uint8 per training row)")
            codes = {0} | {SPLIT_CODES[r] for r in fractions}
            if not np.isin(rows, list(codes)).all():
                raise WeightsError(f"{path}: damaged data.split_rows (codes other than {sorted(codes)})")
            record.rows = rows
    return record


def _valid_step(step) -> bool:
    """A step as ``Preprocessor.spec()`` writes it."""
    if not isinstance(step, dict) or step.get("kind") not in PREPROCESS_KINDS:
        return False
    if step["kind"] == "standardize" and "per" in step:
        return set(step) == {"kind", "per"} and step["per"] == "band"
    if step["kind"] != "scale":
        return set(step) == {"kind"}
    return set(step) == {"kind", "factor"} and type(step["factor"]) in (int, float)


def read_preprocess_spec(arrays, path) -> list[dict] | None:
    """The preprocessing steps the weights were trained with (None in older files)."""
    a = arrays.get("data.preprocess")
    if a is None:
        return None
    try:
        if a.dtype.kind != "U" or a.ndim != 0:
            raise ValueError
        spec = json.loads(str(a))
        if not isinstance(spec, list) or not all(_valid_step(s) for s in spec):
            raise ValueError
    except ValueError:
        raise WeightsError(f"{path}: damaged data.preprocess") from None
    return spec


def save_weights(path, net, preprocessor=None, class_names=None, data: DataRecord | None = None) -> str:
    """Write the weights of ``net`` (with preprocessing, class names and the data record) atomically."""
    return write_npz(path, weights_arrays(net, preprocessor, class_names, data))


class LoadedWeights:
    """A checked weights file: ``preprocess`` (dict for ``Preprocessor.from_state``),
    ``class_names`` (list or None), ``meta`` (dict of str), ``preprocess_spec`` (the
    steps, None in older files), ``data`` (``DataRecord`` or None), ``balanced_class_weight``
    (float64 array of the loss's ``class_weight=balanced``, or None)."""

    def __init__(self, arrays, preprocess, class_names, meta, preprocess_spec=None, data=None,
                 balanced_class_weight=None):
        self.balanced_class_weight = balanced_class_weight
        self.arrays = arrays
        self.preprocess = preprocess
        self.class_names = class_names
        self.meta = meta
        self.preprocess_spec = preprocess_spec
        self.data = data


def read_weights(path, net) -> LoadedWeights:
    """Read and check a weights file against ``net`` without modifying anything."""
    path = os.fspath(path)
    return check_weights(read_npz(path), path, net)


def read_meta(arrays, path) -> dict:
    """The ``meta.*`` strings of a weights file's (or checkpoint's) arrays read from ``path``,
    its format checked (WeightsError: not dlrun's, too new, damaged)."""
    if "meta.format_version" not in arrays:
        raise WeightsError(f"{path}: not a dlrun weights file (no meta.format_version)")
    try:
        version = int(arrays["meta.format_version"])
    except (TypeError, ValueError):
        raise WeightsError(f"{path}: damaged metadata (meta.format_version)") from None
    if version > FORMAT_VERSION:
        written = arrays.get("meta.dlrun_version")
        by = f" by dlrun {written}" if written is not None else ""
        raise WeightsError(
            f"{path}: written{by} in weights format {version}; this dlrun ({__version__}) reads "
            f"format {FORMAT_VERSION} and older: upgrade dlrun"
        )
    if version < 1:
        raise WeightsError(f"{path}: damaged metadata (format version {version})")
    meta = {}
    for key in ("dlrun_version", "model_name", "dtype", "architecture", "arch_hash"):
        a = arrays.get(f"meta.{key}")
        if a is None or a.dtype.kind != "U" or a.ndim != 0:
            raise WeightsError(f"{path}: damaged metadata (meta.{key} missing or not a string)")
        meta[key] = str(a)
    return meta


def check_weights(arrays, path, net) -> LoadedWeights:
    """Check the arrays of a weights file (or checkpoint) read from ``path`` against ``net``."""
    meta = read_meta(arrays, path)
    try:
        saved_arch = json.loads(meta["architecture"])
    except ValueError:
        raise WeightsError(f"{path}: damaged metadata (meta.architecture is not JSON)") from None
    if not isinstance(saved_arch, dict):
        raise WeightsError(f"{path}: damaged metadata (meta.architecture)")
    compare_architecture(saved_arch, net, path)

    expected = [(f"param.{l.key}.{n}", l, n, a) for l, n, a in net.named_params()]
    expected += [(f"state.{l.key}.{n}", l, n, a) for l, n, a in net.named_state()]
    for key, layer, name, a in expected:
        if key not in arrays:
            raise WeightsError(f"{path}: no array '{key}' for {layer.describe()} ('{name}', shape {a.shape})")
        got = arrays[key]
        if got.shape != a.shape:
            raise WeightsError(
                f"{path}: {layer.describe()}: '{name}' has shape {got.shape} in the file, "
                f"the model expects {a.shape}"
            )
        if got.dtype.kind != "f":
            raise WeightsError(f"{path}: {layer.describe()}: '{name}' has dtype {got.dtype}, expected floats")
        if not np.isfinite(got).all():
            raise WeightsError(f"{path}: {layer.describe()}: '{name}' holds NaN or infinite values")
    known = {k for k, *_ in expected}
    unknown = [k for k in arrays if k.startswith(("param.", "state.")) and k not in known]
    if unknown:
        raise WeightsError(f"{path}: arrays {', '.join(sorted(unknown))} belong to no layer of the model")
    preprocess = {k[len("preprocess."):]: v for k, v in arrays.items() if k.startswith("preprocess.")}
    names = arrays.get("class_names")
    if names is not None:
        if names.dtype.kind != "U" or names.ndim != 1:
            raise WeightsError(f"{path}: damaged class_names (expected a 1-d array of strings)")
        names = [str(s) for s in names]
    return LoadedWeights(arrays, preprocess, names, meta, read_preprocess_spec(arrays, path),
                         read_data_record(arrays, path), _balanced_class_weight(arrays, path, net))


def _balanced_class_weight(arrays, path, net):
    """The saved weights of ``class_weight=balanced`` (checked), or None."""
    w = arrays.get(BALANCED_KEY)
    if w is None:
        return None
    classes = 2 if net.task == "binary" else net.output_features
    if w.dtype.kind != "f" or w.shape != (classes,) or not np.isfinite(w).all() or (w < 0).any():
        raise WeightsError(f"{path}: damaged {BALANCED_KEY} (expected {classes} finite numbers >= 0, "
                           f"got shape {w.shape}, dtype {w.dtype})")
    return np.array(w, dtype=np.float64)


def apply_weights(loaded: LoadedWeights, net) -> None:
    """Copy checked arrays into ``net`` (casting to the network's dtype)."""
    arrays = loaded.arrays
    for layer, name, a in net.named_params():
        a[...] = arrays[f"param.{layer.key}.{name}"]
    for layer, name, a in net.named_state():
        a[...] = arrays[f"state.{layer.key}.{name}"]
    # balanced class weights are the training split's; a list is the model file's own
    if net.loss.balanced and loaded.balanced_class_weight is not None:
        net.loss.set_class_weight(loaded.balanced_class_weight)
