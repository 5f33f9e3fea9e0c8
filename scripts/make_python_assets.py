"""Builds the Python package's test assets (rerun: python3 scripts/make_python_assets.py).

Needs: pip install torch onnx onnxruntime.
  assets/onnx/reference_mlp_2_64x3_2.onnx   the shared reference MLP (12,042 regions on [-2, 2]²)
      with its JSON weights loaded into a PyTorch module and exported (TorchScript exporter), so
      that the Python tests can load the same weights as ONNX without torch;
  assets/onnx/reference_mlp_2_64x3_2.ref.json   onnxruntime outputs at seeded probe points.
"""
import json
import os

import numpy as np
import onnxruntime as ort
import torch
import torch.nn as nn

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def reference_module(path):
    """The tessera-model/1 MLP at `path` as a torch.nn.Sequential (PyTorch layouts)."""
    with open(path) as f:
        doc = json.load(f)
    layers = []
    for layer in doc["layers"]:
        if layer["op"] == "linear":
            w = torch.tensor(layer["weight"], dtype=torch.float64)
            lin = nn.Linear(w.shape[1], w.shape[0]).double()
            with torch.no_grad():
                lin.weight.copy_(w)
                lin.bias.copy_(torch.tensor(layer["bias"], dtype=torch.float64))
            layers.append(lin)
        elif layer["op"] == "relu":
            layers.append(nn.ReLU())
        else:
            raise ValueError(layer["op"])
    return nn.Sequential(*layers).float().eval()


def main():
    model = reference_module(os.path.join(ROOT, "assets", "reference", "mlp_2_64x3_2.json"))
    out = os.path.join(ROOT, "assets", "onnx", "reference_mlp_2_64x3_2.onnx")
    torch.onnx.export(model, (torch.zeros(1, 2),), out, dynamo=False, input_names=["input"],
                      output_names=["output"], opset_version=17)
    rng = np.random.default_rng(0)
    probes = rng.uniform(-2, 2, size=(50, 2)).astype(np.float32)
    sess = ort.InferenceSession(out)
    y = np.concatenate([sess.run(None, {"input": p[None]})[0] for p in probes])
    with open(out.replace(".onnx", ".ref.json"), "w") as f:
        json.dump({"probe_uv": probes.tolist(), "probe_out": y.tolist()}, f)
    print("wrote", out)


if __name__ == "__main__":
    main()
