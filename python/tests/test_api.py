"""The Python API on the shared reference networks and small CNNs, checked against the CLI, the
shared reference counts, a numpy forward pass written here, and brute-force evaluation."""
import json
import os
import struct
import threading
import time
import _thread

import numpy as np
import pytest

import tessera
from conftest import ROOT, asset, reference

BOX = (-2.0, 2.0, -2.0, 2.0)


def reference_layers():
    with open(reference("mlp_2_64x3_2.json")) as f:
        return json.load(f)["layers"]


def numpy_forward(layers, x):
    """The reference MLP in plain numpy (shares no code with tessera)."""
    for layer in layers:
        if layer["op"] == "linear":
            x = np.asarray(layer["weight"]) @ x + np.asarray(layer["bias"])
        else:
            x = np.maximum(x, 0.0)
    return x


def check_reference(p):
    assert p.num_regions == 12042
    assert p.regions_per_layer == [1312, 5122, 12042]
    assert abs(p.areas.sum() - 16.0) < 1e-9
    assert abs(p.boundary_length - 6.0814) < 5e-5
    assert p.stats()["vertices"] == 12230


def test_reference_through_json_onnx_and_bytes():
    for net in [tessera.load(reference("mlp_2_64x3_2.json")),
                tessera.load(asset("onnx", "reference_mlp_2_64x3_2.onnx")),
                tessera.load(open(reference("mlp_2_64x3_2.json"), "rb").read())]:
        check_reference(net.map(box=BOX))


def test_reference_through_from_torch():
    torch = pytest.importorskip("torch", reason="torch is not installed: from_torch is not tested")
    pytest.importorskip("onnx", reason="onnx is not installed: torch.onnx.export needs it")
    mods = []
    for layer in reference_layers():
        if layer["op"] == "linear":
            w = torch.tensor(layer["weight"], dtype=torch.float32)
            lin = torch.nn.Linear(w.shape[1], w.shape[0])
            with torch.no_grad():
                lin.weight.copy_(w)
                lin.bias.copy_(torch.tensor(layer["bias"], dtype=torch.float32))
            mods.append(lin)
        else:
            mods.append(torch.nn.ReLU())
    module = torch.nn.Sequential(*mods).train()
    net = tessera.from_torch(module, input_shape=(2,))
    assert module.training, "from_torch leaves the caller's module in its mode"
    check_reference(net.map(box=BOX))


def test_equals_the_cli(cli, tmp_path):
    model = reference("mlp_2_64x3_2.json")
    png = tmp_path / "cli.png"
    out = cli("map", model, "--box", "-2,2,-2,2", "--stats", "--boundary", "--png", str(png))
    want = json.loads(out.stdout)
    p = tessera.load(model).map(box=BOX)
    got = p.stats()
    for key in ["regions", "regions_per_layer", "vertices", "boundary_components", "boundary_crossed_regions",
                "boundary_pieces", "dropped_slivers"]:
        assert got[key] == want[key], key
    for key in ["area_sum", "boundary_length", "min_area", "max_area"]:
        assert abs(got[key] - want[key]) <= 1e-12 * abs(want[key]), key
    # The same picture, byte for byte (the title carries the model's file name).
    assert p.png() == png.read_bytes()
    c = tessera.load(model).count(box=BOX, boundary=True)
    assert c["regions"] == want["regions"] and c["regions_per_layer"] == want["regions_per_layer"]
    assert abs(c["boundary_length"] - want["boundary_length"]) <= 1e-12 * want["boundary_length"]


def test_arrays_agree_with_a_numpy_forward_pass():
    layers = reference_layers()
    p = tessera.load(reference("mlp_2_64x3_2.json")).map(box=(-1, 1, -1, 1))
    n = p.num_regions
    assert p.areas.shape == (n,)
    assert p.jacobians.shape == (n, 2, 2) and p.offsets.shape == (n, 2)
    assert p.patterns.shape[0] == n and p.patterns.dtype == np.uint64
    assert len(set(p.pattern_hex)) == n
    polys = p.polygons
    assert len(polys) == n and all(q.ndim == 2 and q.shape[1] == 2 and len(q) >= 3 for q in polys)
    rng = np.random.default_rng(1)
    for i in rng.choice(n, 200, replace=False):
        c = polys[i].mean(axis=0)  # inside: the polygon is convex
        assert p.locate(*c) == i
        y = p.jacobians[i] @ c + p.offsets[i]
        x = p.to_input(c)
        assert x.shape == (2,)
        assert np.allclose(y, numpy_forward(layers, x), rtol=1e-9, atol=1e-9)
    # Shoelace areas of the polygons.
    shoelace = [0.5 * abs(np.dot(q[:, 0], np.roll(q[:, 1], -1)) - np.dot(q[:, 1], np.roll(q[:, 0], -1))) for q in polys]
    assert np.allclose(shoelace, p.areas, rtol=1e-9, atol=1e-15)
    assert p.check(200) == []


