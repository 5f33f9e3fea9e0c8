//! Per-neuron report over a finished partition: for every piecewise-linear unit (an elementwise
//! activation's unit, a max group, an entry of a max/min join) which of its pieces is active on
//! how much of the domain, how many regions each piece holds, how long the partition edges it
//! creates are, and a verdict (dead, linear, switching). From the verdicts, the network rewritten
//! without the units that never switch on the domain ([`simplify`]), and the check that the
//! rewritten network is the same function on every region ([`check_simplified`]).
//!
//! Everything is read from the regions' activation patterns (the layout says where each unit's
//! bits sit), so a verdict is as exact as the partition: a unit is *switching* exactly when two
//! regions of positive area have it on different pieces. A breakpoint line that meets the domain
//! only within the tolerance rule's distance of its border (see `geometry::predicates`) creates
//! no region, so such a unit counts as not switching, and its rewrite changes the function only
//! inside that sliver.

use super::AnalysisError;
use crate::network::{Activation, Layer, LayerKind, Merge, Network, Node, Shape, Src};
use crate::partition::Partition;
use crate::pattern::{LayerBits, Pattern};
use crate::slice::Slice;
use rayon::prelude::*;

/// What a unit does on the domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// One piece everywhere, and that piece is constant (e.g. a ReLU that is always off, a
    /// hardtanh always clamped): the unit can be replaced by a constant.
    Dead,
    /// One non-constant piece everywhere (a ReLU always on, a max group with one winner): the
    /// unit can be replaced by an affine map.
    Linear,
    /// Two or more pieces are active on the domain: its breakpoint line crosses it.
    Switching,
}

impl Verdict {
    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Dead => "dead",
            Verdict::Linear => "linear",
            Verdict::Switching => "switching",
        }
    }
}

/// What kind of units a nonlinear node has.
#[derive(Clone, Debug, PartialEq)]
pub enum UnitKind {
    /// Elementwise activation units (pieces numbered by their hinge bits: bit `j` set when the
    /// pre-activation is past hinge `j`).
    Hinge(Activation),
    /// Max groups of a max-pool or maxout node (pieces numbered by the winning candidate).
    MaxGroup,
    /// Entries of a max or min join (pieces numbered by the winning input).
    Join(Merge),
}

/// The function a unit computes on one of its pieces.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PieceFn {
    /// `slope·z + intercept` of the unit's own pre-activation `z`.
    Affine {
        /// Slope.
        slope: f64,
        /// Intercept.
        intercept: f64,
    },
    /// The value of one candidate: an entry of the node's input (max groups), or the same entry
    /// of input `k` of a join.
    Select(u32),
}

/// One unit over the domain.
#[derive(Clone, Debug, PartialEq)]
pub struct UnitReport {
    /// Index of the unit (elementwise) or group (max kinds) or entry (joins) in its node.
    pub unit: usize,
    /// Area in `(u, v)` units on which each piece is active (index: piece number).
    pub piece_area: Vec<f64>,
    /// Regions on which each piece is active.
    pub piece_regions: Vec<u64>,
    /// Total length (in `(u, v)`) of the partition edges across which this unit changes piece.
    pub edge_length: f64,
    /// Dead, linear or switching.
    pub verdict: Verdict,
    /// For a unit that does not switch: the function it computes everywhere on the domain.
    pub fixed: Option<PieceFn>,
}

impl UnitReport {
    /// Whether the unit's breakpoint set enters the domain (two or more pieces are active).
    pub fn enters_domain(&self) -> bool {
        self.verdict == Verdict::Switching
    }

    /// Number of pieces active somewhere on the domain.
    pub fn active_pieces(&self) -> usize {
        self.piece_regions.iter().filter(|&&n| n > 0).count()
    }
}

/// The units of one nonlinear node.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerReport {
    /// Node index in the network.
    pub layer: usize,
    /// Node name.
    pub name: String,
    /// Op name.
    pub op: String,
    /// What its units are.
    pub kind: UnitKind,
    /// One entry per unit.
    pub units: Vec<UnitReport>,
}

impl LayerReport {
    /// Number of units with verdict `v`.
    pub fn count(&self, v: Verdict) -> usize {
        self.units.iter().filter(|u| u.verdict == v).count()
    }
}

