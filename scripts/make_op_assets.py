"""Builds the per-op ONNX test assets in assets/onnx/ops/ (rerun: python3 scripts/make_op_assets.py).

Needs: pip install torch onnx onnxruntime onnxscript (and torchvision for --arch).
For each tiny seeded network (eval mode) it writes, like scripts/make_assets.py,
  NAME_ts.onnx    TorchScript-based exporter (dynamo=False), its default opset,
  NAME_dy.onnx    dynamo-based exporter (dynamo=True), its default opset (+ NAME_dy.onnx.data),
  NAME_ts9.onnx, NAME_ts11.onnx   the TorchScript exporter at an older opset, for ops whose
                  encoding changed (Clip/Pad/Slice/Split/Squeeze/Reduce* attributes vs inputs,
                  Upsample vs Resize),
  NAME.ref.json   a seeded plane (origin, du, dv uniform(-1, 1)), the box [-1, 1]^2, 200 seeded
                  probe points and onnxruntime's outputs there (from NAME_ts.onnx, or the first
                  file that exists), with the list of tags written in "exporters",
  NAME.json       for unet and resnest: the network as tessera-model/1 (nested blocks),
and models the loader must refuse (listed under "refuse" in MANIFEST.json with the node
the error must name). assets/onnx/ops/MANIFEST.json lists every model, the ONNX op types of
each file, skipped exports (with the exception) and the cross-checks: every other file and
PyTorch itself against the reference outputs.

  --arch   instead build torchvision resnet18, vgg11_bn, mobilenet_v2 and squeezenet1_1
           (num_classes=10, seeded random weights) into assets/onnx/arch/: the .onnx files
           are not committed (.gitignore), their .ref.json files and MANIFEST.json are.
"""
import argparse
import contextlib
import copy
import io
import json
import os
import re
import sys
import warnings
import zlib

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, ".."))
OPS = os.path.join(ROOT, "assets", "onnx", "ops")
ARCH = os.path.join(ROOT, "assets", "onnx", "arch")
sys.path.insert(0, HERE)
import make_assets  # noqa: E402  (Res and to_layers for the JSON twin of resnest)

ort.set_default_logger_severity(3)


def seed_of(name):
    return zlib.crc32(name.encode()) % (2**31)


class Net(nn.Module):
    """forward(x) = fwd(self, x); keyword modules become submodules, tensors buffers."""

    def __init__(self, fwd, **parts):
        super().__init__()
        self.fwd = fwd
        for k, v in parts.items():
            if isinstance(v, torch.Tensor):
                self.register_buffer(k, v)
            else:
                setattr(self, k, v)

    def forward(self, x):
        return self.fwd(self, x)


def scaled(layer, s, shift=0.0):
    """Weights and bias times s, bias plus shift: puts an activation's thresholds inside the box."""
    with torch.no_grad():
        layer.weight.mul_(s)
        if layer.bias is not None:
            layer.bias.mul_(s).add_(shift)
    return layer


def bn(c):
    b = nn.BatchNorm2d(c)
    with torch.no_grad():
        b.running_mean.uniform_(-0.3, 0.3)
        b.running_var.uniform_(0.5, 1.5)
        b.weight.uniform_(0.5, 1.5)
        b.bias.uniform_(-0.2, 0.2)
    return b


relu = F.relu


def mlp_act(act, s=1.0, shift=0.0):
    """Linear(4, 8), ReLU, Linear(8, 8) (scaled by s, shifted), act, Linear(8, 2)."""
    return lambda: (Net(lambda m, x: m.l3(act(m.l2(relu(m.l1(x))))),
                        l1=nn.Linear(4, 8), l2=scaled(nn.Linear(8, 8), s, shift), l3=nn.Linear(8, 2)), [4])


def conv_then(op, c_in, hw, c_mid, c_out2, k2, n_flat, c_after=None):
    """Conv2d(c_in, c_mid, 3, padding 1), ReLU, op, Conv2d(c_after or c_mid, c_out2, k2), ReLU, flatten,
    Linear(n_flat, 2)."""
    return lambda: (Net(lambda m, x: m.lin(relu(m.c2(op(relu(m.c1(x))))).flatten(1)),
                        c1=nn.Conv2d(c_in, c_mid, 3, padding=1),
                        c2=nn.Conv2d(c_after or c_mid, c_out2, k2),
                        lin=nn.Linear(n_flat, 2)), [c_in, *hw])


def pool_model(pool, n_flat, c=2, hw=(8, 8)):
    """Conv2d(1, c, 3, padding 1), ReLU, pool, flatten, Linear(n_flat, 2)."""
    return lambda: (Net(lambda m, x: m.lin(pool(relu(m.c1(x))).flatten(1)),
                        c1=nn.Conv2d(1, c, 3, padding=1), lin=nn.Linear(n_flat, 2)), [1, *hw])


def two_branch(join):
    """h = ReLU(Linear(3, 6)); join(Linear(6, 4)(h), Linear(6, 4)(ReLU(Linear(6, 5)(h)))); Linear(4, 2)."""
    return lambda: (Net(lambda m, x: m.lo(join(m.la(relu(m.l0(x))), m.lb(relu(m.lc(relu(m.l0(x))))))),
                        l0=nn.Linear(3, 6), la=nn.Linear(6, 4), lc=nn.Linear(6, 5), lb=nn.Linear(5, 4),
                        lo=nn.Linear(4, 2)), [3])


# ----------------------------------------------------------------------------------------------
# The small op models: name -> (builder, extra TorchScript opsets)


