//! Pictures rasterised region by region as the engine streams them: memory is the picture's
//! (a few numbers per pixel), never the partition's.
//!
//! Every region paints the pixels whose centres it contains, claiming each with a key (the pixel
//! keeps the largest), adds its edges to per-pixel edge counts, its boundary to a mask, and its
//! share of the pixel to a density count. All of these are commutative (maxima, integer sums,
//! flags), so the picture is the same for any order of regions, hence for any thread count. When
//! the run ends, fills are turned into colours (colormaps scaled by pixel percentiles), edges
//! fade where regions are dense (so that a picture of millions of regions shows structure instead
//! of uniform grey), the boundary is drawn bold, and axes, legend and anchors go on top.

use super::colors::{class_color, layer_color, viridis, Rgb};
use super::{layer_names, ColorScheme, EdgeMode, Legend, RenderOptions, Viewport};
use crate::boundary::{finished_map, Decision, RegionClass};
use crate::engine::collect::{Collect, Finished};
use crate::geometry::polygon::ConvexPolygon;
use crate::slice::{Domain, Normalization};
use std::sync::{Arc, Mutex};

/// What the picture is of (shared by all forks of a run).
struct Config {
    opts: RenderOptions,
    vp: Viewport,
    frame: Normalization,
    /// The decision (class colours, slope colours, boundary) and its classes' noise floors.
    decision: Option<(Decision, Vec<f64>)>,
    outputs: usize,
}

/// Fixed-point scale of the density counts (integers, so that sums do not depend on order).
const DENSITY_ONE: f64 = (1u64 << 20) as f64;

/// The per-pixel state.
struct Pixels {
    w: usize,
    h: usize,
    /// The claim of the region painting each pixel (0: none); the largest wins.
    key: Vec<u64>,
    /// What the claiming region paints: a colour (pattern), a class, or a value's bits.
    fill: Vec<u64>,
    edges: Vec<u16>,
    /// 1 + the largest layer index of the layered edges ([`Raster::add_layer_edges`]) through
    /// each pixel; 0: none.
    edge_layer: Vec<u8>,
    boundary: Vec<bool>,
    density: Vec<u64>,
    /// Largest class index seen.
    classes: usize,
}

/// A streaming picture: a collector of regions that ends as an RGB image.
pub struct Raster {
    config: Arc<Config>,
    pixels: Arc<Mutex<Pixels>>,
    pending: Vec<Finished>,
    /// The pattern layout's layer names (for the legend).
    layers: Vec<String>,
}

/// Regions a fork paints at a time (under the lock).
const BATCH: usize = 256;

impl Raster {
    /// A picture of `domain` with `opts`. `decision`: the decision of class colours and of the
    /// boundary (drawn when given). The frame, the outputs and their term magnitudes come when
    /// the run starts ([`Collect::begin`]).
    pub fn new(domain: Domain, opts: RenderOptions, decision: Option<Decision>) -> Self {
        let frame = Normalization {
            center: [0.5 * (domain.u0 + domain.u1), 0.5 * (domain.v0 + domain.v1)],
            half: [0.5 * (domain.u1 - domain.u0), 0.5 * (domain.v1 - domain.v0)],
        };
        let legend = planned_legend(&opts, &[], decision.is_some());
        let vp = Viewport::with_legend(domain, &opts, legend.width());
        let (w, h) = (opts.size.0 as usize, opts.size.1 as usize);
        let pixels = Pixels {
            w,
            h,
            key: vec![0; w * h],
            fill: vec![0; w * h],
            edges: vec![0; w * h],
            edge_layer: vec![0; w * h],
            boundary: vec![false; w * h],
            density: vec![0; w * h],
            classes: 0,
        };
        let decision = decision.map(|d| (d, Vec::new()));
        Raster {
            config: Arc::new(Config { opts, vp, frame, decision, outputs: 0 }),
            pixels: Arc::new(Mutex::new(pixels)),
            pending: Vec::new(),
            layers: Vec::new(),
        }
    }

    fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        // Work out each region's pieces outside the lock, then paint.
        let painted: Vec<Painted> = self.pending.drain(..).map(|r| prepare(&self.config, &r)).collect();
        let mut px = self.pixels.lock().unwrap_or_else(|e| e.into_inner());
        for p in &painted {
            paint(&self.config, &mut px, p);
        }
    }

    /// Edges coloured by the layer that creates them (`(a, b, layer index in the layout)`, frame
    /// coordinates), for [`EdgeMode::Layer`], which needs each edge's two regions, hence a whole
    /// partition. Region edges without a layer stay grey.
    pub fn add_layer_edges(&mut self, edges: &[([f64; 2], [f64; 2], usize)]) {
        let mut px = self.pixels.lock().unwrap_or_else(|e| e.into_inner());
        let (w, h) = (px.w, px.h);
        for &(a, b, layer) in edges {
            let tag = (layer + 1).min(255) as u8;
            line(self.config.vp.frame_to_px(a), self.config.vp.frame_to_px(b), w, h, |i| {
                px.edge_layer[i] = px.edge_layer[i].max(tag)
            });
        }
    }

    /// The finished picture as RGB bytes (`width × height × 3`), with axes, legend and
    /// `anchors` (`(u, v)` points marked A, B, C).
    pub fn finish(mut self, title: Option<String>, anchors: Option<[[f64; 2]; 3]>) -> Vec<u8> {
        self.flush();
        let px = self.pixels.lock().unwrap_or_else(|e| e.into_inner());
        let cfg = &self.config;
        let (w, h) = (px.w, px.h);
        let mut rgb = vec![255u8; w * h * 3];
        // Colormaps over the pixels' values, between their 1st and 99th percentiles.
        let density = |i: usize| px.density[i] as f64 / DENSITY_ONE;
        let value = |i: usize| match cfg.opts.color {
            ColorScheme::Density => density(i).max(1e-12).log10(),
            _ => f64::from_bits(px.fill[i]),
        };
        let colormap = matches!(cfg.opts.color, ColorScheme::Area | ColorScheme::Slope | ColorScheme::Density);
        let range = if colormap {
            let mut vals: Vec<f64> =
                (0..w * h).filter(|&i| px.key[i] != 0).map(value).filter(|v| v.is_finite()).collect();
            vals.sort_by(f64::total_cmp);
            let q = |f: f64| vals.get(((vals.len().max(1) - 1) as f64 * f).round() as usize).copied().unwrap_or(0.0);
            (q(0.01), q(0.99))
        } else {
            (0.0, 1.0)
        };
        // Local density (regions per pixel, averaged over a 5×5 neighbourhood) fades edges.
        let smooth = box_mean(&px.density.iter().map(|&d| d as f64 / DENSITY_ONE).collect::<Vec<_>>(), w, h, 2);
        for i in 0..w * h {
            if px.key[i] == 0 {
                continue;
            }
            let mut c = match cfg.opts.color {
                ColorScheme::Pattern => {
                    let f = px.fill[i];
                    Rgb((f >> 16) as u8, (f >> 8) as u8, f as u8)
                }
                ColorScheme::Class => {
                    if px.fill[i] == u64::MAX {
                        Rgb(200, 200, 200)
                    } else {
                        class_color(px.fill[i] as usize).lighten(0.35)
                    }
                }
                _ => {
                    let t = (value(i) - range.0) / (range.1 - range.0).max(1e-300);
                    viridis(t.clamp(0.0, 1.0))
                }
            };
            if cfg.opts.edges != EdgeMode::None && px.edges[i] > 0 {
                // Fully visible edges where regions are larger than a few pixels, fading as
                // several regions share a pixel.
                let (ink, alpha) = match px.edge_layer[i] {
                    0 => (Rgb(60, 60, 60), 0.6 / (1.0 + 2.0 * smooth[i])),
                    l => (layer_color(l as usize - 1), 0.9 / (1.0 + smooth[i])),
                };
                let m = |x: u8, y: u8| (x as f64 * (1.0 - alpha) + y as f64 * alpha).round() as u8;
                c = Rgb(m(c.0, ink.0), m(c.1, ink.1), m(c.2, ink.2));
            }
            rgb[3 * i..3 * i + 3].copy_from_slice(&[c.0, c.1, c.2]);
        }
        // The boundary: black, two pixels wide, with a white halo.
        let dist = boundary_distance(&px.boundary, w, h);
        for i in 0..w * h {
            if dist[i] <= 1 {
                rgb[3 * i..3 * i + 3].copy_from_slice(&[0, 0, 0]);
            } else if dist[i] == 2 {
                rgb[3 * i..3 * i + 3].copy_from_slice(&[255, 255, 255]);
            }
        }
        let legend = Legend {
            classes: if cfg.opts.color == ColorScheme::Class { px.classes + 1 } else { 0 },
            colorbar: colormap.then(|| (colorbar_label(cfg.opts.color), range)),
            ..Legend::new(&cfg.opts, 0, &self.layers, px.boundary.contains(&true))
        };
        drop(px);
        super::overlay(&mut rgb, &cfg.opts, &cfg.vp, &legend, title.as_deref(), anchors);
        rgb
    }
}

