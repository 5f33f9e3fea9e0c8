//! Tiles: one map split into independent jobs, and their exact merge.
//!
//! The domain is cut into an `rows × cols` grid of `N` tiles ([`TileSpec`]). A tile job
//! ([`run_tile`]) partitions only its rectangle, in the *whole domain's* frame: the plan, the
//! noise floors and the tolerance rule are the single run's, so its regions are the single run's
//! regions cut by the rectangle. A [`TileResult`] keeps, in memory that grows with the tile's
//! perimeter rather than its region count, everything the merge needs:
//!
//! - the tile's region and per-layer counts, and the statistics ([`Tally`]), area and decision
//!   boundary segments of its *inner* regions (those with no side on a border shared with
//!   another tile): they are final;
//! - every *border* region in full (polygon, pattern, map).
//!
//! [`merge`] rejoins the border pieces of one region across tiles by their activation pattern (a
//! pattern fixes every unit's piece, so the points with one pattern form one convex cell: its
//! pieces are rejoined by their convex hull, checked to have the pieces' total area), and the
//! pieces of each per-layer cell by the pattern prefix of the layers so far. The merged counts,
//! per-layer counts, areas, statistics and boundary are the single run's. With every region kept
//! (`keep_regions`), the merge also gives the whole [`Partition`], for pictures and JSON.

use crate::boundary::{self, finished_map, Boundary, Decision, Segment, Segments};
use crate::engine::collect::{Collect, Finished, Start, Tally};
use crate::geometry::polygon::ConvexPolygon;
use crate::geometry::predicates::DIST;
use crate::network::Network;
use crate::partition::{AffineMap, LayerCount, Partition, Region, Summary};
use crate::pattern::{LayerBits, Pattern};
use crate::slice::{Domain, Normalization, Slice};
use crate::Options;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};

/// The format tag of tile results.
pub const FORMAT: &str = "tessera-tile/1";

/// Most tiles in a grid.
pub const MAX_TILES: usize = 1 << 20;

/// Why tiles could not be made or merged.
#[derive(Debug, thiserror::Error, PartialEq)]
#[non_exhaustive]
pub enum TileError {
    /// `I/N` did not parse or is out of range.
    #[error("bad tile `{text}`: {reason} (expected I/N with 1 ≤ I ≤ N ≤ {MAX_TILES})")]
    BadSpec {
        /// What was given.
        text: String,
        /// What is wrong.
        reason: String,
    },
    /// Nothing to merge.
    #[error("no tiles to merge")]
    Empty,
    /// A tile result is not a tile result of this version, or is inconsistent.
    #[error("{name}: not a valid tile result: {reason}")]
    Corrupt {
        /// The tile's name (its file).
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// Tiles of different runs.
    #[error("{name} is not a tile of the same run as {first}: its {field} differs")]
    Mismatch {
        /// The odd tile.
        name: String,
        /// The first tile.
        first: String,
        /// What differs.
        field: &'static str,
    },
    /// The same tile twice.
    #[error("tile {index}/{count} is given twice: {a} and {b}")]
    Duplicate {
        /// 1-based tile index.
        index: usize,
        /// Tiles in the grid.
        count: usize,
        /// Both names.
        a: String,
        /// Both names.
        b: String,
    },
    /// A tile is missing: its job failed or did not run.
    #[error("tile {index}/{count} is missing: its job failed or has not run (merge needs all {count} tiles; missing: {missing})")]
    Missing {
        /// 1-based index of the first missing tile.
        index: usize,
        /// Tiles in the grid.
        count: usize,
        /// Every missing tile, 1-based, as a list.
        missing: String,
    },
    /// Pieces with one pattern that do not form one convex region: the tiles disagree with
    /// each other (a defect, or tiles computed by different versions).
    #[error("the pieces of one region in tiles {tiles} do not form one convex region (hull area {hull:.6e}, pieces {pieces:.6e})")]
    NotConvex {
        /// The tiles, 1-based.
        tiles: String,
        /// Area of the pieces' hull (frame units).
        hull: f64,
        /// Their total area.
        pieces: f64,
    },
}

/// Tile `index` (0-based) of a grid of `count` tiles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TileSpec {
    /// 0-based index, row-major from the lower-left corner (low `v` first, then low `u` first).
    pub index: usize,
    /// Tiles in the grid.
    pub count: usize,
}