def m_conv1d():
    return Net(lambda m, x: m.lin(relu(m.c2(relu(m.c1(x)))).flatten(1)),
               c1=nn.Conv1d(2, 2, 1), c2=nn.Conv1d(2, 4, 3, stride=2, padding=1, dilation=2, groups=2),
               lin=nn.Linear(12, 3)), [2, 8]


def m_pool1d(pool, n_flat):
    return lambda: (Net(lambda m, x: m.lin(pool(relu(m.c1(x))).flatten(1)),
                        c1=nn.Conv1d(2, 3, 3, padding=1), lin=nn.Linear(n_flat, 2)), [2, 8])


def m_prelu():
    p = nn.PReLU(num_parameters=3)
    with torch.no_grad():
        p.weight.copy_(torch.tensor([0.1, -0.3, 0.6]))
    return Net(lambda m, x: m.lin(m.p(m.c2(relu(m.c1(x)))).flatten(1)),
               c1=nn.Conv2d(2, 3, 3, padding=1), c2=nn.Conv2d(3, 3, 3), p=p, lin=nn.Linear(27, 2)), [2, 5, 5]


def m_sum3():
    def f(m, x):
        h = relu(m.l0(x))
        return m.lo(relu(m.la(h) + relu(m.lb(h)) + m.lc(relu(m.ld(h)))))
    return Net(f, l0=nn.Linear(3, 6), la=nn.Linear(6, 4), lb=nn.Linear(6, 4), ld=nn.Linear(6, 5),
               lc=nn.Linear(5, 4), lo=nn.Linear(4, 2)), [3]


def m_sum_stack():
    """torch.stack([a, b, c]).sum(0): probed only to see whether it exports to Sum."""
    def f(m, x):
        h = relu(m.l0(x))
        return m.lo(torch.stack([m.la(h), relu(m.lb(h)), m.lc(h)]).sum(0))
    return Net(f, l0=nn.Linear(3, 6), la=nn.Linear(6, 4), lb=nn.Linear(6, 4), lc=nn.Linear(6, 4),
               lo=nn.Linear(4, 2)), [3]


def m_mul_div_sub():
    def f(m, x):
        h = relu(m.c1(x))
        h = h * m.k
        h = h / 2.5
        h = h - m.s
        h = m.t - h
        return m.lin(relu(h).flatten(1))
    g = torch.Generator().manual_seed(11)
    return Net(f, c1=nn.Conv2d(2, 3, 3, padding=1), lin=nn.Linear(48, 2),
               k=torch.tensor([1.5, -0.7, 2.0]).view(1, 3, 1, 1),
               s=torch.tensor([0.1, -0.2, 0.05]).view(1, 3, 1, 1),
               t=(torch.rand(1, 1, 4, 4, generator=g) - 0.5)), [2, 4, 4]


def m_resize(mod, hw, n_flat):
    return lambda: (Net(lambda m, x: m.lin(relu(m.c2(m.up(relu(m.c1(x))))).flatten(1)),
                        c1=nn.Conv2d(1, 2, 3, padding=1), up=mod, c2=nn.Conv2d(2, 2, 3),
                        lin=nn.Linear(n_flat, 2)), [1, *hw])


class Interp(nn.Module):
    def forward(self, h):
        return F.interpolate(h, scale_factor=2, mode="nearest")


def m_split():
    def f(m, x):
        h = relu(m.c1(x))
        a, b = torch.split(h, [1, 3], dim=1)
        z = relu(m.ca(a) + relu(m.cb(b)))
        p, q = torch.chunk(z, 2, dim=1)
        return m.lin((m.cp(p) - q).flatten(1))
    return Net(f, c1=nn.Conv2d(1, 4, 3, padding=1), ca=nn.Conv2d(1, 2, 3, padding=1), cb=nn.Conv2d(3, 2, 1),
               cp=nn.Conv2d(1, 1, 3, padding=1), lin=nn.Linear(16, 2)), [1, 4, 4]


def m_reshape_ops():
    def f(m, x):
        h = relu(m.c1(x)).flatten(1)            # Flatten
        h = relu(m.l1(h)).view(-1, 2, 3)        # Reshape to a constant shape
        h = h.unsqueeze(1)                      # Unsqueeze
        h = relu(h - 0.1).squeeze(1)            # Squeeze
        h = h.view(x.shape[0], 6)               # Reshape to a shape computed from x
        return m.l2(h.reshape(h.size(0), -1))
    return Net(f, c1=nn.Conv2d(2, 2, 3, padding=1), l1=nn.Linear(18, 6), l2=nn.Linear(6, 2)), [2, 3, 3]


def m_convt(ct, c_in, shape, n_flat, conv1d=False):
    conv = nn.Conv1d if conv1d else nn.Conv2d
    return lambda: (Net(lambda m, x: m.lin(relu(m.ct(relu(m.c1(x)))).flatten(1)),
                        c1=conv(shape[0], c_in, 3, padding=1), ct=ct(), lin=nn.Linear(n_flat, 2)), shape)


def m_reduce(red, n_flat):
    return lambda: (Net(lambda m, x: m.lin(red(relu(m.c1(x))).flatten(1)),
                        c1=nn.Conv2d(2, 3, 3, padding=1), lin=nn.Linear(n_flat, 2)), [2, 4, 4])


def m_global_pools():
    def f(m, x):
        h = relu(m.c1(x))
        return m.lin(torch.cat([m.ap(h), m.mp(h)], 1).flatten(1))
    return Net(f, c1=nn.Conv2d(2, 3, 3, padding=1), ap=nn.AdaptiveAvgPool2d(1), mp=nn.AdaptiveMaxPool2d(1),
               lin=nn.Linear(6, 2)), [2, 4, 4]


