"""The CNN workload of ``compare.py``: issue 12's recipe on MNIST in dlrun, PyTorch eager and
ONNX Runtime, behind the runner interface of ``_compare_tools.py``.

Recipe (the same in every tool): input 1x28x28, conv2d 16 3x3 same, batchnorm, relu, maxpool
2x2, conv2d 32 3x3 same, batchnorm, relu, maxpool 2x2, flatten, dense 128 relu, dropout 0.25,
dense 10 softmax; cross-entropy, Adam 1e-3, float32; images scaled to [0, 1] once, before
training (the recipe has no data block). PyTorch runs nn.Conv2d / BatchNorm2d / MaxPool2d /
Linear (its oneDNN convolutions), eager, default Adam. ONNX Runtime runs a graph built from
dlrun's trained weights (``build_onnx``), inference only.
"""
from __future__ import annotations

import time

import numpy as np

from _compare_tools import THREADS, DlrunRunner, Runner, TorchRunner, ToolUnavailable, gemm_times

RECIPE = """dlrun 1
model cnn_recipe {
  input 1x28x28
  conv2d 16 3x3 padding=same
  batchnorm
  relu
  maxpool 2x2
  conv2d 32 3x3 padding=same
  batchnorm
  relu
  maxpool 2x2
  flatten
  dense 128 relu
  dropout 0.25
  dense 10 softmax
  loss cross_entropy
  optimizer adam lr=1e-3
  train batch=64 seed=1
}
"""
LR = 1e-3


def scaled(x):
    """uint8 pixels (n, 784) -> float32 in [0, 1]."""
    return np.multiply(x, np.float32(1 / 255), dtype=np.float32)


def torch_cnn(torch):
    nn = torch.nn
    return nn.Sequential(
        nn.Unflatten(1, (1, 28, 28)),
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 128), nn.ReLU(), nn.Dropout(0.25), nn.Linear(128, 10))


def cnn_gemm_shapes(batch):
    """The recipe's GEMMs of one training step, each over the whole batch (im2col columns of
    every sample side by side), as (name, m, k, n, trans_a, trans_b): C (m, n). About 7.1
    MFLOP per sample; the first convolution needs no input gradient."""
    b = batch
    return [
        ("conv1 fwd W col", 16, 9, b * 784, False, False),
        ("conv1 dW dY col^T", 16, b * 784, 9, False, True),
        ("conv2 fwd W col", 32, 144, b * 196, False, False),
        ("conv2 dW dY col^T", 32, b * 196, 144, False, True),
        ("conv2 dcol W^T dY", 144, 32, b * 196, True, False),
        ("dense1 fwd X W", b, 1568, 128, False, False),
        ("dense1 dW X^T dZ", 1568, b, 128, True, False),
        ("dense1 dX dZ W^T", b, 128, 1568, False, True),
        ("dense2 fwd H W", b, 128, 10, False, False),
        ("dense2 dW H^T dZ", 128, b, 10, True, False),
        ("dense2 dH dZ W^T", b, 10, 128, False, True),
    ]


class DlrunCnnRunner(DlrunRunner):
    """dlrun's API on the recipe text: ``fit`` on the scaled images, one epoch per call."""

    raw_input = False   # predict() gets float32 in [0, 1], as PyTorch does

    def __init__(self, data):
        x, y, xt, yt = data
        super().__init__((scaled(x), y, scaled(xt), yt), text=RECIPE)

    def gemm(self, batch, repeats):
        """The GEMM floor's parts (NumPy sgemm in this process, 2 BLAS threads)."""
        return gemm_times(batch, repeats, cnn_gemm_shapes(batch))

    def layers(self, batch, reps):
        """Median ms of each body layer's forward (training mode) and backward over ``reps``
        training steps on the first ``batch`` images of the batch's model."""
        from dlrun.runtime.optimizers import Optimizer

        model = self.model(batch)
        net = model.network
        if model.optimizer is None:
            model.optimizer = Optimizer(model.ir.optimizer, net.store)
        x = self.x[:batch]
        y = self.y[:batch].astype(net.loss.target_dtype(net.dtype))
        g = np.empty((batch, net.output_features), net.dtype)
        fw = {l.index: [] for l in net.body}
        bw = {l.index: [] for l in net.body}
        for _ in range(reps):
            h = x
            for layer in net.body:
                t = time.perf_counter()
                h = layer.forward(h, True, logits=True) if layer is net._head_dense else layer.forward(h, True)
                fw[layer.index].append(time.perf_counter() - t)
            net.loss(h, y, g)
            d = g
            for layer in net._backward_layers:
                t = time.perf_counter()
                d = layer.backward(d)
                bw[layer.index].append(time.perf_counter() - t)
            model.optimizer.step()
        return [[f"{l.index}:{l.kind}", 1e3 * float(np.median(fw[l.index])),
                 1e3 * float(np.median(bw[l.index])) if bw[l.index] else None] for l in net.body]

    def export(self, batch, path):
        """The trained network's layers and weights (eval mode) for ``build_onnx``."""
        net = self.model(batch).network
        arrays, kinds = {}, []
        for layer in net.body:
            i = layer.index
            kinds.append(layer.kind)
            for k, v in layer.params.items():
                arrays[f"{i}_{k}"] = np.asarray(v)
            for k, v in (getattr(layer, "state", None) or {}).items():
                arrays[f"{i}_{k}"] = np.asarray(v)
            if layer.kind == "batchnorm":
                arrays[f"{i}_eps"] = np.float64(layer.eps)
            if layer.kind in ("conv2d", "maxpool"):
                arrays[f"{i}_pads"] = np.asarray(layer.pads)
                arrays[f"{i}_stride"] = np.asarray(layer.stride)
            if layer.kind == "maxpool":
                arrays[f"{i}_kernel"] = np.asarray(layer.kernel)
            if layer.kind in ("dense", "conv2d", "activation"):
                arrays[f"{i}_act"] = np.asarray(layer.act)
        arrays["kinds"] = np.asarray(kinds)
        np.savez(path, **arrays)


