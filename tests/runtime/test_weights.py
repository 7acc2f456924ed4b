"""Weights files: bit-exact round trip, architecture mismatch, damaged and hostile files."""
import io
import os
import pickle
import zipfile

import numpy as np
import pytest

import irfactory as F

from dlrun.dsl import ir
from dlrun.errors import WeightsError
from dlrun.runtime.api import Model

NAMES = ["cat", "dog", "emu"]


def _layers(hidden=16, act="relu"):
    return [F.input_(4), F.dense(hidden, act, name="hidden"), F.batchnorm(), F.dropout(0.2), F.dense(3, "softmax")]


def _data():
    return ir.Data(preprocess=(ir.Preprocess("standardize", {}),))


def _trained(tmp_path, dtype="float32", **kw):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((60, 4)) * 5 + 3
    y = np.array(NAMES)[rng.integers(0, 3, 60)]
    model = Model(F.model(kw.pop("layers", _layers()), data=_data(), dtype=dtype, epochs=3, **kw))
    model.fit(x, y)
    path = tmp_path / "w.npz"
    model.save(path)
    return model, path, x


def test_round_trip_is_bit_exact(tmp_path):
    model, path, x = _trained(tmp_path)
    fresh = Model(F.model(_layers(), data=_data(), seed=99))
    assert not np.array_equal(fresh.network.store.flat, model.network.store.flat)
    fresh.load_weights(path)
    np.testing.assert_array_equal(fresh.network.store.flat, model.network.store.flat)
    for (_, _, a), (_, _, b) in zip(fresh.network.named_state(), model.network.named_state()):
        np.testing.assert_array_equal(a, b)
    assert fresh.class_names == NAMES
    np.testing.assert_array_equal(fresh.predict(x), model.predict(x))
    assert list(fresh.predict_classes(x[:5])) == list(model.predict_classes(x[:5]))
    assert set(fresh.predict_classes(x)) <= set(NAMES)


def test_file_contents_and_no_pickle(tmp_path):
    model, path, _ = _trained(tmp_path)
    with np.load(path, allow_pickle=False) as z:
        files = set(z.files)
        assert int(z["meta.format_version"]) == 1
        assert str(z["meta.model_name"]) == "test"
        assert z["class_names"].dtype.kind == "U"
        assert len(str(z["meta.arch_hash"])) == 64
        for k in z.files:
            assert z[k].dtype.kind != "O"
    assert {"param.1.dense.w", "param.1.dense.b", "param.2.batchnorm.gamma", "param.2.batchnorm.beta",
            "state.2.batchnorm.running_mean", "state.2.batchnorm.running_var", "param.4.dense.w",
            "preprocess.step0.standardize.mean", "preprocess.step0.standardize.std"} <= files
    # atomic write leaves no temporary file behind
    assert sorted(os.listdir(tmp_path)) == ["w.npz"]


def test_overwrite_replaces_the_file(tmp_path):
    model, path, _ = _trained(tmp_path)
    model.network.store.flat[:] = 0.5
    model.save(path)
    with np.load(path) as z:
        assert np.all(z["param.1.dense.w"] == 0.5)
    assert sorted(os.listdir(tmp_path)) == ["w.npz"]


def test_wrong_architecture_names_the_first_differing_layer(tmp_path):
    _, path, _ = _trained(tmp_path)
    other = Model(F.model(_layers(hidden=32), data=_data()))
    with pytest.raises(WeightsError) as e:
        other.load_weights(path)
    msg = str(e.value)
    assert "layer 1 (dense 'hidden')" in msg and "(32,)" in msg and "(16,)" in msg, msg
    other = Model(F.model(_layers(act="tanh"), data=_data()))
    with pytest.raises(WeightsError, match=r"layer 1 \(dense 'hidden'\).*tanh.*relu"):
        other.load_weights(path)
    shorter = Model(F.model(_layers()[:2] + [F.dense(3, "softmax")], data=_data()))
    with pytest.raises(WeightsError, match="layer 2"):
        shorter.load_weights(path)


