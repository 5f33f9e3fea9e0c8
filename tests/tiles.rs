//! Tiles: a map split into N independent jobs and merged equals the single run — counts,
//! per-layer counts, statistics, areas, boundary, regions and pictures — on an MLP and CNNs for
//! N in {2, 4, 9, 16}; merge refuses missing, repeated and foreign tiles.

mod common;

use common::*;
use serde_json::json;
use std::collections::HashMap;
use tessera::boundary::{decision_boundary, Decision};
use tessera::network::{json as model_json, Network};
use tessera::render::raster::Raster;
use tessera::render::{ColorScheme, EdgeMode, RenderOptions};
use tessera::slice::{Domain, Plane, Slice};
use tessera::tile::{self, TileError, TileResult, TileSpec};
use tessera::{Options, Partition};

fn opts() -> Options {
    Options { threads: 2, ..Options::default() }
}

fn tiles(net: &Network, slice: &Slice, n: usize, keep: bool, key: &str) -> Vec<(String, TileResult)> {
    let decision = Decision::for_outputs(net.output_shape().numel(), None);
    (0..n)
        .map(|i| {
            let spec = TileSpec::new(i, n).unwrap();
            let id = tile::RunId { key: key.into(), name: "net".into() };
            let t = tile::run_tile(net, slice, spec, &opts(), &decision, keep, id).unwrap();
            // Through the file format: what a job writes is what the merge reads.
            let text = serde_json::to_string(&t).unwrap();
            let back: TileResult = serde_json::from_str(&text).unwrap();
            assert_eq!(back, t, "tile {i}/{n} does not survive its JSON form");
            (format!("tile{}.json", i + 1), back)
        })
        .collect()
}

/// Paints a partition with the streaming rasteriser (the one `map --png` uses).
fn picture(part: &Partition, color: ColorScheme, decision: &Decision) -> Vec<u8> {
    let ropts = RenderOptions { size: (300, 300), color, edges: EdgeMode::Plain, axes: false, title: None };
    let mut r = Raster::new(part.domain, ropts, Some(decision.clone()));
    tessera::replay(part, &mut r);
    r.finish(None, None)
}

/// Tiles of `net` over `slice` merge into the single run, for every N.
fn merges_like_the_single_run(net: &Network, slice: &Slice, ns: &[usize]) {
    let single = tessera::partition(net, slice, &opts()).unwrap();
    let decision = Decision::for_outputs(net.output_shape().numel(), None);
    let boundary = decision_boundary(&single, &decision);
    let by_pattern: HashMap<_, _> = single.regions.iter().map(|r| (r.pattern.clone(), r)).collect();
    assert_eq!(by_pattern.len(), single.regions.len(), "patterns are unique to regions");
    for &n in ns {
        // Count-only tiles: the summary and boundary.
        let merged = tile::merge(tiles(net, slice, n, false, "k")).unwrap();
        assert!(merged.partition.is_none());
        let (s, m) = (&single.summary, &merged.summary);
        assert_eq!(m.regions, s.regions, "N = {n}: regions");
        assert_eq!(m.regions_per_layer, s.regions_per_layer, "N = {n}: regions per layer");
        assert_eq!(m.vertices, s.vertices, "N = {n}: vertices");
        let bins = |h: &[tessera::partition::AreaBin]| h.iter().map(|b| b.regions).collect::<Vec<_>>();
        assert_eq!(bins(&m.area_histogram), bins(&s.area_histogram), "N = {n}: area histogram");
        assert!((m.area_sum - s.area_sum).abs() <= 1e-12 * s.domain_area, "N = {n}: area");
        assert!((m.min_area - s.min_area).abs() <= 1e-9 * s.min_area, "N = {n}: min area");
        assert!((m.max_area - s.max_area).abs() <= 1e-9 * s.max_area, "N = {n}: max area");
        let b = &merged.boundary;
        assert!((b.length - boundary.length).abs() <= 1e-9 * boundary.length.max(1.0), "N = {n}: boundary length");
        assert_eq!(b.components, boundary.components, "N = {n}: boundary components");
        assert_eq!(b.closed_components, boundary.closed_components, "N = {n}: closed components");
        assert_eq!(b.crossed_regions, boundary.crossed_regions, "N = {n}: crossed regions");
        assert_eq!(b.pieces, boundary.pieces, "N = {n}: boundary pieces");

        // Tiles that keep their regions: the whole partition.
        let merged = tile::merge(tiles(net, slice, n, true, "k")).unwrap();
        let part = merged.partition.expect("every tile kept its regions");
        assert_eq!(part.regions.len(), single.regions.len());
        for r in &part.regions {
            let s = by_pattern.get(&r.pattern).unwrap_or_else(|| panic!("N = {n}: a merged region is not a region"));
            assert!((r.area - s.area).abs() <= 1e-9 * s.area + 1e-15, "N = {n}: area {} vs {}", r.area, s.area);
            assert_eq!(r.polygon.pts.len(), s.polygon.pts.len(), "N = {n}: vertices of a rejoined region");
            let worst =
                r.polygon.pts.iter().map(|&p| part.map_error(&r.map.eval(p), &s.map.eval(p))).fold(0.0, f64::max);
            assert!(worst <= tessera::partition::MAP_TOL, "N = {n}: map differs by {worst}");
        }
        let report = part.sanity_check(500, 3, Some(&|p| tessera::forward_at(net, slice, p)));
        assert!(report.is_ok(), "N = {n}: {:?}", &report.violations[..report.violations.len().min(3)]);
        for color in [ColorScheme::Pattern, ColorScheme::Class] {
            let (x, y) = (picture(&part, color, &decision), picture(&single, color, &decision));
            let diff: Vec<usize> = (0..x.len() / 3).filter(|&i| x[3 * i..3 * i + 3] != y[3 * i..3 * i + 3]).collect();
            assert!(
                diff.is_empty(),
                "N = {n}: the merged picture ({color:?}) differs from the single run's at {} pixels: {:?}",
                diff.len(),
                &diff[..diff.len().min(10)]
            );
        }
    }
}

