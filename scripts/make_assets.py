"""Builds the ONNX test assets in assets/onnx/ (rerun: python3 scripts/make_assets.py).

Needs: pip install torch onnx onnxruntime onnxscript.
For each small network (seeded PyTorch initialisation, eval mode) it writes
  NAME_ts.onnx   exported by the TorchScript-based exporter (dynamo=False),
  NAME_dy.onnx   exported by the dynamo-based exporter (dynamo=True),
  NAME.json      the same network in tessera-model/1, written from the state dict,
  NAME.ref.json  a slice (plane and box) and onnxruntime outputs at seeded probe points,
and a few malformed models for the error tests.
"""
import json
import os

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "assets", "onnx")


class Maxout(nn.Module):
    def __init__(self, groups, k):
        super().__init__()
        self.groups, self.k = groups, k

    def forward(self, x):
        return x.view(x.shape[0], self.groups, self.k).max(-1).values


class Res(nn.Module):
    """y = body(x) + shortcut(x) (identity shortcut when None)."""

    def __init__(self, body, shortcut=None):
        super().__init__()
        self.body, self.shortcut = body, shortcut

    def forward(self, x):
        return self.body(x) + (x if self.shortcut is None else self.shortcut(x))


class ResFirst(Res):
    """x + body(x): the skip is the Add's first input."""

    def forward(self, x):
        return x + self.body(x)


class Cat(nn.Module):
    """torch.cat([a(x), b(x)], dim=1)."""

    def __init__(self, a, b):
        super().__init__()
        self.a, self.b = a, b

    def forward(self, x):
        return torch.cat([self.a(x), self.b(x)], dim=1)


class Mx(nn.Module):
    """torch.maximum(a(x), b(x))."""

    def __init__(self, a, b):
        super().__init__()
        self.a, self.b = a, b

    def forward(self, x):
        return torch.maximum(self.a(x), self.b(x))


def lin(l):
    return {"op": "linear", "weight": l.weight.tolist(), "bias": l.bias.tolist()}


def to_json(model, input_shape):
    return {"format": "tessera-model/1", "input_shape": input_shape, "layers": to_layers(model)}


def to_layers(model):
    layers = []
    for m in model:
        if isinstance(m, Cat) or isinstance(m, Mx):
            layers.append({"op": "concat" if isinstance(m, Cat) else "max",
                           "branches": [to_layers(m.a), to_layers(m.b)]})
            continue
        if isinstance(m, Res):  # ResFirst included: the sum does not depend on the order
            layers.append({"op": "residual", "layers": to_layers(m.body),
                           "shortcut": [] if m.shortcut is None else to_layers(m.shortcut)})
            continue
        if isinstance(m, nn.Linear):
            layers.append(lin(m))
        elif isinstance(m, nn.Conv2d):
            layers.append({"op": "conv2d", "weight": m.weight.tolist(), "bias": m.bias.tolist(),
                           "stride": list(m.stride), "padding": list(m.padding), "dilation": list(m.dilation),
                           "groups": m.groups})
        elif isinstance(m, nn.BatchNorm2d) or isinstance(m, nn.BatchNorm1d):
            layers.append({"op": "batch_norm", "weight": m.weight.tolist(), "bias": m.bias.tolist(),
                           "running_mean": m.running_mean.tolist(), "running_var": m.running_var.tolist(),
                           "eps": m.eps})
        elif isinstance(m, nn.ReLU):
            layers.append({"op": "relu"})
        elif isinstance(m, nn.ReLU6):
            layers.append({"op": "relu6"})
        elif isinstance(m, nn.LeakyReLU):
            layers.append({"op": "leaky_relu", "negative_slope": m.negative_slope})
        elif isinstance(m, nn.PReLU):
            layers.append({"op": "prelu", "weight": m.weight.tolist()})
        elif isinstance(m, nn.Hardtanh):
            layers.append({"op": "hardtanh", "min_val": m.min_val, "max_val": m.max_val})
        elif isinstance(m, Abs):
            layers.append({"op": "abs"})
        elif isinstance(m, nn.MaxPool2d):
            layers.append({"op": "max_pool2d", "kernel_size": m.kernel_size, "stride": m.stride, "padding": m.padding})
        elif isinstance(m, nn.AvgPool2d):
            layers.append({"op": "avg_pool2d", "kernel_size": m.kernel_size, "stride": m.stride, "padding": m.padding})
        elif isinstance(m, nn.AdaptiveAvgPool2d):
            h, w = current_hw[0]
            layers.append({"op": "avg_pool2d", "kernel_size": [h, w], "stride": [h, w]})
        elif isinstance(m, nn.Flatten):
            layers.append({"op": "flatten"})
        elif isinstance(m, Maxout):
            layers.append({"op": "maxout", "pool_size": m.k})
        else:
            raise ValueError(m)
    return layers


class Abs(nn.Module):
    def forward(self, x):
        return torch.abs(x)


current_hw = [None]