def test_training_only_settings_do_not_change_the_architecture(tmp_path):
    model, path, x = _trained(tmp_path)
    layers = _layers()
    layers[3] = F.dropout(0.5)
    other = Model(F.model(layers, data=_data(), l2=0.1))
    other.load_weights(path)
    np.testing.assert_array_equal(other.predict(x), model.predict(x))


def test_float32_weights_load_into_a_float64_model(tmp_path):
    model, path, x = _trained(tmp_path)
    wide = Model(F.model(_layers(), data=_data(), dtype="float64"))
    wide.load_weights(path)
    np.testing.assert_allclose(wide.predict(x), model.predict(x), rtol=1e-4, atol=1e-6)


def test_damaged_files_are_refused(tmp_path):
    _, path, _ = _trained(tmp_path)
    fresh = lambda: Model(F.model(_layers(), data=_data()))
    data = path.read_bytes()
    cases = {
        "missing.npz": None,
        "empty.npz": b"",
        "truncated.npz": data[: len(data) // 2],
        "garbage.npz": b"this is not a weights file",
        "pickle.npz": pickle.dumps({"w": 1}),
    }
    for name, content in cases.items():
        p = tmp_path / name
        if content is not None:
            p.write_bytes(content)
        with pytest.raises(WeightsError, match=name.replace(".", r"\.")):
            fresh().load_weights(p)
    with pytest.raises(WeightsError, match="pickle"):
        fresh().load_weights(tmp_path / "pickle.npz")
    with pytest.raises(WeightsError, match="is a directory"):
        fresh().load_weights(tmp_path)
    # a flipped byte inside a stored array: the zip CRC catches it
    bad = bytearray(data)
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        info = z.getinfo("param.1.dense.w.npy")
    bad[info.header_offset + 30 + len(info.filename) + 200] ^= 0xFF
    (tmp_path / "flipped.npz").write_bytes(bytes(bad))
    with pytest.raises(WeightsError, match="damaged"):
        fresh().load_weights(tmp_path / "flipped.npz")


def _rewrite(path, out, **changes):
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays.update(changes)
    for k, v in list(arrays.items()):
        if v is None:
            del arrays[k]
    np.savez(out, **arrays)
    return out


def test_hostile_contents_are_refused(tmp_path):
    _, path, _ = _trained(tmp_path)
    fresh = lambda: Model(F.model(_layers(), data=_data()))
    obj = np.empty(2, dtype=object)
    obj[:] = [{"a": 1}, None]
    for name, change, match in [
        ("newer", {"meta.format_version": np.array(2)}, "format 2.*upgrade dlrun"),
        ("object", {"param.1.dense.w": obj}, "pickled"),
        ("nometa", {"meta.format_version": None}, "not a dlrun weights file"),
        ("shape", {"param.4.dense.b": np.zeros(4, np.float32)}, r"layer 4 \(dense\).*'b' has shape \(4,\) in the file"),
        ("nan", {"param.4.dense.b": np.full(3, np.nan, np.float32)}, "NaN"),
        ("missing", {"state.2.batchnorm.running_var": None}, "running_var"),
        ("extra", {"param.9.dense.w": np.zeros(2, np.float32)}, "belong to no layer"),
        ("badarch", {"meta.architecture": np.array("{not json")}, "damaged metadata"),
    ]:
        p = _rewrite(path, tmp_path / f"{name}.npz", **change)
        model = fresh()
        before = model.network.store.flat.copy()
        with pytest.raises(WeightsError, match=match):
            model.load_weights(p)
        np.testing.assert_array_equal(model.network.store.flat, before)  # untouched on failure


def test_unwritable_destination(tmp_path):
    model, _, _ = _trained(tmp_path)
    with pytest.raises(WeightsError, match="does not exist"):
        model.save(tmp_path / "no" / "such" / "w.npz")
    with pytest.raises(WeightsError, match="is a directory"):
        from dlrun.runtime.weights import check_writable

        check_writable(tmp_path)
