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


# ---------------------------------------------------------------------------------------------
# 2. image folders

PIL = pytest.importorskip("PIL")
from PIL import Image  # noqa: E402


def save_image(path, array, fmt=None):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, np.uint8)).save(path, format=fmt)
    return path


def image_set(root, classes=("cat", "dog"), per_class=3, size=(5, 4), rgb=False, seed=0, ext=".png"):
    """Class folders of small random images (``size``: width, height); returns {file: array}."""
    rng = np.random.default_rng(seed)
    made = {}
    w, h = size
    for k, name in enumerate(classes):
        for i in range(per_class):
            a = rng.integers(0, 256, (h, w, 3) if rgb else (h, w), dtype=np.uint8)
            a[0, 0] = 40 * k  # a class-dependent pixel
            made[f"{name}/{i:02d}{ext}"] = a
            save_image(Path(root) / name / f"{i:02d}{ext}", a)
    return made


def load_folder(tmp_path, input_shape=(1, 4, 5), resize=None, **kw):
    data = ir.Data(train=ir.Source("imgs/"), resize=resize, **kw)
    return D.load_splits(data, base_dir=tmp_path, input_shape=input_shape, n_outputs=2, task="classification",
                         seed=0)


def test_image_folder_reads_classes_sorted_pixels_uint8(tmp_path):
    made = image_set(tmp_path / "imgs", classes=("zebra", "ant"))
    s = load_folder(tmp_path)
    assert s.class_names == ["ant", "zebra"]
    x, y = s.train.x, s.train.y
    assert x.dtype == np.uint8 and x.shape == (6, 1, 4, 5)
    files = sorted(made)  # ant/00.png ... zebra/02.png
    for i, f in enumerate(files):
        assert np.array_equal(x[i, 0], made[f]), f
        assert y[i] == (0 if f.startswith("ant") else 1)


def test_rgb_and_grayscale_conversion(tmp_path):
    made = image_set(tmp_path / "imgs", rgb=True)
    s = load_folder(tmp_path, input_shape=(3, 4, 5))
    first = made[sorted(made)[0]]
    assert np.array_equal(s.train.x[0], first.transpose(2, 0, 1))
    gray = load_folder(tmp_path, input_shape=(1, 4, 5)).train.x[0, 0]
    assert np.array_equal(gray, np.asarray(Image.fromarray(first).convert("L")))


def test_formats_jpeg_bmp_gif_and_a_separate_test_folder(tmp_path):
    for ext in (".bmp", ".gif", ".jpg"):
        image_set(tmp_path / "imgs", per_class=1, ext=ext, seed=len(ext))
    image_set(tmp_path / "held", per_class=2, seed=9)
    data = ir.Data(train=ir.Source("imgs/"), test=ir.Source("held/"), validation=0.25)
    s = D.load_splits(data, base_dir=tmp_path, input_shape=(1, 4, 5), n_outputs=2, task="classification", seed=1)
    assert len(s.train) + len(s.validation) == 6 and len(s.test) == 4
    assert s.class_names == ["cat", "dog"]


def test_other_sizes_are_refused_unless_resize_says_how(tmp_path):
    image_set(tmp_path / "imgs", size=(10, 6))
    data_error(lambda: load_folder(tmp_path), "imgs/cat/00.png: image is 10 wide and 6 high",
               "input is 1x4x5 (5 wide, 4 high)", "`resize stretch` or `resize crop`")
    stretched = load_folder(tmp_path, resize="stretch").train.x
    cropped = load_folder(tmp_path, resize="crop").train.x
    assert stretched.shape == cropped.shape == (6, 1, 4, 5)
    a = np.asarray(Image.open(tmp_path / "imgs/cat/00.png").convert("L"))
    assert np.array_equal(stretched[0, 0], np.asarray(Image.fromarray(a).resize((5, 4), Image.BILINEAR)))
    assert not np.array_equal(stretched, cropped)


