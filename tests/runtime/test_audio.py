"""Sound: WAV files read with ``wave`` (runtime/data/audio.py), audio features
(runtime/data/features.py), folders of clips as data, ``standardize per=band``, predict on
WAV files, and the spoken-digits example."""
from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import pytest

from dlrun.dsl import ir
from dlrun.errors import DataError
from dlrun.runtime.data import audio as au
from dlrun.runtime.data.features import LOG_FLOOR, Features, mel_filters

ROOT = Path(__file__).resolve().parents[2]
DIGITS = ROOT.parent / "shared" / "data" / "spoken_digits"


def write_wav(path, samples, rate=8000, width=2, channels=1):
    """``samples`` (floats in [-1, 1), shape (n,) or (n, channels)) as PCM of ``width`` bytes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    x = np.asarray(samples, dtype=np.float64).reshape(-1, channels)
    full = float(1 << (8 * width - 1))
    v = np.clip(np.round(x * full), -full, full - 1).astype(np.int64)
    if width == 1:
        data = (v + 128).astype(np.uint8).tobytes()
    elif width == 3:
        u = (v & 0xFFFFFF).astype(np.uint32).reshape(-1)
        data = np.stack([u & 0xFF, (u >> 8) & 0xFF, (u >> 16) & 0xFF], axis=1).astype(np.uint8).tobytes()
    else:
        data = v.astype({2: "<i2", 4: "<i4"}[width]).tobytes()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(data)
    return path


def tone(freq, seconds=0.25, rate=8000, amp=0.5):
    t = np.arange(int(seconds * rate)) / rate
    return amp * np.sin(2 * np.pi * freq * t)


# ---------------------------------------------------------------------------------------------
# reading one clip


@pytest.mark.parametrize("width", [1, 2, 3, 4])
def test_pcm_widths_read_to_the_same_waveform(tmp_path, width):
    x = tone(440)
    got, rate = au.read_wav(write_wav(tmp_path / "a.wav", x, width=width), "a.wav")
    assert rate == 8000 and got.dtype == np.float32 and got.shape == x.shape
    assert np.abs(got - x).max() <= 1.0 / (1 << (8 * width - 1)) + 1e-7


def test_negative_full_scale_and_sign_of_24_bit(tmp_path):
    got, _ = au.read_wav(write_wav(tmp_path / "a.wav", [-1.0, -0.5, 0.0, 0.5], width=3), "a.wav")
    assert got.tolist() == [-1.0, -0.5, 0.0, 0.5]


def test_stereo_is_mixed_to_mono(tmp_path):
    left, right = tone(440), tone(880)
    p = write_wav(tmp_path / "s.wav", np.stack([left, right], axis=1), channels=2)
    got, _ = au.read_wav(p, "s.wav")
    assert got.shape == left.shape
    np.testing.assert_allclose(got, (left + right) / 2, atol=1e-4)


def test_broken_header_truncated_empty_and_float_wavs_name_the_file(tmp_path):
    (tmp_path / "junk.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk not a header")
    with pytest.raises(DataError, match=r"junk\.wav: cannot read as a PCM WAV file"):
        au.read_wav(tmp_path / "junk.wav", "junk.wav")
    p = write_wav(tmp_path / "cut.wav", tone(440))
    p.write_bytes(p.read_bytes()[:1000])
    with pytest.raises(DataError, match=r"cut\.wav: truncated: the header says 2,000 samples"):
        au.read_wav(p, "cut.wav")
    empty = write_wav(tmp_path / "empty.wav", [])
    with pytest.raises(DataError, match=r"empty\.wav: the clip holds no samples"):
        au.read_wav(empty, "empty.wav")
    # IEEE float (format 3): the header is the PCM one with another format tag
    b = bytearray(write_wav(tmp_path / "f.wav", tone(440), width=4).read_bytes())
    b[20:22] = (3).to_bytes(2, "little")
    (tmp_path / "f.wav").write_bytes(bytes(b))
    with pytest.raises(DataError, match=r"f\.wav: cannot read as a PCM WAV file"):
        au.read_wav(tmp_path / "f.wav", "f.wav")


def test_a_clip_at_another_rate_is_resampled(tmp_path):
    a = ir.Audio(8000, 0.25, features="waveform")
    p = write_wav(tmp_path / "hi.wav", tone(500, rate=16000), rate=16000)
    x = au.read_clips(p, [""], "hi.wav", a)[0]
    assert x.shape == (2000,)
    spectrum = np.abs(np.fft.rfft(x))
    assert abs(np.argmax(spectrum) * 8000 / 2000 - 500) <= 4  # the tone kept its pitch
    np.testing.assert_allclose(x[200:1800], tone(500)[200:1800], atol=0.02)


def test_silent_and_one_sample_clips_are_padded_and_give_finite_features(tmp_path):
    a = ir.Audio(8000, 0.25, align="onset", features="logmel", params={"bands": 8})
    write_wav(tmp_path / "silent.wav", np.zeros(400))
    write_wav(tmp_path / "one.wav", [0.5])
    x = au.read_clips(tmp_path, ["silent.wav", "one.wav"], "", a)
    assert x.shape == (2, 2000) and not x[0].any() and x[1, 0] == 0.5 and not x[1, 1:].any()
    f = Features(a)(x)
    assert np.isfinite(f).all()
    assert (f[0] == np.float32(np.log(LOG_FLOOR))).all()  # silence: the log floor, documented


def test_duration_align_start_centre_onset():
    x = np.concatenate([np.zeros(300), np.ones(100), np.zeros(100)]).astype(np.float32)
    assert au.fix_length(x, 200, "start", 8000)[:5].tolist() == [0] * 5
    c = au.fix_length(x, 200, "centre", 8000)
    assert c.tolist() == x[150:350].tolist()
    o = au.fix_length(x, 200, "onset", 8000)  # 10 ms frames of 80: the onset frame 3, one frame earlier
    assert o.tolist() == x[160:360].tolist()
    short = au.fix_length(np.ones(4, np.float32), 10, "centre", 8000)
    assert short.tolist() == [0, 0, 0, 1, 1, 1, 1, 0, 0, 0]


# ---------------------------------------------------------------------------------------------
# features


def test_features_match_a_direct_numpy_computation():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((3, 2000)).astype(np.float32)
    params = {"window": 200, "hop": 80, "bands": 16, "fmin": 50.0, "fmax": 3500.0, "coeffs": 5}
    grid = {k: Features(ir.Audio(8000, 0.25, features=k, params=params)) for k in
            ("waveform", "spectrogram", "power", "logmel", "mfcc")}
    frames = 1 + (2000 - 200) // 80
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(200) / 200)
    fr = np.stack([w[:, i * 80:i * 80 + 200] * hann for i in range(frames)], axis=1)
    power = np.abs(np.fft.rfft(fr.astype(np.float64), axis=-1)) ** 2  # (3, frames, 101)
    mel = np.log(np.maximum(power @ mel_filters(8000, 200, 16, 50.0, 3500.0).astype(np.float64), LOG_FLOOR))
    import scipy.fft

    mfcc = scipy.fft.dct(mel, type=2, norm="ortho", axis=-1)[..., :5]
    assert grid["waveform"](w).shape == (3, 2000)
    np.testing.assert_allclose(grid["power"](w), power.transpose(0, 2, 1), rtol=1e-3, atol=1e-2)
    np.testing.assert_allclose(grid["spectrogram"](w), np.sqrt(power).transpose(0, 2, 1), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(grid["logmel"](w), mel.transpose(0, 2, 1), atol=2e-3)
    np.testing.assert_allclose(grid["mfcc"](w), mfcc.transpose(0, 2, 1), atol=5e-3)


def test_mel_filters_cover_the_band_and_peak_at_their_centres():
    m = mel_filters(8000, 256, 40, 0.0, 4000.0)
    assert m.shape == (129, 40) and (m >= 0).all()
    assert (m.sum(axis=0) > 0).all()  # no empty band
    assert (np.diff(np.argmax(m, axis=0)) >= 0).all()


def test_standardize_per_band_pools_over_time():
    from dlrun.runtime.data.preprocess import Preprocessor

    rng = np.random.default_rng(1)
    x = (rng.standard_normal((50, 1, 4, 6)) * np.arange(1, 5)[None, None, :, None] + 10).astype(np.float32)
    groups = Features(ir.Audio(8000, 0.25, features="logmel", params={"bands": 4, "window": 2000 - 5 * 8,
                                                                       "hop": 8})).band_groups("bands_frames")
    assert groups.tolist() == [b for b in range(4) for _ in range(6)]
    pre = Preprocessor([ir.Preprocess("standardize", {"per": "band"})], bands=groups).fit(x)
    y = pre.transform(x, np.float64).reshape(50, 4, 6)
    for b in range(4):
        assert abs(y[:, b].mean()) < 1e-9 and abs(y[:, b].std() - 1) < 1e-9
    assert pre.spec() == [{"kind": "standardize", "per": "band"}]
    again = Preprocessor.from_state([ir.Preprocess("standardize", {"per": "band"})], pre.state())
    assert np.array_equal(again.transform(x, np.float64), pre.transform(x, np.float64))
    with pytest.raises(DataError, match="needs audio features"):
        Preprocessor([ir.Preprocess("standardize", {"per": "band"})]).fit(x)


# ---------------------------------------------------------------------------------------------
# the data block: checks before any file is read, folders of clips, predict


NET = """dlrun 1
model tones {{
  data {{
    train "clips/"
    test "held/"
    audio rate=8000 duration=0.25 {audio}
    features logmel window=200 hop=100 bands=16
    standardize per=band
  }}
  input {input}
  {conv}
  global_avgpool
  dense 2 softmax
  loss cross_entropy
  optimizer adam lr=0.02
  train epochs=15 batch=8 seed=1 metrics=[accuracy]
}}
"""


CONV1D = "conv1d 8 3 relu padding=same"  # over time, the bands as channels: (T, C) = 19x16
CONV2D = "conv2d 8 3x3 relu padding=same"  # over the 1x16x19 spectrogram


def tones(root, n, seed, folders=False):
    """Low (300-500 Hz) and high (1500-2500 Hz) tones with noise, named LABEL_i.wav (or in
    LABEL/ folders), at 8 kHz, and a few at 16 kHz (resampled on reading)."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        for name, (lo, hi) in (("low", (300, 500)), ("high", (1500, 2500))):
            rate = 16000 if i % 4 == 3 else 8000
            x = tone(rng.uniform(lo, hi), seconds=rng.uniform(0.1, 0.3), rate=rate)
            x = x + 0.05 * rng.standard_normal(x.shape)
            path = Path(root) / (f"{name}/{i}.wav" if folders else f"{name}_{i}.wav")
            write_wav(path, x, rate=rate)