def m_batchnorm():
    return Net(lambda m, x: m.lin(m.bn2(relu(m.bn1(m.c2(relu(m.c1(x)))))).flatten(1)),
               c1=nn.Conv2d(1, 3, 3, padding=1), c2=nn.Conv2d(3, 3, 3, padding=1), bn1=bn(3), bn2=bn(3),
               lin=nn.Linear(75, 2)), [1, 5, 5]


def m_dropout():
    return Net(lambda m, x: m.l3(relu(m.l2(m.d(relu(m.l1(x)))))),
               l1=nn.Linear(4, 8), d=nn.Dropout(0.5), l2=nn.Linear(8, 6), l3=nn.Linear(6, 2)), [4]


def m_maxout_view():
    def f(m, x):
        h = m.l2(relu(m.l1(x)))
        return m.lo(h.view(h.shape[0], 6, 2).max(-1).values)
    return Net(f, l1=nn.Linear(3, 8), l2=nn.Linear(8, 12), lo=nn.Linear(6, 2)), [3]


def m_unet():
    def f(m, x):
        e1 = relu(m.enc1(x))                                   # [2, 8, 8]
        e2 = relu(m.enc2(F.max_pool2d(e1, 2)))                 # [3, 4, 4]
        b = relu(m.mid(F.max_pool2d(e2, 2)))                   # [4, 2, 2]
        d2 = relu(m.dec2(torch.cat([F.interpolate(b, scale_factor=2, mode="nearest"), e2], 1)))   # [3, 4, 4]
        d1 = m.dec1(torch.cat([F.interpolate(d2, scale_factor=2, mode="nearest"), e1], 1))        # [2, 8, 8]
        return m.head(d1.flatten(1))
    return Net(f, enc1=nn.Conv2d(1, 2, 3, padding=1), enc2=nn.Conv2d(2, 3, 3, padding=1),
               mid=nn.Conv2d(3, 4, 3, padding=1), dec2=nn.Conv2d(7, 3, 3, padding=1),
               dec1=nn.Conv2d(5, 2, 3, padding=1), head=nn.Linear(128, 2)), [1, 8, 8]


def m_resnest():
    R = make_assets.Res
    make_assets.current_hw[0] = (6, 6)
    body = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.ReLU(),
                         R(nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.ReLU(), nn.Conv2d(3, 3, 1))),
                         nn.Conv2d(3, 3, 3, padding=1))
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), R(body), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2)), [1, 6, 6]


def m_dense3():
    def f(m, x):
        x0 = relu(m.c0(x))
        x1 = relu(m.c1(x0))
        x2 = relu(m.c2(torch.cat([x0, x1], 1)))
        x3 = relu(m.c3(torch.cat([x0, x1, x2], 1)))
        return m.lin(torch.cat([x0, x1, x2, x3], 1).flatten(1))
    return Net(f, c0=nn.Conv2d(1, 2, 3, padding=1), c1=nn.Conv2d(2, 2, 3, padding=1),
               c2=nn.Conv2d(4, 2, 3, padding=1), c3=nn.Conv2d(6, 2, 3, padding=1), lin=nn.Linear(128, 2)), [1, 4, 4]


def m_mbv2block():
    def f(m, x):
        h = F.relu6(m.b0(m.stem(x)))
        y = F.relu6(m.b1(m.expand(h)))
        y = F.relu6(m.b2(m.dw(y)))
        y = m.b3(m.proj(y))
        return m.lin((h + y).flatten(1))
    return Net(f, stem=scaled(nn.Conv2d(1, 4, 3, padding=1), 10.0), b0=bn(4),
               expand=scaled(nn.Conv2d(4, 8, 1, bias=False), 2.0), b1=bn(8),
               dw=scaled(nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False), 1.5), b2=bn(8),
               proj=nn.Conv2d(8, 4, 1, bias=False), b3=bn(4), lin=nn.Linear(144, 2)), [1, 6, 6]


def m_fire():
    def f(m, x):
        h = F.max_pool2d(relu(m.stem(x)), 3, 2, ceil_mode=True)   # 8x8 -> 4x4 (last window partial)
        s = relu(m.squeeze(h))
        return m.lin(torch.cat([relu(m.e1(s)), relu(m.e3(s))], 1).flatten(1))
    return Net(f, stem=nn.Conv2d(1, 4, 3, padding=1), squeeze=nn.Conv2d(4, 2, 1), e1=nn.Conv2d(2, 3, 1),
               e3=nn.Conv2d(2, 3, 3, padding=1), lin=nn.Linear(96, 2)), [1, 8, 8]


