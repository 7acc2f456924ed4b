"""Images: arrays read into an image input honestly (flat rows, one channel, channels first,
channels last, the data block's ``layout``), image folders, augmentation, and ``predict`` on
image files and folders."""
import json
import os
from pathlib import Path

import numpy as np
import pytest

import dlrun
from dlrun.dsl import ir
from dlrun.errors import DataError
from dlrun.runtime import data as D
from dlrun.runtime.data.checks import input_reading, prepare_x


def where(i, j):
    return f"sample {i}, feature {j}"


def data_error(fn, *fragments):
    with pytest.raises(DataError) as info:
        fn()
    msg = str(info.value)
    assert "\n" not in msg, msg
    for frag in fragments:
        assert frag in msg, f"{frag!r} not in {msg!r}"
    return msg


def net_text(input_shape="3x4x5", data="", classes=2, extra=""):
    block = f"  data {{\n{data}  }}\n" if data else ""
    return (f"dlrun 1\nmodel m {{\n{block}  input {input_shape}\n  flatten\n  dense {classes} softmax\n"
            f"  loss cross_entropy\n  optimizer adam lr=0.01\n  train epochs=2 batch=4 seed=3\n{extra}}}\n")


# ---------------------------------------------------------------------------------------------
# 1. arrays read into an image input


def test_flat_rows_are_read_row_major():
    x = np.arange(2 * 60, dtype=np.float32).reshape(2, 60)
    got = prepare_x(x, (3, 4, 5), "f", where)
    assert got.shape == (2, 3, 4, 5)
    assert np.array_equal(got, x.reshape(2, 3, 4, 5))  # what flatten undoes


def test_one_channel_images_and_channels_first_are_kept():
    x = np.arange(2 * 20, dtype=np.uint8).reshape(2, 4, 5)
    got = prepare_x(x, (1, 4, 5), "f", where)
    assert got.shape == (2, 1, 4, 5) and got.dtype == np.uint8 and np.array_equal(got[:, 0], x)
    for shape in ((2, 1, 4, 5), (2, 4, 5, 1)):
        assert np.array_equal(prepare_x(x.reshape(shape), (1, 4, 5), "f", where)[:, 0], x)
    c = np.arange(2 * 60, dtype=np.float64).reshape(2, 3, 4, 5)
    assert prepare_x(c, (3, 4, 5), "f", where) is c


def test_channels_last_is_transposed_to_channels_first():
    x = np.arange(3 * 60, dtype=np.int16).reshape(3, 4, 5, 3)  # N x H x W x C
    got = prepare_x(x, (3, 4, 5), "f", where)
    assert got.shape == (3, 3, 4, 5) and got.dtype == np.float64 and got.flags.c_contiguous
    assert np.array_equal(got, x.transpose(0, 3, 1, 2))
    assert input_reading((4, 5, 3), (3, 4, 5), None, "f") == "channels_last"


def test_channels_last_non_finite_value_is_located_in_the_file():
    x = np.zeros((2, 4, 5, 3), np.float32)
    x[1, 2, 3, 1] = np.nan
    j = (2 * 5 + 3) * 3 + 1  # its place in the file's row
    data_error(lambda: prepare_x(x, (3, 4, 5), "f", where), f"sample 1, feature {j}: non-finite")


def test_both_orders_fit_and_the_layout_decides():
    x = np.arange(2 * 27, dtype=np.float32).reshape(2, 3, 3, 3)
    data_error(lambda: prepare_x(x, (3, 3, 3), "f.npz", where), "f.npz", "both channels first",
               "`layout channels_first` or `layout channels_last`")
    assert np.array_equal(prepare_x(x, (3, 3, 3), "f", where, "channels_first"), x)
    assert np.array_equal(prepare_x(x, (3, 3, 3), "f", where, "channels_last"), x.transpose(0, 3, 1, 2))


def test_a_layout_that_contradicts_the_shape_is_refused():
    x = np.zeros((2, 3, 4, 5), np.float32)
    data_error(lambda: prepare_x(x, (3, 4, 5), "f", where, "channels_last"),
               "samples of shape 3x4x5", "`layout channels_last`", "4x5x3")
    data_error(lambda: prepare_x(x.reshape(2, 4, 5, 3), (3, 4, 5), "f", where, "channels_first"),
               "`layout channels_first`", "3x4x5")