#[test]
fn mlp_tiles_merge_into_the_single_run() {
    let net = model_json::load_path(std::path::Path::new("assets/networks/mlp_2_64x3_2.json")).unwrap();
    let slice = plane_slice([-2.0, 2.0, -2.0, 2.0]);
    merges_like_the_single_run(&net, &slice, &[2, 4, 9, 16]);
}

#[test]
fn cnn_tiles_merge_into_the_single_run() {
    // conv, batch-norm, ReLU, max-pool, conv, ReLU, dense, on the plane through three images.
    let mut r = rng(41);
    let net = model(
        &[1, 8, 8],
        vec![
            conv(&mut r, 1, 4, 3, json!({"padding": 1})),
            batch_norm(&mut r, 4),
            json!({"op": "relu"}),
            json!({"op": "max_pool2d", "kernel_size": 2}),
            conv(&mut r, 4, 6, 3, json!({"stride": 2})),
            json!({"op": "relu"}),
            json!({"op": "flatten"}),
            linear(&mut r, 6, 3),
        ],
    );
    let imgs: Vec<Vec<f64>> = (0..3).map(|_| uniform(&mut r, 64, 1.0)).collect();
    let (plane, anchors) = Plane::from_anchors(&imgs[0], &imgs[1], &imgs[2], 64).unwrap();
    let domain = Domain::around(&anchors, 0.3).unwrap();
    let slice = Slice { plane, domain, anchors: Some(anchors) };
    merges_like_the_single_run(&net, &slice, &[2, 4, 9, 16]);
}

#[test]
fn residual_tiles_merge_into_the_single_run() {
    let mut r = rng(8);
    let net = model(
        &[2],
        vec![
            linear(&mut r, 2, 24),
            json!({"op": "relu"}),
            json!({"op": "residual", "layers": [linear(&mut r, 24, 24), json!({"op": "relu"}), linear(&mut r, 24, 24)]}),
            json!({"op": "relu"}),
            linear(&mut r, 24, 4),
        ],
    );
    merges_like_the_single_run(&net, &plane_slice([-3.0, 3.0, -2.0, 2.0]), &[4, 9]);
}

#[test]
fn merge_refuses_missing_repeated_and_foreign_tiles() {
    let net = mlp(3, &[2, 12, 12, 2], json!({"op": "relu"}));
    let slice = plane_slice([-1.0, 1.0, -1.0, 1.0]);
    let all = tiles(&net, &slice, 4, false, "run-a");
    // A failed job leaves no tile: merge names it.
    let mut three = all.clone();
    three.remove(2);
    let e = tile::merge(three).unwrap_err();
    assert!(matches!(e, TileError::Missing { index: 3, count: 4, .. }), "{e}");
    assert!(e.to_string().contains("tile 3/4 is missing"), "{e}");
    // The same tile twice.
    let mut twice = all.clone();
    twice[1] = (String::from("copy.json"), all[0].1.clone());
    let e = tile::merge(twice).unwrap_err();
    assert!(e.to_string().contains("tile 1/4 is given twice: tile1.json and copy.json"), "{e}");
    // A tile of another run.
    let mut foreign = all.clone();
    foreign[3].1.key = "run-b".into();
    let e = tile::merge(foreign).unwrap_err();
    assert!(e.to_string().contains("tile4.json is not a tile of the same run"), "{e}");
    // A tampered tile.
    let mut bad = all.clone();
    bad[0].1.border[0].map.pop();
    let e = tile::merge(bad).unwrap_err();
    assert!(e.to_string().starts_with("tile1.json: not a valid tile result"), "{e}");
    assert!(matches!(tile::merge(Vec::new()), Err(TileError::Empty)));
    assert!(tile::merge(all).is_ok());
}
