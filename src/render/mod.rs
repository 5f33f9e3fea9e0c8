//! Pictures of a partition: regions, edges, the decision boundary, anchors, axes and a legend.
//!
//! Two paths, one look. SVG ([`render_svg`], with a tooltip per region) is drawn from a finished
//! `Partition` and its `Boundary`. PNG is rasterised region by region ([`raster::Raster`]), as
//! the engine streams them or from a kept partition ([`render_png`]), in memory independent of
//! the region count. Neither reads the network. Output is deterministic: the same input gives the
//! same bytes.

pub mod canvas;
pub mod colors;
pub mod line_plot;
pub mod plots;
pub mod raster;

use crate::boundary::{Boundary, RegionClass};
use crate::partition::Partition;
use crate::slice::Domain;
use canvas::{Align, BitmapCanvas, Canvas, SvgCanvas};
use colors::{class_color, distinct_colors, layer_color, viridis, Rgb};

/// How regions are filled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ColorScheme {
    /// A distinct, stable colour per region (neighbours differ).
    #[default]
    Pattern,
    /// The predicted class; regions the boundary crosses are split at it.
    Class,
    /// log(area): small regions show where the function is complex.
    Area,
    /// Norm of the gradient of the function scoring the predicted class (its logit for argmax,
    /// the level function for a level set; output 0 without a boundary).
    Slope,
    /// Regions per pixel, log scale (PNG only; in SVG the same as `Area`).
    Density,
}

/// Which region edges are drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum EdgeMode {
    /// No edges.
    None,
    /// Thin grey edges.
    #[default]
    Plain,
    /// Each edge coloured by the layer whose unit created it.
    Layer,
}

/// Picture options.
#[derive(Clone, Debug, PartialEq)]
pub struct RenderOptions {
    /// Width and height in pixels.
    pub size: (u32, u32),
    /// Region fill.
    pub color: ColorScheme,
    /// Region edges.
    pub edges: EdgeMode,
    /// Axes, title and legend; without them the domain fills the picture.
    pub axes: bool,
    /// Title (with axes).
    pub title: Option<String>,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions {
            size: (1000, 1000),
            color: ColorScheme::Pattern,
            edges: EdgeMode::Plain,
            axes: true,
            title: None,
        }
    }
}

/// What to draw.
#[derive(Clone, Copy, Debug)]
pub struct Scene<'a> {
    /// The regions.
    pub partition: &'a Partition,
    /// The decision boundary, drawn bold on top (and used for class colours).
    pub boundary: Option<&'a Boundary>,
    /// Anchor points in `(u, v)`, marked A, B, C.
    pub anchors: Option<[[f64; 2]; 3]>,
}

/// The map between slice coordinates and pixels (aspect ratio preserved, `v` up).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Viewport {
    /// The domain shown.
    pub domain: Domain,
    /// Pixel position of `(u0, v1)`, the top-left corner of the domain.
    pub origin: (f64, f64),
    /// Pixels per unit.
    pub scale: f64,
}

impl Viewport {
    /// Pixel coordinates of a point in frame coordinates (`[-1, 1]²` is the domain): computed
    /// from the offset within the domain, so a domain far from the origin loses no precision.
    pub fn frame_to_px(&self, p: [f64; 2]) -> (f64, f64) {
        let d = &self.domain;
        let (hu, hv) = (0.5 * (d.u1 - d.u0), 0.5 * (d.v1 - d.v0));
        (self.origin.0 + hu * (p[0] + 1.0) * self.scale, self.origin.1 + hv * (1.0 - p[1]) * self.scale)
    }
}

impl Viewport {
    /// The viewport a picture with these options uses for `domain`, with room for the widest
    /// legend of its colour scheme.
    pub fn new(domain: Domain, opts: &RenderOptions) -> Self {
        Self::with_legend(domain, opts, 150.0)
    }