def test_bad_files_are_reported_by_file(tmp_path):
    image_set(tmp_path / "imgs")
    (tmp_path / "imgs/dog/01.png").write_bytes(b"not a png at all")
    data_error(lambda: load_folder(tmp_path), "imgs/dog/01.png: cannot read as an image")
    good = tmp_path / "imgs/dog/01.png"
    save_image(good, np.zeros((4, 5)))
    raw = (tmp_path / "imgs/cat/00.png").read_bytes()
    (tmp_path / "imgs/cat/00.png").write_bytes(raw[: len(raw) // 2])  # truncated
    data_error(lambda: load_folder(tmp_path), "imgs/cat/00.png: cannot read as an image")
    save_image(tmp_path / "imgs/cat/00.png", np.zeros((4, 5)))
    (tmp_path / "imgs/cat/notes.txt").write_text("hello")
    data_error(lambda: load_folder(tmp_path), "imgs/cat/notes.txt: not an image file (expected .png")
    (tmp_path / "imgs/cat/notes.txt").unlink()
    (tmp_path / "imgs/cat/.DS_Store").write_bytes(b"\0\0")  # hidden files are skipped
    assert len(load_folder(tmp_path).train) == 6
    Image.fromarray(np.zeros((4, 5), np.uint16)).save(tmp_path / "imgs/cat/wide.png")
    data_error(lambda: load_folder(tmp_path), "imgs/cat/wide.png", "more than 8 bits")


def test_empty_folders_and_strays_are_errors(tmp_path):
    (tmp_path / "imgs").mkdir()
    data_error(lambda: load_folder(tmp_path), "imgs/: no class subfolders")
    image_set(tmp_path / "imgs")
    (tmp_path / "imgs/empty").mkdir()
    data_error(lambda: load_folder(tmp_path), "imgs/empty/: the class folder 'empty' holds no images")
    (tmp_path / "imgs/empty").rmdir()
    save_image(tmp_path / "imgs/loose.png", np.zeros((4, 5)))
    data_error(lambda: load_folder(tmp_path), "imgs/loose.png: a file beside the class subfolders")
    data_error(lambda: D.load_splits(ir.Data(train=ir.Source("nothere/")), base_dir=tmp_path, input_shape=(1, 4, 5),
                                     n_outputs=2, task="classification", seed=0), "nothere/: image folder not found")


def test_pillow_missing_is_one_clear_error(tmp_path, monkeypatch):
    import builtins

    image_set(tmp_path / "imgs")
    real = builtins.__import__

    def no_pil(name, *a, **k):
        if name == "PIL" or name.startswith("PIL."):
            raise ImportError("No module named 'PIL'")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_pil)
    data_error(lambda: load_folder(tmp_path), "reading images needs Pillow", "pip install 'dlrun[images]'")


FOLDER_NET = """dlrun 1
model m {{
  data {{
    train "imgs/"
    validation 0.25
{extra}  }}
  input {shape}
  flatten
  dense 2 softmax
  loss cross_entropy
  optimizer adam lr=0.05
  train epochs=3 batch=4 seed=3 metrics=[accuracy]
}}
"""


def write_net(tmp_path, shape="1x4x5", extra="    scale 1/255\n", name="m.net"):
    p = tmp_path / name
    p.write_text(FOLDER_NET.format(shape=shape, extra=extra))
    return p


def test_cli_trains_from_a_folder_and_check_data_reports_bad_images(tmp_path, capsys):
    from dlrun.runtime import cli

    image_set(tmp_path / "imgs", per_class=6)
    net = write_net(tmp_path)
    assert cli.main(["check", "--data", str(net)]) == 0
    assert cli.main(["train", str(net), "--quiet", "--no-checkpoint", "--out", str(tmp_path / "w.npz")]) == 0
    capsys.readouterr()
    (tmp_path / "imgs/dog/03.png").write_bytes(b"GIF89a garbage")
    for cmd in (["check", "--data", str(net)], ["train", str(net), "--quiet", "--no-checkpoint"]):
        assert cli.main(cmd) == 2
        err = capsys.readouterr().err
        assert "imgs/dog/03.png: cannot read as an image" in err and "Traceback" not in err, err


def test_checker_rules_for_folders(tmp_path):
    from dlrun.dsl import parse
    from dlrun.errors import DslError

    def errors(text):
        with pytest.raises(DslError) as info:
            parse(text)
        return str(info.value)

    assert parse(FOLDER_NET.format(shape="3x8x8", extra="    resize crop\n")).data.resize == "crop"
    assert "needs an input 1xHxW (grayscale) or 3xHxW (RGB)" in errors(FOLDER_NET.format(shape="2x4x4", extra=""))
    assert "needs an input 1xHxW" in errors(FOLDER_NET.format(shape="20", extra=""))
    assert "'resize' is for image inputs" in errors(FOLDER_NET.format(shape="20", extra="    resize crop\n")
                                                    .replace('"imgs/"', '"d.npz"'))
    assert "is one image file" in errors(FOLDER_NET.format(shape="1x4x5", extra="").replace('"imgs/"', '"a.png"'))
    assert "unsupported data file 'imgs'" in errors(FOLDER_NET.format(shape="1x4x5", extra="")
                                                    .replace('"imgs/"', '"imgs"'))


# ---------------------------------------------------------------------------------------------
# 3. augmentation

from dlrun.runtime.data.augment import Augmenter, draws  # noqa: E402


def aug(*steps, seed=7, shape=(2, 5, 6)):
    return Augmenter([ir.Augment(k, p) for k, p in steps], seed, shape)


def test_draws_are_a_function_of_seed_epoch_and_position():
    pos = np.array([0, 5, 9, 5], np.int64)
    a = draws(1, 2, pos, 4)
    assert a.dtype == np.uint64 and a.shape == (4, 4)
    assert np.array_equal(a, draws(1, 2, pos, 4)) and np.array_equal(a[1], a[3])
    assert not np.array_equal(a[0], a[1])
    for other in (draws(2, 2, pos, 4), draws(1, 3, pos, 4)):
        assert not (other == a).any()


def test_crop_with_padding_moves_with_zeros_and_flip_mirrors():
    x = np.arange(1, 1 + 4 * 60, dtype=np.uint8).reshape(4, 60)
    orig = x.reshape(4, 2, 5, 6).copy()
    pos = np.arange(4)
    a = aug(("crop", {"padding": 2}))
    y = x.copy()
    a.apply(y, pos, epoch=1)
    h = draws(7, 1, pos, 2)
    for i in range(4):
        dy, dx = int(h[i, 0] % np.uint64(5)) - 2, int(h[i, 1] % np.uint64(5)) - 2
        padded = np.pad(orig[i], ((0, 0), (2, 2), (2, 2)))
        want = padded[:, 2 + dy : 2 + dy + 5, 2 + dx : 2 + dx + 6]  # the random crop
        assert np.array_equal(y[i].reshape(2, 5, 6), want), i
    f = x.copy()
    aug(("flip", {"p": 1.0})).apply(f, pos, 1)
    assert np.array_equal(f.reshape(4, 2, 5, 6), orig[:, :, :, ::-1])
    # p=0.5: some flipped, some not, over many samples
    many = np.tile(x[:1], (64, 1))
    aug(("flip", {"p": 0.5})).apply(many, np.arange(64), 1)
    flipped = [np.array_equal(r.reshape(2, 5, 6), orig[0, :, :, ::-1]) for r in many]
    assert 10 < sum(flipped) < 54


def test_shift_repeats_the_edge_pixels():
    x = np.arange(60, dtype=np.float32).reshape(1, 60)
    orig = x.reshape(2, 5, 6).copy()
    a = aug(("shift", {"pixels": 3}), seed=11)
    for epoch in range(1, 6):
        y = x.copy()
        a.apply(y, np.array([4]), epoch)
        h = draws(11, epoch, np.array([4]), 2)
        dy, dx = int(h[0, 0] % np.uint64(7)) - 3, int(h[0, 1] % np.uint64(7)) - 3
        rows, cols = np.clip(np.arange(5) + dy, 0, 4), np.clip(np.arange(6) + dx, 0, 5)
        assert np.array_equal(y.reshape(2, 5, 6), orig[:, rows][:, :, cols])


AUG_NET = """dlrun 1
model m {{
  data {{
    train "d.npz"
    validation 0.2
    scale 1/255
{aug}  }}
  input 1x6x6
  flatten
  dense 16 relu
  dropout 0.2
  dense 3 softmax
  loss cross_entropy
  optimizer adam lr=0.01
  train epochs=3 batch=8 seed=5 metrics=[accuracy]
}}
"""
AUGS = "    augment crop padding=1\n    augment flip\n    augment shift 1\n"


def aug_data(tmp_path, n=60):
    rng = np.random.default_rng(4)
    y = rng.integers(0, 3, n)
    x = rng.integers(0, 100, (n, 6, 6)).astype(np.uint8)
    x[:, 2:4, 2:4] += (60 * y).astype(np.uint8)[:, None, None]
    np.savez(tmp_path / "d.npz", x=x, y=y)


def test_training_batches_are_augmented_reproducibly_evaluation_is_not(tmp_path, monkeypatch):
    from dlrun.runtime import train as T

    aug_data(tmp_path)
    seen = []
    real = T.Feeder.take

    def spy(self, idx, epoch=None):
        out = real(self, idx, epoch)
        seen.append((self.augment is not None and epoch is not None, idx.copy(), out[0].copy()))
        return out

    monkeypatch.setattr(T.Feeder, "take", spy)
    plain = dlrun.loads(AUG_NET.format(aug=""), base_dir=tmp_path)
    plain.fit()
    assert not any(a for a, _, _ in seen)
    base = [(i, x) for _, i, x in seen]
    seen.clear()
    m1 = dlrun.loads(AUG_NET.format(aug=AUGS), base_dir=tmp_path)
    m1.fit()
    assert all(a for a, _, _ in seen)  # every training batch, nothing else went through take
    # same rows, other values: the batches were changed
    assert any(not np.array_equal(x, bx) for (_, i, x), (bi, bx) in zip(seen, base))
    seen.clear()
    m2 = dlrun.loads(AUG_NET.format(aug=AUGS), base_dir=tmp_path)
    m2.fit()
    assert m1.network.store.flat.tobytes() == m2.network.store.flat.tobytes()
    assert m1.network.store.flat.tobytes() != plain.network.store.flat.tobytes()
    # evaluation and prediction see the stored images
    x = np.load(tmp_path / "d.npz")["x"]
    p = m1.predict(x)
    assert np.array_equal(p, m1.predict(x))
    assert np.array_equal(p, plain.__class__.predict(m2, x))


def test_resume_with_augmentation_is_bit_exact(tmp_path, monkeypatch):
    import signal

    from dlrun.runtime import checkpoint as C

    aug_data(tmp_path)
    text = AUG_NET.format(aug=AUGS)
    full = dlrun.loads(text, base_dir=tmp_path)
    full.fit()
    holder = {}
    init = C.Checkpointer.__init__

    def keep(self, *a, **k):
        init(self, *a, **k)
        holder["ck"] = self

    monkeypatch.setattr(C.Checkpointer, "__init__", keep)

    class StopMidEpoch:
        def start_epoch(self, epoch, epochs, batches):
            self.epoch = epoch

        def batch(self, done, loss):
            if self.epoch == 2 and done == 3:
                holder["ck"].stop_signal = signal.SIGINT

        def end_epoch(self, epoch, metrics):
            pass

    first = dlrun.loads(text, base_dir=tmp_path)
    with pytest.raises(C.Interrupted):
        first.fit(checkpoint=tmp_path / "ck", progress=StopMidEpoch())
    second = dlrun.loads(text, base_dir=tmp_path)
    second.fit(checkpoint=tmp_path / "ck", resume=True)
    assert second.network.store.flat.tobytes() == full.network.store.flat.tobytes()
    assert first.network.store.flat.tobytes() != full.network.store.flat.tobytes()


def test_augment_is_refused_on_non_image_inputs_and_written_back_by_fmt():
    from dlrun.dsl import parse
    from dlrun.dsl.fmt import format_model
    from dlrun.errors import DslError

    text = AUG_NET.format(aug=AUGS + "    resize crop\n    layout channels_first\n")
    model = parse(text)
    assert [a.kind for a in model.data.augment] == ["crop", "flip", "shift"]
    assert model.data.augment[2].params == {"pixels": 1}
    written = format_model(model)
    assert "augment crop padding=1\n    augment flip\n    augment shift pixels=1\n" in written
    again = parse(written).data
    assert [(a.kind, a.params) for a in again.augment] == [(a.kind, a.params) for a in model.data.augment]
    assert (again.resize, again.layout) == ("crop", "channels_first")
    with pytest.raises(DslError, match="'augment' is for image inputs"):
        parse(text.replace("input 1x6x6\n  flatten\n", "input 36\n"))


# ---------------------------------------------------------------------------------------------
# 4. predict on image files and folders


def test_predict_on_an_image_file_a_folder_or_an_array(tmp_path, capsys):
    from dlrun.runtime import cli

    made = image_set(tmp_path / "imgs", per_class=6)
    net = write_net(tmp_path)
    w = tmp_path / "w.npz"
    assert cli.main(["train", str(net), "--quiet", "--no-checkpoint", "--out", str(w)]) == 0
    capsys.readouterr()
    model = dlrun.load(net, weights=w)
    files = sorted(made)
    x = np.stack([made[f] for f in files])
    want = model.predict_classes(x)
    # a folder (with or without the trailing '/'): one named row per image, in sorted order
    for arg in (str(tmp_path / "imgs"), str(tmp_path / "imgs") + "/"):
        assert cli.main(["predict", str(net), "--weights", str(w), "--input", arg]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[0] == "file,label"
        assert lines[1:] == [f"{f},{c}" for f, c in zip(files, want)]
    # one image file
    one = tmp_path / "imgs" / files[3]
    assert cli.main(["predict", str(net), "--weights", str(w), "--input", str(one), "--proba"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "file,cat,dog" and lines[1].startswith(f"{one.name},")
    p = [float(v) for v in lines[1].split(",")[1:]]
    assert np.allclose(p, model.predict(x[3:4])[0], rtol=1e-6)
    # an array file as before: no file column
    np.save(tmp_path / "x.npy", x)
    assert cli.main(["predict", str(net), "--weights", str(w), "--input", str(tmp_path / "x.npy")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["label"] + list(want)
    # the API reads the same paths
    assert np.array_equal(model.predict(tmp_path / "imgs"), model.predict(x))
    # a bad image in the folder: exit 2, the file named, no traceback
    (tmp_path / "imgs/cat/02.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    assert cli.main(["predict", str(net), "--weights", str(w), "--input", str(tmp_path / "imgs")]) == 2
    err = capsys.readouterr().err
    assert "imgs/cat/02.png: cannot read as an image" in err and "Traceback" not in err
    (tmp_path / "empty").mkdir()
    assert cli.main(["predict", str(net), "--weights", str(w), "--input", str(tmp_path / "empty")]) == 2
    assert "no images in this folder" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# end to end: a small convolutional network from an image folder


CNN_NET = """dlrun 1
model stripes {
  data {
    train "imgs/"
    test "held/"
    resize stretch
    scale 1/255
    augment flip
    augment crop padding=1
  }
  input 3x8x8
  conv2d 6 3x3 relu padding=same
  maxpool 2x2
  conv2d 8 3x3 relu padding=same
  global_avgpool
  dense 2 softmax
  loss cross_entropy
  optimizer adam lr=0.02
  train epochs=12 batch=8 seed=1 metrics=[accuracy]
}
"""


def stripes(root, n, seed):
    """Horizontal ('across') and vertical ('down') stripes, RGB, 10x10 (resized to 8x8)."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        for name, axis in (("across", 0), ("down", 1)):
            period = int(rng.integers(2, 4))
            line = (np.arange(10) // period % 2) * 200 + rng.integers(0, 40, 10)
            a = np.repeat(line[:, None] if axis == 0 else line[None, :], 10, axis=1 - axis).astype(np.uint8)
            rgb = np.stack([a, a // 2, 255 - a], axis=-1).astype(np.uint8)
            save_image(Path(root) / name / f"{i:03d}.png", rgb)


def test_a_conv_net_trains_from_an_image_folder_and_predicts_its_files(tmp_path, capsys):
    from dlrun.runtime import cli

    stripes(tmp_path / "imgs", 24, seed=1)
    stripes(tmp_path / "held", 8, seed=2)
    net = tmp_path / "stripes.net"
    net.write_text(CNN_NET)
    w = tmp_path / "w.npz"
    assert cli.main(["train", str(net), "--quiet", "--no-checkpoint", "--out", str(w), "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["metrics"]["test"]["accuracy"] >= 0.9, out
    assert cli.main(["predict", str(net), "--weights", str(w), "--input", str(tmp_path / "held")]) == 0
    rows = [line.split(",") for line in capsys.readouterr().out.splitlines()[1:]]
    assert len(rows) == 16
    right = sum(f.split("/")[0] == label for f, label in rows)
    assert right >= 14, rows


def test_a_model_built_in_python_is_held_to_the_same_image_rules():
    from dataclasses import replace

    from dlrun.dsl import check, parse
    from dlrun.errors import DslError

    model = parse(AUG_NET.format(aug="").replace("input 1x6x6\n  flatten\n", "input 36\n"))
    for data in (replace(model.data, augment=(ir.Augment("flip", {"p": 0.5}),)),
                 replace(model.data, layout="channels_last"), replace(model.data, resize="crop")):
        with pytest.raises(DslError, match="is for image inputs"):
            check(replace(model, data=data))


def test_nested_and_linked_folders_are_searched_loops_refused(tmp_path):
    image_set(tmp_path / "imgs")
    save_image(tmp_path / "imgs/cat/more/deep.png", np.zeros((4, 5)))
    save_image(tmp_path / "elsewhere/far.png", np.zeros((4, 5)))
    os.symlink(tmp_path / "elsewhere", tmp_path / "imgs/dog/linked")
    s = load_folder(tmp_path)
    assert len(s.train) == 8
    os.symlink(tmp_path / "imgs/dog", tmp_path / "imgs/dog/again")
    data_error(lambda: load_folder(tmp_path), "imgs/dog/again/: a link to a folder already searched")


def reference_augment(img, steps, bits):
    """One image through the steps one at a time, as the docs describe them."""
    _, h, w = img.shape
    img = img.copy()
    for k, (kind, p) in enumerate(steps):
        a, b = bits[2 * k], bits[2 * k + 1]
        if kind == "flip":
            if float(a >> np.uint64(11)) * 2.0**-53 < p["p"]:
                img = img[:, :, ::-1].copy()
            continue
        reach = p["padding"] if kind == "crop" else p["pixels"]
        dy, dx = int(a % np.uint64(2 * reach + 1)) - reach, int(b % np.uint64(2 * reach + 1)) - reach
        mode = "constant" if kind == "crop" else "edge"
        padded = np.pad(img, ((0, 0), (reach, reach), (reach, reach)), mode=mode)
        img = padded[:, reach + dy : reach + dy + h, reach + dx : reach + dx + w].copy()
    return img


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_a_chain_of_steps_equals_the_steps_one_after_another(dtype):
    steps = [("shift", {"pixels": 2}), ("flip", {"p": 0.5}), ("crop", {"padding": 3}), ("shift", {"pixels": 1})]
    a = aug(*steps, seed=3, shape=(3, 7, 5))
    rng = np.random.default_rng(0)
    x = rng.integers(1, 250, (40, 3 * 7 * 5)).astype(dtype)
    pos = rng.permutation(100)[:40]
    y = x.copy()
    a.apply(y, pos, epoch=4)
    bits = draws(3, 4, pos, 2 * len(steps))
    for i in range(40):
        want = reference_augment(x[i].reshape(3, 7, 5), steps, bits[i])
        assert np.array_equal(y[i].reshape(3, 7, 5), want), i


def test_orientation_tag_is_applied_and_huge_headers_refused(tmp_path, monkeypatch):
    from dlrun.runtime.data import images as I

    a = np.zeros((5, 4), np.uint8)  # 4 wide, 5 high as stored
    a[0, :] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view: 5 wide, 4 high
    p = tmp_path / "imgs/cat/r.png"
    p.parent.mkdir(parents=True)
    Image.fromarray(a).save(p, exif=exif)
    save_image(tmp_path / "imgs/dog/d.png", np.zeros((4, 5)))
    x = load_folder(tmp_path).train.x  # the model's 1x4x5: only the viewed orientation fits
    assert np.array_equal(x[0, 0], np.rot90(a, -1))
    monkeypatch.setattr(I, "MAX_PIXELS", 19)
    data_error(lambda: load_folder(tmp_path), "r.png: image is 4 wide and 5 high, more than the 19 pixels")
