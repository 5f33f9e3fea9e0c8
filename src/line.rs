//! Exact 1D paths: the linear pieces of a network along a segment or a polyline in input space,
//! the exact parameters of every class change, and exact integrated gradients.
//!
//! On a segment `x(t) = A + t·(B − A)`, `t ∈ [0, 1]`, the network is continuous and piecewise
//! affine in `t`. The nodes are evaluated in order at a sorted set of breakpoints, all of them in
//! lockstep. At a nonlinear node every interval between two breakpoints is one piece of all the
//! nonlinearities before it, so the node's pre-activations are affine on it and known exactly at
//! its ends: each unit whose value changes sign across a hinge (or each group whose winner
//! changes) adds the exact parameter where it does, and the tensors still alive are interpolated
//! there (they are affine on the interval). The new breakpoints then go through the node itself
//! and the nodes after it like the others. The result: pieces with their activation pattern (in
//! the 2D engine's layout, [`Network::pattern_layout`]) and the outputs' affine map in `t`.
//!
//! The tolerance rule is the plane's (`geometry::predicates`), with `t` as the normalised
//! coordinate: a unit changes sign on an interval only when its values at the two ends are
//! beyond `DIST·|slope| + noise` on opposite sides (the noise floor of the larger magnitude of
//! the two values and the hinge), so no piece is shorter than `DIST` of the segment.

use crate::boundary::Decision;
use crate::geometry::predicates::{self, Sign, DIST};
use crate::network::{LayerKind, Merge, Network, Src};
use crate::pattern::{LayerBits, Pattern};
use crate::pointwise::{self, apply_node_into, batched_ops, decision_values, nonlinear, Nonlinear, Ops};
use rayon::prelude::*;

/// Why a path could not be traced.
#[derive(Debug, thiserror::Error, PartialEq)]
#[non_exhaustive]
pub enum LineError {
    /// Fewer than two points.
    #[error("a path needs at least two points, got {0}")]
    TooFewPoints(usize),
    /// A point has the wrong number of values.
    #[error("path point {index} has {found} values but the model input has {expected}")]
    Length {
        /// Which point (0-based).
        index: usize,
        /// Its length.
        found: usize,
        /// The input size.
        expected: usize,
    },
    /// A point has NaN or infinite values.
    #[error("path point {index} contains a non-finite value")]
    NonFinite {
        /// Which point.
        index: usize,
    },
    /// Two consecutive points coincide.
    #[error("segment {segment} of the path has zero length (points {segment} and {} coincide)", segment + 1)]
    ZeroLength {
        /// Which segment (0-based).
        segment: usize,
    },
    /// The output index is out of range.
    #[error("output {index} does not exist: the model has {outputs} outputs")]
    BadOutput {
        /// Requested output.
        index: usize,
        /// Outputs of the model.
        outputs: usize,
    },
}

/// One linear piece of the path.
#[derive(Clone, Debug, PartialEq)]
pub struct Piece {
    /// The segment it lies on (0-based).
    pub segment: usize,
    /// Its interval `[t0, t1]` of the segment's parameter `t ∈ [0, 1]`.
    pub t0: f64,
    /// End of the interval.
    pub t1: f64,
    /// Activation pattern (layout: [`Line::layout`]).
    pub pattern: Pattern,
    /// Outputs at `t0`.
    pub y0: Vec<f64>,
    /// Outputs at `t1`.
    pub y1: Vec<f64>,
}

impl Piece {
    /// `dy/dt` on the piece.
    pub fn slope(&self) -> Vec<f64> {
        let dt = self.t1 - self.t0;
        self.y0.iter().zip(&self.y1).map(|(a, b)| (b - a) / dt).collect()
    }

    /// The outputs at `t` (affine on the piece).
    pub fn eval(&self, t: f64) -> Vec<f64> {
        let l = (t - self.t0) / (self.t1 - self.t0);
        self.y0.iter().zip(&self.y1).map(|(a, b)| a + l * (b - a)).collect()
    }
}

/// A change of the decided class along the path.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassChange {
    /// The segment.
    pub segment: usize,
    /// Where on it.
    pub t: f64,
    /// The class before.
    pub from: usize,
    /// The class after.
    pub to: usize,
}

