"""Trains the three benchmark models in assets/bench/ (rerun: python3 scripts/bench_models.py).

Needs: pip install torch onnx onnxruntime scikit-learn numpy (CPU only, one thread; under two minutes).
Not run in CI (CI has no torch). Everything is seeded: the data split, the colour tints, the
initialisation and the batch order, with deterministic algorithms on the CPU.

Writes to assets/bench/:
  lenet5.onnx    LeNet-5 on 1x28x28 (scikit-learn digits, 8x8 upsampled bilinearly, normalised)
  resnet8.onnx   ResNet-8 on 3x32x32 (digits upsampled to 32x32, seeded random colour tint per image)
  allconv.onnx   all-convolutional net on 1x28x28 (stride-2 convs, no pooling), same data as LeNet-5
  NAME_{a,b,c}.npy  three test-set anchor images of three different classes (float32, one input, no batch dim)
  README.md      what the files are, test accuracies and parameter counts
"""
import os
import random
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "assets", "bench")
SEED = 0
# Anchor classes: the first test image of each of these classes (same indices for all three models).
ANCHOR_CLASSES = (0, 1, 2)


def seed_all(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# ---------------------------------------------------------------------------------------------
# Data


def digits_data():
    """(x_train, x_test, y_train, y_test): 8x8 digits scaled to [0, 1], seeded stratified split."""
    d = load_digits()
    x = (d.images.astype(np.float32) / 16.0)[:, None]  # N x 1 x 8 x 8
    y = d.target.astype(np.int64)
    return train_test_split(x, y, test_size=0.25, random_state=SEED, stratify=y)


def upsample(x, size):
    return F.interpolate(torch.from_numpy(x), size=(size, size), mode="bilinear", align_corners=False)


def normalise(train, test):
    """Per-channel mean/std of the training set applied to both."""
    dims = (0, 2, 3)
    mean = train.mean(dim=dims, keepdim=True)
    std = train.std(dim=dims, keepdim=True)
    return (train - mean) / std, (test - mean) / std, mean.flatten().tolist(), std.flatten().tolist()


def tint(x, rng):
    """Grey N x 1 x H x W in [0, 1] -> N x 3 x H x W: channel c = image * f_c + o_c,
    f_c uniform in [0.5, 1.5], o_c uniform in [-0.1, 0.1], drawn per image and channel."""
    n = x.shape[0]
    f = torch.from_numpy(rng.uniform(0.5, 1.5, size=(n, 3, 1, 1)).astype(np.float32))
    o = torch.from_numpy(rng.uniform(-0.1, 0.1, size=(n, 3, 1, 1)).astype(np.float32))
    return x * f + o


# ---------------------------------------------------------------------------------------------
# Models


def lenet5():
    return nn.Sequential(
        nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(256, 120), nn.ReLU(),
        nn.Linear(120, 84), nn.ReLU(),
        nn.Linear(84, 10),
    )


def allconv():
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(32, 32, 3, stride=2, padding=1), nn.ReLU(),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 10),
    )


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, plus the shortcut (identity, or 1x1 conv + BN when the shape changes), ReLU."""

    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = out + (x if self.shortcut is None else self.shortcut(x))
        return F.relu(out)


class ResNet8(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        self.layer1 = BasicBlock(16, 16)
        self.layer2 = BasicBlock(16, 32, stride=2)
        self.layer3 = BasicBlock(32, 64, stride=2)
        self.fc = nn.Linear(64, classes)

    def forward(self, x):
        x = F.relu(self.bn(self.conv(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)


# ---------------------------------------------------------------------------------------------
# Training and checks


def accuracy(model, x, y):
    model.eval()
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def train(name, model, xtr, ytr, xte, yte, epochs, lr, target, seed):
    """Adam with a cosine learning-rate schedule, batch 64, seeded shuffling."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    n = xtr.shape[0]
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(n, generator=gen)
        total = 0.0
        for i in range(0, n, 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            loss = F.cross_entropy(model(xtr[idx]), ytr[idx])
            loss.backward()
            opt.step()
            total += loss.item() * idx.numel()
        sched.step()
        if epoch % 5 == 4 or epoch == epochs - 1:
            print(f"  {name} epoch {epoch + 1:3d}  loss {total / n:.4f}  test acc {accuracy(model, xte, yte):.4f}")
    acc = accuracy(model, xte, yte)
    print(f"{name}: test accuracy {acc:.4f} ({int(round(acc * len(yte)))}/{len(yte)})")
    if acc <= target:
        raise SystemExit(f"{name}: test accuracy {acc:.4f} not above {target}")
    return acc


def export(model, shape, path):
    x = torch.zeros(1, *shape)
    with warnings.catch_warnings():
        # The TorchScript-based exporter is deprecated but still the one we want (dynamo=False).
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model.eval(), x, path, dynamo=False, opset_version=17, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "batch"}})