impl TileSpec {
    /// Tile `index` (0-based) of `count`.
    pub fn new(index: usize, count: usize) -> Result<Self, TileError> {
        let bad = |reason: &str| TileError::BadSpec { text: format!("{}/{count}", index + 1), reason: reason.into() };
        if count == 0 || count > MAX_TILES {
            return Err(bad("the number of tiles is out of range"));
        }
        if index >= count {
            return Err(bad("the tile index is out of range"));
        }
        Ok(TileSpec { index, count })
    }

    /// Parses `I/N` with a 1-based `I` (so that `--tile $SLURM_ARRAY_TASK_ID/16` works with
    /// `--array=1-16`).
    pub fn parse(text: &str) -> Result<Self, TileError> {
        let bad = |reason: &str| TileError::BadSpec { text: text.into(), reason: reason.into() };
        let (i, n) = text.split_once('/').ok_or_else(|| bad("no `/`"))?;
        let i: usize = i.trim().parse().map_err(|_| bad("I is not a whole number"))?;
        let n: usize = n.trim().parse().map_err(|_| bad("N is not a whole number"))?;
        if i == 0 {
            return Err(bad("tiles are numbered from 1"));
        }
        TileSpec::new(i - 1, n).map_err(|_| bad("out of range"))
    }

    /// `(rows, cols)` of the grid: the most square factorisation of `count` (`rows ≤ cols`).
    pub fn grid(count: usize) -> (usize, usize) {
        let rows = (1..=count.isqrt()).rev().find(|r| count.is_multiple_of(*r)).unwrap_or(1);
        (rows, count / rows)
    }

    /// The tile's rectangle `[s0, s1, t0, t1]` in frame coordinates (the domain is `[-1, 1]²`).
    /// Neighbours compute their shared border with the same expression, so it is bit-identical.
    pub fn rect(&self) -> [f64; 4] {
        let (rows, cols) = Self::grid(self.count);
        let (row, col) = (self.index / cols, self.index % cols);
        let at = |k: usize, n: usize| if k == n { 1.0 } else { -1.0 + 2.0 * k as f64 / n as f64 };
        [at(col, cols), at(col + 1, cols), at(row, rows), at(row + 1, rows)]
    }

    /// Which sides of the rectangle (`s0, s1, t0, t1`) are shared with another tile.
    fn inner_sides(&self) -> [bool; 4] {
        let (rows, cols) = Self::grid(self.count);
        let (row, col) = (self.index / cols, self.index % cols);
        [col > 0, col + 1 < cols, row > 0, row + 1 < rows]
    }
}

/// One region of a tile, in frame coordinates.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TileRegion {
    /// Counter-clockwise vertices.
    pub polygon: Vec<[f64; 2]>,
    /// Area in frame units (the domain is 4).
    pub area: f64,
    /// Activation pattern words.
    pub pattern: Vec<u64>,
    /// Output map, `3 × outputs`: the `∂/∂s` row, the `∂/∂t` row, the values at the origin.
    pub map: Vec<f64>,
}

/// A decision boundary segment inside an inner region (frame coordinates).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TileSegment {
    /// Endpoints.
    pub a: [f64; 2],
    /// Endpoints.
    pub b: [f64; 2],
    /// The classes it separates, lower first.
    pub classes: (usize, usize),
    /// Length in `(u, v)`.
    pub length: f64,
}