OPSETS_PAD = (9, 11)
MODELS = {
    "conv1d": (m_conv1d, ()),
    "maxpool1d_ceil": (m_pool1d(lambda h: F.max_pool1d(h, 3, 2, ceil_mode=True), 12), ()),
    "avgpool1d": (m_pool1d(lambda h: F.avg_pool1d(h, 3, 2, padding=1), 12), ()),
    # ceil_mode changes the size only if the last window overhangs: k3 s2 on 8x8 (not 7x7) gives 4x4, not 3x3.
    "maxpool_ceil": (pool_model(lambda h: F.max_pool2d(h, 3, 2, ceil_mode=True), 48, c=3), ()),
    "avgpool_ceil_excl": (pool_model(lambda h: F.avg_pool2d(h, 3, 2, padding=1, ceil_mode=True,
                                                            count_include_pad=False), 50), ()),
    "avgpool_ceil_incl": (pool_model(lambda h: F.avg_pool2d(h, 3, 2, padding=1, ceil_mode=True,
                                                            count_include_pad=True), 50), ()),
    "maxpool_dil": (pool_model(lambda h: F.max_pool2d(h, 3, 2, padding=1, dilation=2), 18), ()),
    "avgpool_excl": (pool_model(lambda h: F.avg_pool2d(h, 3, 2, padding=1, count_include_pad=False), 32), ()),
    "pad_asym": (conv_then(lambda h: F.pad(h, (1, 0, 2, 1)), 1, (6, 6), 2, 3, 3, 105), OPSETS_PAD),
    "pad_reflect": (conv_then(lambda h: F.pad(h, (2, 1, 1, 0), mode="reflect"), 1, (6, 6), 2, 3, 3, 105), OPSETS_PAD),
    "pad_edge": (conv_then(lambda h: F.pad(h, (1, 2, 2, 0), mode="replicate"), 1, (6, 6), 2, 3, 3, 126), OPSETS_PAD),
    "pad_zero": (conv_then(nn.ZeroPad2d((1, 2, 0, 1)), 1, (6, 6), 2, 3, 3, 105), OPSETS_PAD),
    "hardsigmoid": (mlp_act(F.hardsigmoid, 12.0), ()),
    "hardtanh": (mlp_act(nn.Hardtanh(-0.5, 1.5), 4.0, 0.5), (9,)),
    "relu6": (mlp_act(nn.ReLU6(), 20.0, 2.0), (9,)),
    "clip_min": (mlp_act(lambda h: torch.clamp(h, min=-0.25)), (9,)),
    "leaky_relu": (mlp_act(lambda h: F.leaky_relu(h, 0.2)), ()),
    "prelu": (m_prelu, ()),
    "min": (two_branch(torch.minimum), ()),
    "max2": (two_branch(torch.maximum), ()),
    "neg": (mlp_act(lambda h: relu(-h)), ()),
    "abs": (mlp_act(torch.abs), ()),
    "sum3": (m_sum3, ()),
    "mul_div_sub": (m_mul_div_sub, ()),
    "resize_nearest": (m_resize(Interp(), (3, 3), 32), (9, 11)),
    "upsample_12": (m_resize(nn.Upsample(scale_factor=(1, 2)), (3, 4), 12), (9, 11)),
    "slice": (conv_then(lambda h: torch.cat([h[:, :3], h[:, 2:5]], 1), 1, (4, 4), 5, 2, 3, 8, c_after=6), (9,)),
    "split": (m_split, (11,)),
    "transpose": (conv_then(lambda h: h.transpose(2, 3), 1, (4, 6), 2, 2, (3, 1), 32), ()),
    "gather_idx": (conv_then(lambda h: h[:, [2, 0, 1]], 1, (4, 4), 3, 2, 3, 8), ()),
    "reshape_ops": (m_reshape_ops, (11,)),
    "convtranspose2d": (m_convt(lambda: nn.ConvTranspose2d(2, 3, 3, stride=2, padding=1, output_padding=1),
                                2, [1, 3, 3], 108), ()),
    "convtranspose1d": (m_convt(lambda: nn.ConvTranspose1d(3, 2, 3, stride=2), 3, [2, 5], 22, conv1d=True), ()),
    "convtranspose_groups": (m_convt(lambda: nn.ConvTranspose2d(4, 4, 3, stride=2, padding=1, groups=2, dilation=2),
                                     4, [2, 3, 3], 196), ()),
    "reduce_mean": (m_reduce(lambda h: h.mean(dim=(2, 3), keepdim=True), 3), (11,)),
    "reduce_sum": (m_reduce(lambda h: h.sum(dim=1), 16), (11,)),
    "reduce_max": (m_reduce(lambda h: h.amax(dim=(2, 3)), 3), (11,)),
    "reduce_max_ch": (m_reduce(lambda h: h.amax(dim=1), 16), (11,)),
    "global_pools": (m_global_pools, ()),
    "batchnorm": (m_batchnorm, ()),
    "dropout": (m_dropout, ()),
    "maxout_view": (m_maxout_view, ()),
    "unet": (m_unet, (11,)),
    "resnest": (m_resnest, ()),
    "dense3": (m_dense3, ()),
    "mbv2block": (m_mbv2block, ()),
    "fire": (m_fire, ()),
}


def m_sigmoid_branch():
    def f(m, x):
        h = relu(m.c0(x))
        return m.lin((relu(m.ca(h)) + m.c3(torch.sigmoid(m.c2(relu(m.c1(h)))))).flatten(1))
    return Net(f, c0=nn.Conv2d(1, 2, 3, padding=1), ca=nn.Conv2d(2, 2, 3, padding=1), c1=nn.Conv2d(2, 2, 3, padding=1),
               c2=nn.Conv2d(2, 2, 1), c3=nn.Conv2d(2, 2, 3, padding=1), lin=nn.Linear(32, 2)), [1, 4, 4]


REFUSE = {
    "sigmoid_branch": m_sigmoid_branch,
    "gelu": lambda: (Net(lambda m, x: m.lin(F.gelu(m.c1(x)).flatten(1)), c1=nn.Conv2d(1, 2, 3, padding=1),
                         lin=nn.Linear(32, 2)), [1, 4, 4]),
    "layernorm": lambda: (Net(lambda m, x: m.l2(m.ln(relu(m.l1(x)))), l1=nn.Linear(4, 8), ln=nn.LayerNorm(8),
                              l2=nn.Linear(8, 2)), [4]),
}
NOT_PWL = {"Sigmoid", "Erf", "Gelu", "LayerNormalization", "Tanh", "Exp", "Log", "Pow", "Sqrt", "Softmax",
           "ReduceMean"}


# ----------------------------------------------------------------------------------------------
# Export, references, checks


