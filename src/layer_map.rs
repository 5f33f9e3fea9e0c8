//! The affine map of any layer's output on a region, rebuilt from the region's activation
//! pattern: the plane's three vectors are pushed through the nodes with every nonlinearity fixed
//! to the piece (or winner) the pattern records, in the stage order of the pattern layout (the
//! nonlinear nodes and max/min joins in node order). Independent of the engine: it reads only the
//! network, the plane and the pattern.

use crate::network::{Layer, LayerKind, Merge, Network, Src};
use crate::partition::AffineMap;
use crate::pattern::{LayerBits, Pattern};
use crate::slice::Plane;

/// Three vectors: `∂/∂u`, `∂/∂v`, value at `(0, 0)`.
type Rows = [Vec<f64>; 3];

struct Walk<'a> {
    layout: &'a [LayerBits],
    pattern: &'a Pattern,
    stage: usize,
}

impl Walk<'_> {
    fn bits(&mut self) -> Option<&LayerBits> {
        let b = self.layout.get(self.stage)?;
        self.stage += 1;
        Some(b)
    }

    fn max(&mut self, groups: &[Vec<u32>], x: &Rows) -> Option<Rows> {
        let b = self.bits()?;
        let width = b.bits / groups.len().max(1);
        let offset = b.offset;
        let mut y: Rows = [vec![0.0; groups.len()], vec![0.0; groups.len()], vec![0.0; groups.len()]];
        for (g, group) in groups.iter().enumerate() {
            let unit = *group.get(self.pattern.bits(offset + g * width, width) as usize)? as usize;
            for r in 0..3 {
                y[r][g] = x[r][unit];
            }
        }
        Some(y)
    }

    /// A join of `ins`: sums and concatenations directly, max and min joins by the winners the
    /// pattern records.
    fn merge(&mut self, merge: Merge, ins: &[&Rows]) -> Option<Rows> {
        let row = |r: usize| -> Vec<&[f64]> { ins.iter().map(|x| x[r].as_slice()).collect() };
        match merge {
            Merge::Add | Merge::Concat => {
                Some([Layer::merge(merge, &row(0)), Layer::merge(merge, &row(1)), Layer::merge(merge, &row(2))])
            }
            Merge::Max | Merge::Min => {
                let (k, n) = (ins.len() as u32, ins[0][0].len() as u32);
                let both: Rows = [row(0).concat(), row(1).concat(), row(2).concat()];
                let groups: Vec<Vec<u32>> = (0..n).map(|i| (0..k).map(|b| b * n + i).collect()).collect();
                self.max(&groups, &both)
            }
        }
    }

    fn layer(&mut self, l: &Layer, x: Rows) -> Option<Rows> {
        let n_out = l.output.numel();
        match &l.kind {
            LayerKind::Activation(act) => {
                let b = self.bits()?;
                let n = l.input.numel();
                let (offset, slots) = (b.offset, b.bits / n.max(1));
                let per = l.input.per_channel();
                let mut y: Rows = [vec![0.0; n], vec![0.0; n], vec![0.0; n]];
                for i in 0..n {
                    let (slope, intercept) =
                        act.hinge_form(i / per).piece(self.pattern.bits(offset + i * slots, slots));
                    y[0][i] = slope * x[0][i];
                    y[1][i] = slope * x[1][i];
                    y[2][i] = slope * x[2][i] + intercept;
                }
                Some(y)
            }
            LayerKind::MaxPool2d { .. } | LayerKind::Maxout { .. } => self.max(&l.max_groups(), &x),
            _ => {
                let mut y: Rows = [vec![0.0; n_out], vec![0.0; n_out], vec![0.0; n_out]];
                l.apply_linear(&x[0], &mut y[0]);
                l.apply_linear(&x[1], &mut y[1]);
                l.apply(&x[2], &mut y[2]);
                Some(y)
            }
        }
    }
}

/// The affine map, as a function of `plane`'s coordinates, of the output of node `layer` (or of
/// the network's output when `None`) on the region with activation pattern `pattern`, for a
/// partition whose pattern layout is `layout`.
///
/// Costs one forward pass of three vectors. `None` when `layer` is not a node index or the
/// pattern does not fit the layout.
pub fn layer_map(
    net: &Network,
    plane: &Plane,
    layout: &[LayerBits],
    pattern: &Pattern,
    layer: Option<usize>,
) -> Option<AffineMap> {
    let upto = layer.unwrap_or(net.nodes.len().saturating_sub(1));
    if upto >= net.nodes.len() && !net.nodes.is_empty() {
        return None;
    }
    let mut walk = Walk { layout, pattern, stage: 0 };
    let input: Rows = [plane.du.clone(), plane.dv.clone(), plane.origin.clone()];
    // Tensors are dropped after their last reader.
    let (_, last) = net.last_uses();
    let mut values: Vec<Option<Rows>> = Vec::with_capacity(upto + 1);
    for (i, node) in net.nodes.iter().enumerate().take(upto + 1) {
        let read = |s: &Src| match *s {
            Src::Input => &input,
            Src::Node(j) => values[j].as_ref().expect("alive until its last reader"),
        };
        let y = match &node.layer.kind {
            LayerKind::Merge(m) => {
                let ins: Vec<&Rows> = node.inputs.iter().map(read).collect();
                walk.merge(*m, &ins)?
            }
            _ => walk.layer(&node.layer, read(&node.inputs[0]).clone())?,
        };
        for s in &node.inputs {
            if let Src::Node(j) = *s {
                if last[j] == Some(i) && j != upto {
                    values[j] = None;
                }
            }
        }
        values.push(Some(y));
    }
    let [du, dv, value] = values.pop().flatten().unwrap_or(input);
    Some(AffineMap { jacobian: du.iter().zip(&dv).map(|(a, b)| [*a, *b]).collect(), offset: value })
}