/// Every nonlinear node's units over a partition's domain.
#[derive(Clone, Debug, PartialEq)]
pub struct NeuronReport {
    /// One entry per nonlinear node, in node order (the pattern layout's order).
    pub layers: Vec<LayerReport>,
    /// Area of the domain.
    pub domain_area: f64,
}

impl NeuronReport {
    /// Number of units with verdict `v` over all layers.
    pub fn count(&self, v: Verdict) -> usize {
        self.layers.iter().map(|l| l.count(v)).sum()
    }

    /// Number of units in all.
    pub fn units(&self) -> usize {
        self.layers.iter().map(|l| l.units.len()).sum()
    }
}

/// How to read one layer's units out of a pattern.
struct Reader {
    offset: usize,
    width: usize,
    units: usize,
    pieces: usize,
    kind: UnitKind,
    /// The candidates of each group (max kinds; empty otherwise), built once per layer.
    groups: Vec<Vec<u32>>,
}

impl Reader {
    #[inline]
    fn piece(&self, p: &Pattern, unit: usize) -> usize {
        p.bits(self.offset + unit * self.width, self.width) as usize
    }
}

/// The readers of every layout entry, after checking that `layout` is `net`'s own.
fn readers(net: &Network, layout: &[LayerBits]) -> Result<Vec<Reader>, AnalysisError> {
    if layout != net.pattern_layout().as_slice() {
        return Err(AnalysisError::Layout(
            "the partition was not computed for this network (pattern layouts differ)".into(),
        ));
    }
    layout
        .iter()
        .map(|bits| {
            let node = &net.nodes[bits.layer];
            let l = &node.layer;
            let (kind, groups) = match &l.kind {
                LayerKind::Activation(act) => (UnitKind::Hinge(act.clone()), Vec::new()),
                LayerKind::MaxPool2d { .. } | LayerKind::Maxout { .. } => (UnitKind::MaxGroup, l.max_groups()),
                LayerKind::Merge(m @ (Merge::Max | Merge::Min)) => (UnitKind::Join(*m), Vec::new()),
                _ => unreachable!("the layout lists nonlinear nodes only"),
            };
            let (units, pieces) = match &kind {
                UnitKind::Hinge(act) => (l.input.numel(), 1usize << act.hinge_slots()),
                UnitKind::MaxGroup => (groups.len(), groups.iter().map(Vec::len).max().unwrap_or(1)),
                UnitKind::Join(_) => (l.output.numel(), node.inputs.len()),
            };
            Ok(Reader { offset: bits.offset, width: bits.bits / units.max(1), units, pieces, kind, groups })
        })
        .collect()
}

/// Finds the unit that holds a pattern bit, for patterns of one network and layout.
pub(crate) struct UnitLocator<'a> {
    layout: &'a [LayerBits],
    /// Per layout entry: (bits per unit, units).
    widths: Vec<(usize, usize)>,
}

impl<'a> UnitLocator<'a> {
    /// Fails when `layout` is not `net`'s pattern layout.
    pub(crate) fn new(net: &Network, layout: &'a [LayerBits]) -> Result<Self, AnalysisError> {
        let widths = readers(net, layout)?.iter().map(|r| (r.width, r.units)).collect();
        Ok(UnitLocator { layout, widths })
    }

    /// The layout entry, node index and unit of pattern bit `bit`.
    pub(crate) fn locate(&self, bit: usize) -> Option<(usize, usize, usize)> {
        let s = self.layout.partition_point(|l| l.offset <= bit).checked_sub(1)?;
        let (width, units) = self.widths[s];
        let rel = bit.checked_sub(self.layout[s].offset).filter(|&r| r < width * units)?;
        Some((s, self.layout[s].layer, rel / width))
    }

    /// The node index and unit of pattern bit `bit`.
    pub(crate) fn unit_of_bit(&self, bit: usize) -> Option<(usize, usize)> {
        self.locate(bit).map(|(_, node, unit)| (node, unit))
    }
}

/// The function of piece `piece` of unit `unit` of the layer read by `r`.
fn piece_fn(r: &Reader, layer: &Layer, unit: usize, piece: usize) -> PieceFn {
    match &r.kind {
        UnitKind::Hinge(act) => {
            let (slope, intercept) = act.hinge_form(unit / layer.input.per_channel()).piece(piece as u64);
            PieceFn::Affine { slope, intercept }
        }
        UnitKind::MaxGroup => PieceFn::Select(r.groups[unit][piece]),
        UnitKind::Join(_) => PieceFn::Select(piece as u32),
    }
}