/// The legend the finished picture may show, for the room the viewport leaves before the
/// regions are known: class swatches up to "class 99" and a colour bar with wide numbers.
fn planned_legend(opts: &RenderOptions, layers: &[String], boundary: bool) -> Legend {
    let colormap = matches!(opts.color, ColorScheme::Area | ColorScheme::Density | ColorScheme::Slope);
    Legend {
        classes: if opts.color == ColorScheme::Class { 100 } else { 0 },
        colorbar: colormap.then(|| (colorbar_label(opts.color), (-100.0, 1000.0))),
        ..Legend::new(opts, 0, layers, boundary)
    }
}

fn colorbar_label(c: ColorScheme) -> &'static str {
    match c {
        ColorScheme::Area => "log10 area",
        ColorScheme::Density => "log10 regions per pixel",
        _ => "|grad| of class logit",
    }
}

/// One region's contribution, computed outside the lock.
struct Painted {
    key: u64,
    /// Pieces to fill with what they paint (one piece, or one per class cell).
    pieces: Vec<(ConvexPolygon, u64)>,
    edges: ConvexPolygon,
    boundary: Vec<[[f64; 2]; 2]>,
    area: f64,
    classes: usize,
}

/// A stable 64-bit key of a region, never 0: a hash of its activation pattern (unique to the
/// region), or without one, of its centroid on a grid of 2^-26 of the frame. Not the vertices'
/// bits: a region rejoined from tiles (see `tile`) has the same polygon up to rounding but not
/// the same vertex list, and must paint the same.
fn region_key(r: &Finished) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = rustc_hash::FxHasher::default();
    if r.pattern.0.is_empty() {
        let c = r.poly.centroid();
        let grid = |x: f64| (x * (1u64 << 26) as f64).round() as i64;
        (grid(c[0]), grid(c[1])).hash(&mut h);
    } else {
        r.pattern.hash(&mut h);
    }
    h.finish() | 1
}

fn prepare(cfg: &Config, r: &Finished) -> Painted {
    let key = region_key(r);
    let area = r.area;
    let mut boundary = Vec::new();
    let mut classes = 0;
    let pieces = match (&cfg.decision, r.map.is_empty()) {
        (Some((d, noise)), false) => {
            let map = finished_map(&r.map, cfg.outputs);
            let rb = d.region_boundary(&r.poly, &map, noise, &cfg.frame, 0);
            boundary.extend(rb.segments.iter().map(|s| [s.a, s.b]));
            let mut fill = |class: usize| -> u64 {
                classes = classes.max(class);
                match cfg.opts.color {
                    ColorScheme::Class => class as u64,
                    ColorScheme::Slope => {
                        let f = &d.functions(&map)[class];
                        let g = cfg.frame.grad_to_uv([f[0], f[1]]);
                        g[0].hypot(g[1]).to_bits()
                    }
                    _ => other_fill(cfg, key, area),
                }
            };
            match rb.class {
                RegionClass::One(k) => vec![(r.poly.clone(), fill(k))],
                RegionClass::Several(_) => rb.cells.into_iter().map(|(k, cell)| (cell, fill(k))).collect(),
            }
        }
        _ => {
            let fill = match cfg.opts.color {
                ColorScheme::Class => u64::MAX,
                ColorScheme::Slope if !r.map.is_empty() => {
                    let g = cfg.frame.grad_to_uv([r.map[0], r.map[cfg.outputs]]);
                    g[0].hypot(g[1]).to_bits()
                }
                _ => other_fill(cfg, key, area),
            };
            vec![(r.poly.clone(), fill)]
        }
    };
    Painted { key, pieces, edges: r.poly.clone(), boundary, area, classes }
}