def check_onnx(name, model, path, xte, yte):
    """Runs the export with onnxruntime on the whole test set, one image at a time and as one batch."""
    model.eval()
    with torch.no_grad():
        ref = model(xte).numpy()
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    xs = xte.numpy()
    batch = sess.run(["y"], {"x": xs})[0]
    single = np.concatenate([sess.run(["y"], {"x": xs[i:i + 1]})[0] for i in range(xs.shape[0])])
    d_batch = float(np.abs(batch - ref).max())
    d_single = float(np.abs(single - ref).max())
    acc = float((single.argmax(1) == yte.numpy()).mean())
    agree = float((single.argmax(1) == ref.argmax(1)).mean())
    print(f"{name}: onnxruntime vs torch on {xs.shape[0]} test images: max |diff| {d_single:.3g} (one at a time), "
          f"{d_batch:.3g} (batch); onnxruntime test accuracy {acc:.4f}; argmax agreement {agree:.4f}")
    return max(d_single, d_batch)


def anchors(name, model, xte, yte, idx):
    model.eval()
    with torch.no_grad():
        pred = model(xte[idx]).argmax(1).tolist()
    pts = []
    for tag, i, p in zip("abc", idx, pred):
        a = xte[i].numpy().astype(np.float32)
        np.save(os.path.join(OUT, f"{name}_{tag}.npy"), a)
        pts.append(a.reshape(-1).astype(np.float64))
        print(f"  {name}_{tag}.npy: test index {i}, class {int(yte[i])}, predicted {p}, shape {list(a.shape)}")
    # Slice coordinates as tessera builds them: origin A, u along B - A, v by Gram-Schmidt.
    a, b, c = pts
    du = b - a
    bu = np.linalg.norm(du)
    du /= bu
    cu = float((c - a) @ du)
    dv = (c - a) - cu * du
    cv = float(np.linalg.norm(dv))
    coords = [(0.0, 0.0), (float(bu), 0.0), (cu, cv)]
    print(f"  {name} anchor (u, v): A (0, 0), B ({bu:.4f}, 0), C ({cu:.4f}, {cv:.4f})")
    return coords, pred


def main():
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    seed_all(SEED)
    os.makedirs(OUT, exist_ok=True)

    x8tr, x8te, ytr_np, yte_np = digits_data()
    ytr, yte = torch.from_numpy(ytr_np), torch.from_numpy(yte_np)
    print(f"digits: {len(ytr)} train, {len(yte)} test")
    # First test image of each anchor class, in test-set order.
    idx = [int(np.flatnonzero(yte_np == k)[0]) for k in ANCHOR_CLASSES]

    # 1x28x28 data (LeNet-5, all-conv).
    g28tr, g28te, m28, s28 = normalise(upsample(x8tr, 28), upsample(x8te, 28))
    # 3x32x32 tinted data (ResNet-8).
    rng = np.random.default_rng(SEED)
    c32tr = tint(upsample(x8tr, 32), rng)
    c32te = tint(upsample(x8te, 32), rng)
    c32tr, c32te, m32, s32 = normalise(c32tr, c32te)

    specs = [
        ("lenet5", lenet5, [1, 28, 28], g28tr, g28te, 30, 1e-3, 0.95),
        ("allconv", allconv, [1, 28, 28], g28tr, g28te, 30, 2e-3, 0.95),
        ("resnet8", ResNet8, [3, 32, 32], c32tr, c32te, 25, 2e-3, 0.90),
    ]
    rows = []
    for k, (name, make, shape, xtr, xte, epochs, lr, target) in enumerate(specs):
        seed_all(SEED + 1 + k)
        model = make()
        params = sum(p.numel() for p in model.parameters())
        print(f"{name}: {params} parameters")
        acc = train(name, model, xtr, ytr, xte, yte, epochs, lr, target, SEED + 1 + k)
        path = os.path.join(OUT, f"{name}.onnx")
        export(model, shape, path)
        onnx_params = sum(int(np.prod(t.dims)) for t in onnx.load(path).graph.initializer)
        print(f"{name}: {onnx_params} numbers in the ONNX initializers")
        diff = check_onnx(name, model, path, xte, yte)
        coords, pred = anchors(name, model, xte, yte, idx)
        rows.append((name, shape, (params, onnx_params), acc, diff, coords, pred, os.path.getsize(path)))

    write_readme(rows, idx, yte_np, (m28, s28), (m32, s32), len(ytr), len(yte))
    print("wrote", os.path.normpath(OUT))