def first_line(e):
    """The exception's type and first line, and those of its innermost cause."""
    def one(x):
        lines = [l.strip() for l in re.sub(r"\x1b\[[0-9;]*m", "", str(x)).splitlines() if l.strip()]
        return f"{type(x).__name__}: {lines[0] if lines else ''}"
    root = e
    while root.__cause__ is not None and root.__cause__ is not root:
        root = root.__cause__
    return (one(e) if root is e else f"{one(e)} <- {one(root)}").split(" [Caused by")[0][:500]


def export(model, shape, path, tag):
    x = torch.randn(2, *shape)
    sink = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        warnings.simplefilter("ignore")
        if tag == "dy":
            torch.onnx.export(model, (x,), path, dynamo=True, dynamic_shapes=({0: torch.export.Dim("batch")},))
        else:
            opset = None if tag == "ts" else int(tag[2:])
            torch.onnx.export(model, (x,), path, dynamo=False, input_names=["x"], output_names=["y"],
                              dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, opset_version=opset)
    onnx.load(path)  # a file that does not load counts as a failed export


def op_types(path):
    m = onnx.load(path)
    seen = set()

    def walk(g):
        for n in g.node:
            seen.add(n.op_type)
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    walk(a.g)
    walk(m.graph)
    opset = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), None)
    return sorted(seen), opset


def run(path, xs, shape):
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: xs.reshape(len(xs), *shape).astype(np.float32)})[0]


def rel_err(got, want):
    got, want = np.asarray(got, np.float64).reshape(len(want), -1), np.asarray(want, np.float64)
    scale = np.maximum(np.abs(want).max(axis=1, keepdims=True), 1e-3)
    return float((np.abs(got - want) / scale).max())


def remove_files(folder, name):
    for f in os.listdir(folder):
        if f.startswith(name + "_") and (f.endswith(".onnx") or f.endswith(".onnx.data")) or f == name + ".ref.json":
            os.remove(os.path.join(folder, f))


def build(folder, name, model, shape, tags, manifest, plane=None, n_probe=200, box=(-1.0, 1.0, -1.0, 1.0),
          compact=False):
    """Exports `model` under each tag, writes NAME.ref.json, checks every file; returns the entry."""
    model.eval()
    remove_files(folder, name)
    files = {}
    for tag in tags:
        path = os.path.join(folder, f"{name}_{tag}.onnx")
        try:
            export(model, shape, path, tag)
            ops, opset = op_types(path)
            files[tag] = {"file": os.path.basename(path), "opset": opset, "op_types": ops}
        except Exception as e:  # noqa: BLE001 - reported, not hidden
            for p in (path, path + ".data"):
                if os.path.exists(p):
                    os.remove(p)
            print(f"  SKIPPED {name}_{tag}: {first_line(e)}")
            manifest["skipped"].append({"name": name, "tag": tag, "error": first_line(e)})
    entry = {"name": name, "input_shape": shape, "exporters": list(files), "files": files}
    if not files:
        return entry
    rng = np.random.default_rng(seed_of(name))
    n = int(np.prod(shape))
    if plane is None:
        origin, du, dv = (rng.uniform(-1, 1, n) for _ in range(3))
    else:
        origin, du, dv = plane
    uv = rng.uniform([box[0], box[2]], [box[1], box[3]], size=(n_probe, 2))
    xs = origin[None, :] + uv[:, :1] * du[None, :] + uv[:, 1:] * dv[None, :]
    ref_tag = "ts" if "ts" in files else next(iter(files))
    out = run(os.path.join(folder, files[ref_tag]["file"]), xs, shape)
    ref = {"input_shape": shape, "plane": {"origin": origin.tolist(), "du": du.tolist(), "dv": dv.tolist()},
           "box": list(box), "probe_uv": uv.tolist(), "probe_out": out.astype(np.float64).tolist(),
           "exporters": list(files)}
    with open(os.path.join(folder, name + ".ref.json"), "w") as f:
        json.dump(ref, f, separators=(",", ":") if compact else None)
    entry["reference"] = ref_tag
    checks = {}
    for tag, info in files.items():
        if tag != ref_tag:
            checks[tag] = rel_err(run(os.path.join(folder, info["file"]), xs, shape), out)
    # PyTorch in float64 on the same (float32) weights: what an exact evaluator should give.
    with torch.no_grad():
        want = copy.deepcopy(model).double()(torch.tensor(xs.reshape(n_probe, *shape), dtype=torch.float64)).numpy()
    checks["torch64"] = rel_err(out, want)
    entry["max_rel_err_vs_reference"] = checks
    for tag, e in checks.items():
        if e > 1e-5:
            manifest["disagreements"].append({"name": name, "tag": tag, "vs": ref_tag, "max_rel_err": e})
            print(f"  DISAGREE {name}: {tag} vs {ref_tag}: max relative error {e:.3g}")
    return entry


# ----------------------------------------------------------------------------------------------
# JSON twins (tessera-model/1) and a float64 evaluator of that format to check them


def eval_layers(layers, x):
    for l in layers:
        op = l["op"]
        if op == "linear":
            x = x @ torch.tensor(l["weight"], dtype=torch.float64).T + torch.tensor(l["bias"], dtype=torch.float64)
        elif op == "conv2d":
            x = F.conv2d(x, torch.tensor(l["weight"], dtype=torch.float64), torch.tensor(l["bias"], dtype=torch.float64),
                         stride=l["stride"], padding=l["padding"], dilation=l["dilation"], groups=l["groups"])
        elif op == "relu":
            x = relu(x)
        elif op == "max_pool2d":
            x = F.max_pool2d(x, l["kernel_size"], l.get("stride"), l.get("padding", 0))
        elif op == "avg_pool2d":
            x = F.avg_pool2d(x, l["kernel_size"], l.get("stride"), l.get("padding", 0))
        elif op == "flatten":
            x = x.flatten(1)
        elif op == "residual":
            x = eval_layers(l["layers"], x) + eval_layers(l["shortcut"], x)
        elif op == "concat":
            x = torch.cat([eval_layers(b, x) for b in l["branches"]], 1)
        else:
            raise ValueError(op)
    return x