/// Units per task of the per-unit pass: each task scans every region for its units, so memory
/// is the report's own size (no copies per thread) and the result is the same on any thread
/// count.
const UNITS_PER_TASK: usize = 1024;

/// The per-neuron report of `part`, a partition computed for `net` (fails when `part`'s
/// pattern layout is not `net`'s).
///
/// Costs one pass over regions × units (parallel over blocks of units) and one over the
/// partition's edges.
pub fn neuron_report(net: &Network, part: &Partition) -> Result<NeuronReport, AnalysisError> {
    let readers = readers(net, &part.layout)?;
    let total: usize = readers.iter().map(|r| r.units.saturating_mul(r.pieces)).fold(0, usize::saturating_add);
    if total > 1 << 28 {
        return Err(AnalysisError::TooLarge(format!(
            "the network's units have {total} pieces in all, more than tessera reports on (2^28)"
        )));
    }
    let tasks: Vec<(usize, std::ops::Range<usize>)> = readers
        .iter()
        .enumerate()
        .flat_map(|(s, r)| (0..r.units).step_by(UNITS_PER_TASK).map(move |u| (s, u..(u + UNITS_PER_TASK).min(r.units))))
        .collect();
    let total_area: f64 = part.regions.iter().map(|r| r.area).sum();
    let regions = part.regions.len() as u64;
    let tallies: Vec<(Vec<f64>, Vec<u64>)> = tasks
        .par_iter()
        .map(|(s, range)| {
            let r = &readers[*s];
            let n = range.len() * r.pieces;
            let (mut area, mut count) = (vec![0.0f64; n], vec![0u64; n]);
            if r.width == 1 && r.pieces == 2 {
                // One bit per unit (ReLU-like): only the set bits are visited; piece 0 is
                // what remains of the totals.
                let (lo, hi) = (r.offset + range.start, r.offset + range.end);
                for region in &part.regions {
                    for (w, &word) in region.pattern.0.iter().enumerate().take(hi.div_ceil(64)).skip(lo / 64) {
                        let mut bits = word;
                        while bits != 0 {
                            let bit = w * 64 + bits.trailing_zeros() as usize;
                            bits &= bits - 1;
                            if (lo..hi).contains(&bit) {
                                area[2 * (bit - lo) + 1] += region.area;
                                count[2 * (bit - lo) + 1] += 1;
                            }
                        }
                    }
                }
                for u in 0..range.len() {
                    count[2 * u] = regions - count[2 * u + 1];
                    area[2 * u] = if count[2 * u] == 0 { 0.0 } else { (total_area - area[2 * u + 1]).max(0.0) };
                }
            } else {
                for region in &part.regions {
                    for (i, u) in range.clone().enumerate() {
                        let k = r.piece(&region.pattern, u).min(r.pieces - 1);
                        area[i * r.pieces + k] += region.area;
                        count[i * r.pieces + k] += 1;
                    }
                }
            }
            (area, count)
        })
        .collect();
    let locate = UnitLocator::new(net, &part.layout)?;
    let mut ubase = Vec::with_capacity(readers.len());
    let mut units_total = 0usize;
    for r in &readers {
        ubase.push(units_total);
        units_total += r.units;
    }
    let edge_length = unit_edge_lengths(part, &locate, &ubase, units_total);
    let mut layers: Vec<LayerReport> = readers
        .iter()
        .zip(&part.layout)
        .map(|(r, bits)| {
            let node = &net.nodes[bits.layer];
            LayerReport {
                layer: bits.layer,
                name: node.name.clone(),
                op: node.layer.op.clone(),
                kind: r.kind.clone(),
                units: Vec::with_capacity(r.units),
            }
        })
        .collect();
    for ((s, range), (area, count)) in tasks.iter().zip(tallies) {
        let r = &readers[*s];
        let layer = &net.nodes[part.layout[*s].layer].layer;
        for (i, u) in range.clone().enumerate() {
            let piece_area = area[i * r.pieces..(i + 1) * r.pieces].to_vec();
            let piece_regions = count[i * r.pieces..(i + 1) * r.pieces].to_vec();
            let active: Vec<usize> = (0..r.pieces).filter(|&k| piece_regions[k] > 0).collect();
            let (verdict, fixed) = match active.as_slice() {
                [k] => {
                    let f = piece_fn(r, layer, u, *k);
                    let v = match f {
                        PieceFn::Affine { slope: 0.0, .. } => Verdict::Dead,
                        _ => Verdict::Linear,
                    };
                    (v, Some(f))
                }
                _ => (Verdict::Switching, None),
            };
            let edge_length = edge_length[ubase[*s] + u];
            layers[*s].units.push(UnitReport { unit: u, piece_area, piece_regions, edge_length, verdict, fixed });
        }
    }
    Ok(NeuronReport { layers, domain_area: part.domain.area() })
}