def test_the_checker_holds_input_against_the_features_before_reading_files(tmp_path):
    from dlrun.runtime import cli

    net = tmp_path / "m.net"
    net.write_text(NET.format(audio="", input="1x16x20", conv=CONV2D))  # 0.25 s: 2000 samples, 19 frames
    assert cli.main(["check", str(net)]) == 2
    net.write_text(NET.format(audio="", input="1x16x19", conv=CONV2D))
    assert cli.main(["check", str(net)]) == 0
    net.write_text(NET.format(audio="", input="19x16", conv=CONV1D))
    assert cli.main(["check", str(net)]) == 0


def test_checker_messages(tmp_path, capsys):
    from dlrun.runtime import cli

    net = tmp_path / "m.net"
    net.write_text(NET.format(audio="", input="1x16x20", conv=CONV2D))
    cli.main(["check", str(net)])
    err = capsys.readouterr().err
    assert "the features 'logmel' give 16 values x 19 frames per clip, expected input 1x16x19 or 19x16, " \
           "but the model's input is 1x16x20" in err
    net.write_text(NET.format(audio="", input="1x16x19", conv=CONV2D).replace("    features logmel window=200 hop=100 bands=16\n", ""))
    cli.main(["check", str(net)])
    assert "'audio' needs 'features' beside it" in capsys.readouterr().err
    net.write_text(NET.format(audio="", input="1x16x19", conv=CONV2D).replace("window=200", "window=4000"))
    cli.main(["check", str(net)])
    assert "shorter than one window of 4000" in capsys.readouterr().err
    net.write_text(NET.format(audio="", input="1x16x19", conv=CONV2D).replace('"clips/"', '"clips/a_0.wav"'))
    cli.main(["check", str(net)])
    assert "is one WAV file; a data block reads a folder of clips" in capsys.readouterr().err
    text = NET.format(audio="", input="1x16x19", conv=CONV2D)
    text = text.replace("    audio rate=8000 duration=0.25 \n    features logmel window=200 hop=100 bands=16\n", "")
    net.write_text(text.replace('"clips/"', '"x.npz"').replace('"held/"', '"y.npz"'))
    cli.main(["check", str(net)])
    assert "'standardize per=band' pools audio features over time" in capsys.readouterr().err


