//! Affine steps between nonlinearities: how a region's affine map is carried through
//! linear, conv, batch-norm, pooling and flatten layers.
//!
//! A region's map on a 2D slice is three vectors (`∂/∂s`, `∂/∂t`, value at the origin), so an
//! affine step is applied to three vectors per region, batched over many regions into one
//! matrix product. Consecutive affine layers are composed into one dense matrix when that
//! matrix is small (every MLP, small CNNs); otherwise they are applied layer by layer, never as
//! a dense matrix.

use super::kernels;
use crate::network::Layer;

/// Largest composed matrix (entries) built for a chain of affine layers: 32 MB of f64.
const MAX_DENSE_ENTRIES: usize = 4 << 20;

/// One affine step: `y = L(x) + bias`.
pub(crate) enum AffineStep {
    /// A dense matrix, row-major (`w`, `n_out × n_in`) and transposed (`wt`, `n_in × n_out`:
    /// row `j` is column `j`, for rank-1 updates).
    Dense { w: Vec<f64>, wt: Vec<f64>, bias: Vec<f64>, n_in: usize, n_out: usize },
    /// Layers applied one after another (possibly none: the identity).
    Layers { layers: Vec<Layer>, bias: Vec<f64>, n_in: usize, n_out: usize },
}

impl AffineStep {
    /// Builds the step for a chain of affine layers consuming `n_in` features.
    pub(crate) fn new(chain: Vec<Layer>, n_in: usize) -> Self {
        let n_out = chain.last().map_or(n_in, |l| l.output.numel());
        // Bias of the whole chain: the chain applied to zero.
        let bias = crate::network::run_chain(&chain, &vec![0.0; n_in]);
        if let [single] = chain.as_slice() {
            if let crate::network::LayerKind::Linear { weight, .. } = &single.kind {
                return Self::dense(weight.clone(), bias, n_in, n_out);
            }
        }
        // Anything but the identity becomes one matrix when it is small: a single product per
        // batch, and columns for rank-1 updates.
        if !chain.is_empty() && n_in.saturating_mul(n_out) <= MAX_DENSE_ENTRIES {
            // Compose the chain's linear part column by column.
            let mut w = vec![0.0; n_out * n_in];
            let mut e = vec![0.0; n_in];
            for j in 0..n_in {
                e[j] = 1.0;
                let col = crate::network::run_chain_linear(&chain, &e);
                e[j] = 0.0;
                for (i, v) in col.into_iter().enumerate() {
                    w[i * n_in + j] = v;
                }
            }
            return Self::dense(w, bias, n_in, n_out);
        }
        AffineStep::Layers { layers: chain, bias, n_in, n_out }
    }

    fn dense(w: Vec<f64>, bias: Vec<f64>, n_in: usize, n_out: usize) -> Self {
        let mut wt = vec![0.0; n_in * n_out];
        for i in 0..n_out {
            for j in 0..n_in {
                wt[j * n_out + i] = w[i * n_in + j];
            }
        }
        AffineStep::Dense { w, wt, bias, n_in, n_out }
    }

    pub(crate) fn n_in(&self) -> usize {
        match self {
            AffineStep::Dense { n_in, .. } | AffineStep::Layers { n_in, .. } => *n_in,
        }
    }

    pub(crate) fn n_out(&self) -> usize {
        match self {
            AffineStep::Dense { n_out, .. } | AffineStep::Layers { n_out, .. } => *n_out,
        }
    }

    /// True when single-unit changes can be applied as rank-1 updates of the output map.
    pub(crate) fn has_columns(&self) -> bool {
        matches!(self, AffineStep::Dense { .. })
    }