    /// The viewport leaving `legend` pixels (a legend's [`Legend::width`]) on the right.
    pub fn with_legend(domain: Domain, opts: &RenderOptions, legend: f64) -> Self {
        let (w, h) = (opts.size.0 as f64, opts.size.1 as f64);
        let right = legend + 30.0;
        let (left, right, top, bottom) = if opts.axes { (80.0, right, 50.0, 60.0) } else { (0.0, 0.0, 0.0, 0.0) };
        let (aw, ah) = ((w - left - right).max(1.0), (h - top - bottom).max(1.0));
        let (du, dv) = (domain.u1 - domain.u0, domain.v1 - domain.v0);
        let scale = (aw / du).min(ah / dv);
        let origin = (left + 0.5 * (aw - du * scale), top + 0.5 * (ah - dv * scale));
        Viewport { domain, origin, scale }
    }

    /// Pixel coordinates of `(u, v)`.
    pub fn to_px(&self, p: [f64; 2]) -> (f64, f64) {
        (self.origin.0 + (p[0] - self.domain.u0) * self.scale, self.origin.1 + (self.domain.v1 - p[1]) * self.scale)
    }

    /// Slice coordinates of pixel position `(x, y)`.
    pub fn to_uv(&self, x: f64, y: f64) -> [f64; 2] {
        [self.domain.u0 + (x - self.origin.0) / self.scale, self.domain.v1 - (y - self.origin.1) / self.scale]
    }
}

/// Renders the scene as an SVG document.
pub fn render_svg(scene: &Scene<'_>, opts: &RenderOptions) -> String {
    let mut c = SvgCanvas::new(opts.size.0, opts.size.1);
    draw(&mut c, scene, opts);
    c.finish()
}

/// Renders the scene as RGB pixels, row-major, `width × height × 3` bytes: the partition's
/// regions rasterised one by one ([`raster::Raster`]), as a streamed run would.
pub fn render_rgb(scene: &Scene<'_>, opts: &RenderOptions) -> Vec<u8> {
    use crate::engine::collect::{Collect, Finished, Start};
    let part = scene.partition;
    let outputs = part.regions.first().map_or(0, |r| r.map.offset.len());
    let decision = scene.boundary.map(|b| b.decision.clone());
    let mut r = raster::Raster::new(part.domain, opts.clone(), decision);
    r.begin(&Start { frame: part.frame, outputs, output_scale: &part.output_scale, layout: &part.layout });
    for reg in &part.regions {
        let map: Vec<f64> = [
            reg.map.jacobian.iter().map(|j| j[0]).collect::<Vec<_>>(),
            reg.map.jacobian.iter().map(|j| j[1]).collect(),
            reg.map.offset.clone(),
        ]
        .concat();
        r.add(&Finished { poly: reg.polygon.clone(), area: reg.polygon.area(), map, pattern: reg.pattern.clone() });
    }
    if opts.edges == EdgeMode::Layer {
        let layered: Vec<_> = part
            .edges()
            .iter()
            .filter_map(|e| {
                let right = e.right?;
                let l = part.separating_layer(&part.regions[e.left].pattern, &part.regions[right].pattern)?;
                Some((e.a, e.b, part.layout.iter().position(|x| x == l)?))
            })
            .collect();
        r.add_layer_edges(&layered);
    }
    r.finish(opts.title.clone(), scene.anchors)
}

/// The nonlinear layers' names for legends: `op #layer`.
pub fn layer_names(layout: &[crate::pattern::LayerBits]) -> Vec<String> {
    layout.iter().map(|l| format!("{} #{}", l.op, l.layer)).collect()
}

/// What the legend shows.
#[derive(Clone, Debug, PartialEq)]
pub struct Legend {
    /// Class swatches (class colours).
    pub classes: usize,
    /// A colour bar: its label and the values at its ends.
    pub colorbar: Option<(&'static str, (f64, f64))>,
    /// Layer swatches (edges coloured by layer).
    pub layers: Vec<String>,
    /// A line for the decision boundary.
    pub boundary: bool,
}

impl Legend {
    /// The legend of a picture with `opts`.
    pub fn new(opts: &RenderOptions, classes: usize, layers: &[String], boundary: bool) -> Self {
        let layers = if opts.edges == EdgeMode::Layer { layers.to_vec() } else { Vec::new() };
        Legend { classes, colorbar: None, layers, boundary }
    }

