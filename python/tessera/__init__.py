"""tessera: the exact linear regions of piecewise-linear networks on 2D slices.

Load a model (ONNX or tessera-model JSON, a path or bytes, or a PyTorch module), then map a
slice of its input space::

    import tessera
    net = tessera.load("model.onnx")
    p = net.map(anchors=(a, b, c))          # the plane through three inputs
    p.num_regions, p.areas, p.boundary_length
    p.plot()                                # matplotlib

Everything is computed by the Rust library in f64; a partition can check itself
(:meth:`Partition.check`). Coordinates of regions, boundaries and boxes are the slice's
``(u, v)``: for anchors, the orthonormal coordinates of the plane with origin at ``a``.
"""

from __future__ import annotations

import io
import json
import os
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from . import _tessera
from ._tessera import (  # noqa: F401  (re-exported)
    CheckError,
    EngineError,
    ModelError,
    SliceError,
    TesseraError,
    TileError,
    __version__,
)

__all__ = [
    "load",
    "from_torch",
    "merge_tiles",
    "Network",
    "Partition",
    "TesseraError",
    "ModelError",
    "SliceError",
    "EngineError",
    "TileError",
    "CheckError",
    "ShapeError",
    "Solid",
]


class ShapeError(SliceError, ValueError):
    """An array does not have the shape the model or the call needs."""