/// Per unit (flat over layers in layout order, layer `s` starting at `ubase[s]`), the length
/// in `(u, v)` of the shared edges across which it changes piece.
fn unit_edge_lengths(part: &Partition, locate: &UnitLocator, ubase: &[usize], total: usize) -> Vec<f64> {
    let edges = part.edges();
    let chunks: Vec<Vec<(usize, f64)>> = edges
        .par_chunks(4096)
        .map(|chunk| {
            let mut out = Vec::new();
            for e in chunk {
                let Some(right) = e.right else { continue };
                let (a, b) = (&part.regions[e.left].pattern, &part.regions[right].pattern);
                let (p, q) = (part.frame.to_uv(e.a), part.frame.to_uv(e.b));
                let len = (p[0] - q[0]).hypot(p[1] - q[1]);
                let mut last: Option<(usize, usize)> = None;
                for (w, (x, y)) in a.0.iter().zip(&b.0).enumerate() {
                    let mut diff = x ^ y;
                    while diff != 0 {
                        let bit = w * 64 + diff.trailing_zeros() as usize;
                        diff &= diff - 1;
                        // A unit with several bits counts once per edge (its bits are adjacent).
                        if let Some((s, _, unit)) = locate.locate(bit) {
                            if last != Some((s, unit)) {
                                last = Some((s, unit));
                                out.push((ubase[s] + unit, len));
                            }
                        }
                    }
                }
            }
            out
        })
        .collect();
    // Summed in edge order: the same total on any thread count.
    let mut acc = vec![0.0f64; total];
    for (i, len) in chunks.into_iter().flatten() {
        acc[i] += len;
    }
    acc
}

/// What [`simplify`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Simplified {
    /// Units replaced by constants.
    pub removed: usize,
    /// Units replaced by affine maps (a unit's own slope and intercept, or one candidate).
    pub linearised: usize,
    /// Units left piecewise-linear.
    pub kept: usize,
}

fn layer(kind: LayerKind, input: Shape, output: Shape, op: &str) -> Layer {
    Layer { kind, input, output, op: op.to_string() }
}