    /// Width in pixels of the widest entry (13 px text, a swatch, a margin), so that the
    /// viewport leaves room for it.
    pub fn width(&self) -> f64 {
        // Only the entries shown: a picture without a legend gives the domain the room.
        let text = |s: &str| 20.0 + 0.62 * 13.0 * s.chars().count() as f64;
        let mut w: f64 = 0.0;
        if self.boundary {
            w = w.max(text("decision boundary"));
        }
        if self.classes > 0 {
            w = w.max(text(&format!("class {}", self.classes - 1)));
        }
        if !self.layers.is_empty() {
            w = w.max(text("edges by layer"));
        }
        for l in &self.layers {
            w = w.max(text(l));
        }
        if let Some((label, (lo, hi))) = self.colorbar {
            w = w.max(text(label)).max(24.0 + text(&format!("≥ {hi:.3}"))).max(24.0 + text(&format!("≤ {lo:.3}")));
        }
        w
    }
}

/// Draws axes, title, legend and anchors over an RGB picture.
pub(crate) fn overlay(
    rgb: &mut [u8],
    opts: &RenderOptions,
    vp: &Viewport,
    legend: &Legend,
    title: Option<&str>,
    anchors: Option<[[f64; 2]; 3]>,
) {
    let mut c = BitmapCanvas::over(rgb, opts.size.0, opts.size.1);
    draw_anchors(&mut c, vp, anchors);
    if opts.axes {
        draw_axes(&mut c, vp, opts, title);
        draw_legend(&mut c, opts, vp, legend);
    }
    c.finish();
}

fn draw_anchors(c: &mut dyn Canvas, vp: &Viewport, anchors: Option<[[f64; 2]; 3]>) {
    if let Some(anchors) = anchors {
        // Anchors outside the domain are left out (they would land on the axes or the legend).
        let d = vp.domain;
        for (p, name) in anchors
            .iter()
            .zip(["A", "B", "C"])
            .filter(|(p, _)| (d.u0..=d.u1).contains(&p[0]) && (d.v0..=d.v1).contains(&p[1]))
        {
            let at = vp.to_px(*p);
            c.circle(at, 6.0, Rgb(255, 255, 255), Rgb(0, 0, 0));
            c.text((at.0 + 9.0, at.1 - 10.0), name, 16.0, Rgb(0, 0, 0), Align::Start);
        }
    }
}

/// Encodes RGB pixels as PNG.
pub fn encode_png(rgb: &[u8], width: u32, height: u32) -> Vec<u8> {
    use image::ImageEncoder;
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(rgb, width, height, image::ColorType::Rgb8)
        .unwrap_or_else(|e| unreachable!("encoding a well-sized buffer into memory cannot fail: {e}"));
    out
}

/// Renders the scene as PNG bytes.
pub fn render_png(scene: &Scene<'_>, opts: &RenderOptions) -> Vec<u8> {
    encode_png(&render_rgb(scene, opts), opts.size.0, opts.size.1)
}

/// The gradient norm in `(u, v)` of the function that scores class `class` (the class's logit
/// for argmax, the level function for a level set), or of output 0 without a boundary.
fn slope(part: &Partition, region: usize, boundary: Option<&Boundary>, class: usize) -> f64 {
    let map = &part.regions[region].map;
    let g = match boundary {
        Some(b) => b.decision.functions(map).get(class).map(|f| [f[0], f[1]]),
        None => map.jacobian.first().copied(),
    };
    g.map_or(0.0, |j| {
        let j = part.frame.grad_to_uv(j);
        j[0].hypot(j[1])
    })
}

/// A short stable id of a pattern for tooltips.
fn pattern_id(p: &crate::pattern::Pattern) -> u64 {
    p.id()
}

/// A filled piece: a region, or one class's cell of a region the boundary crosses.
struct Piece<'a> {
    region: usize,
    pts: &'a [[f64; 2]],
    class: Option<usize>,
}

