//! The network's nodes evaluated at a finite set of points, one node at a time: what the exact
//! 1D (`line`) and 3D (`solid`) paths share.
//!
//! Both keep, at every point (a breakpoint of a path, a vertex of a polytope), the tensors still
//! to be read, and split their pieces at each nonlinear node from the values of the node's
//! input there: on a piece that is one piece of every nonlinearity before the node, the
//! node's input is affine, so its values at the points determine it everywhere. This module
//! knows which nodes decide (and what they read), how to apply a node to one point's tensors,
//! and how to run affine nodes over many points at matrix-multiply speed.

use crate::engine::affine::Op;
use crate::network::{Layer, LayerKind, Merge, Network, Node, Src};

/// What a nonlinear node decides on: elementwise activations read their input unit by unit;
/// max kinds and max/min joins read candidates in groups (of the concatenated inputs for a
/// join; `true`: a min join, whose candidates are negated).
pub(crate) enum Nonlinear<'a> {
    /// An elementwise activation: its hinge forms per unit.
    Activation(&'a Layer),
    /// Groups of candidate indices, and whether the values are negated.
    Max(Vec<Vec<u32>>, bool),
}

/// The decision kind of `node`, or `None` for affine nodes.
pub(crate) fn nonlinear(node: &Node) -> Option<Nonlinear<'_>> {
    match &node.layer.kind {
        LayerKind::Activation(_) => Some(Nonlinear::Activation(&node.layer)),
        LayerKind::MaxPool2d { .. } | LayerKind::Maxout { .. } => Some(Nonlinear::Max(node.layer.max_groups(), false)),
        LayerKind::Merge(m @ (Merge::Max | Merge::Min)) => {
            let (k, n) = (node.inputs.len() as u32, node.layer.output.numel() as u32);
            Some(Nonlinear::Max((0..n).map(|i| (0..k).map(|b| b * n + i).collect()).collect(), *m == Merge::Min))
        }
        _ => None,
    }
}

/// The position in `group` of its largest value in `v` (the first of equals).
pub(crate) fn winner_at(group: &[u32], v: &[f64]) -> usize {
    let mut best = (0, f64::NEG_INFINITY);
    for (p, &u) in group.iter().enumerate() {
        if v[u as usize] > best.1 {
            best = (p, v[u as usize]);
        }
    }
    best.0
}

/// The values nonlinear `node` decides on at one point (`read` gives the point's tensors):
/// its input, or its inputs concatenated, negated for a min join.
pub(crate) fn decision_values<'a>(node: &Node, read: impl Fn(&Src) -> &'a [f64], negate: bool) -> Vec<f64> {
    let ins = &node.inputs;
    let mut v: Vec<f64> =
        if ins.len() == 1 { read(&ins[0]).to_vec() } else { ins.iter().flat_map(|s| read(s).to_vec()).collect() };
    if negate {
        v.iter_mut().for_each(|x| *x = -*x);
    }
    v
}

/// Node `node`'s output at one point. `kind` is the node's [`nonlinear`] (max kinds are
/// evaluated from their groups).
pub(crate) fn apply_node<'a>(node: &Node, kind: Option<&Nonlinear>, read: impl Fn(&Src) -> &'a [f64]) -> Vec<f64> {
    let mut y = vec![0.0; node.layer.output.numel()];
    apply_node_into(node, kind, read, &mut y);
    y
}

/// [`apply_node`] written into `y` (zeroed, of the node's output size).
pub(crate) fn apply_node_into<'a>(
    node: &Node,
    kind: Option<&Nonlinear>,
    read: impl Fn(&Src) -> &'a [f64],
    y: &mut [f64],
) {
    match &node.layer.kind {
        LayerKind::Merge(m) => {
            let ins: Vec<&[f64]> = node.inputs.iter().map(read).collect();
            y.copy_from_slice(&Layer::merge(*m, &ins));
        }
        LayerKind::MaxPool2d { .. } | LayerKind::Maxout { .. } => {
            let Some(Nonlinear::Max(groups, _)) = kind else { unreachable!("max kinds have groups") };
            let x = read(&node.inputs[0]);
            for (o, g) in y.iter_mut().zip(groups) {
                *o = g.iter().map(|&u| x[u as usize]).fold(f64::NEG_INFINITY, f64::max);
            }
        }
        _ => node.layer.apply(read(&node.inputs[0]), y),
    }
}

/// Per node, the batched linear part and the bias of affine one-input layers (`None` for the
/// others, and for layers the batched operator does not cover).
pub(crate) type Ops = Vec<Option<(Op, Vec<f64>)>>;

/// The batched operators of `net`'s affine nodes.
pub(crate) fn batched_ops(net: &Network) -> Ops {
    net.nodes
        .iter()
        .map(|n| {
            let l = &n.layer;
            if !l.is_affine() || matches!(l.kind, LayerKind::Merge(_)) {
                return None;
            }
            let op = Op::from_layer(l)?;
            let mut bias = vec![0.0; l.output.numel()];
            l.apply(&vec![0.0; l.input.numel()], &mut bias);
            Some((op, bias))
        })
        .collect()
}

/// `op` plus `bias` applied to every row of `rows`, in one batched product (GEMM or im2col
/// convolution) per chunk of rows.
pub(crate) fn apply_rows(op: &Op, bias: &[f64], rows: &[&[f64]]) -> Vec<Vec<f64>> {
    // In chunks: an im2col buffer of every row at once would take gigabytes on image inputs.
    const CHUNK: usize = 32;
    let n_out = bias.len();
    let mut out = Vec::with_capacity(rows.len());
    let mut x = Vec::new();
    for chunk in rows.chunks(CHUNK) {
        x.clear();
        chunk.iter().for_each(|r| x.extend_from_slice(r));
        let y = op.apply_rows(&x, chunk.len());
        for r in 0..chunk.len() {
            let mut row = y[r * n_out..(r + 1) * n_out].to_vec();
            row.iter_mut().zip(bias).for_each(|(a, b)| *a += b);
            out.push(row);
        }
    }
    out
}
