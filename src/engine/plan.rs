//! Lowering a network to the engine's stage graph.
//!
//! Every nonlinear layer becomes a *stage*: a set of pre-activation units, the nonlinearity, and
//! the output units it produces. Every affine computation between nonlinearities becomes an
//! *edge*: a linear map ([`Affine`]) from the output of one stage (or from the network input) to a
//! block of the pre-activations of a later stage (or of the network output), plus a bias on the
//! target. A plain chain has one edge per stage; a residual block adds an edge from the block's
//! input to the stage after it; a concatenation feeds two blocks of one target; a max join is a
//! max stage over the two branches side by side. The engine never carries duplicated state for
//! a branch: an edge is applied when its source is known, and its result waits as a partial sum
//! of its target.
//!
//! The plan also bounds, for every pre-activation, the magnitude of the terms that produce it
//! over the domain: the noise floor of the tolerance rule (`geometry::predicates`).

use super::affine::{Affine, Op};
use super::maxgroup::MaxLayer;
use super::pwl::PwlLayer;
use crate::geometry::predicates::noise_floor;
use crate::network::{Layer, LayerKind, Merge, Network};
use crate::pattern::LayerBits;
use crate::slice::Plane;

/// Where an edge starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    /// The network input.
    Input,
    /// The output of a stage.
    Stage(usize),
}

/// A linear map from a source's output to a block of a target's pre-activations.
#[derive(Debug)]
pub(crate) struct Edge {
    /// Target: a stage index, or `stages.len()` for the network output.
    pub target: usize,
    /// First unit of the block it feeds.
    pub offset: usize,
    /// The map.
    pub map: Affine,
}

/// The nonlinearity of a stage.
pub(crate) enum Nonlinearity {
    /// Elementwise piecewise-linear units.
    Pwl(PwlLayer),
    /// Maximum over groups of units.
    Max(MaxLayer),
}

/// One nonlinear layer.
pub(crate) struct Stage {
    /// Index of the model layer (top level) it belongs to.
    pub layer: usize,
    /// The layer's op name.
    pub op: String,
    /// Pre-activation units.
    pub n_in: usize,
    /// Their layout: `(channels, pixels)` (a flat vector is one pixel).
    pub layout: (usize, usize),
    /// Output units (`n_in` for elementwise layers, the number of groups for max layers).
    pub n_out: usize,
    pub nonlin: Nonlinearity,
    /// Bias of every pre-activation (the constant of every edge into the stage).
    pub bias: Vec<f64>,
    /// Noise floor of every pre-activation.
    pub noise: Vec<f64>,
    /// First pattern bit, and bits.
    pub bit_offset: usize,
    pub bits: usize,
    /// Edges from this stage's output.
    pub edges: Vec<Edge>,
}

impl Stage {
    /// The last target any edge of this stage feeds: after it, the stage's output is dead.
    pub(crate) fn last_target(&self) -> usize {
        self.edges.iter().map(|e| e.target).max().unwrap_or(0)
    }
}

/// The network lowered for the engine.
pub(crate) struct Plan {
    pub stages: Vec<Stage>,
    /// Edges from the network input (the plane's three vectors).
    pub input_edges: Vec<Edge>,
    /// Network outputs.
    pub n_out: usize,
    /// Bias of the network output.
    pub out_bias: Vec<f64>,
    /// Layout of the network output (see [`Stage::layout`]).
    pub out_layout: (usize, usize),
    /// Per output, a bound over the domain of the sum of the magnitudes of every term behind it.
    pub output_magnitude: Vec<f64>,
    pub pattern_bits: usize,
}

impl Plan {
    /// Units of target `t` (a stage, or the output).
    pub(crate) fn target_len(&self, t: usize) -> usize {
        self.stages.get(t).map_or(self.n_out, |s| s.n_in)
    }

    /// Layout of target `t`: `(channels, pixels)`.
    pub(crate) fn target_layout(&self, t: usize) -> (usize, usize) {
        self.stages.get(t).map_or(self.out_layout, |s| s.layout)
    }

    /// Bias of target `t`.
    pub(crate) fn target_bias(&self, t: usize) -> &[f64] {
        self.stages.get(t).map_or(&self.out_bias, |s| &s.bias)
    }

    /// Edges from a source.
    pub(crate) fn edges(&self, source: Source) -> &[Edge] {
        match source {
            Source::Input => &self.input_edges,
            Source::Stage(s) => &self.stages[s].edges,
        }
    }