def test_boundary_samples_tie():
    layers = reference_layers()
    p = tessera.load(reference("mlp_2_64x3_2.json")).map(box=BOX)
    x = p.sample_boundary(50, seed=3)
    assert x.shape == (50, 2)
    for xi in x:
        y = numpy_forward(layers, xi)
        assert abs(y[0] - y[1]) <= 1e-9 * max(1.0, abs(y).max())
    lines = p.boundary_polylines
    assert len(lines) >= 1 and all(q.shape[1] == 2 for q in lines)
    total = sum(np.linalg.norm(np.diff(q, axis=0), axis=1).sum() for q in lines)
    assert abs(total - p.boundary_length) < 1e-9
    assert np.array_equal(x, p.sample_boundary(50, seed=3))


def cnn_and_anchors():
    net = tessera.load(asset("networks", "cnn_1x8x8.json"))
    a, b, c = (np.load(asset("anchors", f"{k}.npy")) for k in "abc")
    return net, (a, b, c)


def test_anchor_plane_of_a_cnn():
    net, (a, b, c) = cnn_and_anchors()
    p = net.map(anchors=(a, b, c), threads=2)
    q = net.map(anchors=(a, b, c), threads=1)
    assert p.num_regions == q.num_regions > 100
    assert np.array_equal(p.areas, q.areas)
    uv = p.anchors_uv
    assert uv.shape == (3, 2) and np.allclose(uv[0], 0)
    # The anchors map back to themselves, and the regions' maps are the network's.
    assert np.allclose(p.to_input(uv), np.stack([a, b, c]).reshape(3, 1, 8, 8), atol=1e-12)
    for i in range(0, p.num_regions, 97):
        cpt = p.polygons[i].mean(axis=0)
        y = p.jacobians[i] @ cpt + p.offsets[i]
        assert np.allclose(y, net.forward(p.to_input(cpt)), rtol=1e-9, atol=1e-9)
    s = net.count(anchors=(a, b, c))
    assert s["regions"] == p.num_regions and s["regions_per_layer"] == p.regions_per_layer


def test_bad_input_raises_clear_exceptions(tmp_path):
    net, (a, b, c) = cnn_and_anchors()
    with pytest.raises(tessera.ShapeError, match=r"anchor C has shape \(7,\)"):
        net.map(anchors=(a, b, np.zeros(7)))
    with pytest.raises(ValueError):  # ShapeError is a ValueError too
        net.map(anchors=(a, b, np.full(64, np.nan)))
    with pytest.raises(tessera.SliceError, match="collinear|degenerate|coincide"):
        net.map(anchors=(a, b, 2 * b - a))
    with pytest.raises(tessera.SliceError, match="features"):
        net.map(box=(-1, 1, -1, 1))
    with pytest.raises(tessera.SliceError, match="box"):
        tessera.load(reference("mlp_2_64x3_2.json")).map(box=(1, -1, 0, 1))
    with pytest.raises(FileNotFoundError):
        tessera.load(tmp_path / "missing.onnx")
    with pytest.raises(tessera.ModelError):
        tessera.load(b"not a model")
    # NaN in an ONNX weight: patch the first weight of the reference MLP.
    data = open(asset("onnx", "reference_mlp_2_64x3_2.onnx"), "rb").read()
    w0 = struct.pack("<f", reference_layers()[0]["weight"][0][0])
    assert w0 in data
    bad = data.replace(w0, struct.pack("<f", float("nan")), 1)
    with pytest.raises(tessera.ModelError, match="not finite"):
        tessera.load(bad)
    with pytest.raises(tessera.EngineError, match="more than 10 regions"):
        tessera.load(reference("mlp_2_64x3_2.json")).map(box=BOX, max_regions=10)
    with pytest.raises(tessera.TesseraError):
        tessera.load(reference("mlp_2_64x3_2.json")).map(box=BOX).png(color="rainbow")