/// The exact pieces of a path.
#[derive(Clone, Debug)]
pub struct Line {
    /// Pieces in path order.
    pub pieces: Vec<Piece>,
    /// Pattern layout.
    pub layout: Vec<LayerBits>,
    /// Pieces after each nonlinear layer (summed over segments).
    pub pieces_per_layer: Vec<usize>,
    /// Class changes in path order.
    pub class_changes: Vec<ClassChange>,
    /// Euclidean length of each segment in input space.
    pub segment_lengths: Vec<f64>,
}

/// Checks a path's points against the network's input size.
fn check_path(net: &Network, path: &[Vec<f64>]) -> Result<(), LineError> {
    let n = net.input_shape.numel();
    if path.len() < 2 {
        return Err(LineError::TooFewPoints(path.len()));
    }
    for (index, p) in path.iter().enumerate() {
        if p.len() != n {
            return Err(LineError::Length { index, found: p.len(), expected: n });
        }
        if p.iter().any(|x| !x.is_finite()) {
            return Err(LineError::NonFinite { index });
        }
    }
    for (segment, w) in path.windows(2).enumerate() {
        if w[0] == w[1] {
            return Err(LineError::ZeroLength { segment });
        }
    }
    Ok(())
}

/// Traces the polyline through `path`'s points: every linear piece of every segment, and the
/// changes of `decision`'s class along it.
pub fn trace(net: &Network, path: &[Vec<f64>], decision: &Decision) -> Result<Line, LineError> {
    check_path(net, path)?;
    let layout = net.pattern_layout();
    let mut pieces = Vec::new();
    let mut per_layer = vec![0usize; layout.len()];
    let ops = batched_ops(net);
    for (s, w) in path.windows(2).enumerate() {
        let (seg, counts) = trace_segment(net, &layout, &ops, (&w[0], &w[1]), s);
        per_layer.iter_mut().zip(counts).for_each(|(a, b)| *a += b);
        pieces.extend(seg);
    }
    let class_changes = class_changes(&pieces, decision, net.output_shape().numel());
    let segment_lengths =
        path.windows(2).map(|w| w[0].iter().zip(&w[1]).map(|(a, b)| (b - a) * (b - a)).sum::<f64>().sqrt()).collect();
    Ok(Line { pieces, layout, pieces_per_layer: per_layer, class_changes, segment_lengths })
}

/// The tolerance of a value going from `a` to `b` over an interval of length `dt` in `t`,
/// relative to level `h`.
fn tol(a: f64, b: f64, h: f64, dt: f64) -> f64 {
    let slope = (b - a) / dt;
    predicates::tolerance(slope, 0.0, predicates::noise_floor(a.abs().max(b.abs()).max(h.abs())))
}

/// Where on `[0, 1]` (relative to an interval of length `dt`) a value going linearly from `a`
/// to `b` crosses `h` under the tolerance rule, if it does.
fn crossing(a: f64, b: f64, h: f64, dt: f64) -> Option<f64> {
    crossing_scaled(a, b, h, dt, 0.0)
}

/// [`crossing`] of a difference of values whose own magnitude is up to `magnitude` (its
/// rounding noise is theirs, not the difference's).
fn crossing_scaled(a: f64, b: f64, h: f64, dt: f64, magnitude: f64) -> Option<f64> {
    let t = tol(a, b, h.abs().max(magnitude), dt);
    let (fa, fb) = (a - h, b - h);
    match (predicates::sign(fa, t), predicates::sign(fb, t)) {
        (Sign::Neg, Sign::Pos) | (Sign::Pos, Sign::Neg) => Some(fa / (fa - fb)),
        _ => None,
    }
}

/// The winner of `group` at relative position `l` between values `a` and `b` (first of equals).
fn winner(group: &[u32], a: &[f64], b: &[f64], l: f64) -> usize {
    let mut best = (0, f64::NEG_INFINITY);
    for (p, &u) in group.iter().enumerate() {
        let v = a[u as usize] + l * (b[u as usize] - a[u as usize]);
        if v > best.1 {
            best = (p, v);
        }
    }
    best.0
}