/// `net` rewritten with every unit that does not switch on the report's domain replaced by the
/// function it computes there: dead units by constants, linear units by affine maps, max groups
/// with one winner by that candidate. The switching units of a node are gathered into a smaller
/// nonlinear node of the same kind, so the rewritten network has exactly `kept` piecewise-linear
/// units; a node with none left becomes affine. On the domain the rewritten network is the same
/// function as `net` ([`check_simplified`] verifies it region by region).
pub fn simplify(net: &Network, report: &NeuronReport) -> Result<(Network, Simplified), AnalysisError> {
    let mut stats = Simplified::default();
    let by_node: rustc_hash::FxHashMap<usize, &LayerReport> = report.layers.iter().map(|l| (l.layer, l)).collect();
    let mut nodes: Vec<Node> = Vec::with_capacity(net.nodes.len());
    // Old node index → new node index of its output.
    let mut map: Vec<usize> = Vec::with_capacity(net.nodes.len());
    let remap = |s: &Src, map: &[usize]| match *s {
        Src::Input => Src::Input,
        Src::Node(j) => Src::Node(map[j]),
    };
    for (i, node) in net.nodes.iter().enumerate() {
        let inputs: Vec<Src> = node.inputs.iter().map(|s| remap(s, &map)).collect();
        let Some(rep) = by_node.get(&i) else {
            nodes.push(Node { layer: node.layer.clone(), inputs, name: node.name.clone() });
            map.push(nodes.len() - 1);
            continue;
        };
        if rep.units.len() != node.layer.output.numel() && !matches!(rep.kind, UnitKind::MaxGroup) {
            return Err(AnalysisError::Layout(format!("the report's node {i} does not fit the network")));
        }
        let switching: Vec<usize> = rep.units.iter().filter(|u| u.fixed.is_none()).map(|u| u.unit).collect();
        stats.kept += switching.len();
        for u in &rep.units {
            match u.verdict {
                Verdict::Dead => stats.removed += 1,
                Verdict::Linear => stats.linearised += 1,
                Verdict::Switching => {}
            }
        }
        if switching.len() == rep.units.len() {
            nodes.push(Node { layer: node.layer.clone(), inputs, name: node.name.clone() });
            map.push(nodes.len() - 1);
            continue;
        }
        let out_shape = node.layer.output;
        let name = &node.name;
        let push = |nodes: &mut Vec<Node>, layer: Layer, inputs: Vec<Src>, suffix: &str| {
            nodes.push(Node { layer, inputs, name: format!("{name}{suffix}") });
            Src::Node(nodes.len() - 1)
        };
        let m = switching.len();
        // Scatter of the switching units' outputs back to their places (zeros elsewhere).
        let scatter_index = || {
            let mut idx = vec![crate::network::Gather::ZERO; out_shape.numel()];
            for (k, &u) in switching.iter().enumerate() {
                idx[u] = k as u32;
            }
            idx
        };
        // The switching units' outputs (a node of `m` entries) put back in their places.
        let scatter = |nodes: &mut Vec<Node>, from: Src| {
            let gather = LayerKind::Gather(crate::network::Gather { index: scatter_index() });
            push(nodes, layer(gather, Shape::Flat(m), out_shape, "gather"), vec![from], "/scatter")
        };
        let mut terms: Vec<Src> = Vec::new();
        match &rep.kind {
            UnitKind::Hinge(act) => {
                let x = inputs[0];
                let s = node.layer.input;
                let (mut scale, mut shift) = (vec![0.0; s.numel()], vec![0.0; s.numel()]);
                for u in &rep.units {
                    if let Some(PieceFn::Affine { slope, intercept }) = u.fixed {
                        scale[u.unit] = slope;
                        shift[u.unit] = intercept;
                    }
                }
                if m > 0 {
                    let idx = switching.iter().map(|&u| u as u32).collect();
                    let g = push(
                        &mut nodes,
                        layer(LayerKind::Gather(crate::network::Gather { index: idx }), s, Shape::Flat(m), "gather"),
                        vec![x],
                        "/switching",
                    );
                    let act2 = match act {
                        Activation::PRelu { slopes } if slopes.len() > 1 => Activation::PRelu {
                            slopes: switching.iter().map(|&u| slopes[u / s.per_channel()]).collect(),
                        },
                        a => a.clone(),
                    };
                    let a = push(
                        &mut nodes,
                        layer(LayerKind::Activation(act2), Shape::Flat(m), Shape::Flat(m), &node.layer.op),
                        vec![g],
                        "/kept",
                    );
                    terms.push(scatter(&mut nodes, a));
                }
                let lin = push(&mut nodes, layer(LayerKind::Scale { scale, shift }, s, s, "scale"), vec![x], "/fixed");
                terms.push(lin);
            }
            UnitKind::MaxGroup => {
                let x = inputs[0];
                let s = node.layer.input;
                let groups = node.layer.max_groups();
                if m > 0 {
                    let pool = switching.iter().map(|&g| groups[g].len()).max().unwrap_or(1);
                    // Shorter groups are padded with copies of their first candidate: identical
                    // candidates tie everywhere and never split (ties go to the first).
                    let idx: Vec<u32> = switching
                        .iter()
                        .flat_map(|&g| {
                            let group = &groups[g];
                            (0..pool).map(move |k| *group.get(k).unwrap_or(&group[0]))
                        })
                        .collect();
                    let g = push(
                        &mut nodes,
                        layer(
                            LayerKind::Gather(crate::network::Gather { index: idx }),
                            s,
                            Shape::Flat(m * pool),
                            "gather",
                        ),
                        vec![x],
                        "/candidates",
                    );
                    let mo = push(
                        &mut nodes,
                        layer(LayerKind::Maxout { pool }, Shape::Flat(m * pool), Shape::Flat(m), "maxout"),
                        vec![g],
                        "/kept",
                    );
                    terms.push(scatter(&mut nodes, mo));
                }
                let mut idx = vec![crate::network::Gather::ZERO; out_shape.numel()];
                for u in &rep.units {
                    if let Some(PieceFn::Select(c)) = u.fixed {
                        idx[u.unit] = c;
                    }
                }
                let lin = push(
                    &mut nodes,
                    layer(LayerKind::Gather(crate::network::Gather { index: idx }), s, out_shape, "gather"),
                    vec![x],
                    "/fixed",
                );
                terms.push(lin);
            }
            UnitKind::Join(merge) => {
                let s = node.layer.output;
                if m > 0 {
                    let idx: Vec<u32> = switching.iter().map(|&u| u as u32).collect();
                    let parts: Vec<Src> = inputs
                        .iter()
                        .enumerate()
                        .map(|(k, &x)| {
                            push(
                                &mut nodes,
                                layer(
                                    LayerKind::Gather(crate::network::Gather { index: idx.clone() }),
                                    s,
                                    Shape::Flat(m),
                                    "gather",
                                ),
                                vec![x],
                                &format!("/switching{k}"),
                            )
                        })
                        .collect();
                    let j = push(
                        &mut nodes,
                        layer(LayerKind::Merge(*merge), Shape::Flat(m), Shape::Flat(m), merge.name()),
                        parts,
                        "/kept",
                    );
                    terms.push(scatter(&mut nodes, j));
                }
                for (k, &x) in inputs.iter().enumerate() {
                    let mut idx = vec![crate::network::Gather::ZERO; s.numel()];
                    let mut any = false;
                    for u in &rep.units {
                        if u.fixed == Some(PieceFn::Select(k as u32)) {
                            idx[u.unit] = u.unit as u32;
                            any = true;
                        }
                    }
                    if any {
                        let t = push(
                            &mut nodes,
                            layer(LayerKind::Gather(crate::network::Gather { index: idx }), s, s, "gather"),
                            vec![x],
                            &format!("/fixed{k}"),
                        );
                        terms.push(t);
                    }
                }
            }
        }
        let out = match terms.as_slice() {
            [one] => *one,
            _ => push(&mut nodes, layer(LayerKind::Merge(Merge::Add), out_shape, out_shape, "add"), terms.clone(), ""),
        };
        let Src::Node(o) = out else { unreachable!("terms are nodes") };
        // The node standing for the original keeps its name.
        nodes[o].name = name.clone();
        map.push(o);
    }
    // Every node's replacement ends with the node standing for it: the output stays last.
    debug_assert_eq!(map.last().copied(), nodes.len().checked_sub(1));
    let out =
        Network::new(net.input_shape, nodes).map_err(|e| AnalysisError::Layout(format!("rewritten network: {e}")))?;
    Ok((out, stats))
}