/// The PNG of a kept partition as `tessera map --png` draws it: the streaming rasteriser fed with
/// the regions (edges coloured by layer need the whole partition: the scene renderer then).
/// `opts.title` is the title.
pub fn partition_png(
    part: &Partition,
    decision: &crate::boundary::Decision,
    boundary: Option<&crate::boundary::Boundary>,
    anchors: Option<[[f64; 2]; 3]>,
    opts: &RenderOptions,
) -> Vec<u8> {
    if opts.edges == EdgeMode::Layer {
        return render_png(&Scene { partition: part, boundary, anchors }, opts);
    }
    let mut raster = raster::Raster::new(part.domain, opts.clone(), Some(decision.clone()));
    crate::replay(part, &mut raster);
    let rgb = raster.finish(opts.title.clone(), anchors);
    encode_png(&rgb, opts.size.0, opts.size.1)
}

/// Draws the whole picture on `c`.
pub fn draw(c: &mut dyn Canvas, scene: &Scene<'_>, opts: &RenderOptions) {
    let part = scene.partition;
    let classes = scene.boundary.map_or(0, |b| {
        b.region_classes
            .iter()
            .map(|c| match c {
                RegionClass::One(k) => *k,
                RegionClass::Several(ks) => ks.iter().copied().max().unwrap_or(0),
            })
            .max()
            .map_or(0, |k| k + 1)
    });
    let mut legend = Legend::new(
        opts,
        if opts.color == ColorScheme::Class { classes } else { 0 },
        &layer_names(&part.layout),
        scene.boundary.is_some_and(|b| !b.polylines.is_empty()),
    );
    let edges =
        if opts.edges != EdgeMode::None || opts.color == ColorScheme::Pattern { part.edges() } else { Vec::new() };
    // Pieces to fill: class and slope colours follow the boundary inside crossed regions.
    let split = matches!(opts.color, ColorScheme::Class | ColorScheme::Slope);
    let mut pieces: Vec<Piece<'_>> = Vec::with_capacity(part.regions.len());
    let region_class = |i: usize| {
        scene.boundary.and_then(|b| match &b.region_classes[i] {
            RegionClass::One(k) => Some(*k),
            RegionClass::Several(_) => None,
        })
    };
    match scene.boundary {
        Some(b) if split => {
            for (i, r) in part.regions.iter().enumerate() {
                if let RegionClass::One(k) = b.region_classes[i] {
                    pieces.push(Piece { region: i, pts: &r.polygon.pts, class: Some(k) });
                }
            }
            for (i, k, cell) in &b.split_cells {
                pieces.push(Piece { region: *i, pts: &cell.pts, class: Some(*k) });
            }
        }
        _ => {
            for (i, r) in part.regions.iter().enumerate() {
                pieces.push(Piece { region: i, pts: &r.polygon.pts, class: region_class(i) });
            }
        }
    }
    // Colormap schemes: one value per piece, mapped between its 1st and 99th percentiles so that
    // a few slivers do not flatten the picture.
    let value = |p: &Piece<'_>| match opts.color {
        ColorScheme::Area | ColorScheme::Density => part.regions[p.region].area.log10(),
        _ => slope(part, p.region, scene.boundary, p.class.unwrap_or(0)),
    };
    let colorbar = match opts.color {
        ColorScheme::Area | ColorScheme::Slope | ColorScheme::Density => {
            let mut vals: Vec<f64> = pieces.iter().map(value).filter(|v| v.is_finite()).collect();
            vals.sort_by(f64::total_cmp);
            let q = |f: f64| vals.get(((vals.len().max(1) - 1) as f64 * f).round() as usize).copied().unwrap_or(0.0);
            let label = if opts.color == ColorScheme::Slope { "|grad| of class logit" } else { "log10 area" };
            Some((label, (q(0.01), q(0.99))))
        }
        _ => None,
    };
    legend.colorbar = colorbar;
    let vp = Viewport::with_legend(part.domain, opts, legend.width());
    let fills: Vec<Rgb> = match opts.color {
        ColorScheme::Pattern => {
            // Regions sharing a pattern (only pieces drawn by `analysis::pieces::colour_by_piece`;
            // a partition's patterns are unique) are coloured as one, by their first region.
            let mut first: rustc_hash::FxHashMap<&crate::pattern::Pattern, usize> = Default::default();
            let rep: Vec<usize> =
                part.regions.iter().enumerate().map(|(i, r)| *first.entry(&r.pattern).or_insert(i)).collect();
            let mut nb = vec![Vec::new(); part.regions.len()];
            for e in &edges {
                if let Some(r) = e.right {
                    let (a, b) = (rep[e.left], rep[r]);
                    if a != b {
                        nb[a].push(b);
                        nb[b].push(a);
                    }
                }
            }
            let colors = distinct_colors(part.regions.len(), |i| pattern_id(&part.regions[i].pattern), &nb);
            pieces.iter().map(|p| colors[rep[p.region]]).collect()
        }
        ColorScheme::Class => {
            pieces.iter().map(|p| p.class.map_or(Rgb(200, 200, 200), |k| class_color(k).lighten(0.35))).collect()
        }
        ColorScheme::Area | ColorScheme::Slope | ColorScheme::Density => {
            let (lo, hi) = colorbar.expect("set for colormap schemes").1;
            // 64 levels: indistinguishable from continuous, and groups of one colour in SVG.
            pieces.iter().map(|p| viridis(((value(p) - lo) / (hi - lo).max(1e-300) * 63.0).round() / 63.0)).collect()
        }
    };
    // Draw by colour (fills never overlap, so the order is free): one SVG group per colour.
    let mut order: Vec<usize> = (0..pieces.len()).collect();
    order.sort_by_key(|&i| (fills[i], pieces[i].region));
    let mut pts = Vec::new();
    for (p, fill) in order.iter().map(|&i| (&pieces[i], &fills[i])) {
        pts.clear();
        pts.extend(p.pts.iter().map(|&q| vp.frame_to_px(q)));
        let r = &part.regions[p.region];
        let class = match (p.class, scene.boundary.map(|b| &b.region_classes[p.region])) {
            (_, Some(RegionClass::Several(ks))) => format!(", classes {ks:?}"),
            (Some(k), _) => format!(", class {k}"),
            _ => String::new(),
        };
        let title =
            format!("region {}: area {:.3e}{class}, pattern {:08x}", p.region, r.area, pattern_id(&r.pattern) >> 32);
        c.polygon(&pts, *fill, Some(&title));
    }
    if opts.edges != EdgeMode::None {
        // One batch of segments per colour.
        let mut by_color: std::collections::BTreeMap<Rgb, Vec<[(f64, f64); 2]>> = Default::default();
        // Regions with equal patterns are one piece (`analysis::pieces::colour_by_piece`): no
        // edge between them.
        let between = |e: &&crate::partition::Edge| {
            e.right.is_some_and(|r| part.regions[e.left].pattern != part.regions[r].pattern)
        };
        for e in edges.iter().filter(between) {
            let color = match (opts.edges, e.right) {
                (EdgeMode::Layer, Some(r)) => part
                    .separating_layer(&part.regions[e.left].pattern, &part.regions[r].pattern)
                    .and_then(|l| part.layout.iter().position(|x| x == l))
                    .map_or(Rgb(90, 90, 90), layer_color),
                _ => Rgb(90, 90, 90),
            };
            by_color.entry(color).or_default().push([vp.frame_to_px(e.a), vp.frame_to_px(e.b)]);
        }
        for (color, segs) in &by_color {
            c.segments(segs, *color, 0.6);
        }
    }
    if let Some(b) = scene.boundary {
        for pl in &b.polylines {
            let line: Vec<(f64, f64)> = pl.points.iter().map(|&q| vp.frame_to_px(q)).collect();
            c.polyline(&line, Rgb(255, 255, 255), 5.0);
            c.polyline(&line, Rgb(0, 0, 0), 2.5);
        }
    }
    draw_anchors(c, &vp, scene.anchors);
    if opts.axes {
        draw_axes(c, &vp, opts, opts.title.as_deref());
        draw_legend(c, opts, &vp, &legend);
    }
}