def conv_json(c):
    return {"op": "conv2d", "weight": c.weight.tolist(), "bias": c.bias.tolist(), "stride": list(c.stride),
            "padding": list(c.padding), "dilation": list(c.dilation), "groups": c.groups}


def dense_of(f, n_in):
    """The matrix and offset of the affine map f on R^n_in (float64)."""
    with torch.no_grad():
        b = f(torch.zeros(1, n_in, dtype=torch.float64))
        cols = f(torch.eye(n_in, dtype=torch.float64)) - b
    return cols.T, b[0]


def unet_json(m):
    """U-Net twin: the encoder and both skip forks as nested concat blocks. Nearest upsampling has no
    tessera-model/1 op, so each decoder stage (upsample, channel concat, conv) is one dense linear
    layer on the flattened concat (channel concat of CHW maps = concat of their flattenings), and the
    last conv is folded into the head (no activation between them)."""
    d = {k: v.double() for k, v in [("dec2", m.dec2), ("dec1", m.dec1), ("head", m.head)]}
    up = lambda t: F.interpolate(t, scale_factor=2, mode="nearest")  # noqa: E731
    w2, b2 = dense_of(lambda z: d["dec2"](torch.cat([up(z[:, :16].reshape(-1, 4, 2, 2)),
                                                     z[:, 16:].reshape(-1, 3, 4, 4)], 1)).flatten(1), 16 + 48)
    w1, b1 = dense_of(lambda z: d["head"](d["dec1"](torch.cat([up(z[:, :48].reshape(-1, 3, 4, 4)),
                                                               z[:, 48:].reshape(-1, 2, 8, 8)], 1)).flatten(1)),
                      48 + 128)
    inner = {"op": "concat", "branches": [
        [{"op": "max_pool2d", "kernel_size": 2}, conv_json(m.mid), {"op": "relu"}, {"op": "flatten"}],
        [{"op": "flatten"}]]}
    outer = {"op": "concat", "branches": [
        [{"op": "max_pool2d", "kernel_size": 2}, conv_json(m.enc2), {"op": "relu"}, inner,
         {"op": "linear", "weight": w2.tolist(), "bias": b2.tolist()}, {"op": "relu"}],
        [{"op": "flatten"}]]}
    layers = [conv_json(m.enc1), {"op": "relu"}, outer, {"op": "linear", "weight": w1.tolist(), "bias": b1.tolist()}]
    return {"format": "tessera-model/1", "input_shape": [1, 8, 8], "layers": layers}


def write_twin(name, doc, model, shape):
    path = os.path.join(OPS, name + ".json")
    with open(path, "w") as f:
        json.dump(doc, f)
    rng = np.random.default_rng(1)
    x = torch.tensor(rng.uniform(-1, 1, (50, *shape)))
    with torch.no_grad():
        want = model.double()(x).numpy()
        model.float()
    got = eval_layers(doc["layers"], x).numpy()
    err = rel_err(got, want)
    print(f"  twin {name}.json: max relative error vs PyTorch (float64) {err:.2g}")
    return err


# ----------------------------------------------------------------------------------------------
# Hand-written ONNX graphs


def value(name, dims):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, dims)


def init(name, a):
    return numpy_helper.from_array(np.asarray(a, np.float32), name)


def save_graph(name, nodes, inputs, outputs, inits, opset=17):
    g = helper.make_graph(nodes, name, inputs, outputs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="make_op_assets.py")
    m.ir_version = 8
    path = os.path.join(OPS, name + ".onnx")
    onnx.save(m, path)
    return path


def ort_verdict(path):
    try:
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        i = sess.get_inputs()[0]
        dims = [d if isinstance(d, int) else 1 for d in i.shape]
        sess.run(None, {i.name: np.zeros(dims, np.float32)})
        return "onnxruntime runs it"
    except Exception as e:  # noqa: BLE001
        return "onnxruntime refuses: " + first_line(e).replace(OPS + os.sep, "")


