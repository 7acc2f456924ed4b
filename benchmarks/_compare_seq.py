"""The text and audio workloads of ``compare.py``: ``models/langid.net`` and
``models/spoken_digits.net`` in dlrun against the same networks in PyTorch eager.

Both tools train on the same NumPy arrays, made once by dlrun's own data block
(``prepare``: the model file's ``data { ... }`` read from ``--data-root``: text tokenized to
character ids padded to ``max_length``; audio as log-mel frames) and saved to a ``.npz`` the
workers load. dlrun trains with ``Model.fit(x, y)`` on them (its file's ``standardize`` step
fitted on the training split inside ``fit``); PyTorch gets the same arrays, the audio
features standardized by dlrun's fitted preprocessor ("NumPy features fed to it").

The PyTorch network is translated layer by layer from the model file (``TorchSeqNet``):
embedding -> nn.Embedding (row 0 = padding, no gradient), conv1d -> nn.Conv1d over time,
batchnorm -> nn.BatchNorm1d over (n, C, T), per channel over batch and time as dlrun's
batchnorm normalises a sequence, maxpool1d -> nn.MaxPool1d, global_maxpool -> max over time that
ignores each text's padding as dlrun's does (valid steps: 1 + the last non-padding position,
mapped through the window layers), dropout, dense -> nn.Linear; dlrun's initialisation (He
normal before relu, else Xavier uniform, fans as PyTorch counts them; embedding N(0, 1));
the file's optimizer (Adam) and learning rate; batch from the command line (default the
file's). A layer the translator does not know makes the PyTorch tool unavailable (said in the
report), never a different network.
"""
from __future__ import annotations

import os
import re
import time

import numpy as np

from _compare_tools import DlrunRunner, REPO, TorchRunner, ToolUnavailable

MODELS = {"text": os.path.join(REPO, "models", "langid.net"),
          "audio": os.path.join(REPO, "models", "spoken_digits.net")}


def data_paths(workload, data_root):
    """The files/folders the model file's data block reads, resolved against ``data_root``."""
    from dlrun import dsl

    m = dsl.load_file(MODELS[workload])
    out = []
    for role in ("train", "test"):
        src = getattr(m.data, role)
        out.append(os.path.join(data_root, src.path))
    return out


def prepare(workload, data_root, out, limit=None):
    """Read the model file's data with dlrun (timed) and save the arrays both tools train on.

    Saved: x_train, y_train, x_test, y_test (dlrun's inputs: token ids, or raw log-mel
    frames), x_train_std / x_test_std (audio: standardized by the preprocessor fitted on the
    training split), n_full (training rows before ``limit``), load_seconds, class_names,
    vocab_size. Returns a dict describing the data.
    """
    import warnings

    import dlrun

    with open(MODELS[workload], encoding="utf-8") as f:
        text = f.read()
    model = dlrun.loads(text, base_dir=data_root)
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sp = model.splits()
    seconds = time.perf_counter() - t0
    x, y, xt, yt = sp.train.x, sp.train.y, sp.test.x, sp.test.y
    n_full = x.shape[0]
    if limit is not None and limit < n_full:
        x, y = x[:limit], y[:limit]
    arrays = {"x_train": x, "y_train": y, "x_test": xt, "y_test": yt, "n_full": n_full,
              "load_seconds": seconds}
    pre = sp.preprocessor
    if workload == "audio":
        from dlrun.runtime.data import Preprocessor

        # standardized as dlrun's fit() will: the preprocessor fitted on the rows trained on
        steps = model.ir.data.preprocess
        from dlrun.runtime.data.load import band_groups

        pre = Preprocessor(steps, bands=band_groups(model.ir.data, model.ir.input_shape))
        pre.fit(x)
        for k, v in (("x_train_std", x), ("x_test_std", xt)):
            flat = np.empty((v.shape[0], int(np.prod(v.shape[1:]))), np.float32)
            pre.apply(v.reshape(v.shape[0], -1), flat)
            arrays[k] = flat.reshape(v.shape)
    if sp.class_names is not None:
        arrays["class_names"] = np.asarray(sp.class_names)
    if sp.vocab_size is not None:
        arrays["vocab_size"] = sp.vocab_size
    np.savez(out, **arrays)
    return {"train": int(x.shape[0]), "train_full": int(n_full), "test": int(xt.shape[0]),
            "shape": list(x.shape[1:]), "load_seconds": seconds, "validation_held_out":
            0 if sp.validation is None else int(sp.validation.x.shape[0]),
            "warnings": [str(w.message) for w in caught]}