/// What one tile job produced (see the module docs); serialisable as JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TileResult {
    /// [`FORMAT`].
    pub format: String,
    /// Identity of the model and the slice (see [`fingerprint`]): tiles of one run share it.
    pub key: String,
    /// The model's name (picture titles).
    pub name: String,
    /// 0-based tile index.
    pub index: usize,
    /// Tiles in the grid.
    pub count: usize,
    /// The whole domain.
    pub domain: Domain,
    /// The whole domain's frame.
    pub frame: Normalization,
    /// The slice's anchors in `(u, v)`, when it has them (pictures mark them).
    pub anchors: Option<[[f64; 2]; 3]>,
    /// Pattern layout.
    pub layout: Vec<LayerBits>,
    /// Network outputs.
    pub outputs: usize,
    /// Per output, the magnitude bound of its terms (the boundary's noise floors).
    pub output_scale: Vec<f64>,
    /// The decision of the boundary segments.
    pub decision: Decision,
    /// Regions of the tile (inner and border).
    pub regions: u64,
    /// Cells of the tile after each nonlinear layer.
    pub regions_per_layer: Vec<LayerCount>,
    /// Pieces dropped for having no area.
    pub dropped_slivers: u64,
    /// Statistics of the inner regions.
    pub inner: Tally,
    /// Total frame area of the inner regions.
    pub inner_area: f64,
    /// Boundary segments inside inner regions.
    pub segments: Vec<TileSegment>,
    /// Inner regions the boundary crosses, and the class cells they split into.
    pub crossed: usize,
    /// Class cells of the inner regions.
    pub pieces: usize,
    /// Every border region.
    pub border: Vec<TileRegion>,
    /// Every inner region, when the job kept them.
    pub inner_regions: Option<Vec<TileRegion>>,
}

/// A 64-bit FNV-1a identity of a model (its file's bytes) and a slice (plane and domain, bit for
/// bit), as hex: tiles of one run carry the same key, and merge refuses tiles of another run.
pub fn fingerprint(model: &[u8], slice: &Slice) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    eat(model);
    for v in [&slice.plane.origin, &slice.plane.du, &slice.plane.dv] {
        eat(&(v.len() as u64).to_le_bytes());
        v.iter().for_each(|x| eat(&x.to_bits().to_le_bytes()));
    }
    let d = slice.domain;
    [d.u0, d.u1, d.v0, d.v1].iter().for_each(|x| eat(&x.to_bits().to_le_bytes()));
    format!("{h:016x}")
}

/// The collector of a tile job: inner regions are tallied (and kept when asked), border regions
/// kept.
struct TileCollect {
    rect: [f64; 4],
    inner_sides: [bool; 4],
    tally: Tally,
    area: f64,
    segments: Segments,
    border: Vec<TileRegion>,
    inner: Option<Vec<TileRegion>>,
}

impl TileCollect {
    /// Whether a side of `poly` lies on a border shared with another tile.
    fn on_border(&self, poly: &ConvexPolygon) -> bool {
        let n = poly.pts.len();
        let [s0, s1, t0, t1] = self.rect;
        let lines = [(0, s0), (0, s1), (1, t0), (1, t1)];
        (0..n).any(|k| {
            let (a, b) = (poly.pts[k], poly.pts[(k + 1) % n]);
            lines
                .iter()
                .zip(self.inner_sides)
                .any(|(&(axis, at), inner)| inner && (a[axis] - at).abs() <= DIST && (b[axis] - at).abs() <= DIST)
        })
    }
}

fn tile_region(r: &Finished) -> TileRegion {
    TileRegion { polygon: r.poly.pts.clone(), area: r.area, pattern: r.pattern.0.clone(), map: r.map.clone() }
}

impl Collect for TileCollect {
    fn begin(&mut self, start: &Start<'_>) {
        self.segments.begin(start);
    }

    fn needs_maps(&self) -> bool {
        true
    }

    fn fork(&self) -> Self {
        TileCollect {
            rect: self.rect,
            inner_sides: self.inner_sides,
            tally: Tally::default(),
            area: 0.0,
            segments: self.segments.fork(),
            border: Vec::new(),
            inner: self.inner.as_ref().map(|_| Vec::new()),
        }
    }

