"""The shape audio features give, from the data block alone (no file is read): the one rule
the checker holds ``input`` against and ``runtime/data/features.py`` computes by.

A clip is ``samples = round(duration * rate)`` values after padding or cropping. Frames start
every ``hop`` samples and are ``window`` long, none past the end: ``frames = 1 + (samples -
window) // hop``. Per frame: ``spectrogram`` / ``power`` ``window // 2 + 1`` frequency bins,
``logmel`` ``bands`` values, ``mfcc`` ``coeffs`` values. ``waveform`` is the samples themselves.

The features reach the model in one of two orders (``input_orders``):

``1xBxF``   bands x frames as a one-channel image (conv2d over the spectrogram)
``FxB``     frames x bands, (T, C) for conv1d over time
``S`` or ``Sx1``  the waveform's samples (S: samples)

>>> from dlrun.dsl import ir
>>> a = ir.Audio(8000, 1.0, features="logmel", params={"window": 256, "hop": 128, "bands": 40})
>>> feature_grid(a), input_orders(a)
((40, 61), {(1, 40, 61): 'bands_frames', (61, 40): 'frames_bands'})
"""
from __future__ import annotations

from dlrun.dsl import tables as T

_DEFAULTS = {p.name: p.default for p in T.DATA["features"][1:]}


def param(audio, name: str):
    """A feature parameter as given, or its default (``fmax`` None: half the rate)."""
    v = audio.params.get(name, _DEFAULTS[name])
    if name == "fmax" and v is None:
        return audio.rate / 2.0
    return v


def n_samples(audio) -> int:
    """Samples per clip after padding or cropping."""
    return max(1, int(round(audio.duration * audio.rate)))


def feature_grid(audio) -> tuple[int, ...]:
    """``(bins, frames)`` of a spectral feature, ``(samples,)`` of the waveform."""
    s = n_samples(audio)
    if audio.features == "waveform":
        return (s,)
    window, hop = param(audio, "window"), param(audio, "hop")
    frames = 1 + (s - window) // hop if s >= window else 0
    bins = {"spectrogram": window // 2 + 1, "power": window // 2 + 1, "logmel": param(audio, "bands"),
            "mfcc": param(audio, "coeffs")}[audio.features]
    return (bins, frames)


def input_orders(audio) -> dict[tuple[int, ...], str]:
    """The inputs the features fit, each with its order name (see the module docstring)."""
    grid = feature_grid(audio)
    if len(grid) == 1:
        return {grid: "samples", grid + (1,): "samples"}
    b, f = grid
    return {(1, b, f): "bands_frames", (f, b): "frames_bands"}


def problem(audio) -> str | None:
    """What is wrong with the settings alone (a clip shorter than a frame, bands above the
    Nyquist frequency, more coefficients than bands), or None."""
    s = n_samples(audio)
    if audio.features == "waveform":
        return None
    window = param(audio, "window")
    if s < window:
        return (f"a clip of {audio.duration:g} s at {audio.rate} Hz is {s} samples, shorter than one "
                f"window of {window}; expected window <= {s}")
    if audio.features in ("logmel", "mfcc"):
        fmin, fmax = param(audio, "fmin"), param(audio, "fmax")
        if fmax > audio.rate / 2:
            return f"fmax={fmax:g} Hz is above half the sample rate ({audio.rate / 2:g} Hz)"
        if fmin >= fmax:
            return f"fmin={fmin:g} Hz must be below fmax={fmax:g} Hz"
        if audio.features == "mfcc" and param(audio, "coeffs") > param(audio, "bands"):
            return (f"mfcc keeps coeffs={param(audio, 'coeffs')} of bands={param(audio, 'bands')} "
                    f"mel bands; expected coeffs <= bands")
    return None


def shape_text(shape) -> str:
    return "x".join(str(d) for d in shape)


def order_of(audio, input_shape) -> str | None:
    """The order name of ``input_shape`` (``input_orders``), or None when the features do not fit it."""
    return input_orders(audio).get(tuple(int(d) for d in input_shape))


def mismatch(audio, input_shape) -> str | None:
    """A message when the model's input cannot hold the features, else None."""
    if order_of(audio, input_shape) is not None:
        return None
    grid = feature_grid(audio)
    what = (f"{grid[0]} samples" if len(grid) == 1 else
            f"{grid[0]} {'bins' if audio.features in ('spectrogram', 'power') else 'values'} x {grid[1]} frames")
    fits = " or ".join(shape_text(s) for s in input_orders(audio))
    return (f"the features '{audio.features}' give {what} per clip, expected input {fits}, "
            f"but the model's input is {shape_text(input_shape)}")