    /// Where each stage's units sit in the patterns.
    pub(crate) fn layout(&self) -> Vec<LayerBits> {
        self.stages
            .iter()
            .map(|s| LayerBits { layer: s.layer, op: s.op.clone(), offset: s.bit_offset, bits: s.bits })
            .collect()
    }

    /// Lowers `net` for partitions of `plane` (a normalised plane: the domain is `[-1, 1]²`).
    pub(crate) fn new(net: &Network, plane: &Plane) -> Self {
        let mut b = Builder { stages: Vec::new(), pending: Vec::new(), bits: 0, layer: 0 };
        let n_input = net.input_shape.numel();
        let mut x = Expr::source(Source::Input, n_input);
        for (index, layer) in net.layers.iter().enumerate() {
            b.layer = index;
            x = b.layer(x, layer);
        }
        let n_out = x.n;
        let out_bias = x.bias.clone();
        let out_layout = layout_of(net.output_shape());
        let out_target = b.stages.len();
        b.connect(x, out_target);
        // Edges were collected with their sources; attach them.
        let mut input_edges = Vec::new();
        for (source, edge) in b.pending {
            match source {
                Source::Input => input_edges.push(edge),
                Source::Stage(s) => b.stages[s].edges.push(edge),
            }
        }
        let mut plan = Plan {
            stages: b.stages,
            input_edges,
            n_out,
            out_bias,
            out_layout,
            output_magnitude: Vec::new(),
            pattern_bits: b.bits,
        };
        plan.bound_magnitudes(plane);
        plan
    }

    /// Bounds over the domain of the magnitude of every term behind every pre-activation
    /// (`|W|·bound + |b|` through the layers before), and the noise floors they give.
    fn bound_magnitudes(&mut self, plane: &Plane) {
        let n_targets = self.stages.len() + 1;
        let mut mags: Vec<Vec<f64>> =
            (0..n_targets).map(|t| self.target_bias(t).iter().map(|b| b.abs()).collect()).collect();
        let input: Vec<f64> =
            (0..plane.origin.len()).map(|i| plane.origin[i].abs() + plane.du[i].abs() + plane.dv[i].abs()).collect();
        let add = |mags: &mut Vec<Vec<f64>>, edges: &[Edge], m: &[f64]| {
            for e in edges {
                for (i, v) in e.map.abs_apply(m).into_iter().enumerate() {
                    mags[e.target][e.offset + i] += v;
                }
            }
        };
        add(&mut mags, &self.input_edges, &input);
        for s in 0..self.stages.len() {
            let stage = &self.stages[s];
            let out = match &stage.nonlin {
                Nonlinearity::Pwl(l) => l.output_magnitude(&mags[s]),
                Nonlinearity::Max(l) => l.output_magnitude(&mags[s]),
            };
            let noise = mags[s].iter().map(|&m| noise_floor(m)).collect();
            self.stages[s].noise = noise;
            add(&mut mags, &self.stages[s].edges, &out);
        }
        self.output_magnitude = mags.pop().unwrap_or_default();
    }
}

/// A tensor during lowering: a sum of linear maps of sources, each into a block, plus a bias.
struct Expr {
    n: usize,
    bias: Vec<f64>,
    terms: Vec<Term>,
}

/// `ops` applied to `source`'s output, placed at `offset`.
struct Term {
    source: Source,
    source_len: usize,
    ops: Vec<Op>,
    offset: usize,
    len: usize,
}

impl Expr {
    fn source(source: Source, n: usize) -> Self {
        Expr { n, bias: vec![0.0; n], terms: vec![Term { source, source_len: n, ops: Vec::new(), offset: 0, len: n }] }
    }
}

struct Builder {
    stages: Vec<Stage>,
    /// Edges with their sources, attached at the end.
    pending: Vec<(Source, Edge)>,
    bits: usize,
    /// The top-level model layer being lowered.
    layer: usize,
}

