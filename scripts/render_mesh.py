"""Draws an OBJ mesh written by `tessera map --dims 3 --mesh` (needs numpy, matplotlib):
python3 scripts/render_mesh.py MESH.obj OUT.png [TITLE]. Faces are shaded by their normal."""
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from mpl_toolkits.mplot3d.art3d import Poly3DCollection


def main():
    path, out = sys.argv[1], sys.argv[2]
    title = sys.argv[3] if len(sys.argv) > 3 else path
    vs, fs = [], []
    for line in open(path):
        if line.startswith("v "):
            vs.append([float(x) for x in line.split()[1:4]])
        elif line.startswith("f "):
            fs.append([int(x) - 1 for x in line.split()[1:4]])
    v, f = np.array(vs), np.array(fs)
    tri = v[f]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    n /= np.linalg.norm(n, axis=1, keepdims=True) + 1e-300
    light = np.array([0.4, -0.5, 0.77])
    shade = 0.35 + 0.65 * np.clip(n @ light, 0, 1)
    colors = plt.cm.viridis(0.25 + 0.5 * (tri[:, :, 2].mean(1) - v[:, 2].min()) / (np.ptp(v[:, 2]) + 1e-300))
    colors[:, :3] *= shade[:, None]
    fig = plt.figure(figsize=(7, 6), dpi=110)
    ax = fig.add_subplot(projection="3d")
    ax.add_collection3d(Poly3DCollection(tri, facecolors=colors, edgecolors=(0, 0, 0, 0.25), linewidths=0.15))
    lo, hi = v.min(0), v.max(0)
    c, h = (lo + hi) / 2, (hi - lo).max() / 2
    ax.set_xlim(c[0] - h, c[0] + h)
    ax.set_ylim(c[1] - h, c[1] + h)
    ax.set_zlim(c[2] - h, c[2] + h)
    ax.set_box_aspect((1, 1, 1))
    ax.view_init(elev=35, azim=-60)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out)


if __name__ == "__main__":
    main()
