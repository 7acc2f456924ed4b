"""Audio features, vectorised over every clip at once: ``(n, samples)`` float32 waveforms ->
``(n, bins, frames)`` float32 (``dsl/audio.py`` gives the shape; the same rule).

Frames are ``window`` samples every ``hop`` (a strided view, no copy), weighted by a periodic
Hann window; ``spectrogram`` is the magnitude of their real FFT, ``power`` its square,
``logmel`` the natural log of the power summed by ``bands`` triangular mel filters (Slaney's
mel scale, as librosa's default, between ``fmin`` and ``fmax``), floored at 1e-10 so a
silent clip gives a finite constant (log 1e-10 = -23.0), and ``mfcc`` the first ``coeffs``
of the orthonormal DCT-II of the log-mel bands. ``waveform`` is the clip itself,
``(n, samples)``. Computed in float32 in chunks of clips (log-mel of the 2,010 one-second
8 kHz training clips of the spoken digits: 0.13 s on the idle 2-core machine, 0.3-0.4 s
under load; forming |X|^2 before the mel sums took 0.42-0.54 s under the same load).
"""
from __future__ import annotations

import numpy as np

from dlrun.dsl import audio as A

# clips per chunk: bounds the frame and spectrum buffers (256 clips x 61 frames x 256 samples
# x 4 bytes = 16 MB for the 1 s, 8 kHz clips)
_CHUNK = 256
LOG_FLOOR = 1e-10


def _fft():
    """``scipy.fft``, imported on first use: this module is imported with every data format
    (``formats.py``), and ``dlrun check --data`` of a model without audio needs no SciPy."""
    import scipy.fft

    return scipy.fft


def _hz_to_mel(f):
    """Slaney's mel scale: linear below 1 kHz, logarithmic above."""
    f = np.asarray(f, dtype=np.float64)
    lin = f / (200.0 / 3)
    log = 15.0 + np.log(np.maximum(f, 1e-9) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(f >= 1000.0, log, lin)


def _mel_to_hz(m):
    m = np.asarray(m, dtype=np.float64)
    lin = m * (200.0 / 3)
    log = 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0))
    return np.where(m >= 15.0, log, lin)


def mel_filters(rate: int, window: int, bands: int, fmin: float, fmax: float) -> np.ndarray:
    """``(window // 2 + 1, bands)`` float32 triangular filters, area-normalised (Slaney)."""
    freqs = np.arange(window // 2 + 1) * (rate / window)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), bands + 2))
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None] - lo) / np.maximum(mid - lo, 1e-9)
    down = (hi - freqs[None]) / np.maximum(hi - mid, 1e-9)
    w = np.maximum(0.0, np.minimum(up, down)) * (2.0 / (hi - lo))
    return w.T.astype(np.float32)


def dct_matrix(bands: int, coeffs: int) -> np.ndarray:
    """``(bands, coeffs)`` float32: the orthonormal DCT-II's first ``coeffs`` rows, transposed."""
    return _fft().dct(np.eye(bands), type=2, norm="ortho", axis=0)[:coeffs].T.astype(np.float32)


class Features:
    """The data block's ``features`` for clips at ``audio.rate``: ``__call__(waves)`` ->
    ``(n, bins, frames)`` (``(n, samples)`` for the waveform)."""

    def __init__(self, audio):
        self.audio = audio
        self.kind = audio.features
        self.grid = A.feature_grid(audio)
        if self.kind == "waveform":
            return
        self.window = int(A.param(audio, "window"))
        self.hop = int(A.param(audio, "hop"))
        n = np.arange(self.window)
        self.hann = (0.5 - 0.5 * np.cos(2 * np.pi * n / self.window)).astype(np.float32)
        if self.kind in ("logmel", "mfcc"):
            self.mel = mel_filters(audio.rate, self.window, int(A.param(audio, "bands")),
                                   float(A.param(audio, "fmin")), float(A.param(audio, "fmax")))
            self.mel2 = np.repeat(self.mel, 2, axis=0)  # (2 * bins, bands): real and imaginary parts
        if self.kind == "mfcc":
            self.dct = dct_matrix(int(A.param(audio, "bands")), int(A.param(audio, "coeffs")))

    def __call__(self, waves: np.ndarray) -> np.ndarray:
        waves = np.ascontiguousarray(waves, dtype=np.float32)
        n, s = waves.shape
        if self.kind == "waveform":
            return waves
        bins, frames = self.grid
        out = np.empty((n, bins, frames), np.float32)
        for c in range(0, n, _CHUNK):
            out[c:c + _CHUNK] = self._chunk(waves[c:c + _CHUNK], frames).transpose(0, 2, 1)
        return out

    def _chunk(self, w: np.ndarray, frames: int) -> np.ndarray:
        """``(k, frames, bins)`` for the clips ``w`` ``(k, samples)``."""
        k = w.shape[0]
        st = w.strides
        framed = np.lib.stride_tricks.as_strided(w, (k, frames, self.window), (st[0], self.hop * st[1], st[1]),
                                                 writeable=False)
        spec = _fft().rfft(framed * self.hann, axis=-1, workers=1)  # complex64 (k, frames, bins)
        # squares of the real and imaginary parts side by side, in the spectrum's own buffer:
        # (k, frames, 2 * bins), so the power and its mel sums are one GEMM against the filters
        # repeated per part (measured: half the time of forming |X|^2 first)
        sq = spec.view(np.float32)
        np.square(sq, out=sq)
        if self.kind == "spectrogram":
            return np.sqrt(sq[..., 0::2] + sq[..., 1::2])
        if self.kind == "power":
            return sq[..., 0::2] + sq[..., 1::2]
        logmel = sq @ self.mel2
        np.maximum(logmel, LOG_FLOOR, out=logmel)
        np.log(logmel, out=logmel)
        if self.kind == "logmel":
            return logmel
        return logmel @ self.dct

    def band_groups(self, order: str) -> np.ndarray:
        """The band of each input value (flat, in the input's ``order``): ``standardize
        per=band`` pools its statistics over the values of one band (the waveform: one group)."""
        if self.kind == "waveform":
            return np.zeros(self.grid[0], np.int64)
        bins, frames = self.grid
        band = np.arange(bins)
        if order == "bands_frames":
            return np.repeat(band, frames)
        return np.tile(band, frames)  # frames_bands


def to_input(feats: np.ndarray, order: str) -> np.ndarray:
    """``(n, bins, frames)`` features as ``(n, *input)`` in the input's ``order``."""
    if order == "samples":
        return feats
    if order == "bands_frames":
        return feats[:, None]
    return np.ascontiguousarray(feats.transpose(0, 2, 1))
