//! The affine map of a layer's output on a region, rebuilt from the region's activation
//! pattern: the plane's three vectors are pushed through the layers with every nonlinearity
//! fixed to the piece (or winner) the pattern records. Networks with two-branch blocks are not
//! supported yet (their nonlinearities share one model-layer index in the pattern layout).

use crate::network::{LayerKind, Network};
use crate::partition::AffineMap;
use crate::pattern::LayerBits;
use crate::pattern::Pattern;
use crate::slice::Plane;

/// The affine map `(u, v) ↦ output of layer `layer`` on the region with activation pattern
/// `pattern`, for a partition of `plane` whose pattern layout is `layout`.
///
/// Costs one forward pass of three vectors through the layers up to `layer`. Returns `None`
/// when `layer` is not a layer index, or when the network has two-branch blocks.
pub fn layer_map(
    net: &Network,
    plane: &Plane,
    layout: &[LayerBits],
    pattern: &Pattern,
    layer: usize,
) -> Option<AffineMap> {
    if layer >= net.layers.len() || net.has_residual() {
        return None;
    }
    // Three vectors: ∂/∂u, ∂/∂v and the value at (0, 0).
    let mut maps = [plane.du.clone(), plane.dv.clone(), plane.origin.clone()];
    for (index, l) in net.layers.iter().enumerate().take(layer + 1) {
        let n_out = l.output.numel();
        let mut next = [vec![0.0; n_out], vec![0.0; n_out], vec![0.0; n_out]];
        match &l.kind {
            LayerKind::Activation(act) => {
                let bits = layout.iter().find(|b| b.layer == index)?;
                let n = l.input.numel();
                let slots = bits.bits / n.max(1);
                let per = l.input.per_channel();
                for i in 0..n {
                    let f = act.hinge_form(i / per);
                    let (mut slope, mut intercept) = (f.slope0, f.intercept0);
                    for (j, &(bp, da)) in f.hinges().iter().enumerate() {
                        if pattern.bit(bits.offset + i * slots + j) {
                            slope += da;
                            intercept -= da * bp;
                        }
                    }
                    next[0][i] = slope * maps[0][i];
                    next[1][i] = slope * maps[1][i];
                    next[2][i] = slope * maps[2][i] + intercept;
                }
            }
            LayerKind::MaxPool2d { .. } | LayerKind::Maxout { .. } => {
                let bits = layout.iter().find(|b| b.layer == index)?;
                let groups = l.max_groups();
                let width = bits.bits / groups.len().max(1);
                for (g, group) in groups.iter().enumerate() {
                    let pos =
                        (0..width).filter(|&k| pattern.bit(bits.offset + g * width + k)).fold(0, |a, k| a | (1 << k));
                    let unit = *group.get(pos)? as usize;
                    for r in 0..3 {
                        next[r][g] = maps[r][unit];
                    }
                }
            }
            _ => {
                l.apply_linear(&maps[0], &mut next[0]);
                l.apply_linear(&maps[1], &mut next[1]);
                l.apply(&maps[2], &mut next[2]);
            }
        }
        maps = next;
    }
    let [du, dv, value] = maps;
    Some(AffineMap { jacobian: du.iter().zip(&dv).map(|(a, b)| [*a, *b]).collect(), offset: value })
}