@pytest.mark.parametrize("folders", [False, True])
def test_a_conv_net_trains_on_a_folder_of_clips_and_predicts_wav_files(tmp_path, capsys, folders):
    from dlrun.runtime import cli

    tones(tmp_path / "clips", 12, seed=1, folders=folders)
    tones(tmp_path / "held", 4, seed=2, folders=folders)
    net = tmp_path / "tones.net"
    net.write_text(NET.format(audio="classes=" + ("folders" if folders else "prefix"), input="19x16", conv=CONV1D))
    w = tmp_path / "w.npz"
    assert cli.main(["train", str(net), "--quiet", "--no-checkpoint", "--out", str(w), "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["metrics"]["test"]["accuracy"] >= 0.85, out
    assert cli.main(["predict", str(net), "--weights", str(w), "--input", str(tmp_path / "held")]) == 0
    rows = [line.split(",") for line in capsys.readouterr().out.splitlines()]
    assert rows[0] == ["file", "label"] and len(rows) == 9
    right = sum(f.replace("/", "_").split("_")[0] == label for f, label in rows[1:])
    assert right >= 7, rows
    one = next((tmp_path / "held").rglob("*.wav"))
    assert cli.main(["predict", str(net), "--weights", str(w), "--input", str(one), "--proba"]) == 0
    rows = [line.split(",") for line in capsys.readouterr().out.splitlines()]
    assert rows[0] == ["file", "high", "low"] and rows[1][0] == one.name
    # the API: a path, as predict does
    import dlrun

    m = dlrun.load(str(net), weights=str(w))
    assert m.predict(str(tmp_path / "held")).shape == (8, 2)
    # ... and waveforms (a list of 1-D arrays at the declared rate), as their WAV files give
    eight = next(p for p in sorted((tmp_path / "held").rglob("*.wav")) if au.read_wav(p, "")[1] == 8000)
    clip, _ = au.read_wav(eight, eight.name)
    assert np.array_equal(m.predict([clip]), m.predict(str(eight)))
    with pytest.raises(DataError, match=r"x\[1\]: expected a non-empty 1-D array"):
        m.predict([clip, np.zeros(0, np.float32)])
    # bad inputs: one clear error naming the file, exit 2
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.wav").write_bytes(b"not a wav file at all")
    assert cli.main(["predict", str(net), "--weights", str(w), "--input", str(tmp_path / "bad")]) == 2
    assert "x.wav: cannot read as a PCM WAV file" in capsys.readouterr().err


def test_folder_label_problems_name_the_file(tmp_path):
    write_wav(tmp_path / "a" / "nolabel.wav", tone(440))
    with pytest.raises(DataError, match=r"nolabel\.wav: no label before a '_'"):
        au.labelled_clips(tmp_path / "a", "a/", "prefix")
    (tmp_path / "a" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match=r"notes\.txt: not a WAV file"):
        au.labelled_clips(tmp_path / "a", "a/", "prefix")
    write_wav(tmp_path / "b" / "one" / "x.wav", tone(440))
    write_wav(tmp_path / "b" / "stray.wav", tone(440))
    with pytest.raises(DataError, match=r"stray\.wav: a file beside the class subfolders"):
        au.labelled_clips(tmp_path / "b", "b/", "folders")
    with pytest.raises(DataError, match=r"x\.wav: no label before a '_'"):  # no subfolders: auto is prefix
        au.labelled_clips(tmp_path / "b" / "one", "b/one/", "auto")
    write_wav(tmp_path / "c" / "7_s_0.wav", tone(440))
    write_wav(tmp_path / "c" / "3_s_1.wav", tone(440))
    assert au.labelled_clips(tmp_path / "c", "c/", "auto") == (["3_s_1.wav", "7_s_0.wav"], ["3", "7"])


# ---------------------------------------------------------------------------------------------
# the example


@pytest.mark.skipif(not (DIGITS / "train").is_dir(), reason=f"spoken digits not found in {DIGITS}")
def test_spoken_digits_example_reaches_its_accuracy(tmp_path, capsys):
    from dlrun.runtime import cli

    w = tmp_path / "w.npz"
    assert cli.main(["train", str(ROOT / "models/spoken_digits.net"), "--data-root", str(ROOT.parent / "shared"),
                     "--quiet", "--no-checkpoint", "--out", str(w), "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["metrics"]["test"]["accuracy"] >= 0.99, out


def test_audio_statements_round_trip_through_fmt():
    from dlrun.dsl import format_model, load_file, parse

    m = load_file(ROOT / "models/spoken_digits.net")
    again = parse(format_model(m))
    assert again.data.audio.features == "logmel" and again.data.audio.align == "onset"
    assert (again.data.audio.rate, again.data.audio.duration, again.data.audio.classes) == (8000, 1.0, "prefix")
    assert again.data.preprocess[0].params == {"per": "band"}
    assert format_model(again) == format_model(m)