/// The relative positions in `(0, 1)` where the winner of `group` changes between values `a`
/// and `b` (the upper envelope's breakpoints: pairwise crossings where the winner differs on the
/// two sides).
fn group_changes(group: &[u32], a: &[f64], b: &[f64], dt: f64, out: &mut Vec<f64>) {
    // Affine values: a candidate the winner beats at both ends it beats in between, so the
    // same winner at both ends means no change (the common case).
    if pointwise::winner_at(group, a) == pointwise::winner_at(group, b) {
        return;
    }
    let mut cands = Vec::new();
    for (i, &p) in group.iter().enumerate() {
        for &q in &group[i + 1..] {
            let (p, q) = (p as usize, q as usize);
            let magnitude = a[p].abs().max(a[q].abs()).max(b[p].abs()).max(b[q].abs());
            if let Some(l) = crossing_scaled(a[p] - a[q], b[p] - b[q], 0.0, dt, magnitude) {
                cands.push(l);
            }
        }
    }
    if cands.is_empty() {
        return;
    }
    cands.sort_by(f64::total_cmp);
    let mut edges = vec![0.0];
    edges.extend(&cands);
    edges.push(1.0);
    for k in 1..edges.len() - 1 {
        let before = winner(group, a, b, 0.5 * (edges[k - 1] + edges[k]));
        let after = winner(group, a, b, 0.5 * (edges[k] + edges[k + 1]));
        if before != after {
            out.push(edges[k]);
        }
    }
}

/// One tensor at every breakpoint of a segment: row `k` is its value at breakpoint `k`.
///
/// Flat, one buffer per tensor: a path through an image model has thousands of breakpoints,
/// and a buffer per breakpoint and tensor made allocation, page clearing and copying the cost
/// of a trace (the products themselves were a few percent of it).
struct Rows {
    width: usize,
    data: Vec<f64>,
}

impl Rows {
    fn row(&self, k: usize) -> &[f64] {
        &self.data[k * self.width..(k + 1) * self.width]
    }

    /// The rows at the refined breakpoints `plan`: a kept breakpoint's row, or the value
    /// interpolated between two (every tensor alive is affine between two breakpoints).
    fn refine(&self, plan: &[(usize, Option<f64>)]) -> Rows {
        let mut data = Vec::with_capacity(plan.len() * self.width);
        for &(k, l) in plan {
            match l {
                None => data.extend_from_slice(self.row(k)),
                Some(l) => {
                    data.extend(self.row(k).iter().zip(self.row(k + 1)).map(|(x, y)| x + l * (y - x)));
                }
            }
        }
        Rows { width: self.width, data }
    }
}

/// Breakpoints per batched product (an im2col buffer of every breakpoint at once would take
/// gigabytes on image inputs); also the unit of parallel work.
const CHUNK: usize = 32;