/// Tick positions: about five to eight "nice" values (1, 2 or 5 times a power of ten).
fn ticks(lo: f64, hi: f64) -> Vec<f64> {
    let raw = (hi - lo) / 6.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last).map(|k| k as f64 * step).collect()
}

fn tick_label(v: f64) -> String {
    let s = format!("{v:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.to_string()
    }
}

fn draw_axes(c: &mut dyn Canvas, vp: &Viewport, opts: &RenderOptions, title: Option<&str>) {
    let d = vp.domain;
    let (x0, y0) = vp.to_px([d.u0, d.v1]);
    let (x1, y1) = vp.to_px([d.u1, d.v0]);
    let black = Rgb(0, 0, 0);
    c.polyline(&[(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)], black, 1.0);
    for u in ticks(d.u0, d.u1) {
        let (x, _) = vp.to_px([u, d.v0]);
        c.polyline(&[(x, y1), (x, y1 + 6.0)], black, 1.0);
        c.text((x, y1 + 18.0), &tick_label(u), 13.0, black, Align::Middle);
    }
    for v in ticks(d.v0, d.v1) {
        let (_, y) = vp.to_px([d.u0, v]);
        c.polyline(&[(x0 - 6.0, y), (x0, y)], black, 1.0);
        c.text((x0 - 9.0, y), &tick_label(v), 13.0, black, Align::End);
    }
    c.text((0.5 * (x0 + x1), y1 + 42.0), "u", 15.0, black, Align::Middle);
    c.text((x0 - 60.0, 0.5 * (y0 + y1)), "v", 15.0, black, Align::Middle);
    if let Some(t) = title {
        c.text((0.5 * opts.size.0 as f64, 24.0), t, 18.0, black, Align::Middle);
    }
}