    fn absorb(&mut self, fork: Self) {
        self.tally.merge(&fork.tally);
        self.area += fork.area;
        self.segments.absorb(fork.segments);
        self.border.extend(fork.border);
        if let (Some(a), Some(b)) = (self.inner.as_mut(), fork.inner) {
            a.extend(b);
        }
    }

    fn add(&mut self, r: &Finished) -> u64 {
        let bytes = (r.poly.pts.len() * 16 + r.map.len() * 8 + r.pattern.0.len() * 8 + 96) as u64;
        if self.on_border(&r.poly) {
            self.border.push(tile_region(r));
            return bytes;
        }
        self.tally.polygon_with_area(&r.poly, r.area);
        self.area += r.area;
        let kept = self.segments.add(r);
        match self.inner.as_mut() {
            Some(inner) => {
                inner.push(tile_region(r));
                kept + bytes
            }
            None => kept,
        }
    }
}

/// What identifies a tile job's run: the key (see [`fingerprint`]) and the model's name.
#[derive(Clone, Debug)]
pub struct RunId {
    /// Identity of model and slice.
    pub key: String,
    /// The model's name, for titles.
    pub name: String,
}

/// Partitions tile `spec` of `slice`'s domain (see the module docs). `id` identifies the run;
/// `decision` is the boundary's; `keep_regions` keeps the inner regions too, so that the merge
/// can give the whole partition.
pub fn run_tile(
    net: &Network,
    slice: &Slice,
    spec: TileSpec,
    opts: &Options,
    decision: &Decision,
    keep_regions: bool,
    id: RunId,
) -> Result<TileResult, crate::Error> {
    let opts = Options { clip: Some(spec.rect()), ..opts.clone() };
    let collect = TileCollect {
        rect: spec.rect(),
        inner_sides: spec.inner_sides(),
        tally: Tally::default(),
        area: 0.0,
        segments: Segments::new(decision.clone()),
        border: Vec::new(),
        inner: keep_regions.then(Vec::new),
    };
    let run = crate::stream(net, slice, &opts, collect)?;
    let c = run.collect;
    let b = c.segments.finish_raw();
    Ok(TileResult {
        format: FORMAT.into(),
        key: id.key,
        name: id.name,
        index: spec.index,
        count: spec.count,
        domain: slice.domain,
        frame: run.frame,
        anchors: slice.anchors,
        layout: run.layout,
        outputs: net.output_shape().numel(),
        output_scale: run.output_scale,
        decision: decision.clone(),
        regions: run.summary.regions,
        regions_per_layer: run.summary.regions_per_layer,
        dropped_slivers: run.summary.dropped_slivers,
        inner: c.tally,
        inner_area: c.area,
        segments: b
            .0
            .into_iter()
            .map(|s| TileSegment { a: s.a, b: s.b, classes: s.classes, length: s.length })
            .collect(),
        crossed: b.1,
        pieces: b.2,
        border: c.border,
        inner_regions: c.inner,
    })
}

/// The merge of all tiles of a run.
#[derive(Clone, Debug)]
pub struct Merged {
    /// Counts and statistics: the single run's.
    pub summary: Summary,
    /// The decision boundary (stitched; no per-region classes).
    pub boundary: Boundary,
    /// The whole partition, when every tile kept its regions.
    pub partition: Option<Partition>,
    /// The frame of the regions.
    pub frame: Normalization,
    /// The whole domain.
    pub domain: Domain,
    /// The slice's anchors in `(u, v)`, when it has them.
    pub anchors: Option<[[f64; 2]; 3]>,
    /// Pattern layout.
    pub layout: Vec<LayerBits>,
    /// Per output, the magnitude bound of its terms.
    pub output_scale: Vec<f64>,
    /// Network outputs.
    pub outputs: usize,
    /// The decision of the boundary.
    pub decision: Decision,
    /// The model's name.
    pub name: String,
}