/// Result of [`check_simplified`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SimplifyCheck {
    /// Points compared (every region's centroid and a point near each of its vertices).
    pub points: usize,
    /// Largest difference between a region's map and the rewritten network's forward pass,
    /// relative as in [`Partition::map_error`].
    pub max_error: f64,
    /// Regions where it exceeds [`crate::partition::MAP_TOL`] (at most 50 listed).
    pub violations: Vec<String>,
}

impl SimplifyCheck {
    /// Whether the rewritten network matched everywhere.
    pub fn is_ok(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Compares `simplified` (a rewrite of the network `part` was computed for) with every region's
/// affine map: a plain forward pass of `simplified` at the region's centroid and at points 1 %
/// of the way from each vertex to the centroid must give the region's map.
pub fn check_simplified(simplified: &Network, slice: &Slice, part: &Partition) -> SimplifyCheck {
    let results: Vec<(usize, f64)> = part
        .regions
        .par_iter()
        .map(|r| {
            let c = r.polygon.centroid();
            let mut pts = vec![c];
            pts.extend(r.polygon.pts.iter().map(|p| [p[0] + 0.01 * (c[0] - p[0]), p[1] + 0.01 * (c[1] - p[1])]));
            let worst = pts
                .iter()
                .map(|&p| {
                    let uv = part.frame.to_uv(p);
                    let y = simplified.forward(&slice.plane.point(uv[0], uv[1]));
                    part.map_error(&r.map.eval(part.frame.from_uv(uv)), &y)
                })
                .fold(0.0, f64::max);
            (pts.len(), worst)
        })
        .collect();
    let mut out = SimplifyCheck::default();
    for (i, &(n, e)) in results.iter().enumerate() {
        out.points += n;
        out.max_error = out.max_error.max(e);
        if e > crate::partition::MAP_TOL && out.violations.len() < 50 {
            out.violations.push(format!("region {i}: the rewritten network differs from its map by {e:.3e}"));
        }
    }
    out
}