/// The pieces of one segment, and the pieces after each nonlinear layer.
///
/// Every step is a function of one breakpoint or one interval, so the parallel loops give the
/// same result for any thread count.
fn trace_segment(
    net: &Network,
    layout: &[LayerBits],
    ops: &Ops,
    (a, b): (&[f64], &[f64]),
    segment: usize,
) -> (Vec<Piece>, Vec<usize>) {
    let (input_last, last) = net.last_uses();
    let words = layout.last().map_or(0, |l| (l.offset + l.bits).div_ceil(64));
    let mut ts: Vec<f64> = vec![0.0, 1.0];
    // The input at every breakpoint while a node still reads it (or while it is the output).
    let mut xs: Option<Rows> = Some(Rows { width: a.len(), data: [a, b].concat() });
    let mut vals: Vec<Option<Rows>> = (0..net.nodes.len()).map(|_| None).collect();
    let mut patterns: Vec<Pattern> = vec![Pattern(vec![0; words])];
    let mut counts = Vec::with_capacity(layout.len());
    let mut stage = 0;
    for (i, node) in net.nodes.iter().enumerate() {
        let kind = nonlinear(node);
        // The refinement of the breakpoints at this node, if it added any.
        let mut refined: Option<Vec<(usize, Option<f64>)>> = None;
        if let Some(kind) = &kind {
            let bits = &layout[stage];
            stage += 1;
            let negate = matches!(kind, Nonlinear::Max(_, true));
            // The decision values: the node's input itself (borrowed), or built (a join's
            // inputs concatenated, negated for a min join).
            let decision = |xs: &Option<Rows>, vals: &[Option<Rows>], n: usize| -> Option<Rows> {
                if node.inputs.len() == 1 && !negate {
                    return None;
                }
                let mut data = Vec::new();
                for k in 0..n {
                    data.extend(decision_values(node, |s| read(s, xs, vals, k), negate));
                }
                let width = data.len() / n;
                Some(Rows { width, data })
            };
            let hinges = node.layer.hinge_forms();
            let owned = decision(&xs, &vals, ts.len());
            let dv = owned.as_ref().unwrap_or_else(|| input_rows(&node.inputs[0], &xs, &vals));
            // Where every interval splits: a unit crossing a hinge, a group's winner changing.
            let cuts: Vec<Vec<f64>> = (0..ts.len() - 1)
                .into_par_iter()
                .map(|k| {
                    let (va, vb) = (dv.row(k), dv.row(k + 1));
                    let dt = ts[k + 1] - ts[k];
                    let mut cuts = Vec::new();
                    match kind {
                        Nonlinear::Activation(_) => {
                            let (forms, _) = hinges.as_ref().expect("an activation has hinge forms");
                            for (u, f) in forms.iter().enumerate() {
                                for &(bp, _) in f.hinges() {
                                    if let Some(l) = crossing(va[u], vb[u], bp, dt) {
                                        cuts.push(l);
                                    }
                                }
                            }
                        }
                        Nonlinear::Max(groups, _) => {
                            for g in groups {
                                group_changes(g, va, vb, dt, &mut cuts);
                            }
                        }
                    }
                    cuts.sort_by(f64::total_cmp);
                    // Cuts closer than the tolerance in t are one breakpoint.
                    cuts.dedup_by(|x, y| (*x - *y) * dt <= DIST);
                    cuts
                })
                .collect();
            let mut plan = Vec::with_capacity(ts.len() + cuts.iter().map(Vec::len).sum::<usize>());
            for (k, c) in cuts.iter().enumerate() {
                plan.push((k, None));
                plan.extend(c.iter().map(|&l| (k, Some(l))));
            }
            plan.push((ts.len() - 1, None));
            // The node's bits on every new piece, from its decision values at the piece's
            // middle (relative position `m` in the old interval `k` holding it).
            patterns = (0..plan.len() - 1)
                .into_par_iter()
                .map(|p| {
                    let (k, l0) = plan[p];
                    let l1 = match plan[p + 1] {
                        (k1, Some(l)) if k1 == k => l,
                        _ => 1.0,
                    };
                    let m = 0.5 * (l0.unwrap_or(0.0) + l1);
                    let (va, vb) = (dv.row(k), dv.row(k + 1));
                    let mut pat = patterns[k].clone();
                    match kind {
                        Nonlinear::Activation(_) => {
                            let (forms, slots) = hinges.as_ref().expect("an activation has hinge forms");
                            let slots = *slots;
                            for (u, f) in forms.iter().enumerate() {
                                let mid = va[u] + m * (vb[u] - va[u]);
                                for (j, &(bp, _)) in f.hinges().iter().enumerate() {
                                    if mid > bp {
                                        pat.set_bit(bits.offset + u * slots + j);
                                    }
                                }
                            }
                        }
                        Nonlinear::Max(groups, _) => {
                            let width = bits.bits / groups.len().max(1);
                            for (g, group) in groups.iter().enumerate() {
                                let w = winner(group, va, vb, m);
                                pat.set_bits(bits.offset + g * width, width, w as u64);
                            }
                        }
                    }
                    pat
                })
                .collect();
            counts.push(patterns.len());
            drop(owned);
            if plan.len() > ts.len() {
                ts = plan.iter().map(|&(k, l)| l.map_or(ts[k], |l| ts[k] + l * (ts[k + 1] - ts[k]))).collect();
                // The tensors read after this node, at the new breakpoints. Those this node
                // reads last stay at the old ones: its output interpolates them on the fly
                // (materialising them would double the memory of a wide layer).
                if let Some(x) = xs.as_mut().filter(|_| input_last != Some(i)) {
                    // The input at a new breakpoint from the segment itself, not interpolated.
                    let mut data = Vec::with_capacity(plan.len() * x.width);
                    for (k, &(old, l)) in plan.iter().enumerate() {
                        match l {
                            None => data.extend_from_slice(x.row(old)),
                            Some(_) => data.extend(a.iter().zip(b).map(|(p, q)| p + ts[k] * (q - p))),
                        }
                    }
                    *x = Rows { width: x.width, data };
                }
                for (j, v) in vals.iter_mut().enumerate() {
                    if let Some(v) = v.as_mut().filter(|_| last[j] != Some(i)) {
                        *v = v.refine(&plan);
                    }
                }
                refined = Some(plan);
            }
        }
        // The node's output at every breakpoint: affine layers in one batched product (GEMM or
        // im2col convolution) per chunk of breakpoints, the others one breakpoint at a time.
        let n = ts.len();
        let width = node.layer.output.numel();
        let mut data = vec![0.0; n * width];
        if width > 0 {
            if let Some((op, bias)) = &ops[i] {
                let src = input_rows(&node.inputs[0], &xs, &vals);
                data.par_chunks_mut(CHUNK * width).enumerate().for_each(|(c, y)| {
                    let rows = y.len() / width;
                    let x = &src.data[c * CHUNK * src.width..(c * CHUNK + rows) * src.width];
                    let out = op.apply_rows(x, rows);
                    for (yr, or) in y.chunks_exact_mut(width).zip(out.chunks_exact(width)) {
                        yr.iter_mut().zip(or.iter().zip(bias)).for_each(|(o, (v, b))| *o = v + b);
                    }
                });
            } else {
                // The rows of the inputs this node reads last are still at the old breakpoints
                // when it refined them (`refined`): read there, or interpolated between two of
                // them, one breakpoint at a time.
                let stale = |s: &Src| {
                    let consumed = match *s {
                        Src::Input => input_last == Some(i),
                        Src::Node(j) => last[j] == Some(i),
                    };
                    refined.as_deref().filter(|_| consumed)
                };
                data.par_chunks_mut(width).enumerate().for_each_init(
                    || vec![Vec::new(); node.inputs.len()],
                    |scratch: &mut Vec<Vec<f64>>, (k, y)| {
                        for (q, s) in node.inputs.iter().enumerate() {
                            if let Some(&(j, Some(l))) = stale(s).map(|plan| &plan[k]) {
                                let old = input_rows(s, &xs, &vals);
                                let (p, r) = (old.row(j), old.row(j + 1));
                                scratch[q].clear();
                                scratch[q].extend(p.iter().zip(r).map(|(x, y)| x + l * (y - x)));
                            }
                        }
                        let rows: Vec<&[f64]> = node
                            .inputs
                            .iter()
                            .enumerate()
                            .map(|(q, s)| match stale(s).map(|plan| plan[k]) {
                                None => read(s, &xs, &vals, k),
                                Some((j, None)) => read(s, &xs, &vals, j),
                                Some((_, Some(_))) => scratch[q].as_slice(),
                            })
                            .collect();
                        let find = |s: &Src| rows[node.inputs.iter().position(|t| t == s).expect("an input")];
                        apply_node_into(node, kind.as_ref(), find, y);
                    },
                );
            }
        }
        for s in &node.inputs {
            match *s {
                Src::Input if input_last == Some(i) => xs = None,
                Src::Node(j) if last[j] == Some(i) => vals[j] = None,
                _ => {}
            }
        }
        // A tensor no node reads is not carried (unless it is the output).
        if last[i].is_some() || i + 1 == net.nodes.len() {
            vals[i] = Some(Rows { width, data });
        }
    }
    let out = match net.nodes.len() {
        0 => xs.expect("the input is the output"),
        n => vals[n - 1].take().expect("the output is alive"),
    };
    let pieces = patterns
        .into_iter()
        .enumerate()
        .map(|(k, pattern)| Piece {
            segment,
            t0: ts[k],
            t1: ts[k + 1],
            pattern,
            y0: out.row(k).to_vec(),
            y1: out.row(k + 1).to_vec(),
        })
        .collect();
    (pieces, counts)
}