/// Checks one tile result's own consistency (bounded work per region).
fn validate(name: &str, t: &TileResult) -> Result<(), TileError> {
    let bad = |reason: String| TileError::Corrupt { name: name.into(), reason };
    if t.format != FORMAT {
        return Err(bad(format!("format `{}`, expected `{FORMAT}`", t.format)));
    }
    if t.count == 0 || t.count > MAX_TILES || t.index >= t.count {
        return Err(bad(format!("tile index {} of {}", t.index, t.count)));
    }
    if t.output_scale.len() != t.outputs || t.regions_per_layer.len() != t.layout.len() {
        return Err(bad("outputs or layers do not match their description".into()));
    }
    let words = t.layout.last().map_or(0, |l| (l.offset + l.bits).div_ceil(64));
    let regions = t.border.iter().chain(t.inner_regions.iter().flatten());
    for (k, r) in regions.enumerate() {
        if r.polygon.len() < 3 || r.map.len() != 3 * t.outputs || r.pattern.len() != words {
            return Err(bad(format!("region {k} has a malformed polygon, map or pattern")));
        }
        if !(r.area.is_finite() && r.area > 0.0) || r.polygon.iter().flatten().any(|x| !x.is_finite()) {
            return Err(bad(format!("region {k} has a non-finite or empty geometry")));
        }
    }
    if (t.border.len() as u64) > t.regions {
        return Err(bad("more border regions than regions".into()));
    }
    if let Some(inner) = &t.inner_regions {
        if inner.len() as u64 + t.border.len() as u64 != t.regions {
            return Err(bad("the kept regions do not add up to the region count".into()));
        }
    }
    Ok(())
}

/// A region from its tile form.
fn region_of(r: &TileRegion, outputs: usize, scale: f64) -> Region {
    Region {
        polygon: ConvexPolygon { pts: r.polygon.clone() },
        area: r.area * scale,
        pattern: Pattern(r.pattern.clone()),
        map: finished_map(&r.map, outputs),
    }
}

/// The first `bits` bits of a pattern.
fn prefix(pattern: &[u64], bits: usize) -> Vec<u64> {
    let mut p: Vec<u64> = pattern[..bits.div_ceil(64).min(pattern.len())].to_vec();
    if !bits.is_multiple_of(64) {
        if let Some(last) = p.last_mut() {
            *last &= (1u64 << (bits % 64)) - 1;
        }
    }
    p
}