impl Builder {
    /// Lowers one layer applied to `x`.
    fn layer(&mut self, x: Expr, layer: &Layer) -> Expr {
        match &layer.kind {
            LayerKind::Flatten => x,
            LayerKind::Residual { body, shortcut, merge } => {
                let (a, b) = self.branches(x, body, shortcut);
                match merge {
                    Merge::Add => add(a, b),
                    Merge::Concat => concat(a, b),
                    Merge::Max => {
                        let n = a.n;
                        let both = concat(a, b);
                        let groups = (0..n as u32).map(|i| vec![i, n as u32 + i]).collect();
                        // Both branches side by side: twice the channels of the output.
                        let (c, p) = layout_of(layer.output);
                        self.stage(both, layer, Nonlinearity::Max(MaxLayer::new(groups)), (2 * c, p))
                    }
                }
            }
            _ if layer.is_affine() => {
                let op = Op::from_layer(layer).expect("affine layers other than flatten have a linear part");
                let mut bias = vec![0.0; layer.output.numel()];
                layer.apply(&x.bias, &mut bias);
                let n = layer.output.numel();
                let terms = x
                    .terms
                    .into_iter()
                    .map(|mut t| {
                        if t.offset != 0 || t.len != x.n {
                            t.ops.push(Op::Embed { offset: t.offset, n_in: t.len, n_out: x.n });
                        }
                        t.ops.push(op.clone());
                        Term { offset: 0, len: n, ..t }
                    })
                    .collect();
                Expr { n, bias, terms }
            }
            _ => {
                let nonlin = match layer.hinge_forms() {
                    Some((forms, slots)) => Nonlinearity::Pwl(PwlLayer::new(&forms, slots)),
                    None => Nonlinearity::Max(MaxLayer::new(layer.max_groups())),
                };
                self.stage(x, layer, nonlin, layout_of(layer.input))
            }
        }
    }

    /// Both branches of a block from the same input: the input's terms are shared by reference
    /// (the expression is rebuilt for each branch, so no state is duplicated).
    fn branches(&mut self, x: Expr, body: &[Layer], shortcut: &[Layer]) -> (Expr, Expr) {
        let copy = Expr {
            n: x.n,
            bias: x.bias.clone(),
            terms: x
                .terms
                .iter()
                .map(|t| Term {
                    source: t.source,
                    source_len: t.source_len,
                    ops: t.ops.clone(),
                    offset: t.offset,
                    len: t.len,
                })
                .collect(),
        };
        let mut a = x;
        for l in body {
            a = self.layer(a, l);
        }
        let mut b = copy;
        for l in shortcut {
            b = self.layer(b, l);
        }
        (a, b)
    }

    /// A new stage with pre-activations `x`.
    fn stage(&mut self, x: Expr, layer: &Layer, nonlin: Nonlinearity, layout: (usize, usize)) -> Expr {
        let index = self.stages.len();
        let n_in = x.n;
        let (n_out, bits) = match &nonlin {
            Nonlinearity::Pwl(l) => (n_in, l.n_slots() * n_in),
            Nonlinearity::Max(l) => (l.groups(), l.bits() * l.groups()),
        };
        let bias = x.bias.clone();
        self.connect(x, index);
        // Stages start on a word, so that a base's bits are copied into patterns word by word.
        let bit_offset = self.bits.next_multiple_of(64);
        self.stages.push(Stage {
            layer: self.layer,
            op: layer.op.clone(),
            n_in,
            layout,
            n_out,
            nonlin,
            bias,
            noise: Vec::new(),
            bit_offset,
            bits,
            edges: Vec::new(),
        });
        self.bits = bit_offset + bits;
        Expr::source(Source::Stage(index), n_out)
    }

    /// Turns the terms of `x` into edges to target `target`.
    fn connect(&mut self, x: Expr, target: usize) {
        for t in x.terms {
            let map = Affine::new(t.ops, t.source_len);
            debug_assert_eq!(map.n_out(), t.len);
            self.pending.push((t.source, Edge { target, offset: t.offset, map }));
        }
    }
}

/// `(channels, pixels)` of a shape.
fn layout_of(shape: crate::network::Shape) -> (usize, usize) {
    (shape.channels(), shape.per_channel())
}

/// `a + b` (same length).
fn add(mut a: Expr, b: Expr) -> Expr {
    debug_assert_eq!(a.n, b.n);
    a.bias.iter_mut().zip(&b.bias).for_each(|(x, y)| *x += y);
    a.terms.extend(b.terms);
    a
}

/// `a` then `b`.
fn concat(mut a: Expr, b: Expr) -> Expr {
    let n = a.n;
    a.bias.extend(b.bias);
    a.terms.extend(b.terms.into_iter().map(|t| Term { offset: t.offset + n, ..t }));
    a.n = n + b.n;
    a
}