class TorchCnnRunner(TorchRunner):
    """PyTorch eager on the recipe: the scaled set as one float32 tensor, default Adam."""

    def build(self, torch):
        return torch_cnn(torch), LR, 0.0


def build_onnx(w):
    """ONNX graph of dlrun's exported CNN (``DlrunCnnRunner.export``): Conv, BatchNormalization,
    Relu, MaxPool, Flatten, Gemm as dlrun's layers are written (dropout left out: eval
    mode), softmax at the end; input ``x`` (n, 784) float32 in [0, 1]."""
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []

    def init(name, arr):
        inits.append(numpy_helper.from_array(np.ascontiguousarray(arr, np.float32), name))

    nodes.append(helper.make_node("Reshape", ["x", "shape_in"], ["h0"]))
    inits.append(numpy_helper.from_array(np.asarray([-1, 1, 28, 28], np.int64), "shape_in"))
    prev, n = "h0", 0

    def out():
        nonlocal n
        n += 1
        return f"h{n}"

    def act(name, src):
        if name == "relu":
            dst = out()
            nodes.append(helper.make_node("Relu", [src], [dst]))
            return dst
        if name == "softmax":
            dst = out()
            nodes.append(helper.make_node("Softmax", [src], [dst], axis=1))
            return dst
        if name != "linear":
            raise ValueError(f"build_onnx: activation {name!r} not handled")
        return src

    for idx, kind in enumerate(w["kinds"], start=1):
        kind = str(kind)
        p = f"{idx}_"
        if kind == "conv2d":
            t, b, l, r = (int(v) for v in w[p + "pads"])     # dlrun: top, bottom, left, right
            init(p + "w", w[p + "w"])
            init(p + "b", w[p + "b"])
            dst = out()
            nodes.append(helper.make_node("Conv", [prev, p + "w", p + "b"], [dst],
                                          pads=[t, l, b, r], strides=[int(s) for s in w[p + "stride"]],
                                          kernel_shape=list(w[p + "w"].shape[2:])))
            prev = act(str(w[p + "act"]), dst)
        elif kind == "batchnorm":
            for k in ("gamma", "beta", "running_mean", "running_var"):
                init(p + k, w[p + k])
            dst = out()
            nodes.append(helper.make_node("BatchNormalization", [prev] + [p + k for k in (
                "gamma", "beta", "running_mean", "running_var")], [dst], epsilon=float(w[p + "eps"])))
            prev = dst
        elif kind == "activation":
            prev = act(str(w[p + "act"]), prev)
        elif kind == "maxpool":
            t, b, l, r = (int(v) for v in w[p + "pads"])
            dst = out()
            nodes.append(helper.make_node("MaxPool", [prev], [dst], kernel_shape=[int(k) for k in w[p + "kernel"]],
                                          strides=[int(s) for s in w[p + "stride"]], pads=[t, l, b, r]))
            prev = dst
        elif kind == "flatten":
            dst = out()
            nodes.append(helper.make_node("Flatten", [prev], [dst], axis=1))
            prev = dst
        elif kind == "dense":
            init(p + "w", w[p + "w"])            # (in, units): Gemm without transB
            init(p + "b", w[p + "b"])
            dst = out()
            nodes.append(helper.make_node("Gemm", [prev, p + "w", p + "b"], [dst]))
            prev = act(str(w[p + "act"]), dst)
        elif kind == "dropout":
            continue
        else:
            raise ValueError(f"build_onnx: layer {kind!r} not handled")
    nodes.append(helper.make_node("Identity", [prev], ["prob"]))
    graph = helper.make_graph(
        nodes, "cnn_recipe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 784])],
        [helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["n", 10])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


class OrtCnnRunner(Runner):
    """ONNX Runtime, inference only, on the graph of dlrun's trained weights."""

    name = "onnxruntime"

    def __init__(self, data):
        super().__init__(data)
        try:
            import onnx  # noqa: F401
            import onnxruntime
        except ImportError as e:
            raise ToolUnavailable(f"onnxruntime/onnx not installed ({e})") from None
        self.ort = onnxruntime
        self.xt = scaled(self.xt)

    def info(self):
        d = super().info()
        import onnx
        d.update(onnxruntime=self.ort.__version__, onnx=onnx.__version__, intra_op_threads=THREADS)
        return d

    def load(self, batch, path, fold=True):
        so = self.ort.SessionOptions()
        so.intra_op_num_threads = THREADS
        so.inter_op_num_threads = 1
        so.graph_optimization_level = self.ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.models[batch] = self.ort.InferenceSession(
            build_onnx(dict(np.load(path))).SerializeToString(), so, providers=["CPUExecutionProvider"])

    def evaluate(self, batch):
        p = self.predict(batch, self.xt)
        return float((p.argmax(1) == self.yt).mean())

    def predict(self, batch, x):
        return self.model(batch).run(None, {"x": x})[0]


RUNNERS = {"dlrun": DlrunCnnRunner, "pytorch": TorchCnnRunner, "onnxruntime": OrtCnnRunner}