def write_readme(rows, idx, yte, norm28, norm32, ntrain, ntest):
    lines = [
        "# Benchmark models",
        "",
        "Three small trained convolutional networks for timing `tessera map` on realistic models, with",
        "three anchor images each (a plane through three test images). Regenerate (needs torch, onnx,",
        "onnxruntime, scikit-learn, numpy; CPU, one thread, seeded, under two minutes):",
        "",
        "    python3 scripts/bench_models.py",
        "",
        f"Data: scikit-learn's `load_digits` (8x8, values 0..16), scaled to [0, 1], stratified split "
        f"{ntrain} train / {ntest} test (`random_state=0`), upsampled bilinearly (`F.interpolate`, "
        "`align_corners=False`) and normalised with the training set's mean and std "
        f"(1x28x28: mean {norm28[0][0]:.4f}, std {norm28[1][0]:.4f}). For ResNet-8 the 32x32 images get a seeded "
        "random colour tint per image: channel c = image * f_c + o_c with f_c uniform in [0.5, 1.5] and "
        "o_c uniform in [-0.1, 0.1], then per-channel normalisation "
        f"(mean {', '.join(f'{m:.4f}' for m in norm32[0])}; std {', '.join(f'{s:.4f}' for s in norm32[1])}).",
        "Training: Adam (weight decay 1e-4), cosine schedule, batch 64. Export: `torch.onnx.export(..., dynamo=False, "
        "opset_version=17)`, input `x` (dynamic batch), output `y` (10 logits), eval mode (batch norm with running "
        "statistics).",
        "",
        "| file | network | input | parameters | test accuracy | onnxruntime vs torch, max abs diff |",
        "|---|---|---|---|---|---|",
    ]
    desc = {
        "lenet5": "LeNet-5: conv5(6)-ReLU-maxpool2-conv5(16)-ReLU-maxpool2-fc120-ReLU-fc84-ReLU-fc10",
        "allconv": "all-conv: conv3 s2(16)-ReLU-conv3 s2(32)-ReLU-conv3 s2(32)-ReLU-fc10, no pooling",
        "resnet8": "ResNet-8: conv3(16)-BN-ReLU, BasicBlocks 16, 16→32 s2, 32→64 s2 (1x1 projections), "
                   "global average pool, fc10",
    }
    for name, shape, params, acc, diff, coords, pred, size in rows:
        p = str(params[0]) if params[0] == params[1] else f"{params[0]} ({params[1]} in the ONNX file)"
        lines.append(f"| `{name}.onnx` ({size // 1024} KiB) | {desc[name]} | {'x'.join(map(str, shape))} | {p} | "
                     f"{acc * 100:.2f}% | {diff:.2g} |")
    lines += [
        "",
        "Parameters are PyTorch's trainable parameters; the exporter folds each eval-mode batch norm into the "
        "convolution before it (one bias per channel instead of a scale and a shift), so the ResNet-8 file has "
        "no BatchNormalization nodes and fewer numbers.",
        "",
        "`NAME_a.npy`, `NAME_b.npy`, `NAME_c.npy`: float32 arrays shaped like one input (no batch dimension), "
        "already normalised: the first test images of classes "
        + ", ".join(f"{int(yte[i])} (test index {i})" for i in idx)
        + ". Use them as `--anchors assets/bench/NAME_a.npy,assets/bench/NAME_b.npy,assets/bench/NAME_c.npy`.",
        "The plane's origin is A, u points to B, v is Gram–Schmidt towards C, so (u, v) are Euclidean lengths "
        "in the (normalised) input space. Anchor coordinates:",
        "",
        "| model | A | B | C | predicted classes of A, B, C |",
        "|---|---|---|---|---|",
    ]
    for name, shape, params, acc, diff, coords, pred, size in rows:
        c = [f"({u:.3f}, {v:.3f})" for u, v in coords]
        lines.append(f"| {name} | {c[0]} | {c[1]} | {c[2]} | {', '.join(map(str, pred))} |")
    lines += [
        "",
        "Example:",
        "",
        "    tessera map assets/bench/lenet5.onnx --anchors assets/bench/lenet5_a.npy,assets/bench/lenet5_b.npy,"
        "assets/bench/lenet5_c.npy --box -0.5,0.5,-0.5,0.5 --stats",
        "",
    ]
    with open(os.path.join(OUT, "README.md"), "w") as f:
        f.write("\n".join(lines))


if __name__ == "__main__":
    main()