/// Joins the results of every tile of one run (named for messages, e.g. by file) into the
/// single run's counts, statistics, boundary and, when every tile kept its regions, partition.
/// Refuses missing, repeated or foreign tiles, naming them.
pub fn merge(tiles: Vec<(String, TileResult)>) -> Result<Merged, TileError> {
    let Some((first_name, first)) = tiles.first() else { return Err(TileError::Empty) };
    validate(first_name, first)?;
    let count = first.count;
    let mut by_index: Vec<Option<usize>> = vec![None; count];
    for (k, (name, t)) in tiles.iter().enumerate() {
        validate(name, t)?;
        let mismatch = |field| TileError::Mismatch { name: name.clone(), first: first_name.clone(), field };
        if t.key != first.key {
            return Err(mismatch("model or slice (key)"));
        }
        if t.count != count {
            return Err(mismatch("number of tiles"));
        }
        if t.domain != first.domain || t.frame != first.frame || t.anchors != first.anchors {
            return Err(mismatch("domain"));
        }
        if t.layout != first.layout || t.outputs != first.outputs || t.output_scale != first.output_scale {
            return Err(mismatch("network layout"));
        }
        if t.decision != first.decision {
            return Err(mismatch("decision (--threshold/--level)"));
        }
        if t.inner_regions.is_some() != first.inner_regions.is_some() {
            return Err(mismatch("choice of keeping regions"));
        }
        if let Some(j) = by_index[t.index] {
            return Err(TileError::Duplicate { index: t.index + 1, count, a: tiles[j].0.clone(), b: name.clone() });
        }
        by_index[t.index] = Some(k);
    }
    let missing: Vec<usize> = (0..count).filter(|&i| by_index[i].is_none()).map(|i| i + 1).collect();
    if let Some(&index) = missing.first() {
        let list: Vec<String> = missing.iter().take(20).map(|i| i.to_string()).collect();
        let more = if missing.len() > 20 { format!(", … ({} in all)", missing.len()) } else { String::new() };
        return Err(TileError::Missing { index, count, missing: format!("{}{more}", list.join(", ")) });
    }
    let ordered: Vec<&TileResult> = by_index.iter().map(|k| &tiles[k.expect("all present")].1).collect();
    let (frame, outputs) = (first.frame, first.outputs);
    let scale = frame.half[0] * frame.half[1];

    // One region per pattern among the border pieces, in tile order then region order.
    let mut groups: Vec<Vec<(usize, usize)>> = Vec::new();
    let mut group_of: HashMap<&[u64], usize> = HashMap::new();
    for (ti, t) in ordered.iter().enumerate() {
        for (ri, r) in t.border.iter().enumerate() {
            let g = *group_of.entry(r.pattern.as_slice()).or_insert_with(|| {
                groups.push(Vec::new());
                groups.len() - 1
            });
            groups[g].push((ti, ri));
        }
    }
    let mut joined: Vec<TileRegion> = Vec::with_capacity(groups.len());
    for g in &groups {
        let pieces: Vec<&TileRegion> = g.iter().map(|&(t, r)| &ordered[t].border[r]).collect();
        let area: f64 = pieces.iter().map(|p| p.area).sum();
        let pts: Vec<[f64; 2]> = pieces.iter().flat_map(|p| p.polygon.iter().copied()).collect();
        let hull = ConvexPolygon::hull(&pts);
        // Rounding of the pieces' areas, and slivers below the tolerance at a tile border.
        let slack = 1e-9 * area + 4.0 * DIST * g.len() as f64;
        if hull.pts.len() < 3 || (hull.area() - area).abs() > slack {
            let tiles: BTreeSet<usize> = g.iter().map(|&(t, _)| t + 1).collect();
            let tiles: Vec<String> = tiles.iter().map(|t| t.to_string()).collect();
            return Err(TileError::NotConvex { tiles: tiles.join(", "), hull: hull.area(), pieces: area });
        }
        let largest = pieces.iter().copied().max_by(|a, b| a.area.total_cmp(&b.area)).expect("a group has pieces");
        joined.push(TileRegion { polygon: hull.pts, area, pattern: largest.pattern.clone(), map: largest.map.clone() });
    }

    // Cells after each layer: the pieces of one cell in several tiles share the pattern prefix.
    let mut regions_per_layer = first.regions_per_layer.clone();
    for (k, (lc, bits)) in regions_per_layer.iter_mut().zip(&first.layout).enumerate() {
        let end = bits.offset + bits.bits;
        let mut tiles_of: HashMap<Vec<u64>, BTreeSet<usize>> = HashMap::new();
        for (ti, t) in ordered.iter().enumerate() {
            for r in &t.border {
                tiles_of.entry(prefix(&r.pattern, end)).or_default().insert(ti);
            }
        }
        let repeats: u64 = tiles_of.values().map(|s| s.len() as u64 - 1).sum();
        let total: u64 = ordered.iter().map(|t| t.regions_per_layer[k].regions).sum();
        lc.regions = total.checked_sub(repeats).ok_or_else(|| TileError::Corrupt {
            name: first_name.clone(),
            reason: format!("the tiles' counts after layer {} are smaller than their border cells", lc.layer),
        })?;
    }

    let mut tally = Tally::default();
    let mut area_sum = 0.0;
    for t in &ordered {
        tally.merge(&t.inner);
        area_sum += t.inner_area;
    }
    for r in &joined {
        tally.polygon_with_area(&ConvexPolygon { pts: r.polygon.clone() }, r.area);
        area_sum += r.area;
    }
    let inner_regions: u64 = ordered.iter().map(|t| t.regions - t.border.len() as u64).sum();
    let regions = inner_regions + joined.len() as u64;
    let summary = crate::summarize(
        regions,
        first.domain,
        scale,
        area_sum,
        &tally,
        regions_per_layer,
        ordered.iter().map(|t| t.dropped_slivers).sum(),
    );

    let decision = first.decision.clone();
    let noise = decision.noise(&first.output_scale);
    let mut segments: Vec<Segment> = Vec::new();
    let (mut crossed, mut pieces) = (0, 0);
    for t in &ordered {
        segments.extend(t.segments.iter().map(|s| Segment {
            a: s.a,
            b: s.b,
            classes: s.classes,
            region: 0,
            length: s.length,
        }));
        crossed += t.crossed;
        pieces += t.pieces;
    }
    for r in &joined {
        let map: AffineMap = finished_map(&r.map, outputs);
        let rb = decision.region_boundary(&ConvexPolygon { pts: r.polygon.clone() }, &map, &noise, &frame, 0);
        crossed += usize::from(!rb.cells.is_empty());
        pieces += rb.cells.len().max(1);
        segments.extend(rb.segments);
    }
    let boundary = boundary::from_segments(&decision, segments, &frame, crossed, pieces);

    let partition = first.inner_regions.is_some().then(|| {
        let mut regions = Vec::with_capacity(summary.regions as usize);
        for t in &ordered {
            regions.extend(t.inner_regions.iter().flatten().map(|r| region_of(r, outputs, scale)));
        }
        regions.extend(joined.iter().map(|r| region_of(r, outputs, scale)));
        Partition {
            domain: first.domain,
            frame,
            regions,
            summary: summary.clone(),
            layout: first.layout.clone(),
            output_scale: first.output_scale.clone(),
        }
    });
    Ok(Merged {
        summary,
        boundary,
        partition,
        frame,
        domain: first.domain,
        anchors: first.anchors,
        layout: first.layout.clone(),
        output_scale: first.output_scale.clone(),
        outputs,
        decision,
        name: first.name.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grids_and_rects() {
        assert_eq!(TileSpec::grid(1), (1, 1));
        assert_eq!(TileSpec::grid(2), (1, 2));
        assert_eq!(TileSpec::grid(9), (3, 3));
        assert_eq!(TileSpec::grid(12), (3, 4));
        assert_eq!(TileSpec::grid(7), (1, 7));
        // The tiles of a grid cover the square once.
        for n in [1, 2, 4, 6, 9, 16] {
            let area: f64 = (0..n)
                .map(|i| {
                    let [a, b, c, d] = TileSpec::new(i, n).unwrap().rect();
                    (b - a) * (d - c)
                })
                .sum();
            assert!((area - 4.0).abs() < 1e-12, "{n}: {area}");
        }
        assert_eq!(TileSpec::new(0, 4).unwrap().rect(), [-1.0, 0.0, -1.0, 0.0]);
        assert_eq!(TileSpec::new(3, 4).unwrap().rect(), [0.0, 1.0, 0.0, 1.0]);
        assert_eq!(TileSpec::new(1, 2).unwrap().inner_sides(), [true, false, false, false]);
    }

    #[test]
    fn parses_one_based_specs() {
        assert_eq!(TileSpec::parse("1/4").unwrap(), TileSpec { index: 0, count: 4 });
        assert_eq!(TileSpec::parse(" 16/16").unwrap(), TileSpec { index: 15, count: 16 });
        for bad in ["0/4", "5/4", "4", "a/4", "1/0", "-1/4", "1/99999999999"] {
            assert!(TileSpec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn prefixes_mask_the_last_word() {
        assert_eq!(prefix(&[u64::MAX, u64::MAX], 70), vec![u64::MAX, 0b11_1111]);
        assert_eq!(prefix(&[u64::MAX, 7], 64), vec![u64::MAX]);
    }
}