def test_other_shapes_of_the_same_size_are_refused_naming_both():
    for shape in ((2, 4, 3, 5), (2, 5, 4, 3), (2, 12, 5), (2, 3, 20)):
        data_error(lambda: prepare_x(np.zeros(shape, np.float32), (3, 4, 5), "f", where),
                   "samples of shape " + "x".join(map(str, shape[1:])), "input 3x4x5"[6:],
                   "expected 3x4x5 (channels first), 4x5x3 (channels last) or flat rows of 60 values")
    data_error(lambda: prepare_x(np.zeros((2, 5, 4), np.uint8), (1, 4, 5), "f", where), "samples of shape 5x4",
               "4x5 (one channel)")


def test_rank_two_and_rank_one_inputs():
    data_error(lambda: prepare_x(np.zeros((2, 2, 8)), (4, 4), "f", where), "samples of shape 2x8",
               "expected samples of shape 4x4 or flat rows of 16 values")
    assert prepare_x(np.zeros((2, 16)), (4, 4), "f", where).shape == (2, 4, 4)
    # a feature vector has no layout to get wrong: any sample shape is read row-major (MNIST's
    # 28x28 IDX images into `input 784`)
    x = np.arange(32.0).reshape(2, 4, 4)
    assert np.array_equal(prepare_x(x, (16,), "f", where), x.reshape(2, 16))


def test_data_block_layout_reaches_the_files_and_check_data(tmp_path):
    x = np.arange(4 * 27, dtype=np.uint8).reshape(4, 3, 3, 3)
    np.savez(tmp_path / "d.npz", x=x, y=np.array([0, 1, 0, 1]))
    for layout, want in (("channels_first", x), ("channels_last", x.transpose(0, 3, 1, 2))):
        data = ir.Data(train=ir.Source("d.npz"), layout=layout)
        s = D.load_splits(data, base_dir=tmp_path, input_shape=(3, 3, 3), n_outputs=2, task="classification",
                          seed=0)
        assert np.array_equal(s.train.x, want)
    data_error(lambda: D.load_splits(ir.Data(train=ir.Source("d.npz")), base_dir=tmp_path, input_shape=(3, 3, 3),
                                     n_outputs=2, task="classification", seed=0), "d.npz", "`layout")
    from dlrun.runtime.data.check import check_data

    for layout, ok in ((None, False), ("channels_last", True)):
        model = dlrun.loads(net_text("3x3x3", '    train "d.npz"\n' + (f"    layout {layout}\n" if layout else "")),
                            base_dir=tmp_path).ir
        problems, _ = check_data(model, tmp_path)
        assert (not problems) == ok, problems
    model = dlrun.loads(net_text("3x9x1", '    train "d.npz"\n'), base_dir=tmp_path).ir
    problems, _ = check_data(model, tmp_path)
    assert "samples of shape 3x3x3 do not match the model's input 3x9x1" in problems[0][1]


def test_api_arrays_follow_the_same_rules(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((8, 4, 5, 3)).astype(np.float32)  # channels last
    y = np.array([0, 1] * 4)
    m = dlrun.loads(net_text("3x4x5"), base_dir=tmp_path)
    m.fit(x, y)
    p_last = m.predict(x)
    assert np.array_equal(p_last, m.predict(np.ascontiguousarray(x.transpose(0, 3, 1, 2))))
    assert np.array_equal(p_last, m.predict(x.transpose(0, 3, 1, 2).reshape(8, -1)))
    data_error(lambda: m.predict(x.reshape(8, 5, 4, 3)), "samples of shape 5x4x3")
    m.evaluate(x, y)
    # both orders fit: the fast path for well-formed arrays does not guess either
    cube = dlrun.loads(net_text("3x3x3"), base_dir=tmp_path)
    xc = rng.random((4, 3, 3, 3)).astype(np.float32)
    data_error(lambda: cube.fit(xc, y[:4]), "both channels first", "layout")
    last = dlrun.loads(net_text("3x3x3", "    layout channels_last\n"), base_dir=tmp_path)
    last.fit(xc, y[:4])
    first = dlrun.loads(net_text("3x3x3", "    layout channels_first\n"), base_dir=tmp_path)
    first.fit(np.ascontiguousarray(xc.transpose(0, 3, 1, 2)), y[:4])
    assert np.array_equal(first.predict(np.ascontiguousarray(xc.transpose(0, 3, 1, 2))), last.predict(xc))
    data_error(lambda: cube.predict(xc), "both channels first")
