"""``dlrun train --plot curves.png``: the training curves of a run (matplotlib, the ``plot``
extra: ``pip install 'dlrun[plot]'``).

One panel per quantity the history holds (the loss first, then each metric, then the
learning rate when a schedule moved it), training and validation on the same axes, the
best epoch (the one early stopping or the monitor picked) marked by a vertical line.
"""
from __future__ import annotations

import os

from dlrun.errors import UsageError

_SKIP = ("seconds", "penalty")


def require_matplotlib():
    """The ``matplotlib.pyplot`` module on a file-only backend; UsageError naming the extra."""
    try:
        import matplotlib
    except ImportError:
        raise UsageError("--plot needs matplotlib: pip install 'dlrun[plot]'") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def quantities(history) -> list[str]:
    """The panels: each training quantity of the history, in its order ('lr' last)."""
    names = []
    for epoch in history.epochs:
        for k in epoch:
            if k in _SKIP or k.startswith("val_") or k in names:
                continue
            names.append(k)
    return sorted(names, key=lambda k: (k == "lr", names.index(k)))


def plot_history(history, path, title: str = "") -> str:
    """Write the curves of ``history`` (a ``train.History``) to ``path`` (.png, .pdf or
    .svg, by its suffix); returns the path."""
    plt = require_matplotlib()
    names = quantities(history)
    if not names:
        raise UsageError("--plot: the run recorded no epochs to plot")
    epochs = list(range(1, history.epochs_run + 1))
    fig, axes = plt.subplots(len(names), 1, figsize=(7, 2.6 * len(names)), sharex=True, squeeze=False)
    for ax, name in zip(axes[:, 0], names):
        train = [e.get(name) for e in history.epochs]
        ax.plot(epochs, train, label="rate of the epoch's last batch" if name == "lr" else "training",
                color="tab:blue")
        val = [e.get(f"val_{name}") for e in history.epochs]
        if any(v is not None for v in val):
            ax.plot(epochs, val, label="validation", color="tab:orange")
        if history.best_epoch:
            ax.axvline(history.best_epoch, color="tab:green", linestyle="--", linewidth=1,
                       label=f"best epoch ({history.best_epoch})")
        if name == "lr":
            ax.set_yscale("log")
        ax.set_ylabel(name)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best", fontsize="small")
    axes[-1, 0].set_xlabel("epoch")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    tmp = f"{path}.tmp-{os.getpid()}{os.path.splitext(path)[1]}"
    try:
        fig.savefig(tmp)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