def models():
    torch.manual_seed(0)
    yield "mlp", nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3)), [2]
    torch.manual_seed(1)
    bn = nn.BatchNorm2d(4)
    bn.running_mean.uniform_(-0.3, 0.3)
    bn.running_var.uniform_(0.5, 1.5)
    bn.weight.data.uniform_(0.5, 1.5)
    bn.bias.data.uniform_(-0.2, 0.2)
    yield "cnn", nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), bn, nn.ReLU(), nn.MaxPool2d(2),
                               nn.Conv2d(4, 6, 3, padding=1), nn.LeakyReLU(0.1), nn.AvgPool2d(2),
                               nn.Flatten(), nn.Linear(24, 3)), [1, 8, 8]
    torch.manual_seed(2)
    yield "maxout", nn.Sequential(nn.Linear(2, 12), Maxout(4, 3), nn.Linear(4, 6), Maxout(2, 3), nn.Linear(2, 2)), [2]
    torch.manual_seed(3)
    yield "abs", nn.Sequential(nn.Linear(2, 10), Abs(), nn.Linear(10, 10), nn.Hardtanh(-0.5, 0.5),
                               nn.Linear(10, 8), nn.ReLU6(), nn.Linear(8, 6), nn.PReLU(), nn.Linear(6, 2)), [2]
    torch.manual_seed(5)
    yield "resmlp", nn.Sequential(nn.Linear(2, 8), nn.ReLU(),
                                  Res(nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8))), nn.ReLU(),
                                  Res(nn.Sequential(nn.Linear(8, 6), nn.Abs() if hasattr(nn, "Abs") else Abs(), nn.Linear(6, 6)),
                                      nn.Sequential(nn.Linear(8, 6))),
                                  nn.Linear(6, 3)), [2]
    torch.manual_seed(6)

    def bn(c):
        b = nn.BatchNorm2d(c)
        b.running_mean.uniform_(-0.2, 0.2)
        b.running_var.uniform_(0.5, 1.5)
        b.weight.data.uniform_(0.5, 1.5)
        b.bias.data.uniform_(-0.2, 0.2)
        return b
    current_hw[0] = (4, 4)
    yield "resnet", nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1), bn(3), nn.ReLU(),
        Res(nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), bn(3), nn.ReLU(), nn.Conv2d(3, 3, 3, padding=1), bn(3))),
        nn.ReLU(),
        Res(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, stride=2), bn(4), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), bn(4)),
            nn.Sequential(nn.Conv2d(3, 4, 1, stride=2), bn(4))),
        nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)), [1, 8, 8]
    torch.manual_seed(9)
    yield "skipfirst", nn.Sequential(nn.Linear(2, 6), nn.ReLU(),
                                     ResFirst(nn.Sequential(nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 6))),
                                     nn.Linear(6, 2)), [2]
    torch.manual_seed(7)
    yield "branches", nn.Sequential(
        Cat(nn.Sequential(nn.Linear(2, 4), nn.ReLU()), nn.Sequential(nn.Linear(2, 3), Abs())),
        Mx(nn.Sequential(nn.Linear(7, 5), nn.ReLU(), nn.Linear(5, 4)), nn.Sequential(nn.Linear(7, 4))),
        nn.Linear(4, 2)), [2]
    torch.manual_seed(8)
    yield "catcnn", nn.Sequential(
        Cat(nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU()), nn.Sequential(nn.Conv2d(1, 3, 1))),
        nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(45, 3)), [1, 6, 6]
    torch.manual_seed(4)
    current_hw[0] = (4, 4)
    yield "gap", nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                               nn.Flatten(), nn.Linear(3, 2)), [2, 8, 8]


def export(model, shape, path, dynamo):
    x = torch.randn(1, *shape)
    if dynamo:
        torch.onnx.export(model, (x,), path, dynamo=True, dynamic_shapes=({0: torch.export.Dim("batch")},))
    else:
        torch.onnx.export(model, (x,), path, dynamo=False, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(0)
    for name, model, shape in models():
        model.eval()
        n = int(np.prod(shape))
        with open(os.path.join(OUT, name + ".json"), "w") as f:
            json.dump(to_json(model, shape), f)
        for tag, dynamo in [("ts", False), ("dy", True)]:
            export(model, shape, os.path.join(OUT, f"{name}_{tag}.onnx"), dynamo)
        if n == 2:
            origin, du, dv = [0.0, 0.0], [1.0, 0.0], [0.0, 1.0]
            box = [-2.0, 2.0, -2.0, 2.0]
        else:
            origin, du, dv = (rng.uniform(-1, 1, n).tolist() for _ in range(3))
            box = [-1.0, 1.0, -1.0, 1.0]
        uv = rng.uniform([box[0], box[2]], [box[1], box[3]], size=(200, 2))
        xs = np.array(origin)[None, :] + uv[:, :1] * np.array(du)[None, :] + uv[:, 1:] * np.array(dv)[None, :]
        sess = ort.InferenceSession(os.path.join(OUT, f"{name}_ts.onnx"))
        out = sess.run(None, {sess.get_inputs()[0].name: xs.reshape(200, *shape).astype(np.float32)})[0]
        ref = {"input_shape": shape, "plane": {"origin": origin, "du": du, "dv": dv}, "box": box,
               "probe_uv": uv.tolist(), "probe_out": out.astype(np.float64).tolist()}
        with open(os.path.join(OUT, name + ".ref.json"), "w") as f:
            json.dump(ref, f)
    # The benchmark network of the performance goal: 2-256-256-256-2 ReLU, torch.manual_seed(0),
    # default initialisation; 162,097 regions over [-2, 2]^2 per three independent exact tools.
    torch.manual_seed(0)
    big = nn.Sequential(nn.Linear(2, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                        nn.Linear(256, 2)).eval()
    export(big, [2], os.path.join(OUT, "mlp_2_256x3_2_ts.onnx"), False)
    # Malformed models for the error tests.
    torch.manual_seed(5)
    export(nn.Sequential(nn.Linear(2, 3), nn.Sigmoid(), nn.Linear(3, 2)), [2], os.path.join(OUT, "sigmoid_ts.onnx"), False)
    export(nn.Sequential(nn.Linear(3, 2), nn.ReLU()), [4, 3], os.path.join(OUT, "rank3_ts.onnx"), False)
    m = onnx.load(os.path.join(OUT, "mlp_ts.onnx"))
    del m.graph.initializer[0]
    onnx.save(m, os.path.join(OUT, "missing_initializer.onnx"))


if __name__ == "__main__":
    main()
