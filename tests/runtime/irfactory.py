"""Build checked-looking ``ir.Model`` objects directly, without the parser.

Runtime tests use these so that they exercise the runtime alone (the parser has its own
tests); every parameter the checker would fill in is filled in here.
"""
from dlrun.dsl import ir


def act(name, **params):
    return ir.Activation(name, dict(params))


def input_(*shape):
    return ir.Layer("input", {"shape": tuple(shape)}, shape=tuple(shape))


def dense(units, activation="linear", init=None, bias=True, l1=None, l2=None, name=None, **aparams):
    return ir.Layer(
        "dense",
        {"units": units, "activation": act(activation, **aparams), "init": init, "bias": bias, "l1": l1, "l2": l2},
        name=name,
        shape=(units,),
    )


def activation(name, **params):
    return ir.Layer("activation", {"activation": act(name, **params)})


def batchnorm(momentum=0.9, eps=1e-5):
    return ir.Layer("batchnorm", {"momentum": momentum, "eps": eps})


def dropout(rate):
    return ir.Layer("dropout", {"rate": rate})


def flatten():
    return ir.Layer("flatten", {})


def _pair(v):
    return v if isinstance(v, (tuple, str)) else (v, v)


def conv2d(filters, kernel, activation="linear", stride=1, padding="valid", dilation=1, groups=1,
           init=None, bias=True, l1=None, l2=None, **aparams):
    return ir.Layer("conv2d", {
        "filters": filters, "kernel": _pair(kernel), "activation": act(activation, **aparams),
        "stride": _pair(stride), "padding": _pair(padding), "dilation": _pair(dilation), "groups": groups,
        "init": init, "bias": bias, "l1": l1, "l2": l2})


def maxpool(kernel, stride=None, padding=0):
    return ir.Layer("maxpool", {"kernel": _pair(kernel), "stride": None if stride is None else _pair(stride),
                                "padding": _pair(padding)})


def avgpool(kernel, stride=None, padding=0):
    return ir.Layer("avgpool", {"kernel": _pair(kernel), "stride": None if stride is None else _pair(stride),
                                "padding": _pair(padding)})


def global_avgpool():
    return ir.Layer("global_avgpool", {})


def global_maxpool():
    return ir.Layer("global_maxpool", {})


def _with_shapes(layers):
    """Fill in ``shape`` the way the checker does: each layer's spec infers it (a straight
    line of layers, each taking the one before)."""
    from dlrun.dsl.layers import spec

    out, shape = [], None
    for layer in layers:
        shape = tuple(spec(layer.kind).infer(layer, [shape], ["the layer before"]))
        out.append(ir.Layer(layer.kind, layer.params, layer.name, shape, layer.pos))
    return tuple(out)


def add():
    return ir.Layer("add", {})


def concat():
    return ir.Layer("concat", {})


OPT_DEFAULTS = dict(lr=0.01, momentum=0.0, nesterov=False, beta1=0.9, beta2=0.999, eps=1e-7, rho=0.9,
                    weight_decay=0.0, clip_norm=None)


def model(layers, loss="cross_entropy", optimizer="adam", epochs=5, batch_size=16, seed=0, dtype="float32",
          l1=0.0, l2=0.0, early_stopping=None, data=None, loss_params=None, name="test", shuffle=True, **opt):
    loss_params = dict(loss_params or {})
    if loss == "cross_entropy":
        loss_params.setdefault("label_smoothing", 0.0)
    if loss == "huber":
        loss_params.setdefault("delta", 1.0)
    return ir.Model(
        name=name,
        version=1,
        layers=_with_shapes(layers),
        loss=ir.Loss(loss, loss_params),
        optimizer=ir.Optimizer(optimizer, {**OPT_DEFAULTS, **opt}),
        regularize=ir.Regularize(l1, l2),
        train=ir.Train(epochs=epochs, batch_size=batch_size, seed=seed, shuffle=shuffle, dtype=dtype),
        early_stopping=early_stopping,
        data=data,
    )


def mlp(inputs=4, hidden=(8,), outputs=3, activation_name="tanh", out="softmax", **kw):
    layers = [input_(inputs)]
    for h in hidden:
        layers.append(dense(h, activation_name))
    layers.append(dense(outputs, out))
    return model(layers, **kw)


def embedding(dim, vocab):
    return ir.Layer("embedding", {"dim": dim, "vocab": vocab})


def conv1d(filters, kernel, activation="linear", stride=1, padding="valid", dilation=1, init=None,
           bias=True, l1=None, l2=None, **aparams):
    return ir.Layer("conv1d", {
        "filters": filters, "kernel": kernel, "activation": act(activation, **aparams), "stride": stride,
        "padding": _pair(padding), "dilation": dilation, "init": init, "bias": bias, "l1": l1, "l2": l2})


def maxpool1d(kernel, stride=None, padding=0):
    return ir.Layer("maxpool1d", {"kernel": kernel, "stride": stride, "padding": _pair(padding)})


def avgpool1d(kernel, stride=None, padding=0):
    return ir.Layer("avgpool1d", {"kernel": kernel, "stride": stride, "padding": _pair(padding)})
