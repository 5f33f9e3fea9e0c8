"""tessera.distributed on a local Ray cluster started here (ray.init(num_cpus=2)): merged tiles
equal the single run, checkpoint rows equal separate counts, failures name their tile or file."""
import csv
import json
import os

import numpy as np
import pytest

import tessera
from conftest import asset, reference

ray = pytest.importorskip("ray", reason="ray is not installed: tessera.distributed is not tested")
from tessera import distributed  # noqa: E402

BOX = (-2.0, 2.0, -2.0, 2.0)


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_map_tiles_equals_the_single_run():
    net = tessera.load(reference("mlp_2_64x3_2.json"))
    want = net.map(box=BOX).stats()
    got = distributed.map_tiles(net, tiles=16, box=BOX)
    for key in ["regions", "regions_per_layer", "vertices", "boundary_components"]:
        assert got[key] == want[key], key
    assert abs(got["boundary_length"] - want["boundary_length"]) <= 1e-9 * want["boundary_length"]
    # A CNN on an anchor plane, every region kept; the model given as a path.
    cnn = tessera.load(asset("networks", "cnn_1x8x8.json"))
    anchors = tuple(np.load(asset("anchors", f"{k}.npy")) for k in "abc")
    single = cnn.map(anchors=anchors)
    kept = distributed.map_tiles(asset("networks", "cnn_1x8x8.json"), tiles=9, anchors=anchors, keep_regions=True)
    assert kept.num_regions == single.num_regions
    assert sorted(kept.pattern_hex) == sorted(single.pattern_hex)


def test_a_failed_tile_is_named():
    net = tessera.load(reference("mlp_2_64x3_2.json"))
    with pytest.raises(tessera.TileError, match=r"tile \d+/4 failed: .*more than 5 regions"):
        distributed.map_tiles(net, tiles=4, box=BOX, max_regions=5)


def scaled_checkpoint(tmp_path, k, scale):
    with open(reference("mlp_2_64x3_2.json")) as f:
        doc = json.load(f)
    for layer in doc["layers"]:
        if layer["op"] == "linear":
            layer["bias"] = [b * scale for b in layer["bias"]]
    path = tmp_path / f"ckpt{k}.json"
    path.write_text(json.dumps(doc))
    return str(path)


def test_map_checkpoints_rows_equal_separate_runs(tmp_path):
    paths = [scaled_checkpoint(tmp_path, k, s) for k, s in enumerate([1.0, 0.5, 2.0])]
    rows = distributed.map_checkpoints(paths, box=BOX, png_dir=str(tmp_path / "png"))
    assert [r["checkpoint"] for r in rows] == paths
    for r, p in zip(rows, paths):
        want = tessera.load(p).count(box=BOX, boundary=True)
        assert r["regions"] == want["regions"] and r["regions_per_layer"] == want["regions_per_layer"]
        assert abs(r["boundary_length"] - want["boundary_length"]) <= 1e-9 * max(1.0, want["boundary_length"])
        assert open(r["png"], "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert rows[0]["regions"] == 12042
    out = tmp_path / "series.csv"
    distributed.write_csv(rows, out)
    table = list(csv.DictReader(open(out)))
    assert [int(t["regions"]) for t in table] == [r["regions"] for r in rows]
    assert table[0]["regions_per_layer"] == "1312;5122;12042"


def test_mismatched_checkpoints_are_refused(tmp_path):
    good = scaled_checkpoint(tmp_path, 0, 1.0)
    other = asset("networks", "cnn_1x8x8.json")
    with pytest.raises(tessera.TileError, match="cnn_1x8x8.json: input shape"):
        distributed.map_checkpoints([good, other], box=BOX)