fn draw_legend(c: &mut dyn Canvas, opts: &RenderOptions, vp: &Viewport, legend: &Legend) {
    let (x_plot_end, y_top) = vp.to_px([vp.domain.u1, vp.domain.v1]);
    // Inside the picture whatever the text: the viewport left room for `legend.width()`.
    let x = (x_plot_end + 20.0).min(opts.size.0 as f64 - legend.width() - 5.0).max(0.0);
    let mut y = y_top + 10.0;
    let black = Rgb(0, 0, 0);
    let swatch = |c: &mut dyn Canvas, y: f64, color: Rgb, label: &str| {
        c.polygon(&[(x, y - 7.0), (x + 14.0, y - 7.0), (x + 14.0, y + 7.0), (x, y + 7.0)], color, None);
        c.text((x + 20.0, y), label, 13.0, black, Align::Start);
    };
    for k in 0..legend.classes.min(20) {
        swatch(c, y, class_color(k).lighten(0.35), &format!("class {k}"));
        y += 20.0;
    }
    if let Some((label, (lo, hi))) = legend.colorbar {
        c.text((x, y), label, 13.0, black, Align::Start);
        y += 16.0;
        let h = 200.0;
        for k in 0..50 {
            let t0 = k as f64 / 50.0;
            let yy = y + h * (1.0 - t0) - h / 50.0;
            c.polygon(
                &[(x, yy), (x + 18.0, yy), (x + 18.0, yy + h / 50.0 + 0.5), (x, yy + h / 50.0 + 0.5)],
                viridis(t0 + 0.01),
                None,
            );
        }
        c.text((x + 24.0, y), &format!("≥ {hi:.3}"), 12.0, black, Align::Start);
        c.text((x + 24.0, y + h), &format!("≤ {lo:.3}"), 12.0, black, Align::Start);
        y += h + 20.0;
    }
    if !legend.layers.is_empty() {
        y += 10.0;
        c.text((x, y), "edges by layer", 13.0, black, Align::Start);
        y += 20.0;
        for (i, l) in legend.layers.iter().enumerate() {
            swatch(c, y, layer_color(i), l);
            y += 20.0;
        }
    }
    if legend.boundary {
        y += 10.0;
        c.polyline(&[(x, y), (x + 14.0, y)], black, 2.5);
        c.text((x + 20.0, y), "decision boundary", 13.0, black, Align::Start);
    }
}