/// The fill of the pattern, area and density schemes.
fn other_fill(cfg: &Config, key: u64, area: f64) -> u64 {
    match cfg.opts.color {
        ColorScheme::Area => {
            let uv_area = area * cfg.frame.half[0] * cfg.frame.half[1];
            uv_area.log10().to_bits()
        }
        _ => {
            // A stable colour per region from its key: mid-bright, saturated enough to tell
            // neighbours apart.
            let k = key.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let ch = |s: u32| 70 + ((k >> s) & 0xff) * 160 / 255;
            (ch(8) << 16) | (ch(24) << 8) | ch(40)
        }
    }
}

fn paint(cfg: &Config, px: &mut Pixels, p: &Painted) {
    let to_px = |q: [f64; 2]| cfg.vp.frame_to_px(q);
    px.classes = px.classes.max(p.classes);
    // Pixel area in frame units: the density a region adds to each pixel centre it covers.
    let pixel = 4.0
        / ((cfg.vp.scale * (cfg.vp.domain.u1 - cfg.vp.domain.u0))
            * (cfg.vp.scale * (cfg.vp.domain.v1 - cfg.vp.domain.v0)));
    let mut covered = 0usize;
    for (poly, fill) in &p.pieces {
        let pts: Vec<(f64, f64)> = poly.pts.iter().map(|&q| to_px(q)).collect();
        scan(&pts, px.w, px.h, |i| {
            covered += 1;
            if p.key > px.key[i] {
                px.key[i] = p.key;
                px.fill[i] = *fill;
            }
            px.density[i] += (DENSITY_ONE * (pixel / p.area).min(1.0)).round() as u64;
        });
    }
    if covered == 0 {
        // Smaller than a pixel: the whole region counts where its centroid is.
        let c = to_px(p.edges.vertex_centroid());
        if let Some(i) = index(c, px.w, px.h) {
            px.density[i] += DENSITY_ONE as u64;
        }
    }
    let n = p.edges.pts.len();
    for k in 0..n {
        line(to_px(p.edges.pts[k]), to_px(p.edges.pts[(k + 1) % n]), px.w, px.h, |i| {
            px.edges[i] = px.edges[i].saturating_add(1)
        });
    }
    for s in &p.boundary {
        line(to_px(s[0]), to_px(s[1]), px.w, px.h, |i| px.boundary[i] = true);
    }
}

fn index(p: (f64, f64), w: usize, h: usize) -> Option<usize> {
    let (x, y) = (p.0.floor(), p.1.floor());
    (x >= 0.0 && y >= 0.0 && (x as usize) < w && (y as usize) < h).then(|| y as usize * w + x as usize)
}

/// Calls `f` for every pixel whose centre lies in the convex polygon `pts` (pixel coordinates).
fn scan(pts: &[(f64, f64)], w: usize, h: usize, mut f: impl FnMut(usize)) {
    let (ymin, ymax) = pts.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| (a.min(p.1), b.max(p.1)));
    let y0 = (ymin - 0.5).ceil().max(0.0) as usize;
    let y1 = ((ymax - 0.5).floor().min(h as f64 - 1.0)).max(-1.0);
    if y1 < 0.0 {
        return;
    }
    let n = pts.len();
    for y in y0..=y1 as usize {
        let yc = y as f64 + 0.5;
        let (mut xl, mut xr) = (f64::INFINITY, f64::NEG_INFINITY);
        for k in 0..n {
            let (a, b) = (pts[k], pts[(k + 1) % n]);
            if (a.1 <= yc && yc <= b.1) || (b.1 <= yc && yc <= a.1) {
                let x = if (b.1 - a.1).abs() < 1e-12 { a.0 } else { a.0 + (yc - a.1) / (b.1 - a.1) * (b.0 - a.0) };
                xl = xl.min(x);
                xr = xr.max(x);
            }
        }
        if xr < xl {
            continue;
        }
        let x0 = (xl - 0.5).ceil().max(0.0) as usize;
        let x1 = (xr - 0.5).floor().min(w as f64 - 1.0);
        if x1 < 0.0 {
            continue;
        }
        for x in x0..=x1 as usize {
            f(y * w + x);
        }
    }
}

