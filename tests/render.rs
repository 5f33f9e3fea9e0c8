//! Pictures: pixels agree with forward passes, SVG structure and tooltips, determinism.

mod common;

use common::*;
use serde_json::json;
use tessera::boundary::{decision_boundary, Decision};
use tessera::render::colors::class_color;
use tessera::render::{render_png, render_rgb, render_svg, ColorScheme, EdgeMode, RenderOptions, Scene, Viewport};

fn three_class_net() -> tessera::Network {
    let act = json!({"op": "leaky_relu", "negative_slope": 0.1});
    first_with_classes(&[2, 10, 10, 3], act, &plane_slice([-2.0, 2.0, -2.0, 2.0]), &Decision::Argmax, 3)
}

#[test]
fn class_pixels_match_the_forward_pass() {
    let net = three_class_net();
    let slice = plane_slice([-2.0, 2.0, -2.0, 2.0]);
    let part = checked(&net, &slice, 2);
    let b = decision_boundary(&part, &Decision::Argmax);
    let opts =
        RenderOptions { size: (240, 240), color: ColorScheme::Class, edges: EdgeMode::None, axes: false, title: None };
    let scene = Scene { partition: &part, boundary: Some(&b), anchors: None };
    let rgb = render_rgb(&scene, &opts);
    // The PNG holds exactly these pixels.
    let png = image::load_from_memory(&render_png(&scene, &opts)).unwrap().to_rgb8();
    assert_eq!(png.as_raw(), &rgb);
    let vp = Viewport::new(part.domain, &opts);
    let (mut checked_px, mut classes) = (0, std::collections::HashSet::new());
    for y in (0..240).step_by(3) {
        for x in (0..240).step_by(3) {
            let uv = vp.to_uv(x as f64 + 0.5, y as f64 + 0.5);
            // Away from the boundary (drawn 5 px wide) by four pixels.
            let near = b
                .segments
                .iter()
                .any(|s| dist_to_segment(uv, part.frame.to_uv(s.a), part.frame.to_uv(s.b)) < 4.0 / vp.scale);
            if near {
                continue;
            }
            let k = Decision::Argmax.class_of(&tessera::forward_at(&net, &slice, uv));
            let want = class_color(k).lighten(0.35);
            let i = (y * 240 + x) * 3;
            assert_eq!(
                (rgb[i], rgb[i + 1], rgb[i + 2]),
                (want.0, want.1, want.2),
                "pixel ({x}, {y}) at {uv:?}, class {k}"
            );
            checked_px += 1;
            classes.insert(k);
        }
    }
    assert!(checked_px > 5000, "{checked_px}");
    assert_eq!(classes.len(), 3);
}

#[test]
fn svg_is_xml_with_one_tooltip_polygon_per_region() {
    let net = three_class_net();
    let slice = plane_slice([-2.0, 2.0, -2.0, 2.0]);
    let part = checked(&net, &slice, 2);
    let b = decision_boundary(&part, &Decision::Argmax);
    let scene = Scene { partition: &part, boundary: Some(&b), anchors: Some([[-1.0, -1.0], [1.0, 0.0], [0.0, 1.5]]) };
    for (color, edges) in [
        (ColorScheme::Pattern, EdgeMode::Plain),
        (ColorScheme::Class, EdgeMode::Layer),
        (ColorScheme::Area, EdgeMode::None),
    ] {
        let opts = RenderOptions { color, edges, ..RenderOptions::default() };
        let svg = render_svg(&scene, &opts);
        let doc = roxmltree::Document::parse(&svg).expect("well-formed XML");
        let titled: Vec<_> = doc
            .descendants()
            .filter(|n| n.has_tag_name("polygon"))
            .filter_map(|n| n.children().find(|c| c.has_tag_name("title")).and_then(|t| t.text()))
            .collect();
        // One polygon per region; class colours split the crossed regions into their cells.
        let expected = if color == ColorScheme::Class { b.pieces } else { part.regions.len() };
        assert_eq!(titled.len(), expected, "{color:?}");
        for (i, r) in part.regions.iter().enumerate().step_by(7) {
            let tip = titled.iter().find(|t| t.starts_with(&format!("region {i}:"))).expect("a tooltip per region");
            assert!(tip.contains(&format!("area {:.3e}", r.area)), "{tip}");
            assert!(tip.contains("pattern "), "{tip}");
        }
        for name in ["A", "B", "C"] {
            assert!(doc.descendants().any(|n| n.has_tag_name("text") && n.text() == Some(name)));
        }
        // Deterministic output.
        assert_eq!(render_svg(&scene, &opts), svg);
        assert_eq!(render_png(&scene, &opts), render_png(&scene, &opts));
    }
}

#[test]
fn stats_plots_are_pngs() {
    let net = three_class_net();
    let part = checked(&net, &plane_slice([-2.0, 2.0, -2.0, 2.0]), 2);
    let plots = tessera::render::plots::stats_plots(&part, (400, 300)).unwrap();
    assert_eq!(plots.len(), 3);
    for (_, png) in plots {
        let img = image::load_from_memory(&png).unwrap();
        assert_eq!((img.width(), img.height()), (400, 300));
    }
}
