"""Scale-out on Ray: one map split into tiles, or many checkpoints, as Ray tasks.

Needs ``ray`` (``pip install "tessera[ray]"``). Connect first (``ray.init()`` for this machine,
``ray.init(address="auto")`` or ``ray.init(address="ray://head:10001")`` on a cluster); without
a connection the functions start a local Ray. Models and anchors travel to the workers as bytes
and arrays through Ray's object store, so workers need no shared file system, only the
``tessera`` package.

- :func:`map_tiles` fans the tiles of one map out as tasks and merges them exactly: the result
  equals the single run (counts, per-layer counts, areas, boundary; the single run's regions, in another order, with
  ``keep_regions=True``).
- :func:`map_checkpoints` maps one slice for many checkpoints, one task each, and returns one
  row of statistics per checkpoint (optionally a PNG each); :func:`write_csv` writes the table.
"""

from __future__ import annotations

import csv
import os
from typing import Any, Dict, List, Optional, Sequence

from . import Network, TileError, load

__all__ = ["map_tiles", "map_checkpoints", "write_csv"]


def _ray():
    try:
        import ray
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("tessera.distributed needs Ray: pip install ray") from e
    if not ray.is_initialized():
        ray.init()
    return ray


def _network(model) -> Network:
    return model if isinstance(model, Network) else load(model)


def _slice_args(anchors, box, origin, du, dv) -> Dict[str, Any]:
    return {"anchors": anchors, "box": box, "origin": origin, "du": du, "dv": dv}


def map_tiles(model, tiles: int = 16, anchors=None, box=None, origin=None, du=None, dv=None,
              keep_regions: bool = False, threads_per_task: int = 1, num_cpus: float = 1,
              **engine_args):
    """Maps one slice of ``model`` (a :class:`~tessera.Network`, a path or bytes) as ``tiles``
    Ray tasks, each computing one tile of the domain's grid, and merges them.

    Returns the statistics dict of ``map --stats --boundary`` (equal to the single run's), or
    with ``keep_regions=True`` the whole :class:`~tessera.Partition`. A failed task raises
    :class:`~tessera.TileError` naming its tile. ``engine_args`` (``max_regions``,
    ``time_limit``, ``threshold``, ``level``) go to every tile.
    """
    ray = _ray()
    net = _network(model)
    n = int(tiles)
    if n < 1:
        raise ValueError(f"tiles must be at least 1, got {tiles}")
    sargs = _slice_args(anchors, box, origin, du, dv)

    if "threads" in engine_args:
        raise TypeError("map_tiles takes threads_per_task, not threads")

    @ray.remote(num_cpus=num_cpus)
    def tile_task(net, i, sargs):
        return net.map_tile((i, n), keep_regions=keep_regions, threads=threads_per_task, **sargs, **engine_args)

    net_ref, sargs_ref = ray.put(net), ray.put(sargs)
    refs = [tile_task.remote(net_ref, i, sargs_ref) for i in range(n)]
    results = []
    for i, ref in enumerate(refs):
        try:
            results.append(ray.get(ref))
        except Exception as e:  # a task's error arrives wrapped by Ray
            for r in refs[i + 1:]:
                ray.cancel(r)
            cause = getattr(e, "cause", None) or e
            raise TileError(f"tile {i + 1}/{n} failed: {cause}") from e
    return net.merge_tiles(results, **sargs)


def map_checkpoints(paths: Sequence, anchors=None, box=None, origin=None, du=None, dv=None,
                    stats: bool = True, png_dir: Optional[str] = None, threads_per_task: int = 1,
                    num_cpus: float = 1, png_options: Optional[Dict[str, Any]] = None,
                    **engine_args) -> List[Dict[str, Any]]:
    """Maps the same slice for every checkpoint in ``paths`` (ONNX or JSON files, in order),
    one Ray task each; returns one row per checkpoint: ``index``, ``checkpoint``, ``regions``,
    ``regions_per_layer``, ``boundary_length``, ``boundary_components`` and the other
    statistics (``stats=True``), and ``png`` (the file written in ``png_dir``, when given).

    Checkpoints whose input shape differs from the first's are refused before any task runs,
    naming the file. Memory on the driver is one row per checkpoint (and one PNG at a time).
    """
    ray = _ray()
    paths = [os.fspath(p) for p in paths]
    if not paths:
        return []
    blobs, shape = [], None
    for p in paths:
        with open(p, "rb") as f:
            data = f.read()
        net = load(data, name=os.path.splitext(os.path.basename(p))[0])
        if shape is None:
            shape = net.input_shape
        elif net.input_shape != shape:
            raise TileError(f"{p}: input shape {net.input_shape} differs from the first checkpoint's {shape}")
        blobs.append(ray.put(data))
    if png_dir is not None:
        os.makedirs(png_dir, exist_ok=True)
    sargs_ref = ray.put(_slice_args(anchors, box, origin, du, dv))
    want_png = png_dir is not None
    popts = dict(png_options or {})

    @ray.remote(num_cpus=num_cpus)
    def checkpoint_task(data, name, sargs):
        net = load(data, name=name)
        if want_png:
            part = net.map(threads=threads_per_task, **sargs, **engine_args)
            return part.stats(), part.png(**popts)
        return net.count(threads=threads_per_task, boundary=True, **sargs, **engine_args), None

    names = [os.path.splitext(os.path.basename(p))[0] for p in paths]
    refs = [checkpoint_task.remote(b, nm, sargs_ref) for b, nm in zip(blobs, names)]
    rows = []
    for k, p in enumerate(paths):
        try:
            s, png = ray.get(refs[k])
            # Let Ray free the checkpoint and its result once read.
            refs[k] = blobs[k] = None
        except Exception as e:
            cause = getattr(e, "cause", None) or e
            raise TileError(f"checkpoint {p} failed: {cause}") from e
        row: Dict[str, Any] = {"index": k, "checkpoint": p}
        if stats:
            row.update({key: value for key, value in s.items() if key not in ("area_histogram", "nonlinear_layers")})
        else:
            row["regions"] = s["regions"]
        if png is not None:
            out = os.path.join(png_dir, f"{k:04d}_{names[k]}.png")
            with open(out, "wb") as f:
                f.write(png)
            row["png"] = out
        rows.append(row)
    return rows


def write_csv(rows: List[Dict[str, Any]], path) -> None:
    """Writes rows of :func:`map_checkpoints` as CSV (lists such as ``regions_per_layer`` are
    written as ``a;b;c``)."""
    keys: List[str] = []
    for r in rows:
        keys.extend(k for k in r if k not in keys)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow({k: ";".join(map(str, v)) if isinstance(v, list) else v for k, v in r.items()})