    /// Maps `m` region maps (each `[∂s; ∂t; value]`, `3 × n_in`, contiguous) to `3 × n_out` each.
    /// The bias is added to the value rows only.
    pub(crate) fn apply_maps(&self, input: &[f64], m: usize) -> Vec<f64> {
        let (n_in, n_out) = (self.n_in(), self.n_out());
        debug_assert_eq!(input.len(), 3 * m * n_in);
        let mut out = vec![0.0; 3 * m * n_out];
        match self {
            AffineStep::Dense { w, wt, .. } => {
                let rows = 3 * m;
                if n_out < 16 {
                    // A few outputs (the final layer): dot products beat a GEMM, whose packing
                    // would copy the whole batch for a few products each.
                    for (row, o) in input.chunks_exact(n_in.max(1)).zip(out.chunks_exact_mut(n_out.max(1))) {
                        for (oj, wj) in o.iter_mut().zip(w.chunks_exact(n_in.max(1))) {
                            *oj = kernels::dot(row, wj);
                        }
                    }
                    return self.with_bias(out);
                }
                // Units that are zero in every row (dead ReLUs, which neighbouring regions of a
                // batch mostly share) contribute nothing: leave them out of the product.
                let mut active = vec![false; n_in];
                for row in input.chunks_exact(n_in.max(1)) {
                    for (a, &x) in active.iter_mut().zip(row) {
                        *a |= x != 0.0;
                    }
                }
                let idx: Vec<usize> = (0..n_in).filter(|&i| active[i]).collect();
                let k = idx.len();
                if rows > 0 && k > 0 && n_out > 0 {
                    let (a, b);
                    let (a_ref, b_ref, lda) = if 5 * k < 4 * n_in {
                        let mut ga = vec![0.0; rows * k];
                        for (dst, row) in ga.chunks_exact_mut(k).zip(input.chunks_exact(n_in)) {
                            for (d, &i) in dst.iter_mut().zip(&idx) {
                                *d = row[i];
                            }
                        }
                        let mut gb = Vec::with_capacity(k * n_out);
                        for &i in &idx {
                            gb.extend_from_slice(&wt[i * n_out..(i + 1) * n_out]);
                        }
                        (a, b) = (ga, gb);
                        (a.as_slice(), b.as_slice(), k)
                    } else {
                        (input, wt.as_slice(), n_in)
                    };
                    let kk = if lda == k { k } else { n_in };
                    // SAFETY: `a_ref` holds rows×kk, `b_ref` kk×n_out and `out` rows×n_out
                    // elements, row-major, matching the dimensions and strides passed.
                    unsafe {
                        matrixmultiply::dgemm(
                            rows,
                            kk,
                            n_out,
                            1.0,
                            a_ref.as_ptr(),
                            lda as isize,
                            1,
                            b_ref.as_ptr(),
                            n_out as isize,
                            1,
                            0.0,
                            out.as_mut_ptr(),
                            n_out as isize,
                            1,
                        );
                    }
                }
            }
            AffineStep::Layers { layers, .. } => {
                for (x, y) in input.chunks_exact(n_in.max(1)).zip(out.chunks_exact_mut(n_out.max(1))) {
                    y.copy_from_slice(&crate::network::run_chain_linear(layers, x));
                }
            }
        }
        self.with_bias(out)
    }

    /// Adds the bias to the value row of every map in `out`.
    fn with_bias(&self, mut out: Vec<f64>) -> Vec<f64> {
        let n_out = self.n_out();
        let bias = self.bias();
        for map in out.chunks_exact_mut(3 * n_out.max(1)) {
            for (v, b) in map[2 * n_out..].iter_mut().zip(bias) {
                *v += b;
            }
        }
        out
    }

    /// The chain's output at zero input.
    pub(crate) fn bias(&self) -> &[f64] {
        match self {
            AffineStep::Dense { bias, .. } | AffineStep::Layers { bias, .. } => bias,
        }
    }

    /// Adds `column(j) ⊗ coef` to an output map (`3 × n_out`): the effect on the output of
    /// adding `coef` to input unit `j`'s map. Only for [`AffineStep::Dense`].
    #[inline]
    pub(crate) fn add_column(&self, j: usize, coef: [f64; 3], map: &mut [f64]) {
        let AffineStep::Dense { wt, n_out, .. } = self else { unreachable!("add_column needs a dense step") };
        let n = *n_out;
        let col = &wt[j * n..(j + 1) * n];
        let (r0, rest) = map.split_at_mut(n);
        let (r1, r2) = rest.split_at_mut(n);
        super::kernels::axpy3(r0, r1, r2, col, coef);
    }
}

/// The layer with every parameter replaced by its absolute value: applied to magnitudes, it
/// bounds the sum of the absolute values of the terms the layer adds up.
pub(crate) fn abs_layer(layer: &Layer) -> Layer {
    use crate::network::LayerKind;
    let mut l = layer.clone();
    let abs = |v: &mut Vec<f64>| v.iter_mut().for_each(|x| *x = x.abs());
    match &mut l.kind {
        LayerKind::Linear { weight, bias } | LayerKind::Conv2d { weight, bias, .. } => {
            abs(weight);
            abs(bias);
        }
        LayerKind::BatchNorm { scale, shift } => {
            abs(scale);
            abs(shift);
        }
        LayerKind::Lift { inner, .. } => **inner = abs_layer(inner),
        _ => {}
    }
    l
}
