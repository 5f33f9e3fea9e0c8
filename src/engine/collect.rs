//! What happens to regions as the engine finishes them: collectors.
//!
//! The engine streams every finished region to a [`Collect`]or. Work that forks onto another
//! thread gets its own collector ([`Collect::fork`]), which is absorbed back when the fork joins
//! ([`Collect::absorb`]); forks depend only on the data, so a collector sees the same regions in
//! the same groupings for any thread count, and sums come out bit for bit the same. Keeping the
//! partition is one collector ([`Keep`]); counting with statistics in memory independent of the
//! region count is another ([`Tally`]); pictures and streamed JSON are others (outside the
//! engine).

use crate::geometry::polygon::ConvexPolygon;
use crate::geometry::predicates::DIST;
use crate::pattern::Pattern;

/// A region as the engine finishes it, in frame coordinates (the domain is `[-1, 1]²`).
pub struct Finished {
    /// The region.
    pub poly: ConvexPolygon,
    /// Its area (frame coordinates).
    pub area: f64,
    /// Output map, `3 × n_out` (`∂/∂s` row, `∂/∂t` row, value row), when the collector asked for
    /// maps ([`Collect::needs_maps`]); empty otherwise.
    pub map: Vec<f64>,
    /// The activation pattern, when maps were asked for; empty otherwise.
    pub pattern: Pattern,
}

/// What a collector learns when a run starts, before any region.
pub struct Start<'a> {
    /// Frame coordinates (the regions') ↔ `(u, v)`.
    pub frame: crate::slice::Normalization,
    /// Network outputs.
    pub outputs: usize,
    /// Per output, a bound over the domain of the magnitude of the terms behind it.
    pub output_scale: &'a [f64],
    /// Where each nonlinear layer's units sit in the patterns.
    pub layout: &'a [crate::pattern::LayerBits],
}

/// Receives finished regions.
pub trait Collect: Send + Sync + Sized {
    /// Called once on the run's root collector before any region (forks are made after it).
    fn begin(&mut self, _start: &Start<'_>) {}
    /// Whether regions need their output maps and patterns (each costs a map per region).
    fn needs_maps(&self) -> bool;
    /// An empty collector for a fork of the work.
    fn fork(&self) -> Self;
    /// Takes in a fork's collector once the fork has finished.
    fn absorb(&mut self, fork: Self);
    /// Receives one region; returns the bytes it keeps of it (checked against the memory limit).
    fn add(&mut self, region: &Finished) -> u64;
    /// Receives one region by value (a collector that keeps it can move it).
    fn take(&mut self, region: Finished) -> u64 {
        self.add(&region)
    }
}

/// Keeps every region, in chunks (absorbing moves chunks, not regions).
#[derive(Default)]
pub struct Keep {
    /// The regions so far.
    pub chunks: Vec<Vec<Finished>>,
}

const CHUNK: usize = 4096;

impl Collect for Keep {
    fn needs_maps(&self) -> bool {
        true
    }

    fn fork(&self) -> Self {
        Keep::default()
    }

    fn absorb(&mut self, fork: Self) {
        self.chunks.extend(fork.chunks);
    }

    fn add(&mut self, r: &Finished) -> u64 {
        self.take(Finished { poly: r.poly.clone(), area: r.area, map: r.map.clone(), pattern: r.pattern.clone() })
    }

    fn take(&mut self, r: Finished) -> u64 {
        let bytes = (r.poly.pts.len() * 16 + r.map.len() * 8 + r.pattern.0.len() * 8 + 96) as u64;
        if self.chunks.last().is_none_or(|c| c.len() >= CHUNK) {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        self.chunks.last_mut().expect("just ensured").push(r);
        bytes
    }
}

/// Bins of the area histogram per decade of the region area relative to the domain's.
pub const AREA_BINS_PER_DECADE: usize = 4;

/// Counts and statistics in memory independent of the region count: the region area histogram
/// (log-spaced bins relative to the domain area), polygon sides, and the pieces of Euler's
/// formula for the number of distinct vertices.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Tally {
    /// Regions by `floor(-log10(area / domain area) · AREA_BINS_PER_DECADE)`.
    pub area_bins: Vec<u64>,
    /// Regions by number of vertices.
    pub sides: Vec<u64>,
    /// Sum of every region's number of sides.
    pub total_sides: u64,
    /// Region sides lying on the domain's boundary.
    pub boundary_sides: u64,
    /// Smallest and largest region area in frame units (the domain is 4).
    pub min_area: f64,
    pub max_area: f64,
}

impl Tally {
    /// Counts one polygon (frame coordinates).
    pub fn polygon(&mut self, poly: &ConvexPolygon) {
        self.polygon_with_area(poly, poly.area());
    }