/// Calls `f` for the pixels along the segment `a`–`b` (one per step of the longer axis).
fn line(a: (f64, f64), b: (f64, f64), w: usize, h: usize, mut f: impl FnMut(usize)) {
    let steps = (b.0 - a.0).abs().max((b.1 - a.1).abs()).ceil().clamp(1.0, 1e5) as usize;
    for k in 0..=steps {
        let t = k as f64 / steps as f64;
        if let Some(i) = index((a.0 + t * (b.0 - a.0), a.1 + t * (b.1 - a.1)), w, h) {
            f(i);
        }
    }
}

/// The mean of `v` over the `(2r+1)²` box around each pixel.
fn box_mean(v: &[f64], w: usize, h: usize, r: usize) -> Vec<f64> {
    let mut rows = vec![0.0; w * h];
    for y in 0..h {
        for x in 0..w {
            let (lo, hi) = (x.saturating_sub(r), (x + r).min(w - 1));
            rows[y * w + x] = v[y * w + lo..=y * w + hi].iter().sum::<f64>();
        }
    }
    let mut out = vec![0.0; w * h];
    let n = ((2 * r + 1) * (2 * r + 1)) as f64;
    for y in 0..h {
        for x in 0..w {
            let (lo, hi) = (y.saturating_sub(r), (y + r).min(h - 1));
            out[y * w + x] = (lo..=hi).map(|yy| rows[yy * w + x]).sum::<f64>() / n;
        }
    }
    out
}

/// Chessboard distance (in pixels, capped at 3) to the nearest boundary pixel.
fn boundary_distance(mask: &[bool], w: usize, h: usize) -> Vec<u8> {
    let mut d = vec![3u8; w * h];
    for y in 0..h {
        for x in 0..w {
            if !mask[y * w + x] {
                continue;
            }
            for yy in y.saturating_sub(2)..(y + 3).min(h) {
                for xx in x.saturating_sub(2)..(x + 3).min(w) {
                    let k = (yy as i64 - y as i64).abs().max((xx as i64 - x as i64).abs()) as u8;
                    let i = yy * w + xx;
                    d[i] = d[i].min(k);
                }
            }
        }
    }
    d
}

impl Collect for Raster {
    fn begin(&mut self, start: &crate::engine::collect::Start<'_>) {
        let old = &self.config;
        let legend = planned_legend(&old.opts, &layer_names(start.layout), old.decision.is_some());
        let vp = Viewport::with_legend(old.vp.domain, &old.opts, legend.width());
        let decision = old.decision.as_ref().map(|(d, _)| (d.clone(), d.noise(start.output_scale)));
        self.config =
            Arc::new(Config { opts: old.opts.clone(), vp, frame: start.frame, decision, outputs: start.outputs });
        self.layers = layer_names(start.layout);
    }

    fn needs_maps(&self) -> bool {
        self.config.decision.is_some() || self.config.opts.color == ColorScheme::Slope
    }

    fn fork(&self) -> Self {
        Raster {
            config: Arc::clone(&self.config),
            pixels: Arc::clone(&self.pixels),
            pending: Vec::new(),
            layers: self.layers.clone(),
        }
    }

    fn absorb(&mut self, mut fork: Self) {
        fork.flush();
    }

    fn add(&mut self, r: &Finished) -> u64 {
        // Maps and patterns are not kept: only what the pieces need.
        let map = if self.needs_maps() { r.map.clone() } else { Vec::new() };
        self.pending.push(Finished { poly: r.poly.clone(), area: r.area, map, pattern: r.pattern.clone() });
        if self.pending.len() >= BATCH {
            self.flush();
        }
        0
    }
}
