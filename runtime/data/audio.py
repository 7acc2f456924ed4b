"""Sound clips read with Python's ``wave`` module: a folder of WAV files as a data block's
source (with ``audio`` and ``features`` in the data block), and WAV files or folders of them
to predict on.

Reading a clip (``read_wav``): PCM 8-bit (unsigned), 16-, 24- and 32-bit (signed) samples,
scaled to [-1, 1); stereo and more channels are mixed to mono by their mean. A clip at another
rate than ``audio rate=`` is resampled to it (``scipy.signal.resample_poly``, the ratio reduced
by its gcd, its default Kaiser window). Then it is cut to ``duration`` seconds: ``align start``
keeps the first samples, ``centre`` the middle ones, ``onset`` those from the detected onset
(the first 10 ms frame whose energy is within 30 dB of the clip's loudest, less one frame of
lead-in; a silent clip starts at 0); a shorter clip is padded with zeros at its end (``centre``:
on both sides). A silent clip is kept (its features are the constant of silence: see
``features.py``); a clip of one sample is padded like any other; a clip of no samples, a
compressed or floating-point WAV, a broken header or a truncated file is one ``DataError``
naming the file.

A folder's labels (``audio classes=``): ``folders``, the names of its subfolders (sorted), as
image folders; ``prefix``, each file name's part before the first ``_`` (``7_speaker_0.wav``
is a 7; a name without ``_`` is an error naming it); ``auto``, folders when the folder holds
subfolders, else prefix. Hidden files are skipped, any non-``.wav`` file is an error.
"""
from __future__ import annotations

import math
import os
import wave
from pathlib import Path

import numpy as np

from dlrun.dsl import audio as A
from dlrun.dsl.dataformats import WAV_SUFFIXES
from dlrun.runtime.data.folders import files_below, folder_shown, hidden
from dlrun.errors import DataError
from dlrun.fileopen import NotReadable, open_regular
from dlrun.runtime.data.features import Features, to_input
from dlrun.runtime.data.reader import Raw, Reader
from dlrun.runtime.data.text import one_line

# the longest clip read, in samples per channel (about 1 hour at 48 kHz): a larger header is damaged
MAX_FRAMES = 1 << 28


def read_wav(path, shown: str) -> tuple[np.ndarray, int]:
    """``(samples, rate)``: the clip as float32 mono in [-1, 1) and its sample rate."""
    try:
        with open_regular(path) as f, wave.open(f, "rb") as w:
            channels, width, rate, frames = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
            if w.getcomptype() != "NONE":
                raise DataError(f"{shown}: a compressed WAV ({w.getcompname()}); expected PCM")
            if width not in (1, 2, 3, 4):
                raise DataError(f"{shown}: {8 * width}-bit samples; expected PCM 8, 16, 24 or 32-bit")
            if channels < 1 or rate < 1:
                raise DataError(f"{shown}: a WAV header with {channels} channels at {rate} Hz (damaged header?)")
            if frames > MAX_FRAMES:
                raise DataError(f"{shown}: the header says {frames:,} samples, more than the {MAX_FRAMES:,} "
                                f"dlrun reads (damaged header?)")
            data = w.readframes(frames)
    except DataError:
        raise
    except NotReadable as err:
        raise DataError(f"{shown}: {err.reason('WAV file')}") from None
    except Exception as err:  # noqa: BLE001
        # wave parses untrusted bytes: wave.Error for a bad header or a non-PCM format (IEEE
        # float is format 3), EOFError for a file cut inside the header, RuntimeError for a
        # chunk size past its parent's, MemoryError, ...
        raise DataError(f"{shown}: cannot read as a PCM WAV file ({type(err).__name__}: {one_line(err)})") from None
    step = channels * width
    if len(data) < frames * step:
        raise DataError(f"{shown}: truncated: the header says {frames:,} samples, the file holds "
                        f"{len(data) // step:,}")
    if frames == 0:
        raise DataError(f"{shown}: the clip holds no samples")
    x = _decode(data[: frames * step], width).reshape(frames, channels)
    return (x.mean(axis=1, dtype=np.float32) if channels > 1 else x[:, 0]), rate