/// The rows of tensor `s` (alive until its last reader).
fn input_rows<'a>(s: &Src, xs: &'a Option<Rows>, vals: &'a [Option<Rows>]) -> &'a Rows {
    match *s {
        Src::Input => xs.as_ref().expect("alive until its last reader"),
        Src::Node(j) => vals[j].as_ref().expect("alive until its last reader"),
    }
}

/// Tensor `s` at breakpoint `k`.
fn read<'a>(s: &Src, xs: &'a Option<Rows>, vals: &'a [Option<Rows>], k: usize) -> &'a [f64] {
    input_rows(s, xs, vals).row(k)
}

/// The class changes along the pieces: inside a piece where the class scores' upper envelope
/// changes, and between pieces (and segments) whose classes at the shared point differ.
fn class_changes(pieces: &[Piece], decision: &Decision, outputs: usize) -> Vec<ClassChange> {
    let classes = decision.classes(outputs);
    let mut out = Vec::new();
    let mut prev: Option<usize> = None;
    for p in pieces {
        let dt = p.t1 - p.t0;
        let sa: Vec<f64> = (0..classes).map(|c| decision.score(&p.y0, c)).collect();
        let sb: Vec<f64> = (0..classes).map(|c| decision.score(&p.y1, c)).collect();
        let group: Vec<u32> = (0..classes as u32).collect();
        let mut cuts = Vec::new();
        group_changes(&group, &sa, &sb, dt, &mut cuts);
        let mut edges = vec![0.0];
        edges.extend(&cuts);
        edges.push(1.0);
        for k in 0..edges.len() - 1 {
            let c = winner(&group, &sa, &sb, 0.5 * (edges[k] + edges[k + 1]));
            if let Some(from) = prev.filter(|&f| f != c) {
                out.push(ClassChange { segment: p.segment, t: p.t0 + edges[k] * dt, from, to: c });
            }
            prev = Some(c);
        }
    }
    out
}

