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
use crate::geometry::predicates::{self, Sign};
use crate::network::{LayerKind, Merge, Network, Src};
use crate::pattern::{LayerBits, Pattern};
use crate::pointwise::{self, batched_ops, Nonlinear, Ops};
use rayon::prelude::*;

mod sweep;

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
        let (seg, counts) = sweep::trace_segment(net, &layout, &ops, (&w[0], &w[1]), s);
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

/// The position of the first largest of `values`.
#[inline]
fn argmax(values: impl Iterator<Item = f64>) -> usize {
    let mut best = (0, f64::NEG_INFINITY);
    for (p, v) in values.enumerate() {
        if v > best.1 {
            best = (p, v);
        }
    }
    best.0
}

/// The first largest of values going linearly from `a` to `b`, at relative position `l`.
fn winner(a: &[f64], b: &[f64], l: f64) -> usize {
    argmax(a.iter().zip(b).map(|(x, y)| x + l * (y - x)))
}

/// The relative positions in `(0, 1)` where the first largest of values going linearly from
/// `a` to `b` (over an interval of length `dt`) changes: the upper envelope's breakpoints,
/// pairwise crossings where the winner differs on the two sides.
fn group_changes(a: &[f64], b: &[f64], dt: f64, out: &mut Vec<f64>) {
    // Affine values: a candidate the winner beats at both ends it beats in between, so the
    // same winner at both ends means no change (the common case).
    if argmax(a.iter().copied()) == argmax(b.iter().copied()) {
        return;
    }
    let mut cands = Vec::new();
    for p in 0..a.len() {
        for q in p + 1..a.len() {
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
        let before = winner(a, b, 0.5 * (edges[k - 1] + edges[k]));
        let after = winner(a, b, 0.5 * (edges[k] + edges[k + 1]));
        if before != after {
            out.push(edges[k]);
        }
    }
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
        let mut cuts = Vec::new();
        group_changes(&sa, &sb, dt, &mut cuts);
        let mut edges = vec![0.0];
        edges.extend(&cuts);
        edges.push(1.0);
        for k in 0..edges.len() - 1 {
            let c = winner(&sa, &sb, 0.5 * (edges[k] + edges[k + 1]));
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

/// Every node's output at each of the points `xs` (`[node][point]`): affine nodes as one
/// batched product per node (the engine's operators), the others point by point.
fn forward_points(net: &Network, ops: &Ops, kinds: &[Option<Nonlinear>], xs: &[Vec<f64>]) -> Vec<Vec<Vec<f64>>> {
    let mut outs: Vec<Vec<Vec<f64>>> = Vec::with_capacity(net.nodes.len());
    for (i, node) in net.nodes.iter().enumerate() {
        let read = |s: &Src, r: usize| -> &[f64] {
            match *s {
                Src::Input => &xs[r],
                Src::Node(j) => &outs[j][r],
            }
        };
        let y = match &ops[i] {
            Some((op, bias)) => {
                let rows: Vec<&[f64]> = (0..xs.len()).map(|r| read(&node.inputs[0], r)).collect();
                pointwise::apply_rows(op, bias, &rows)
            }
            None => (0..xs.len()).map(|r| pointwise::apply_node(node, kinds[i].as_ref(), |s| read(s, r))).collect(),
        };
        outs.push(y);
    }
    outs
}

/// The gradient of output `output` with respect to the input at `x`, with every nonlinearity
/// fixed to its piece at `x` (backpropagation through the node graph); `out(j)` is node `j`'s
/// output at `x`, `kinds` the nodes' [`pointwise::nonlinear`] kinds.
fn gradient_at<'a>(
    net: &Network,
    kinds: &[Option<Nonlinear>],
    x: &[f64],
    out: impl Fn(usize) -> &'a [f64],
    output: usize,
) -> Vec<f64> {
    let n = net.nodes.len();
    if n == 0 {
        let mut g = vec![0.0; x.len()];
        g[output] = 1.0;
        return g;
    }
    let mut grads: Vec<Option<Vec<f64>>> = vec![None; n];
    let mut g_in = vec![0.0; x.len()];
    let mut last = vec![0.0; out(n - 1).len()];
    last[output] = 1.0;
    grads[n - 1] = Some(last);
    for i in (0..n).rev() {
        let Some(gy) = grads[i].take() else { continue };
        let node = &net.nodes[i];
        let input = |k: usize| -> &[f64] {
            match node.inputs[k] {
                Src::Input => x,
                Src::Node(j) => out(j),
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
                let Some(Nonlinear::Max(groups, _)) = &kinds[i] else { unreachable!("max kinds have groups") };
                for (group, &gi) in groups.iter().zip(&gy) {
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
                let y = out(i);
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
    let ops = batched_ops(net);
    let (pieces, _) = sweep::trace_segment(net, &layout, &ops, (baseline, input), 0);
    let kinds: Vec<Option<Nonlinear>> = net.nodes.iter().map(pointwise::nonlinear).collect();
    // Gradients in parallel, at the pieces' middles, forward passes batched over chunks of
    // pieces; summed in piece order (the same sum for any thread count).
    const CHUNK: usize = 32;
    let grads: Vec<Vec<f64>> = pieces
        .par_chunks(CHUNK)
        .flat_map_iter(|chunk| {
            let xs: Vec<Vec<f64>> = chunk
                .iter()
                .map(|p| {
                    let mid = 0.5 * (p.t0 + p.t1);
                    baseline.iter().zip(input).map(|(a, b)| a + mid * (b - a)).collect()
                })
                .collect();
            let outs = forward_points(net, &ops, &kinds, &xs);
            (0..xs.len()).map(|r| gradient_at(net, &kinds, &xs[r], |j| &outs[j][r], output)).collect::<Vec<_>>()
        })
        .collect();
    let mut acc = vec![0.0; input.len()];
    for (p, g) in pieces.iter().zip(&grads) {
        let w = p.t1 - p.t0;
        acc.iter_mut().zip(g).for_each(|(a, gi)| *a += w * gi);
    }
    let values: Vec<f64> = acc.iter().zip(baseline.iter().zip(input)).map(|(g, (a, b))| g * (b - a)).collect();
    let sum = values.iter().sum();
    let difference = net.forward(input)[output] - net.forward(baseline)[output];
    Ok(Attribution { values, output, sum, difference, pieces: pieces.len() })
}