def _decode(data: bytes, width: int) -> np.ndarray:
    """Little-endian PCM bytes -> float32 in [-1, 1)."""
    if width == 1:  # 8-bit WAV is unsigned, 128 the zero
        return (np.frombuffer(data, np.uint8).astype(np.float32) - 128.0) / 128.0
    if width == 3:
        b = np.frombuffer(data, np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        v = np.where(v >= 1 << 23, v - (1 << 24), v)
        return v.astype(np.float32) / float(1 << 23)
    dt = {2: "<i2", 4: "<i4"}[width]
    return (np.frombuffer(data, dt).astype(np.float64) / float(1 << (8 * width - 1))).astype(np.float32)


def resample(x: np.ndarray, rate: int, target: int) -> np.ndarray:
    """``x`` at ``rate`` Hz resampled to ``target`` Hz (polyphase, ``resample_poly``)."""
    if rate == target:
        return x
    from scipy.signal import resample_poly

    g = math.gcd(rate, target)
    return resample_poly(x, target // g, rate // g).astype(np.float32)


_ONSET_FRAME = 0.010  # seconds
_ONSET_DB = 30.0


def onset(x: np.ndarray, rate: int) -> int:
    """The sample where the clip's sound starts (see the module docstring)."""
    k = max(1, int(round(_ONSET_FRAME * rate)))
    m = len(x) // k
    if m == 0:
        return 0
    energy = (x[: m * k].astype(np.float64).reshape(m, k) ** 2).sum(axis=1)
    top = energy.max()
    if top <= 0.0:
        return 0
    first = int(np.argmax(energy >= top * 10 ** (-_ONSET_DB / 10)))
    return max(0, first - 1) * k


def fix_length(x: np.ndarray, n: int, align: str, rate: int) -> np.ndarray:
    """``x`` cut or zero-padded to ``n`` samples, from where ``align`` says."""
    out = np.zeros(n, np.float32)
    if align == "centre":
        if len(x) >= n:
            s = (len(x) - n) // 2
            out[:] = x[s:s + n]
        else:
            s = (n - len(x)) // 2
            out[s:s + len(x)] = x
        return out
    s = onset(x, rate) if align == "onset" else 0
    part = x[s:s + n]
    out[: len(part)] = part
    return out


def read_clips(root: Path, files: list[str], shown: str, audio) -> np.ndarray:
    """The clips ``files`` (relative to ``root``) as ``(n, samples)`` float32 at ``audio.rate``."""
    n = A.n_samples(audio)
    out = np.empty((len(files), n), np.float32)
    for i, rel in enumerate(files):
        name = f"{shown}{rel}" if rel else shown
        x, rate = read_wav(root / rel if rel else root, name)
        out[i] = fix_length(resample(x, rate, audio.rate), n, audio.align, audio.rate)
    return out


def wav_files(root: Path, shown: str) -> list[str]:
    """Every WAV file below ``root``, sorted ``/``-separated paths relative to it; a DataError
    for another file."""
    return files_below(root, shown, WAV_SUFFIXES, "a WAV file")


def labelled_clips(root: Path, shown: str, classes: str) -> tuple[list[str], list[str]]:
    """``(files, labels)`` of a folder of clips, labelled as ``classes`` says."""
    if not root.is_dir():
        raise DataError(f"{shown}: folder of clips not found" if not root.exists() else f"{shown}: not a folder")
    try:
        entries = sorted(e for e in os.listdir(root) if not hidden(e))
    except OSError as err:
        raise DataError(f"{shown}: cannot list the folder ({one_line(err)})") from None
    subfolders = [e for e in entries if (root / e).is_dir()]
    mode = classes if classes != "auto" else ("folders" if subfolders else "prefix")
    if mode == "folders":
        stray = [e for e in entries if e not in subfolders]
        if stray:
            raise DataError(f"{shown}{stray[0]}: a file beside the class subfolders; with 'audio classes=folders' "
                            f"the folder holds one subfolder of clips per class")
        if not subfolders:
            raise DataError(f"{shown}: no class subfolders ('audio classes=folders')")
        files, labels = [], []
        for name in subfolders:
            fs = wav_files(root / name, f"{shown}{name}/")
            if not fs:
                raise DataError(f"{shown}{name}/: the class folder '{name}' holds no WAV files")
            files += [f"{name}/{f}" for f in fs]
            labels += [name] * len(fs)
        return files, labels
    files = wav_files(root, shown)
    if not files:
        raise DataError(f"{shown}: no WAV files in this folder")
    labels = []
    for f in files:
        base = f.rsplit("/", 1)[-1]
        if "_" not in base or base.index("_") == 0:
            raise DataError(f"{shown}{f}: no label before a '_' in the file name (with 'audio classes=prefix' a "
                            f"clip is named LABEL_....wav, e.g. 7_speaker_0.wav)")
        labels.append(base.split("_", 1)[0])
    return files, labels



def _features(audio, input_shape, shown: str):
    order = A.order_of(audio, input_shape)
    if order is None:
        raise DataError(f"{shown}: {A.mismatch(audio, input_shape)}")
    return Features(audio), order


def _where(files: list[str], shown: str):
    return lambda i, j: f"{shown}{files[i]}, feature {j}"


def clips_to_input(waves: np.ndarray, audio, input_shape, shown: str) -> np.ndarray:
    """Waveforms ``(n, samples)`` at ``audio.rate`` -> features shaped as the input."""
    feats, order = _features(audio, input_shape, shown)
    return to_input(feats(waves), order)


def waveforms_to_input(clips, audio, input_shape, shown: str = "x") -> np.ndarray:
    """A list of 1-D waveforms at ``audio.rate`` (``Model.predict``): cut or padded as the data
    block says, as features shaped as the input; an empty or non-finite clip is an error
    naming it."""
    n = A.n_samples(audio)
    waves = np.empty((len(clips), n), np.float32)
    for i, c in enumerate(clips):
        c = np.asarray(c)
        if c.dtype.kind not in "iuf" or c.size == 0 or (c.dtype.kind == "f" and not np.isfinite(c).all()):
            raise DataError(f"{shown}[{i}]: expected a non-empty 1-D array of finite samples "
                            f"(got {c.size} values of dtype {c.dtype})")
        waves[i] = fix_length(c.astype(np.float32), n, audio.align, audio.rate)
    return clips_to_input(waves, audio, input_shape, shown)


class AudioFolderReader(Reader):
    """A folder of WAV clips: a data source (labels from subfolders or file names) or inputs
    to predict on. Built for the data block's ``audio`` (``formats.open_source``)."""

    name = "audiofolder"
    noun = "folders of clips"

    def __init__(self, audio=None):
        self.audio = audio

    def with_audio(self, audio):
        return AudioFolderReader(audio)

    def _need_audio(self, shown):
        if self.audio is None:
            raise DataError(f"{shown}: WAV clips need 'audio' and 'features' in the model's data block")
        return self.audio

    def read(self, p, shown, src, *, label, need_y, features, against, input_shape, resize=None):
        shown = folder_shown(shown)
        audio = self._need_audio(shown)
        feats, order = _features(audio, input_shape, shown)  # before any file is read
        files, labels = labelled_clips(Path(p), shown, audio.classes)
        x = to_input(feats(read_clips(Path(p), files, shown, audio)), order)
        return Raw(x, np.array(labels), shown, shown, _where(files, shown), lambda i: f"{shown}{files[i]}")

    def read_labels(self, p, shown, label):
        raise DataError(f"{folder_shown(shown)}: a folder of clips cannot be a labels file")

    def read_inputs(self, p, shown, *, label, feature_names, against, input_shape, resize=None):
        shown = folder_shown(shown)
        audio = self._need_audio(shown)
        feats, order = _features(audio, input_shape, shown)
        files = self.sample_names(p, shown)
        return to_input(feats(read_clips(Path(p), files, shown, audio)), order), _where(files, shown)

    def sample_names(self, p, shown) -> list[str]:
        shown = folder_shown(shown)
        if not Path(p).is_dir():
            raise DataError(f"{shown}: folder not found")
        files = wav_files(Path(p), shown)
        if not files:
            raise DataError(f"{shown}: no WAV files in this folder")
        return files


class WavFileReader(Reader):
    """One WAV file: an input to predict on."""

    name = "wav"
    noun = "WAV files"

    def __init__(self, audio=None):
        self.audio = audio

    def with_audio(self, audio):
        return WavFileReader(audio)

    def read(self, p, shown, src, *, label, need_y, features, against, input_shape, resize=None):
        raise DataError(f"{shown}: one WAV file cannot be a data source; name a folder of clips, with a "
                        f"trailing '/'")

    def read_labels(self, p, shown, label):
        raise DataError(f"{shown}: a WAV file cannot be a labels file")

    def read_inputs(self, p, shown, *, label, feature_names, against, input_shape, resize=None):
        if self.audio is None:
            raise DataError(f"{shown}: WAV clips need 'audio' and 'features' in the model's data block")
        feats, order = _features(self.audio, input_shape, shown)
        x = to_input(feats(read_clips(Path(p), [""], shown, self.audio)), order)
        return x, (lambda i, j: f"{shown}, feature {j}")

    def sample_names(self, p, shown) -> list[str]:
        return [os.path.basename(str(p))]


FOLDER_READER = AudioFolderReader()
FILE_READER = WavFileReader()
