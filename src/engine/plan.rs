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
use crate::network::{Layer, LayerKind, Merge, Network, Src};
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
        // Each tensor's expression, alive until its last reader; a tensor read again later is
        // copied (the copy shares the sources: no state is duplicated).
        let (input_last, last) = net.last_uses();
        let mut input = Some(Expr::source(Source::Input, n_input));
        let mut values: Vec<Option<Expr>> = (0..net.nodes.len()).map(|_| None).collect();
        let mut x = Expr::source(Source::Input, n_input);
        for (index, node) in net.nodes.iter().enumerate() {
            b.layer = index;
            // The last reader takes a tensor (unless it reads it twice); others copy it.
            let mut ins = Vec::with_capacity(node.inputs.len());
            for (k, &src) in node.inputs.iter().enumerate() {
                let (slot, last_reader) = match src {
                    Src::Input => (&mut input, input_last),
                    Src::Node(j) => (&mut values[j], last[j]),
                };
                let alive = "a tensor is alive until its last reader";
                ins.push(if last_reader == Some(index) && !node.inputs[k + 1..].contains(&src) {
                    slot.take().expect(alive)
                } else {
                    slot.as_ref().expect(alive).copy()
                });
            }
            let y = match &node.layer.kind {
                LayerKind::Merge(m) => b.merge(*m, ins, &node.layer),
                _ => b.layer(ins.pop().expect("one input"), &node.layer),
            };
            if index + 1 == net.nodes.len() {
                x = y;
            } else {
                values[index] = Some(y);
            }
        }
        if net.nodes.is_empty() {
            x = input.take().expect("the input is alive");
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
        // The 1D path engine (`line`) writes patterns in the network's own layout.
        debug_assert_eq!(plan.layout(), net.pattern_layout(), "the plan's pattern layout is the network's");
        plan
    }

    /// Bounds over the domain of the magnitude of every term behind every pre-activation, and
    /// the noise floors they give.
    ///
    /// Two bounds, the smaller one used: `|W|·bound + |b|` propagated through every layer before
    /// (rigorous, but it grows like the product of the layers' absolute norms, so on deep
    /// networks it exceeds the real values by many orders of magnitude and the noise floor would
    /// swallow them: every unit "on its line"), and the magnitudes of one layer's own terms,
    /// `|W|·V + |b|`, with `V` twice the largest value each source takes at a 9 × 9 grid of the
    /// domain, times one plus the number of stages before (each layer adds its own rounding to
    /// what it inherits, and inherited errors travel through the weights as the values do).
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
        let (v_input, v_stage) = self.sampled_values(plane);
        let mut own: Vec<Vec<f64>> =
            (0..n_targets).map(|t| self.target_bias(t).iter().map(|b| b.abs()).collect()).collect();
        add(&mut mags, &self.input_edges, &input);
        add(&mut own, &self.input_edges, &v_input);
        for s in 0..self.stages.len() {
            let stage = &self.stages[s];
            let out = match &stage.nonlin {
                Nonlinearity::Pwl(l) => l.output_magnitude(&mags[s]),
                Nonlinearity::Max(l) => l.output_magnitude(&mags[s]),
            };
            let depth = (s + 1) as f64;
            let noise = mags[s].iter().zip(&own[s]).map(|(&m, &o)| noise_floor(m.min(depth * o))).collect();
            self.stages[s].noise = noise;
            add(&mut mags, &self.stages[s].edges, &out);
            add(&mut own, &self.stages[s].edges, &v_stage[s]);
        }
        // The outputs' magnitude only scales the comparison of maps with a forward pass (it
        // makes no decision): the rigorous bound, which also covers errors inherited from
        // layers whose values are far larger than the outputs (a deep zoom).
        self.output_magnitude = mags.pop().unwrap_or_default();
    }

    /// Twice the largest absolute value of every input entry and every stage output over a
    /// 9 × 9 grid of the (normalised) domain, by a plain evaluation of the plan.
    ///
    /// One grid column at a time: on image models all 81 rows at once made this evaluation
    /// most of the plan's cost (a 0.4 s start on a ResNet-8, half of it page faults of the
    /// convolution buffers); nine rows keep those buffers small. (Columns in parallel were no
    /// faster end to end and raised the peak memory.) Maxima do not depend on the order they
    /// are taken in.
    fn sampled_values(&self, plane: &Plane) -> (Vec<f64>, Vec<Vec<f64>>) {
        const GRID: usize = 9;
        let max_into = |mut a: Vec<f64>, b: Vec<f64>| {
            a.iter_mut().zip(b).for_each(|(x, y)| *x = x.max(y));
            a
        };
        (0..GRID)
            .map(|i| self.sampled_column(plane, i, GRID))
            .reduce(|(ia, sa), (ib, sb)| {
                (max_into(ia, ib), sa.into_iter().zip(sb).map(|(a, b)| max_into(a, b)).collect())
            })
            .expect("the grid has columns")
    }

    /// [`Plan::sampled_values`] over column `i` of the `grid × grid` sample points.
    fn sampled_column(&self, plane: &Plane, i: usize, grid: usize) -> (Vec<f64>, Vec<Vec<f64>>) {
        let rows = grid;
        let n = plane.origin.len();
        let mut x = Vec::with_capacity(rows * n);
        for j in 0..grid {
            let (s, t) = (-1.0 + 2.0 * i as f64 / (grid - 1) as f64, -1.0 + 2.0 * j as f64 / (grid - 1) as f64);
            x.extend((0..n).map(|k| plane.origin[k] + s * plane.du[k] + t * plane.dv[k]));
        }
        // Pre-activations of every target, rows × units, starting from the biases.
        let mut pre: Vec<Vec<f64>> = (0..=self.stages.len())
            .map(|t| {
                let b = self.target_bias(t);
                (0..rows).flat_map(|_| b.iter().copied()).collect()
            })
            .collect();
        let push = |pre: &mut Vec<Vec<f64>>, edges: &[Edge], src: &[f64], plan: &Plan| {
            for e in edges {
                let y = e.map.apply_rows(src, rows);
                let (len, width) = (e.map.n_out(), plan.target_len(e.target));
                for r in 0..rows {
                    let dst = &mut pre[e.target][r * width + e.offset..r * width + e.offset + len];
                    dst.iter_mut().zip(&y[r * len..(r + 1) * len]).for_each(|(d, v)| *d += v);
                }
            }
        };
        let peak = |v: &[f64], width: usize| -> Vec<f64> {
            let mut m = vec![0.0f64; width];
            for row in v.chunks_exact(width.max(1)) {
                m.iter_mut().zip(row).for_each(|(a, b)| *a = a.max(2.0 * b.abs()));
            }
            m
        };
        push(&mut pre, &self.input_edges, &x, self);
        let v_input = peak(&x, n);
        let mut v_stage = Vec::with_capacity(self.stages.len());
        for s in 0..self.stages.len() {
            let stage = &self.stages[s];
            let z = std::mem::take(&mut pre[s]);
            let out: Vec<f64> = match &stage.nonlin {
                Nonlinearity::Pwl(l) => z.chunks_exact(stage.n_in.max(1)).flat_map(|r| l.eval(r)).collect(),
                Nonlinearity::Max(l) => z
                    .chunks_exact(stage.n_in.max(1))
                    .flat_map(|r| {
                        (0..l.groups())
                            .map(|g| l.group(g).iter().map(|&u| r[u as usize]).fold(f64::NEG_INFINITY, f64::max))
                            .collect::<Vec<_>>()
                    })
                    .collect(),
            };
            push(&mut pre, &stage.edges, &out, self);
            v_stage.push(peak(&out, stage.n_out));
        }
        (v_input, v_stage)
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

    /// The same expression for a second reader (terms name their sources; nothing is applied).
    fn copy(&self) -> Self {
        Expr {
            n: self.n,
            bias: self.bias.clone(),
            terms: self
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
        }
    }

    /// `op(self) + bias` (the bias already mapped through the op's affine layer).
    fn then(self, op: Op, bias: Vec<f64>) -> Self {
        let n = op.n_out();
        let n_in = self.n;
        let terms = self
            .terms
            .into_iter()
            .map(|mut t| {
                if t.offset != 0 || t.len != n_in {
                    t.ops.push(Op::Embed { offset: t.offset, n_in: t.len, n_out: n_in });
                }
                t.ops.push(op.clone());
                Term { offset: 0, len: n, ..t }
            })
            .collect();
        Expr { n, bias, terms }
    }

    /// `sign · self` (identity for `sign = 1`).
    fn scaled(self, sign: f64) -> Self {
        if sign == 1.0 {
            return self;
        }
        let n = self.n;
        let bias = self.bias.iter().map(|b| sign * b).collect();
        self.then(Op::Scale { scale: vec![sign; n], per: 1 }, bias)
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
    /// Lowers one single-input layer applied to `x`.
    fn layer(&mut self, x: Expr, layer: &Layer) -> Expr {
        match &layer.kind {
            LayerKind::Reshape => x,
            _ if layer.is_affine() => {
                let op = Op::from_layer(layer).expect("affine layers other than reshape have a linear part");
                let mut bias = vec![0.0; layer.output.numel()];
                layer.apply(&x.bias, &mut bias);
                x.then(op, bias)
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

    /// Lowers a join of `inputs`.
    fn merge(&mut self, merge: Merge, inputs: Vec<Expr>, layer: &Layer) -> Expr {
        match merge {
            Merge::Add => inputs.into_iter().reduce(add).expect("joins have inputs"),
            Merge::Concat => inputs.into_iter().reduce(concat).expect("joins have inputs"),
            Merge::Max | Merge::Min => {
                // A max stage over the inputs side by side (min(a, b) = −max(−a, −b): the same
                // winners, ties to the first input).
                let k = inputs.len();
                let n = inputs[0].n;
                let sign = if merge == Merge::Min { -1.0 } else { 1.0 };
                let all = inputs.into_iter().map(|e| e.scaled(sign)).reduce(concat).expect("joins have inputs");
                let groups = (0..n as u32).map(|i| (0..k as u32).map(|b| b * n as u32 + i).collect()).collect();
                let (c, p) = layout_of(layer.output);
                self.stage(all, layer, Nonlinearity::Max(MaxLayer::new(groups)), (k * c, p)).scaled(sign)
            }
        }
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