def test_ctrl_c_interrupts_a_long_map():
    # The whole arrangement of this MLP (~300k regions) on one thread with the boundary takes
    # about 1 s here; the interrupt comes after 0.1 s, so the run is cut well before it ends
    # (it once ended first: 0.5 s of two threads without the boundary was too short a job).
    net = tessera.load(asset("onnx", "mlp_2_256x3_2_ts.onnx"))
    timer = threading.Timer(0.1, _thread.interrupt_main)
    start = time.time()
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        net.count(box=(-400, 400, -400, 400), threads=1, boundary=True)
    assert time.time() - start < 10


def test_pictures(tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib is not installed: plot() is not tested")
    import matplotlib

    matplotlib.use("Agg")
    net, anchors = cnn_and_anchors()
    p = net.map(anchors=anchors)
    ax = p.plot()
    assert len(ax.collections) >= 1 and ax.get_title().endswith(f"{p.num_regions} regions")
    p.save_svg(tmp_path / "m.svg")
    p.save_png(tmp_path / "m.png", color="class", size=(300, 200))
    assert (tmp_path / "m.svg").read_text().count("<polygon") >= p.num_regions
    png = (tmp_path / "m.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", png[16:24]) == (300, 200)
    assert p._repr_png_()[:4] == b"\x89PNG"


def test_pickles_by_source():
    import pickle

    net = tessera.load(reference("mlp_2_64x3_2.json"))
    back = pickle.loads(pickle.dumps(net))
    assert back.input_shape == (2,) and back.map(box=BOX).num_regions == 12042


@pytest.mark.parametrize("n", [2, 4, 9, 16])
def test_tiles_merge_into_the_single_run(n):
    for net, kw in [(tessera.load(reference("mlp_2_64x3_2.json")), {"box": BOX}),
                    (cnn_and_anchors()[0], {"anchors": cnn_and_anchors()[1]})]:
        single = net.map(**kw)
        want = single.stats()
        tiles = [net.map_tile((i, n), **kw) for i in range(n)]
        got = net.merge_tiles(tiles, **kw)
        for key in ["regions", "regions_per_layer", "vertices", "boundary_components", "boundary_pieces"]:
            assert got[key] == want[key], (n, key)
        assert abs(got["boundary_length"] - want["boundary_length"]) <= 1e-9 * want["boundary_length"]
        kept = net.merge_tiles([net.map_tile((i, n), keep_regions=True, **kw) for i in range(n)], **kw)
        assert kept.num_regions == single.num_regions
        assert np.allclose(np.sort(kept.areas), np.sort(single.areas), rtol=1e-9, atol=1e-15)
        assert sorted(kept.pattern_hex) == sorted(single.pattern_hex)
        assert kept.png() == single.png()


def test_merge_refuses_missing_and_foreign_tiles():
    net = tessera.load(reference("mlp_2_64x3_2.json"))
    tiles = [net.map_tile((i, 4), box=BOX) for i in range(4)]
    with pytest.raises(tessera.TileError, match="tile 2/4 is missing"):
        net.merge_tiles([tiles[0], tiles[2], tiles[3]], box=BOX)
    with pytest.raises(tessera.TileError, match="another model or slice"):
        net.merge_tiles(tiles, box=(-2, 2, -2, 1.5))
    with pytest.raises(tessera.TileError, match="not a tile result"):
        net.merge_tiles([b"{}"] + tiles[1:], box=BOX)


def _distance_to_polygon(c, poly):
    """Distance from point ``c`` to a counter-clockwise convex polygon (0 inside), in numpy."""
    a, b = poly, np.roll(poly, -1, axis=0)
    e = b - a
    cross = e[:, 0] * (c[1] - a[:, 1]) - e[:, 1] * (c[0] - a[:, 0])
    if (cross >= 0).all():
        return 0.0
    t = np.clip(((c - a) * e).sum(1) / np.maximum((e * e).sum(1), 1e-300), 0.0, 1.0)
    return float(np.min(np.hypot(*(a + t[:, None] * e - c).T)))


def test_analyses_of_a_partition():
    net = tessera.load(reference("mlp_2_64x3_2.json"))
    p = net.map(box=BOX)
    layers = p.neurons()
    assert [l["node"] for l in layers] == [1, 3, 5]
    for l in layers:
        active = (l["piece_regions"] > 0).sum(axis=1)
        assert np.array_equal(l["verdict"] == "switching", active > 1)
        assert np.allclose(l["piece_area"].sum(axis=1), 16.0)
        assert np.array_equal(l["edge_length"] > 0, active > 1)
    switching = sum(int((l["verdict"] == "switching").sum()) for l in layers)
    assert 0 < switching < 192
    small, counts = p.simplified()
    assert counts["kept"] == switching and counts["removed"] + counts["linearised"] == 192 - switching
    q = small.map(box=BOX)
    assert q.num_regions == p.num_regions
    assert np.allclose(np.sort(q.areas), np.sort(p.areas), rtol=0, atol=1e-12)
    x = np.array([0.3, -0.7])
    assert np.allclose(small.forward(x), net.forward(x), rtol=1e-12, atol=1e-12)
    # A generic trained net: every region its own piece.
    assert p.pieces().max() + 1 == p.num_regions
    adj = p.adjacency()
    assert adj["pairs"].shape[1] == 2 and len(adj["length"]) == len(adj["pairs"]) > p.num_regions
    assert (adj["length"] > 0).all() and (adj["unit"][:, 0] >= 0).all()
    # Local complexity against the regions of the big partition meeting each disk.
    pts = np.array([[0.1, -0.2], [0.5, 0.4]])
    lc = net.local_complexity(pts, 0.3, planes=2, seed=1)
    assert lc["regions"].shape == (2, 2) and np.array_equal(lc["regions"][:, 0], lc["regions"][:, 1])
    polys = p.polygons
    for i, c in enumerate(pts):
        meeting = sum(_distance_to_polygon(c, poly) < 0.3 for poly in polys)
        assert lc["regions"][i, 0] == meeting
    with pytest.raises(tessera.TesseraError, match="radius"):
        net.local_complexity(pts, -1.0)


def test_region_graph_loads_in_networkx(tmp_path):
    nx = pytest.importorskip("networkx", reason="networkx is not installed: the GraphML file is not read back")
    p = tessera.load(reference("mlp_2_64x3_2.json")).map(box=(-0.5, 0.5, -0.5, 0.5))
    p.save_graphml(tmp_path / "g.graphml")
    g = nx.read_graphml(tmp_path / "g.graphml")
    assert g.number_of_nodes() == p.num_regions
    assert g.number_of_edges() == len(p.adjacency()["pairs"])
    areas = sorted(d["area"] for _, d in g.nodes(data=True))
    assert isinstance(areas[0], float) and np.allclose(areas, np.sort(p.areas))


def test_3d_partition_and_its_surface(tmp_path, cli):
    net = tessera.load(asset("networks", "sdf_torus_3_32x2_1.json"))
    s = net.map3(surface=True)
    assert s.num_regions > 1000 and np.isclose(s.volumes.sum(), 8.0, rtol=1e-9)
    stats = json.loads(cli("map", asset("networks", "sdf_torus_3_32x2_1.json"), "--dims", "3", "--stats").stdout)
    assert stats["regions"] == s.num_regions
    assert [c["regions"] for c in stats["regions_per_layer"]] == s.regions_per_layer
    assert s.check() == []
    # Every region's map against the forward pass at its vertex mean, by numpy.
    idx = np.linspace(0, s.num_regions - 1, 50).astype(int)
    for i in idx:
        c = s.vertices[i].mean(axis=0)
        y = net.forward(s.to_input(c)[0])
        assert np.allclose(s.jacobians[i] @ c + s.offsets[i], y, rtol=1e-9, atol=1e-9)
    # The zero-level surface: closed, and the network vanishes at its vertices.
    m = s.mesh
    assert m["watertight"] and m["triangles"].shape[1] == 3 and m["area"] > 0
    vals = np.array([net.forward(x)[0] for x in s.to_input(m["vertices"][::17])])
    assert np.abs(vals).max() < 1e-9
    s.save_mesh(tmp_path / "t.obj")
    text = (tmp_path / "t.obj").read_text()
    assert text.count("\nf ") == len(m["triangles"])
    with pytest.raises(tessera.SliceError):
        net.map3(box=(-1, 1, -1, 1))