/// Exact integrated gradients of one output along the straight path from `baseline` to
/// `input`.
#[derive(Clone, Debug)]
pub struct Attribution {
    /// Per input value: `(input − baseline)ᵢ · ∫₀¹ ∂f/∂xᵢ(x(t)) dt`, summed exactly over the
    /// pieces (each piece's constant gradient times its length in `t`).
    pub values: Vec<f64>,
    /// The output attributed.
    pub output: usize,
    /// `Σ values`.
    pub sum: f64,
    /// `f(input) − f(baseline)`, which the sum equals (completeness).
    pub difference: f64,
    /// Pieces of the path.
    pub pieces: usize,
}

/// The gradient of output `output` with respect to the input at `x`, with every nonlinearity
/// fixed to its piece at `x` (backpropagation through the node graph).
fn gradient_at(net: &Network, x: &[f64], output: usize) -> Vec<f64> {
    let n = net.nodes.len();
    if n == 0 {
        let mut g = vec![0.0; x.len()];
        g[output] = 1.0;
        return g;
    }
    // Every node's output, kept: the backward pass reads the nonlinear nodes' inputs.
    let outs: Vec<Vec<f64>> = net.forward_all(x, true).into_iter().map(|o| o.expect("kept")).collect();
    let mut grads: Vec<Option<Vec<f64>>> = vec![None; n];
    let mut g_in = vec![0.0; x.len()];
    let mut last = vec![0.0; outs[n - 1].len()];
    last[output] = 1.0;
    grads[n - 1] = Some(last);
    for i in (0..n).rev() {
        let Some(gy) = grads[i].take() else { continue };
        let node = &net.nodes[i];
        let input = |k: usize| -> &[f64] {
            match node.inputs[k] {
                Src::Input => x,
                Src::Node(j) => &outs[j],
            }
        };
        let mut add = |k: usize, g: Vec<f64>, grads: &mut Vec<Option<Vec<f64>>>| match node.inputs[k] {
            Src::Input => g_in.iter_mut().zip(&g).for_each(|(a, b)| *a += b),
            Src::Node(j) => match &mut grads[j] {
                Some(acc) => acc.iter_mut().zip(&g).for_each(|(a, b)| *a += b),
                slot => *slot = Some(g),
            },
        };
        match &node.layer.kind {
            LayerKind::Activation(_) => {
                let z = input(0);
                let (forms, _) = node.layer.hinge_forms().expect("an activation has hinge forms");
                let g = forms
                    .iter()
                    .zip(z)
                    .zip(&gy)
                    .map(|((f, &zi), &gi)| {
                        let slope = f.slope0 + f.hinges().iter().filter(|h| zi > h.0).map(|h| h.1).sum::<f64>();
                        slope * gi
                    })
                    .collect();
                add(0, g, &mut grads);
            }
            LayerKind::MaxPool2d { .. } | LayerKind::Maxout { .. } => {
                let z = input(0);
                let mut g = vec![0.0; z.len()];
                for (group, &gi) in node.layer.max_groups().iter().zip(&gy) {
                    let w = pointwise::winner_at(group, z);
                    g[group[w] as usize] += gi;
                }
                add(0, g, &mut grads);
            }
            LayerKind::Merge(Merge::Add) => {
                for k in 0..node.inputs.len() {
                    add(k, gy.clone(), &mut grads);
                }
            }
            LayerKind::Merge(Merge::Concat) => {
                let mut at = 0;
                for k in 0..node.inputs.len() {
                    let len = input(k).len();
                    add(k, gy[at..at + len].to_vec(), &mut grads);
                    at += len;
                }
            }
            LayerKind::Merge(Merge::Max | Merge::Min) => {
                let y = &outs[i];
                let mut parts: Vec<Vec<f64>> = (0..node.inputs.len()).map(|k| vec![0.0; input(k).len()]).collect();
                for (e, (&ye, &ge)) in y.iter().zip(&gy).enumerate() {
                    // The first input equal to the join's value wins (ties keep the earlier one).
                    let k = (0..node.inputs.len()).find(|&k| input(k)[e] == ye).unwrap_or(0);
                    parts[k][e] += ge;
                }
                for (k, g) in parts.into_iter().enumerate() {
                    add(k, g, &mut grads);
                }
            }
            _ => {
                let mut g = vec![0.0; node.layer.input.numel()];
                node.layer.apply_linear_transpose(&gy, &mut g);
                add(0, g, &mut grads);
            }
        }
    }
    g_in
}