def load(source, name: Optional[str] = None) -> "Network":
    """Loads a model: a path to an ``.onnx`` or ``tessera-model/1`` JSON file, or their bytes.

    Raises ``FileNotFoundError`` for a missing file and :class:`ModelError` (with the layer,
    node or field at fault) for a model tessera cannot read.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        name = name or "model"
    elif isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        with open(path, "rb") as f:
            data = f.read()
        name = name or os.path.splitext(os.path.basename(path))[0]
    else:
        raise TypeError(f"load() takes a path or bytes, not {type(source).__name__}")
    return Network(_tessera.load_bytes(data, name))


def from_torch(module, input_shape: Sequence[int], name: Optional[str] = None) -> "Network":
    """Exports a PyTorch module to ONNX in memory (with a zero input of ``input_shape``, no batch
    dimension) and loads it. Needs ``torch`` (and ``onnx`` for the exporter)."""
    try:
        import torch
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("from_torch needs PyTorch: pip install torch") from e
    import inspect

    # The exported graph is the module in eval mode (batch-norm statistics, no dropout), on the
    # device and dtype of its parameters; the caller's module is left as it was.
    param = next(iter(module.parameters()), None)
    device = param.device if param is not None else "cpu"
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    dummy = torch.zeros((1, *tuple(int(d) for d in input_shape)), dtype=dtype, device=device)
    buf = io.BytesIO()
    kwargs = dict(input_names=["input"], output_names=["output"], opset_version=17)
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False  # the TorchScript exporter: no onnxscript needed
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            torch.onnx.export(module, (dummy,), buf, **kwargs)
    finally:
        module.train(was_training)
    return Network(_tessera.load_bytes(buf.getvalue(), name or type(module).__name__))


def _flat(x, n: int, what: str, shape: Tuple[int, ...]) -> np.ndarray:
    """``x`` as a flat float64 array of ``n`` values (the input's shape, a batch of one, or flat)."""
    a = np.asarray(x, dtype=np.float64)
    if a.size != n:
        raise ShapeError(f"{what} has shape {a.shape} ({a.size} values) but the model input {shape} has {n} values")
    if not np.all(np.isfinite(a)):
        raise ShapeError(f"{what} contains NaN or infinite values")
    return np.ascontiguousarray(a.reshape(-1))


def _box(box) -> Optional[List[float]]:
    if box is None:
        return None
    b = [float(v) for v in box]
    if len(b) != 4:
        raise SliceError(f"box must be (u0, u1, v0, v1), got {box!r}")
    return b


class Network:
    """A loaded network (see :func:`load`, :func:`from_torch`). Picklable (by its source bytes),
    so it can be sent to Ray tasks or processes."""

    def __init__(self, inner):
        self._net = inner

    def __reduce__(self):
        return (_reload, (self._net.source, self._net.name))

    @property
    def input_shape(self) -> Tuple[int, ...]:
        """The input shape without the batch dimension."""
        return tuple(self._net.input_shape)

    @property
    def outputs(self) -> int:
        """Number of outputs."""
        return self._net.outputs

    @property
    def name(self) -> str:
        return self._net.name

    @property
    def notes(self) -> List[str]:
        """Remarks of the ONNX lowering (e.g. a trailing softmax dropped)."""
        return list(self._net.notes)

    @property
    def layers(self) -> List[str]:
        return list(self._net.layers)

    def __repr__(self) -> str:
        return f"<tessera.Network {self.name}: input {self.input_shape}, {self.outputs} outputs, {len(self.layers)} layers>"

    def forward(self, x) -> np.ndarray:
        """The network's outputs at one input (any array with the input's number of values)."""
        n = int(np.prod(self.input_shape))
        return self._net.forward(_flat(x, n, "x", self.input_shape))

    def _plane(self, anchors, origin, du, dv):
        n = int(np.prod(self.input_shape))
        if anchors is not None and origin is not None:
            raise SliceError("give anchors=(a, b, c) or origin/du/dv, not both")
        if anchors is not None:
            if len(anchors) != 3:
                raise SliceError(f"anchors must be three arrays (a, b, c), got {len(anchors)}")
            vs = tuple(_flat(v, n, f"anchor {k}", self.input_shape) for k, v in zip("ABC", anchors))
            return "anchors", vs
        if origin is not None or du is not None or dv is not None:
            if origin is None or du is None or dv is None:
                raise SliceError("a plane by vectors needs origin, du and dv")
            vs = (_flat(origin, n, "origin", self.input_shape), _flat(du, n, "du", self.input_shape),
                  _flat(dv, n, "dv", self.input_shape))
            return "vectors", vs
        return "identity", None

    def map(self, box=None, anchors=None, origin=None, du=None, dv=None, threads: int = 0,
            max_regions: Optional[int] = None, time_limit: Optional[float] = None,
            threshold: Optional[float] = None, level: Optional[str] = None) -> "Partition":
        """Partitions a slice, keeping every region.

        The plane is the input itself for 2-input networks, ``anchors=(a, b, c)`` (the plane
        through three inputs, shaped like the input), or ``origin``/``du``/``dv``. ``box`` is
        ``(u0, u1, v0, v1)`` (default ``[-1, 1]²``, or around the anchors). ``threshold`` (one
        output) or ``level`` (``"i=T"``, ``"i,j=T"``) choose the boundary instead of the argmax.
        The GIL is released while the engine runs; Ctrl-C interrupts it.
        """
        kind, vs = self._plane(anchors, origin, du, dv)
        inner = self._net._map(kind, vs, _box(box), int(threads), max_regions, time_limit, threshold, level)
        return Partition(inner, self)

    def map3(self, box=None, anchors=None, threads: int = 0, max_regions: Optional[int] = None,
             time_limit: Optional[float] = None, surface: bool = False,
             threshold: Optional[float] = None, level: Optional[str] = None) -> "Solid":
        """Partitions a 3D box (``tessera map --dims 3``): the input of a 3-input model, or the
        3D slice through four inputs ``anchors=(a, b, c, d)`` (origin A, orthonormal axes by
        Gram–Schmidt of B−A, C−A, D−A). ``box=(x0, x1, y0, y1, z0, z1)`` (default ``[-1, 1]³``,
        or the anchors' bounding box padded by 25 %). With ``surface=True`` the decision surface
        (argmax, ``threshold`` or ``level`` as for :meth:`map`) as an exact triangle mesh."""
        n = int(np.prod(self.input_shape))
        vs = None
        if anchors is not None:
            if len(anchors) != 4:
                raise SliceError(f"anchors must be four arrays (a, b, c, d), got {len(anchors)}")
            vs = tuple(_flat(v, n, f"anchor {k}", self.input_shape) for k, v in zip("ABCD", anchors))
        b = None
        if box is not None:
            b = [float(v) for v in box]
            if len(b) != 6:
                raise SliceError(f"box must be (x0, x1, y0, y1, z0, z1), got {box!r}")
        inner = self._net._map3(vs, b, int(threads), max_regions, time_limit, bool(surface), threshold, level)
        return Solid(inner)

    def local_complexity(self, points, radius: float, planes: int = 8, seed: int = 0,
                         threads: int = 0) -> Dict[str, np.ndarray]:
        """Exact local complexity (``tessera local``): for each of the ``(P, *input_shape)``
        ``points`` and each of ``planes`` seeded random planes through it, the regions meeting
        the disk of radius ``radius`` and the units whose breakpoints cross it; a dict of two
        ``(P, planes)`` arrays, ``regions`` and ``units``."""
        pts = np.asarray(points, dtype=np.float64)
        n = int(np.prod(self.input_shape))
        if pts.ndim < 1 or pts.size % n != 0 or (pts.ndim > 1 and int(np.prod(pts.shape[1:])) != n):
            raise ShapeError(f"points of shape {pts.shape} do not hold inputs of shape {self.input_shape}")
        regions, units = self._net._local(np.ascontiguousarray(pts.reshape(-1, n)), float(radius),
                                          int(planes), int(seed), int(threads))
        return {"regions": regions, "units": units}

    def count(self, box=None, anchors=None, origin=None, du=None, dv=None, threads: int = 0,
              max_regions: Optional[int] = None, time_limit: Optional[float] = None,
              boundary: bool = False, threshold: Optional[float] = None,
              level: Optional[str] = None) -> Dict[str, Any]:
        """Counts the regions without keeping them (memory independent of the count): the
        statistics of ``tessera map --stats`` as a dict (with the boundary when ``boundary``)."""
        kind, vs = self._plane(anchors, origin, du, dv)
        text = self._net._count(kind, vs, _box(box), int(threads), max_regions, time_limit, threshold, level,
                                bool(boundary))
        return json.loads(text)

    def map_tile(self, tile: Tuple[int, int], box=None, anchors=None, origin=None, du=None, dv=None,
                 keep_regions: bool = False, threads: int = 0, max_regions: Optional[int] = None,
                 time_limit: Optional[float] = None, threshold: Optional[float] = None,
                 level: Optional[str] = None) -> bytes:
        """Computes tile ``tile = (i, n)`` (``i`` from 0) of an ``n``-tile grid of the domain: the
        tile result as bytes (what ``tessera map --tile`` writes; see :meth:`merge_tiles`)."""
        i, n = tile
        kind, vs = self._plane(anchors, origin, du, dv)
        return self._net._tile(kind, vs, _box(box), int(i), int(n), bool(keep_regions), int(threads), max_regions,
                               time_limit, threshold, level)

    def merge_tiles(self, tiles: Iterable, box=None, anchors=None, origin=None, du=None, dv=None):
        """Joins every tile result of one run (bytes, or paths of files written by
        ``tessera map --tile``) on the same slice: a :class:`Partition` with the single run's
        regions (in another order) when every tile kept its regions, else the statistics dict. Missing, repeated or foreign
        tiles raise :class:`TileError` naming them."""
        kind, vs = self._plane(anchors, origin, du, dv)
        named = []
        for k, t in enumerate(tiles):
            if isinstance(t, (str, os.PathLike)):
                with open(t, "rb") as f:
                    named.append((os.fspath(t), f.read()))
            else:
                named.append((f"tile result {k + 1}", bytes(t)))
        part, stats = self._net._merge(kind, vs, _box(box), named)
        return Partition(part, self) if part is not None else json.loads(stats)


def _reload(source: bytes, name: str) -> Network:
    return Network(_tessera.load_bytes(source, name))


def merge_tiles(net: Network, tiles: Iterable, **slice_args):
    """:meth:`Network.merge_tiles` as a function."""
    return net.merge_tiles(tiles, **slice_args)


class Partition:
    """The exact partition of a slice into linear regions. Arrays are numpy, coordinates the
    slice's ``(u, v)``."""

    def __init__(self, inner, net: Network):
        self._p = inner
        self._net = net

    def __len__(self) -> int:
        return self._p.num_regions

    def __repr__(self) -> str:
        return repr(self._p)

    @property
    def num_regions(self) -> int:
        return self._p.num_regions

    @property
    def domain(self) -> Tuple[float, float, float, float]:
        return self._p.domain

    @property
    def anchors_uv(self) -> Optional[np.ndarray]:
        """``(3, 2)``: where anchors A, B, C sit in ``(u, v)`` (None without anchors)."""
        return self._p.anchors_uv

    @property
    def areas(self) -> np.ndarray:
        """``(N,)`` region areas."""
        return self._p.areas

    @property
    def polygons(self) -> List[np.ndarray]:
        """A list of ``(m, 2)`` counter-clockwise polygons."""
        return self._p.polygons

    @property
    def patterns(self) -> np.ndarray:
        """``(N, W)`` uint64 activation pattern words (bit layout in :attr:`layers`)."""
        return self._p.patterns

    @property
    def pattern_hex(self) -> List[str]:
        return self._p.pattern_hex

    @property
    def layers(self) -> List[Tuple[int, str, int, int]]:
        """``(layer index, op, first bit, bits)`` of each nonlinear layer."""
        return self._p.layers

    @property
    def jacobians(self) -> np.ndarray:
        """``(N, K, 2)``: ``∂output/∂(u, v)`` on each region."""
        return self._p.jacobians

    @property
    def offsets(self) -> np.ndarray:
        """``(N, K)``: the outputs' affine maps at ``(u, v) = (0, 0)``."""
        return self._p.offsets

    @property
    def regions_per_layer(self) -> List[int]:
        return self._p.regions_per_layer

    @property
    def classes(self) -> np.ndarray:
        """``(N,)`` class of each region (-1 where the decision boundary crosses it)."""
        return self._p.classes

    @property
    def boundary_length(self) -> float:
        return self._p.boundary_length

    @property
    def boundary_components(self) -> int:
        return self._p.boundary_components

    @property
    def boundary_polylines(self) -> List[np.ndarray]:
        """The decision boundary: a list of ``(m, 2)`` polylines."""
        return self._p.boundary_polylines

    @property
    def class_cells(self) -> List[Tuple[int, int, np.ndarray]]:
        """For each region the boundary crosses, each class's cell: ``(region, class, polygon)``."""
        return self._p.class_cells

    @property
    def boundary_classes(self) -> List[Tuple[int, int]]:
        return self._p.boundary_classes

    @property
    def elapsed(self) -> float:
        return self._p.elapsed

    def stats(self) -> Dict[str, Any]:
        """The statistics of ``tessera map --stats --boundary``."""
        return json.loads(self._p._stats())

    def check(self, samples: int = 1000, seed: int = 0) -> List[str]:
        """Self-check against a forward pass; the violations (empty when everything holds)."""
        return self._p.check(samples, seed)

    def neurons(self) -> List[Dict[str, Any]]:
        """Per-unit report (``tessera neurons``), one dict per nonlinear node: ``node``, ``name``,
        ``op``, ``verdict`` (``(units,)`` of ``"dead"``, ``"linear"``, ``"switching"``),
        ``piece_area`` and ``piece_regions`` (``(units, pieces)``), ``edge_length`` (``(units,)``)."""
        out = []
        for node, name, op, verdicts, area, regions, edges in self._p._neurons():
            out.append({"node": node, "name": name, "op": op, "verdict": np.array(verdicts),
                        "piece_area": area, "piece_regions": regions, "edge_length": edges})
        return out

    def simplified(self) -> Tuple["Network", Dict[str, int]]:
        """The network without the units that never switch on this slice (dead ones as
        constants, linear ones as affine maps), checked against every region's map
        (:class:`CheckError` otherwise), and the counts ``kept``, ``removed``, ``linearised``."""
        text, (kept, removed, linearised) = self._p._simplified()
        net = load(text.encode(), name=f"{self._net.name}-simplified")
        return net, {"kept": kept, "removed": removed, "linearised": linearised}

    def pieces(self) -> np.ndarray:
        """``(N,)``: each region's linear piece (neighbours with equal affine maps merged);
        ``pieces().max() + 1`` pieces in all."""
        return self._p._pieces()

    def adjacency(self) -> Dict[str, np.ndarray]:
        """The region adjacency graph: ``pairs`` ``(E, 2)`` of neighbouring regions, ``length``
        ``(E,)`` of their shared side, ``unit`` ``(E, 2)``: the node and unit whose breakpoint
        separates them."""
        pairs, length, unit = self._p._adjacency()
        return {"pairs": pairs, "length": length, "unit": unit}

    def save_graphml(self, path) -> None:
        """Writes the region adjacency graph as GraphML (``networkx.read_graphml`` reads it)."""
        self._p.save_graphml(os.fspath(path))

    def locate(self, u: float, v: float) -> Optional[int]:
        """Index of the region containing ``(u, v)``."""
        return self._p.locate(float(u), float(v))

    def to_input(self, uv) -> np.ndarray:
        """``(m, 2)`` points of the slice (or one ``(2,)`` point) as inputs ``(m, *input_shape)``."""
        uv = np.asarray(uv, dtype=np.float64)
        single = uv.ndim == 1
        uv2 = np.ascontiguousarray(uv.reshape(1, -1) if single else uv)
        if uv2.ndim != 2 or uv2.shape[1] != 2:
            raise ShapeError(f"points must have shape (m, 2), got {uv.shape}")
        x = self._p._to_input(uv2).reshape((uv2.shape[0], *self._net.input_shape))
        return x[0] if single else x

    def sample_boundary(self, n: int, seed: int = 0) -> np.ndarray:
        """``n`` points uniform in arc length on the decision boundary as inputs
        ``(n, *input_shape)``; each is checked by a forward pass (its two classes tie within
        1e-9 relative), else :class:`CheckError`."""
        flat = self._p._sample_boundary(int(n), int(seed))
        return flat.reshape((flat.shape[0], *self._net.input_shape))

    def svg(self, color: str = "pattern", edges: str = "plain", size=(1000, 1000), axes: bool = True) -> str:
        return self._p.svg(color, edges, tuple(size), axes)

    def png(self, color: str = "pattern", edges: str = "plain", size=(1000, 1000), axes: bool = True) -> bytes:
        return self._p.png(color, edges, tuple(size), axes)

    def save_svg(self, path, **kw) -> None:
        """The picture of ``tessera map --svg`` (one titled polygon per region)."""
        _write_atomically(path, self.svg(**kw).encode())

    def save_png(self, path, **kw) -> None:
        """The picture of ``tessera map --png``."""
        _write_atomically(path, self.png(**kw))

    def _repr_png_(self) -> bytes:
        return self.png(size=(600, 600))

    def plot(self, ax=None, color: str = "class", edges: bool = True, boundary: bool = True,
             anchors: bool = True):
        """Draws the regions on a matplotlib Axes (a new figure without one): fills by ``color``
        (``class``, ``pattern`` or ``area``), region edges, the decision boundary, and anchors A,
        B, C. Returns the Axes."""
        import matplotlib.pyplot as plt
        from matplotlib.collections import LineCollection, PolyCollection

        if ax is None:
            _, ax = plt.subplots(figsize=(6, 6))
        polys = self.polygons
        if color == "class":
            # Regions the boundary crosses are drawn as their classes' cells.
            cmap = plt.get_cmap("tab10")
            cls = self.classes
            cells = self.class_cells
            polys = [q for q, c in zip(polys, cls) if c >= 0] + [q for _, _, q in cells]
            faces = [cmap(int(c) % 10) for c in cls if c >= 0] + [cmap(int(c) % 10) for _, c, _ in cells]
        elif color == "area":
            a = np.log10(np.maximum(self.areas, 1e-300))
            lo, hi = float(a.min()), float(a.max())
            faces = plt.get_cmap("viridis")((a - lo) / (hi - lo if hi > lo else 1.0))
        elif color == "pattern":
            rng = np.random.default_rng(0)
            faces = rng.uniform(0.35, 0.95, size=(len(polys), 3))
        else:
            raise ValueError(f"color must be class, pattern or area, not {color!r}")
        pc = PolyCollection(polys, facecolors=faces, edgecolors=(0.2, 0.2, 0.2, 0.5) if edges else "none",
                            linewidths=0.2 if edges else 0.0)
        if color == "class":
            pc.set_alpha(0.55)
        ax.add_collection(pc)
        if boundary:
            lines = self.boundary_polylines
            if lines:
                ax.add_collection(LineCollection(lines, colors="black", linewidths=1.6))
        a = self.anchors_uv
        if anchors and a is not None:
            ax.scatter(a[:, 0], a[:, 1], c="black", s=18, zorder=3)
            for label, (u, v) in zip("ABC", a):
                ax.annotate(label, (u, v), textcoords="offset points", xytext=(4, 4), fontsize=10)
        u0, u1, v0, v1 = self.domain
        ax.set_xlim(u0, u1)
        ax.set_ylim(v0, v1)
        ax.set_aspect("equal")
        ax.set_title(f"{self._net.name}: {self.num_regions} regions")
        ax.set_xlabel("u")
        ax.set_ylabel("v")
        return ax


def _write_atomically(path, data: bytes) -> None:
    path = os.fspath(path)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


class Solid:
    """A 3D partition (:meth:`Network.map3`): regions as convex polytopes in the box's
    coordinates, with volumes, patterns and affine maps; the decision surface as a mesh."""

    def __init__(self, inner):
        self._s = inner

    def __len__(self) -> int:
        return self._s.num_regions

    def __repr__(self) -> str:
        return repr(self._s)

    @property
    def num_regions(self) -> int:
        return self._s.num_regions

    @property
    def bounds(self) -> Tuple[float, ...]:
        return self._s.bounds

    @property
    def volumes(self) -> np.ndarray:
        """``(N,)`` region volumes."""
        return self._s.volumes

    @property
    def vertices(self) -> List[np.ndarray]:
        """A list of ``(m, 3)`` vertex arrays, one per region."""
        return self._s.vertices

    @property
    def facets(self) -> List[List[List[int]]]:
        """Per region, its facets as vertex-index cycles, counter-clockwise seen from outside."""
        return self._s.facets

    @property
    def jacobians(self) -> np.ndarray:
        """``(N, K, 3)`` output Jacobians in box coordinates."""
        return self._s.jacobians

    @property
    def offsets(self) -> np.ndarray:
        """``(N, K)`` outputs at box coordinates ``(0, 0, 0)``."""
        return self._s.offsets

    @property
    def pattern_hex(self) -> List[str]:
        return self._s.pattern_hex

    @property
    def regions_per_layer(self) -> List[int]:
        return self._s.regions_per_layer

    @property
    def mesh(self) -> Optional[Dict[str, Any]]:
        """The decision surface (``surface=True``): ``vertices`` ``(V, 3)``, ``triangles``
        ``(T, 3)``, ``area``, ``watertight``; None without a surface."""
        m = self._s._mesh()
        if m is None:
            return None
        v, t, area, watertight = m
        return {"vertices": v, "triangles": t, "area": area, "watertight": watertight}

    def save_mesh(self, path) -> None:
        """Writes the surface as OBJ or PLY (by the extension)."""
        self._s.save_mesh(os.fspath(path))

    def to_input(self, p) -> np.ndarray:
        """``(m, 3)`` box points as flat inputs ``(m, n)``."""
        return self._s.to_input(np.ascontiguousarray(np.asarray(p, dtype=np.float64).reshape(-1, 3)))

    def check(self, samples: int = 200, seed: int = 0) -> List[str]:
        """The self-check; the violations (empty when everything holds)."""
        return self._s.check(samples, seed)