    /// Counts one polygon whose frame area is known.
    pub fn polygon_with_area(&mut self, poly: &ConvexPolygon, area: f64) {
        let rel = (area / 4.0).max(f64::MIN_POSITIVE);
        let bin = ((-rel.log10()) * AREA_BINS_PER_DECADE as f64).floor().max(0.0) as usize;
        let bin = bin.min(400);
        if self.area_bins.len() <= bin {
            self.area_bins.resize(bin + 1, 0);
        }
        self.area_bins[bin] += 1;
        let n = poly.pts.len();
        if self.sides.len() <= n {
            self.sides.resize(n + 1, 0);
        }
        self.sides[n] += 1;
        self.total_sides += n as u64;
        for k in 0..n {
            let (a, b) = (poly.pts[k], poly.pts[(k + 1) % n]);
            let on_side =
                (0..2).any(|ax| [-1.0, 1.0].iter().any(|s| (a[ax] - s).abs() <= DIST && (b[ax] - s).abs() <= DIST));
            self.boundary_sides += u64::from(on_side);
        }
        if self.total_sides == n as u64 {
            (self.min_area, self.max_area) = (area, area);
        } else {
            self.min_area = self.min_area.min(area);
            self.max_area = self.max_area.max(area);
        }
    }

    /// Distinct vertices of the partition of `regions` regions, by Euler's formula for a
    /// subdivision of the square without T-junctions: `V = E − R + 1`, with
    /// `E = (Σ sides + sides on the boundary) / 2` (inner edges are sides of two regions).
    pub fn vertices(&self, regions: u64) -> u64 {
        ((self.total_sides + self.boundary_sides) / 2 + 1).saturating_sub(regions)
    }

    /// Adds another tally's counts.
    pub fn merge(&mut self, o: &Tally) {
        let grow = |a: &mut Vec<u64>, b: &[u64]| {
            if a.len() < b.len() {
                a.resize(b.len(), 0);
            }
            a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
        };
        grow(&mut self.area_bins, &o.area_bins);
        grow(&mut self.sides, &o.sides);
        if o.total_sides > 0 {
            if self.total_sides == 0 {
                (self.min_area, self.max_area) = (o.min_area, o.max_area);
            } else {
                self.min_area = self.min_area.min(o.min_area);
                self.max_area = self.max_area.max(o.max_area);
            }
        }
        self.total_sides += o.total_sides;
        self.boundary_sides += o.boundary_sides;
    }
}

impl Collect for Tally {
    fn needs_maps(&self) -> bool {
        false
    }

    fn fork(&self) -> Self {
        Tally::default()
    }

    fn absorb(&mut self, fork: Self) {
        self.merge(&fork);
    }

    fn add(&mut self, r: &Finished) -> u64 {
        self.polygon_with_area(&r.poly, r.area);
        0
    }
}

/// A collector that may be absent.
impl<A: Collect> Collect for Option<A> {
    fn begin(&mut self, start: &Start<'_>) {
        if let Some(a) = self.as_mut() {
            a.begin(start);
        }
    }

    fn needs_maps(&self) -> bool {
        self.as_ref().is_some_and(Collect::needs_maps)
    }

    fn fork(&self) -> Self {
        self.as_ref().map(Collect::fork)
    }

    fn absorb(&mut self, fork: Self) {
        if let (Some(a), Some(b)) = (self.as_mut(), fork) {
            a.absorb(b);
        }
    }

    fn add(&mut self, r: &Finished) -> u64 {
        self.as_mut().map_or(0, |a| a.add(r))
    }

    fn take(&mut self, r: Finished) -> u64 {
        self.as_mut().map_or(0, |a| a.take(r))
    }
}

/// Two collectors side by side (a tally while keeping, pictures while counting, ...).
impl<A: Collect, B: Collect> Collect for (A, B) {
    fn begin(&mut self, start: &Start<'_>) {
        self.0.begin(start);
        self.1.begin(start);
    }

    fn needs_maps(&self) -> bool {
        self.0.needs_maps() || self.1.needs_maps()
    }

    fn fork(&self) -> Self {
        (self.0.fork(), self.1.fork())
    }

    fn absorb(&mut self, fork: Self) {
        self.0.absorb(fork.0);
        self.1.absorb(fork.1);
    }

    fn add(&mut self, r: &Finished) -> u64 {
        self.1.add(r) + self.0.add(r)
    }

    fn take(&mut self, r: Finished) -> u64 {
        self.1.add(&r) + self.0.take(r)
    }
}