/// Exact integrated gradients of output `output` from `baseline` to `input` (see
/// [`Attribution`]).
pub fn integrated_gradients(
    net: &Network,
    baseline: &[f64],
    input: &[f64],
    output: usize,
) -> Result<Attribution, LineError> {
    let outputs = net.output_shape().numel();
    if output >= outputs {
        return Err(LineError::BadOutput { index: output, outputs });
    }
    let path = [baseline.to_vec(), input.to_vec()];
    check_path(net, &path)?;
    let layout = net.pattern_layout();
    let (pieces, _) = trace_segment(net, &layout, &batched_ops(net), (baseline, input), 0);
    let mut acc = vec![0.0; input.len()];
    for p in &pieces {
        let mid = 0.5 * (p.t0 + p.t1);
        let x: Vec<f64> = baseline.iter().zip(input).map(|(a, b)| a + mid * (b - a)).collect();
        let g = gradient_at(net, &x, output);
        let w = p.t1 - p.t0;
        acc.iter_mut().zip(&g).for_each(|(a, gi)| *a += w * gi);
    }
    let values: Vec<f64> = acc.iter().zip(baseline.iter().zip(input)).map(|(g, (a, b))| g * (b - a)).collect();
    let sum = values.iter().sum();
    let difference = net.forward(input)[output] - net.forward(baseline)[output];
    Ok(Attribution { values, output, sum, difference, pieces: pieces.len() })
}