def load_arrays(path, tool):
    """``(x, y, xt, yt)`` for ``tool`` from the prepared file (PyTorch: standardized audio)."""
    d = np.load(path)
    key = "_std" if tool.startswith("pytorch") and "x_train_std" in d else ""
    return (d["x_train" + key], d["y_train"], d["x_test" + key], d["y_test"])


def data_vocab(path):
    """The token id count of the prepared data (the reserved 0 and 1 included), or None."""
    d = np.load(path)
    return int(d["vocab_size"]) if "vocab_size" in d else None


class DlrunSeqRunner(DlrunRunner):
    raw_input = True    # predict() takes the prepared arrays as they are

    def __init__(self, data, workload, data_root, vocab=None):
        super().__init__(data, model_file=MODELS[workload], base_dir=data_root)
        if vocab is not None:
            # token ids of our own: an embedding that takes its size from the data's tokens is
            # told the size the data block gave (the network the file trains)
            self.text = re.sub(r"(\bembedding\s+\d+)(?![^\n]*\bvocab\s*=)", rf"\1 vocab={vocab}", self.text)


def torch_seq_net(torch, model_ir, vocab=None):
    """The model file's layers as a PyTorch module on (n, T, C) float features or (n, T) ids."""
    nn = torch.nn
    shape = tuple(model_ir.layers[0].params["shape"])
    steps = shape[0]
    channels = shape[1] if len(shape) == 2 else None
    mods = []          # (kind, module or None, extra)
    tokens = False
    for layer in model_ir.layers[1:]:
        p = layer.params
        k = layer.kind
        if k == "embedding":
            rows = p.get("vocab") or vocab
            if rows is None:
                raise ToolUnavailable("the embedding's vocabulary size is not known (no vocab= and no "
                                      "token ids in the prepared data)")
            emb = nn.Embedding(int(rows), int(p["dim"]), padding_idx=0)
            nn.init.normal_(emb.weight)
            with torch.no_grad():
                emb.weight[0] = 0
            mods.append(("embedding", emb, None))
            channels, tokens = int(p["dim"]), True
        elif k == "conv1d":
            if p["padding"] not in ("same", "valid") or int(p["dilation"]) != 1:
                raise ToolUnavailable(f"conv1d padding={p['padding']} dilation={p['dilation']}: "
                                      "not in the PyTorch translator")
            f, ks, stride = int(p["filters"]), int(p["kernel"]), int(p["stride"])
            if p["padding"] == "same" and (stride != 1 or ks % 2 == 0):
                raise ToolUnavailable("conv1d padding=same with stride > 1 or an even kernel: "
                                      "not in the PyTorch translator")
            conv = nn.Conv1d(channels, f, ks, stride=stride, padding=p["padding"],
                             bias=bool(p["bias"]))
            act = p["activation"].name
            init = p["init"] or ("he_normal" if act == "relu" else "xavier_uniform")
            if init == "he_normal":
                nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
            elif init == "xavier_uniform":
                nn.init.xavier_uniform_(conv.weight)
            else:
                raise ToolUnavailable(f"conv1d init={init}: not in the PyTorch translator")
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)
            t_out = steps if p["padding"] == "same" else (steps - ks) // stride + 1
            mods.append(("window", conv, stride))
            if act not in ("linear", "relu"):
                raise ToolUnavailable(f"conv1d activation {act}: not in the PyTorch translator")
            if act == "relu":
                mods.append(("act", nn.ReLU(), None))
            steps, channels = t_out, f
        elif k == "batchnorm":
            # per channel: over batch and time on a sequence (n, C, T), over the batch once flat
            bn = nn.BatchNorm1d(channels, eps=float(p["eps"]), momentum=1 - float(p["momentum"]))
            mods.append(("flat", bn, None))
        elif k == "activation":
            if p["activation"].name != "relu":
                raise ToolUnavailable(f"activation {p['activation'].name}: not in the PyTorch translator")
            mods.append(("act", nn.ReLU(), None))
        elif k == "maxpool1d":
            ks = int(p["kernel"])
            stride = int(p["stride"] or ks)
            if tuple(p["padding"]) != (0, 0):
                raise ToolUnavailable("maxpool1d with padding: not in the PyTorch translator")
            mods.append(("window", nn.MaxPool1d(ks, stride), stride))
            steps = (steps - ks) // stride + 1
        elif k == "global_maxpool":
            mods.append(("gmax", None, steps))
        elif k == "dropout":
            mods.append(("flat", nn.Dropout(float(p["rate"])), None))
        elif k == "dense":
            d = nn.Linear(channels, int(p["units"]), bias=bool(p["bias"]))
            act = p["activation"].name
            init = p["init"] or ("he_normal" if act == "relu" else "xavier_uniform")
            (nn.init.kaiming_normal_(d.weight, nonlinearity="relu") if init == "he_normal"
             else nn.init.xavier_uniform_(d.weight))
            if d.bias is not None:
                nn.init.zeros_(d.bias)
            mods.append(("flat", d, None))
            if act == "relu":
                mods.append(("flat", nn.ReLU(), None))
            elif act != "softmax":
                raise ToolUnavailable(f"dense activation {act}: not in the PyTorch translator")
            channels = int(p["units"])
        else:
            raise ToolUnavailable(f"layer {k!r} of {model_ir.name}: not in the PyTorch translator")

    class SeqNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.mods = nn.ModuleList([m for _, m, _ in mods if m is not None])
            self.plan = mods

        def forward(self, x):
            lengths = None
            if tokens:
                ids = x
                t = ids.shape[1]
                pos = torch.arange(1, t + 1, device=ids.device)
                lengths = ((ids != 0) * pos).amax(1)        # 1 + the last non-padding position
            h = None
            for kind, m, extra in self.plan:
                if kind == "embedding":
                    h = m(x).transpose(1, 2)                # (n, C, T)
                elif h is None:
                    h = x.transpose(1, 2)
                if kind == "window":
                    h = m(h)
                    if lengths is not None:                 # ceil(length / stride), capped
                        lengths = torch.clamp((lengths + extra - 1) // extra, max=h.shape[2])
                elif kind == "act":
                    h = m(h)
                elif kind == "gmax":
                    if lengths is not None:
                        valid = torch.arange(h.shape[2], device=h.device)[None, :] < lengths[:, None]
                        h = h.masked_fill(~valid[:, None, :], float("-inf"))
                    h = h.amax(2)
                elif kind == "flat":
                    h = m(h)
            return h

    return SeqNet(), tokens


class TorchSeqRunner(TorchRunner):
    """PyTorch eager on the model file's network (``torch_seq_net``), default Adam."""

    convert_predict = True
    eval_chunk = 256

    def __init__(self, data, workload, data_root, vocab=None):
        from dlrun import dsl

        self.vocab = vocab
        self.ir = dsl.load_file(MODELS[workload])
        self.tokens = any(layer.kind == "embedding" for layer in self.ir.layers)
        opt = self.ir.optimizer
        if opt.name != "adam" or self.ir.loss.name != "cross_entropy":
            raise ToolUnavailable(f"{MODELS[workload]}: optimizer {opt.name} / loss {self.ir.loss.name}; "
                                  "the PyTorch reference runs Adam and cross-entropy")
        super().__init__(data)

    def tensor(self, x):
        t = self.torch.from_numpy(np.ascontiguousarray(x))
        return t.long() if self.tokens else t.float()

    def build(self, torch):
        net, _ = torch_seq_net(torch, self.ir, self.vocab)
        return net, float(self.ir.optimizer.params["lr"]), float(self.ir.loss.params.get("label_smoothing") or 0.0)


def runners(workload, data_root, prepared):
    """The tools of a workload, each taking the worker's data tuple."""
    vocab = data_vocab(prepared)
    return {"dlrun": lambda data: DlrunSeqRunner(data, workload, data_root, vocab),
            "pytorch": lambda data: TorchSeqRunner(data, workload, data_root, vocab)}