def hand_made(manifest):
    rng = np.random.default_rng(42)
    W = lambda *s: rng.uniform(-1, 1, s).astype(np.float32)  # noqa: E731
    refuse = []
    # A cycle: cycle_add reads cycle_relu's output, which reads cycle_add's.
    p = save_graph("cycle", [
        helper.make_node("Gemm", ["x", "w0", "b0"], ["h"], name="gemm_in", transB=1),
        helper.make_node("Add", ["h", "r"], ["s"], name="cycle_add"),
        helper.make_node("Relu", ["s"], ["r"], name="cycle_relu"),
        helper.make_node("Gemm", ["r", "w1", "b1"], ["y"], name="gemm_out", transB=1)],
        [value("x", ["batch", 2])], [value("y", ["batch", 2])],
        [init("w0", W(3, 2)), init("b0", W(3)), init("w1", W(2, 3)), init("b1", W(2))])
    refuse.append({"name": "cycle", "file": "cycle.onnx", "node": "cycle_add", "nodes": ["cycle_add", "cycle_relu"],
                   "why": "cycle_add and cycle_relu read each other's outputs"})
    # A node reading a tensor nobody produces.
    p2 = save_graph("dangling", [
        helper.make_node("Gemm", ["x", "w0", "b0"], ["h"], name="gemm_in", transB=1),
        helper.make_node("Relu", ["ghost"], ["r"], name="dangling_relu"),
        helper.make_node("Gemm", ["r", "w1", "b1"], ["y"], name="gemm_out", transB=1)],
        [value("x", ["batch", 2])], [value("y", ["batch", 2])],
        [init("w0", W(3, 2)), init("b0", W(3)), init("w1", W(2, 3)), init("b1", W(2))])
    refuse.append({"name": "dangling", "file": "dangling.onnx", "node": "dangling_relu", "tensor": "ghost",
                   "why": "dangling_relu reads `ghost`, which no node, input or initializer produces"})
    # An Add joining [1, 2, 3, 3] and [1, 3, 3, 3].
    p3 = save_graph("join_mismatch", [
        helper.make_node("Conv", ["x", "wa", "ba"], ["a"], name="conv_a", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["a"], ["ar"], name="relu_a"),
        helper.make_node("Conv", ["x", "wb", "bb"], ["b"], name="conv_b", pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["ar", "b"], ["s"], name="join_add"),
        helper.make_node("Flatten", ["s"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "w1", "b1"], ["y"], name="gemm_out", transB=1)],
        [value("x", [1, 1, 3, 3])], [value("y", [1, 2])],
        [init("wa", W(2, 1, 3, 3)), init("ba", W(2)), init("wb", W(3, 1, 3, 3)), init("bb", W(3)),
         init("w1", W(2, 27)), init("b1", W(2))])
    refuse.append({"name": "join_mismatch", "file": "join_mismatch.onnx", "node": "join_add",
                   "why": "Add of [1, 2, 3, 3] (relu_a) and [1, 3, 3, 3] (conv_b)"})
    # A Conv with auto_pad="VALID" and an attribute no Conv has.
    p4 = save_graph("bad_attr", [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv_bad_attr", auto_pad="VALID", frobnicate=3),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Flatten", ["r"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "w1", "b1"], ["y"], name="gemm_out", transB=1)],
        [value("x", [1, 1, 4, 4])], [value("y", [1, 2])],
        [init("w", W(2, 1, 3, 3)), init("b", W(2)), init("w1", W(2, 8)), init("b1", W(2))])
    refuse.append({"name": "bad_attr", "file": "bad_attr.onnx", "node": "conv_bad_attr", "attribute": "frobnicate",
                   "why": "Conv attribute `frobnicate` does not exist (auto_pad=VALID itself is valid)"})
    for r, path in zip(refuse, [p, p2, p3, p4]):
        r["exporter"] = "onnx.helper"
        r["onnxruntime"] = ort_verdict(path)
        print(f"  refuse {r['name']}: {r['onnxruntime']}")
    manifest["refuse"].extend(refuse)


def sum_variant(manifest, entry):
    """sum3_hand.onnx: sum3_ts.onnx with its Add(Add(a, b), c) rewritten as one Sum(a, b, c)."""
    src = os.path.join(OPS, "sum3_ts.onnx")
    if not os.path.exists(src):
        return
    m = onnx.load(src)
    nodes = list(m.graph.node)
    producer = {o: n for n in nodes for o in n.output}
    users = lambda t: [n for n in nodes if t in n.input]  # noqa: E731
    for n in nodes:
        if n.op_type == "Add" and n.input[0] in producer and producer[n.input[0]].op_type == "Add" \
                and len(users(n.input[0])) == 1:
            inner = producer[n.input[0]]
            s = helper.make_node("Sum", [inner.input[0], inner.input[1], n.input[1]], [n.output[0]], name="/Sum3")
            i = nodes.index(n)
            nodes[i] = s
            nodes.remove(inner)
            break
    else:
        return
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    path = os.path.join(OPS, "sum3_hand.onnx")
    onnx.save(m, path)
    ops, opset = op_types(path)
    entry["files"]["hand"] = {"file": "sum3_hand.onnx", "opset": opset, "op_types": ops}
    entry["exporters"].append("hand")
    refp = os.path.join(OPS, "sum3.ref.json")
    ref = json.load(open(refp))
    ref["exporters"].append("hand")
    json.dump(ref, open(refp, "w"))
    uv = np.array(ref["probe_uv"])
    pl = ref["plane"]
    xs = np.array(pl["origin"])[None] + uv[:, :1] * np.array(pl["du"])[None] + uv[:, 1:] * np.array(pl["dv"])[None]
    e = rel_err(run(path, xs, [3]), ref["probe_out"])
    entry["max_rel_err_vs_reference"]["hand"] = e
    if e > 1e-5:
        manifest["disagreements"].append({"name": "sum3", "tag": "hand", "vs": "ts", "max_rel_err": e})


# ----------------------------------------------------------------------------------------------


def sizes(folder, committed):
    total = 0
    rows = []
    for f in sorted(os.listdir(folder)):
        p = os.path.join(folder, f)
        if os.path.isfile(p) and committed(f):
            s = os.path.getsize(p)
            total += s
            rows.append((f, s))
    return rows, total


