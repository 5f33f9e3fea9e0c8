//! The affine map of any layer's output on a region, rebuilt from the region's activation
//! pattern: the plane's three vectors are pushed through the layers with every nonlinearity fixed
//! to the piece (or winner) the pattern records, in the stage order of the pattern layout (a
//! block's main branch, then its shortcut, then a max merge). Independent of the engine: it reads
//! only the network, the plane and the pattern.

use crate::network::{Layer, LayerKind, Merge, Network};
use crate::partition::AffineMap;
use crate::pattern::{LayerBits, Pattern};
use crate::slice::Plane;

/// Three vectors: `∂/∂u`, `∂/∂v`, value at `(0, 0)`.
type Rows = [Vec<f64>; 3];

/// How two branches' vectors combine.
type Combine = dyn Fn(&[f64], &[f64]) -> Vec<f64>;

struct Walk<'a> {
    layout: &'a [LayerBits],
    pattern: &'a Pattern,
    stage: usize,
}

impl Walk<'_> {
    fn run(&mut self, layers: &[Layer], mut x: Rows) -> Option<Rows> {
        for l in layers {
            x = self.layer(l, x)?;
        }
        Some(x)
    }

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
                    let f = act.hinge_form(i / per);
                    let (mut slope, mut intercept) = (f.slope0, f.intercept0);
                    for (j, &(bp, da)) in f.hinges().iter().enumerate() {
                        if self.pattern.bit(offset + i * slots + j) {
                            slope += da;
                            intercept -= da * bp;
                        }
                    }
                    y[0][i] = slope * x[0][i];
                    y[1][i] = slope * x[1][i];
                    y[2][i] = slope * x[2][i] + intercept;
                }
                Some(y)
            }
            LayerKind::MaxPool2d { .. } | LayerKind::Maxout { .. } => self.max(&l.max_groups(), &x),
            LayerKind::Residual { body, shortcut, merge } => {
                let a = self.run(body, x.clone())?;
                let b = self.run(shortcut, x)?;
                let join = |f: &Combine| -> Rows { [f(&a[0], &b[0]), f(&a[1], &b[1]), f(&a[2], &b[2])] };
                match merge {
                    Merge::Add => Some(join(&|p, q| p.iter().zip(q).map(|(s, t)| s + t).collect())),
                    Merge::Concat => Some(join(&|p, q| [p, q].concat())),
                    Merge::Max => {
                        let n = a[0].len() as u32;
                        let both = join(&|p, q| [p, q].concat());
                        let groups: Vec<Vec<u32>> = (0..n).map(|i| vec![i, n + i]).collect();
                        self.max(&groups, &both)
                    }
                }
            }
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

/// The affine map, as a function of `plane`'s coordinates, of the output of top-level layer
/// `layer` (or of the network's output when `None`) on the region with activation pattern
/// `pattern`, for a partition whose pattern layout is `layout`.
///
/// Costs one forward pass of three vectors. `None` when `layer` is not a layer index or the
/// pattern does not fit the layout.
pub fn layer_map(
    net: &Network,
    plane: &Plane,
    layout: &[LayerBits],
    pattern: &Pattern,
    layer: Option<usize>,
) -> Option<AffineMap> {
    let upto = layer.unwrap_or(net.layers.len().saturating_sub(1));
    if upto >= net.layers.len() && !net.layers.is_empty() {
        return None;
    }
    let mut walk = Walk { layout, pattern, stage: 0 };
    let mut x: Rows = [plane.du.clone(), plane.dv.clone(), plane.origin.clone()];
    for l in net.layers.iter().take(upto + 1) {
        x = walk.layer(l, x)?;
    }
    let [du, dv, value] = x;
    Some(AffineMap { jacobian: du.iter().zip(&dv).map(|(a, b)| [*a, *b]).collect(), offset: value })
}