def main_ops():
    os.makedirs(OPS, exist_ok=True)
    manifest = {"about": "written by scripts/make_op_assets.py", "models": [], "skipped": [], "refuse": [],
                "disagreements": [], "notes": []}
    for name, (builder, extra) in MODELS.items():
        torch.manual_seed(seed_of(name))
        model, shape = builder()
        print(name)
        entry = build(OPS, name, model, shape, ["ts", "dy"] + [f"ts{o}" for o in extra], manifest)
        if name == "resnest":
            doc = make_assets.to_json(model, shape)
            entry["twin"] = name + ".json"
            entry["twin_max_rel_err_vs_torch"] = write_twin(name, doc, model, shape)
        if name == "unet":
            entry["twin"] = name + ".json"
            entry["twin_max_rel_err_vs_torch"] = write_twin(name, unet_json(model), model, shape)
            manifest["notes"].append("unet.json: nearest upsampling has no tessera-model/1 op; each decoder stage "
                                     "(upsample + concat + conv) is a dense linear layer on the flattened concat, "
                                     "the last conv is folded into the head")
        if name == "sum3":
            sum_variant(manifest, entry)
        manifest["models"].append(entry)
    # Does torch.stack([...]).sum(0) export to Sum? (Probe only; kept out of the assets.)
    torch.manual_seed(0)
    model, shape = m_sum_stack()
    probe = {}
    for tag in ["ts", "dy"]:
        path = os.path.join(OPS, f"_probe_{tag}.onnx")
        try:
            export(model.eval(), shape, path, tag)
            probe[tag] = op_types(path)[0]
        except Exception as e:  # noqa: BLE001
            probe[tag] = first_line(e)
        for p in (path, path + ".data"):
            if os.path.exists(p):
                os.remove(p)
    manifest["notes"].append(f"torch.stack([a, b, c]).sum(0) exports as {probe}; not added to sum3 "
                             "(no Sum); sum3_hand.onnx is sum3_ts.onnx with the Add chain as one Sum node")
    print("stack.sum(0) ops:", probe)
    # GELU is one Gelu node at opset 20 and Div, Erf, Add, Mul, Mul at opset 17: both must be refused.
    for name, builder in REFUSE.items():
        torch.manual_seed(seed_of(name))
        model, shape = builder()
        model.eval()
        remove_files(OPS, name)
        for tag in ["ts", "ts17"] if name == "gelu" else ["ts"]:
            path = os.path.join(OPS, f"{name}_{tag}.onnx")
            try:
                export(model, shape, path, tag)
            except Exception as e:  # noqa: BLE001
                print(f"  SKIPPED {name}_{tag}: {first_line(e)}")
                manifest["skipped"].append({"name": name, "tag": tag, "error": first_line(e)})
                continue
            m = onnx.load(path)
            bad = next(n for n in m.graph.node if n.op_type in NOT_PWL)
            ops, opset = op_types(path)
            manifest["refuse"].append({"name": name, "file": os.path.basename(path), "exporter": tag, "opset": opset,
                                       "input_shape": shape, "node": bad.name, "op_type": bad.op_type,
                                       "op_types": ops})
            print(f"refuse {name}_{tag}: node {bad.name} ({bad.op_type})")
    hand_made(manifest)
    with open(os.path.join(OPS, "MANIFEST.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    rows, total = sizes(OPS, lambda f: True)
    for f, s in rows:
        print(f"{s:8d}  ops/{f}")
    print(f"total committed size of assets/onnx/ops: {total} bytes in {len(rows)} files;"
          f" largest {max(s for _, s in rows)} bytes")


def calibrate(model, shape, seed):
    """Sets every batch-norm's running statistics to those of 64 seeded uniform(0, 1) images (cumulative
    average), as training would: with the default (0, 1) statistics a random mobilenet_v2's activations
    shrink about tenfold per block at 32x32 (its outputs are ~1e-10)."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    g = torch.Generator().manual_seed(seed)
    model.train()
    with torch.no_grad():
        for _ in range(4):
            model(torch.rand(16, *shape, generator=g))
    model.eval()


def main_arch():
    import torchvision.models as tvm

    os.makedirs(ARCH, exist_ok=True)
    manifest = {"about": "written by scripts/make_op_assets.py --arch (the .onnx files are not committed)",
                "models": [], "skipped": [], "disagreements": [],
                "notes": ["torchvision weights=None (seeded random init), batch-norm running statistics from 64 "
                          "seeded uniform(0, 1) images, eval mode; input 3x32x32 for all",
                          "plane: origin = image A, du = B - A, dv = C - A, images uniform(0, 1) rounded to 0.001",
                          "vgg11_bn: the TorchScript exporter cannot export AdaptiveAvgPool2d((7, 7)) of the 1x1 map "
                          "a 32x32 input gives (it needs input sizes that are multiples of 224); only _dy exists"]}
    shape = [3, 32, 32]
    for i, (name, ctor) in enumerate([("resnet18", tvm.resnet18), ("vgg11_bn", tvm.vgg11_bn),
                                      ("mobilenet_v2", tvm.mobilenet_v2), ("squeezenet1_1", tvm.squeezenet1_1)]):
        torch.manual_seed(seed_of(name))
        model = ctor(num_classes=10, weights=None)
        calibrate(model, shape, seed_of(name))
        rng = np.random.default_rng(seed_of(name))
        # Images uniform(0, 1) in steps of 0.001 (short JSON numbers; the plane is exactly what is written).
        a, b, c = (np.round(rng.uniform(0, 1, int(np.prod(shape))), 3) for _ in range(3))
        print(name)
        entry = build(ARCH, name, model, shape, ["ts", "dy"], manifest,
                      plane=(a, np.round(b - a, 3), np.round(c - a, 3)), n_probe=50,
                      box=(-0.001, 0.001, -0.001, 0.001), compact=True)
        manifest["models"].append(entry)
    with open(os.path.join(ARCH, "MANIFEST.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    rows, total = sizes(ARCH, lambda f: True)
    for f, s in rows:
        print(f"{s:11d}  arch/{f}")
    _, committed = sizes(ARCH, lambda f: f.endswith(".json"))
    print(f"committed (.json) size of assets/onnx/arch: {committed} bytes")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", action="store_true", help="build only the torchvision models into assets/onnx/arch/")
    args = ap.parse_args()
    main_arch() if args.arch else main_ops()
