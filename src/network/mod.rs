//! The network model: a validated sequence of layers with known shapes, and a plain forward
//! pass that serves as the independent reference for every partition.
//!
//! Loaders (`json`) build a [`Network`]; the engine lowers it further (see `crate::engine`).
//! Everything here is f64; f32 weights from PyTorch are represented exactly.

pub mod json;
pub mod onnx;
mod onnx_proto;
pub mod random;

use std::fmt;

/// Shape of the tensor flowing between layers (batch dimension excluded).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// A flat feature vector of this length.
    Flat(usize),
    /// An image in PyTorch's channel-major layout (C, H, W), flattened row-major.
    Image {
        /// Channels.
        c: usize,
        /// Height.
        h: usize,
        /// Width.
        w: usize,
    },
}

impl Shape {
    /// Number of scalar entries, or `None` when it overflows.
    pub fn checked_numel(&self) -> Option<usize> {
        match *self {
            Shape::Flat(n) => Some(n),
            Shape::Image { c, h, w } => c.checked_mul(h)?.checked_mul(w),
        }
    }

    /// Number of scalar entries (shapes from the loaders never overflow: see `MAX_ELEMENTS`).
    pub fn numel(&self) -> usize {
        match *self {
            Shape::Flat(n) => n,
            Shape::Image { c, h, w } => c * h * w,
        }
    }

    /// Number of channels in PyTorch's sense (dimension 1 of an `[N, ...]` tensor).
    pub fn channels(&self) -> usize {
        match *self {
            Shape::Flat(n) => n,
            Shape::Image { c, .. } => c,
        }
    }

    /// Entries per channel (1 for flat vectors).
    pub fn per_channel(&self) -> usize {
        match *self {
            Shape::Flat(_) => 1,
            Shape::Image { h, w, .. } => h * w,
        }
    }

    /// The shape as a list of dimensions.
    pub fn dims(&self) -> Vec<usize> {
        match *self {
            Shape::Flat(n) => vec![n],
            Shape::Image { c, h, w } => vec![c, h, w],
        }
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Shape::Flat(n) => write!(f, "[{n}]"),
            Shape::Image { c, h, w } => write!(f, "[{c}, {h}, {w}]"),
        }
    }
}

/// Largest tensor (entries per input) the loaders accept between layers: 2^24. A region's map
/// holds three such vectors (for two-branch blocks, of the state of both branches, also bounded by
/// this limit), so this bounds the memory of one region's map at 384 MiB.
pub const MAX_ELEMENTS: usize = 1 << 24;

/// Largest number of multiply-adds one application of a layer may take (2^32): bounds the work
/// of loading a model and of every batched product before any of it is done.
pub const MAX_LAYER_WORK: u64 = 1 << 32;

/// Largest number of candidate entries of a max-pooling layer (outputs × window taps): 2^26.
/// The engine keeps every group's candidate list.
pub const MAX_POOL_ENTRIES: u64 = 1 << 26;

/// Largest number of multiply-adds of all layers of a model together (2^34).
pub const MAX_MODEL_WORK: u64 = 1 << 34;

/// Largest number of entries alive at once across the tensors a model keeps for later (the
/// inputs of enclosing two-branch blocks, waiting for their merge): 2^26.
pub const MAX_LIVE_ELEMENTS: usize = 1 << 26;

/// Geometry of a 2D window operation (convolution or pooling).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// Kernel size (height, width).
    pub kernel: [usize; 2],
    /// Stride (height, width).
    pub stride: [usize; 2],
    /// Zero (or -inf for max pooling) padding on each side (height, width).
    pub padding: [usize; 2],
    /// Dilation (height, width).
    pub dilation: [usize; 2],
}

impl Window {
    /// Output spatial size for an input of `(h, w)`, or `None` when the window does not fit.
    /// Arithmetic is checked: absurd sizes give `None`, never an overflow.
    pub fn output_size(&self, h: usize, w: usize) -> Option<(usize, usize)> {
        let dim = |n: usize, i: usize| -> Option<usize> {
            let span = self.dilation[i].checked_mul(self.kernel[i].checked_sub(1)?)?.checked_add(1)?;
            let padded = n.checked_add(self.padding[i].checked_mul(2)?)?;
            if padded < span || self.stride[i] == 0 {
                None
            } else {
                Some((padded - span) / self.stride[i] + 1)
            }
        };
        Some((dim(h, 0)?, dim(w, 1)?))
    }

    /// The kernel taps along axis `i` of output position `o` that fall inside an input of
    /// length `n`: `(k, input coordinate)`. Only the taps inside are visited, so the work is
    /// bounded by the input size whatever the kernel size.
    fn axis_taps(&self, o: usize, i: usize, n: usize) -> impl Iterator<Item = (usize, usize)> {
        let (s, d, p) = (self.stride[i] as i128, self.dilation[i] as i128, self.padding[i] as i128);
        let start = o as i128 * s - p; // input coordinate of tap 0
                                       // Taps k with 0 <= start + k·d < n.
        let lo = if start >= 0 { 0 } else { (-start + d - 1) / d };
        let hi = ((n as i128 - 1 - start).div_euclid(d) + 1).clamp(0, self.kernel[i] as i128);
        (lo..hi.max(lo)).map(move |k| (k as usize, (start + k * d) as usize))
    }

    /// The kernel taps of output position `(oy, ox)` that fall inside an `h × w` input:
    /// `(ky, kx, iy, ix)` in row-major kernel order.
    /// Whether some output's window along axis `i` (input size `n`, `outputs` outputs) holds no
    /// input at all (lies entirely in the padding).
    pub(crate) fn has_empty_window(&self, i: usize, n: usize, outputs: usize) -> bool {
        (0..outputs).any(|o| self.axis_taps(o, i, n).next().is_none())
    }

    pub fn taps(
        &self,
        oy: usize,
        ox: usize,
        h: usize,
        w: usize,
    ) -> impl Iterator<Item = (usize, usize, usize, usize)> + '_ {
        self.axis_taps(oy, 0, h)
            .flat_map(move |(ky, iy)| self.axis_taps(ox, 1, w).map(move |(kx, ix)| (ky, kx, iy, ix)))
    }

    /// The output position along axis `i` (of `n_out`) whose kernel tap `k` reads input
    /// coordinate `x`, if any.
    #[inline]
    pub fn output_of(&self, x: usize, k: usize, i: usize, n_out: usize) -> Option<usize> {
        let num = (x + self.padding[i]).checked_sub(k * self.dilation[i])?;
        (num % self.stride[i] == 0 && num / self.stride[i] < n_out).then_some(num / self.stride[i])
    }
}

/// A continuous piecewise-linear scalar function applied to every unit of a layer.
#[derive(Clone, Debug, PartialEq)]
pub enum Activation {
    /// `max(0, x)`.
    Relu,
    /// `x` for `x >= 0`, `slope·x` otherwise.
    LeakyRelu {
        /// Slope on the negative side.
        slope: f64,
    },
    /// Leaky ReLU with a learned slope per channel (one value shared when of length 1).
    PRelu {
        /// Slopes, one per channel or a single shared one.
        slopes: Vec<f64>,
    },
    /// `|x|`.
    Abs,
    /// `min(max(x, min), max)`; ReLU6 is `HardTanh { min: 0, max: 6 }`.
    HardTanh {
        /// Lower clamp.
        min: f64,
        /// Upper clamp.
        max: f64,
    },
}

/// One unit's activation written as a left affine piece plus hinges: `σ(z) = a₀·z + β₀ +
/// Σⱼ Δaⱼ·max(0, z − bⱼ)`. Breakpoints are strictly increasing; hinges with `Δa = 0` never
/// appear (a breakpoint where the function does not bend is not a region boundary).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HingeForm {
    /// Slope of the leftmost piece.
    pub slope0: f64,
    /// Intercept of the leftmost piece.
    pub intercept0: f64,
    /// Up to two `(breakpoint, slope change)` pairs.
    pub hinges: [(f64, f64); 2],
    /// How many entries of `hinges` are used.
    pub n_hinges: usize,
}

impl HingeForm {
    pub(crate) fn new(slope0: f64, intercept0: f64, hinges: &[(f64, f64)]) -> Self {
        let mut out = HingeForm { slope0, intercept0, hinges: [(0.0, 0.0); 2], n_hinges: 0 };
        for &(b, da) in hinges {
            if da != 0.0 {
                out.hinges[out.n_hinges] = (b, da);
                out.n_hinges += 1;
            }
        }
        out
    }

    /// The used hinges.
    pub fn hinges(&self) -> &[(f64, f64)] {
        &self.hinges[..self.n_hinges]
    }
}

impl Activation {
    /// Number of hinge slots each unit gets in an activation pattern.
    pub fn hinge_slots(&self) -> usize {
        match self {
            Activation::HardTanh { .. } => 2,
            _ => 1,
        }
    }

    /// Hinge form of the function at unit channel `channel`.
    pub fn hinge_form(&self, channel: usize) -> HingeForm {
        match *self {
            Activation::Relu => HingeForm::new(0.0, 0.0, &[(0.0, 1.0)]),
            Activation::LeakyRelu { slope } => HingeForm::new(slope, 0.0, &[(0.0, 1.0 - slope)]),
            Activation::PRelu { ref slopes } => {
                let a = if slopes.len() == 1 { slopes[0] } else { slopes[channel] };
                HingeForm::new(a, 0.0, &[(0.0, 1.0 - a)])
            }
            Activation::Abs => HingeForm::new(-1.0, 0.0, &[(0.0, 2.0)]),
            Activation::HardTanh { min, max } => HingeForm::new(0.0, min, &[(min, 1.0), (max, -1.0)]),
        }
    }

    /// Plain evaluation, written independently of the hinge form.
    pub fn eval(&self, z: f64, channel: usize) -> f64 {
        match *self {
            Activation::Relu => z.max(0.0),
            Activation::LeakyRelu { slope } => {
                if z >= 0.0 {
                    z
                } else {
                    slope * z
                }
            }
            Activation::PRelu { ref slopes } => {
                let a = if slopes.len() == 1 { slopes[0] } else { slopes[channel] };
                if z >= 0.0 {
                    z
                } else {
                    a * z
                }
            }
            Activation::Abs => z.abs(),
            Activation::HardTanh { min, max } => z.clamp(min, max),
        }
    }
}

/// What a layer computes.
#[derive(Clone, Debug, PartialEq)]
pub enum LayerKind {
    /// `y = W x + b`, `weight` row-major `out × in`.
    Linear {
        /// Weights, `out × in`, row-major.
        weight: Vec<f64>,
        /// Bias of length `out` (zeros when the model had none).
        bias: Vec<f64>,
    },
    /// 2D convolution in PyTorch's layout: weight `[out_c, in_c / groups, kh, kw]`.
    Conv2d {
        /// Weights, row-major `[out_c, in_c/groups, kh, kw]`.
        weight: Vec<f64>,
        /// Bias of length `out_c`.
        bias: Vec<f64>,
        /// Kernel, stride, padding, dilation.
        window: Window,
        /// Channel groups.
        groups: usize,
    },
    /// Batch normalisation in evaluation mode, folded to `y = scale·x + shift` per channel.
    BatchNorm {
        /// Per-channel multiplier `weight / sqrt(running_var + eps)`.
        scale: Vec<f64>,
        /// Per-channel offset `bias − running_mean·scale`.
        shift: Vec<f64>,
    },
    /// Average pooling (zero padding counted in the divisor, as PyTorch's default).
    AvgPool2d {
        /// Kernel, stride, padding (dilation 1).
        window: Window,
    },
    /// Reshape an image to a flat vector (row-major, as `torch.flatten(x, 1)`).
    Flatten,
    /// Elementwise piecewise-linear activation.
    Activation(Activation),
    /// Max pooling; padded positions never win.
    MaxPool2d {
        /// Kernel, stride, padding, dilation.
        window: Window,
    },
    /// Max over consecutive groups of `pool` features (`x.view(n, out, pool).max(-1)`).
    Maxout {
        /// Group size.
        pool: usize,
    },
    /// Two branches from one input, merged: `body(x) + shortcut(x)` (a residual block),
    /// `concat(body(x), shortcut(x))` along channels, or their elementwise maximum. An empty
    /// chain is the identity.
    Residual {
        /// The first (main) branch.
        body: Vec<Layer>,
        /// The second (skip) branch.
        shortcut: Vec<Layer>,
        /// How the branches are merged.
        merge: Merge,
    },
}

/// How the two branches of a block are merged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Merge {
    /// `a + b`.
    Add,
    /// `a` then `b` (channels of `a`, then channels of `b`).
    Concat,
    /// Elementwise `max(a, b)`; ties go to `a`.
    Max,
}

/// A layer with its input and output shapes and where it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Layer {
    /// What the layer computes.
    pub kind: LayerKind,
    /// Shape consumed.
    pub input: Shape,
    /// Shape produced.
    pub output: Shape,
    /// The op name in the source file (e.g. `"relu6"`, `"linear"`).
    pub op: String,
}

impl Layer {
    /// True for layers that never split regions (affine maps).
    pub fn is_affine(&self) -> bool {
        match &self.kind {
            LayerKind::Linear { .. }
            | LayerKind::Conv2d { .. }
            | LayerKind::BatchNorm { .. }
            | LayerKind::AvgPool2d { .. }
            | LayerKind::Flatten => true,
            LayerKind::Residual { body, shortcut, merge } => {
                *merge != Merge::Max && body.iter().chain(shortcut).all(Layer::is_affine)
            }
            _ => false,
        }
    }

    /// For elementwise layers: each unit's hinge form and the hinge slots per unit. `None` for
    /// other layers.
    pub fn hinge_forms(&self) -> Option<(Vec<HingeForm>, usize)> {
        match &self.kind {
            LayerKind::Activation(act) => {
                let per = self.input.per_channel();
                Some(((0..self.input.numel()).map(|i| act.hinge_form(i / per)).collect(), act.hinge_slots()))
            }
            _ => None,
        }
    }

    /// Number of trainable-style parameters (weights and biases; batch-norm counts 4 per channel).
    pub fn parameter_count(&self) -> usize {
        match &self.kind {
            LayerKind::Linear { weight, bias } | LayerKind::Conv2d { weight, bias, .. } => weight.len() + bias.len(),
            LayerKind::BatchNorm { scale, .. } => 4 * scale.len(),
            LayerKind::Activation(Activation::PRelu { slopes }) => slopes.len(),
            LayerKind::Residual { body, shortcut, .. } => body.iter().chain(shortcut).map(Layer::parameter_count).sum(),
            _ => 0,
        }
    }

    /// An upper bound on the multiply-adds of one application of the layer (kernel or window
    /// taps times outputs), or `None` when it overflows: validation bounds the work with it.
    pub fn work(&self) -> Option<u64> {
        let out = self.output.numel() as u64;
        match &self.kind {
            LayerKind::Linear { .. } => out.checked_mul(self.input.numel() as u64),
            LayerKind::Conv2d { window, groups, .. } => {
                let icg = (self.input.channels() / (*groups).max(1)) as u64;
                out.checked_mul(icg)?.checked_mul(window.kernel[0] as u64)?.checked_mul(window.kernel[1] as u64)
            }
            LayerKind::AvgPool2d { window } | LayerKind::MaxPool2d { window } => {
                out.checked_mul(window.kernel[0] as u64)?.checked_mul(window.kernel[1] as u64)
            }
            LayerKind::Maxout { pool } => out.checked_mul(*pool as u64),
            LayerKind::Residual { body, shortcut, .. } => {
                body.iter().chain(shortcut).try_fold(out, |acc, l| acc.checked_add(l.work()?))
            }
            _ => Some(out.max(self.input.numel() as u64)),
        }
    }

    /// The largest number of entries alive at once while the layer runs: its input and output,
    /// and inside a two-branch block the block's input, kept for the second branch and the merge,
    /// plus what the branches keep.
    pub fn live_entries(&self) -> usize {
        let own = self.input.numel().saturating_add(self.output.numel());
        match &self.kind {
            LayerKind::Residual { body, shortcut, .. } => {
                let inner = body.iter().chain(shortcut).map(Layer::live_entries).max().unwrap_or(0);
                own.max(self.input.numel().saturating_add(inner))
            }
            _ => own,
        }
    }

    /// Piecewise-linear units of the layer (its outputs for a nonlinear layer, recursively for
    /// residual blocks).
    pub fn pwl_unit_count(&self) -> usize {
        match &self.kind {
            LayerKind::Residual { body, shortcut, merge } => {
                let units: usize = body.iter().chain(shortcut).map(Layer::pwl_unit_count).sum();
                units + if *merge == Merge::Max { self.output.numel() } else { 0 }
            }
            _ if self.is_affine() => 0,
            _ => self.output.numel(),
        }
    }

    /// Applies the layer's *linear part* (no bias) to `x`, adding into `y` (same as `apply`
    /// minus `apply` of the zero vector). Only for affine layers.
    pub fn apply_linear(&self, x: &[f64], y: &mut [f64]) {
        self.apply_affine(x, y, false);
    }

    /// Applies the layer to `x`, writing `y` (biases included).
    pub fn apply(&self, x: &[f64], y: &mut [f64]) {
        if let LayerKind::Residual { body, shortcut, merge } = &self.kind {
            let (b, s) = (run_chain(body, x), run_chain(shortcut, x));
            match merge {
                Merge::Add => y.iter_mut().zip(b.iter().zip(&s)).for_each(|(yi, (bi, si))| *yi = bi + si),
                Merge::Max => y.iter_mut().zip(b.iter().zip(&s)).for_each(|(yi, (bi, si))| *yi = bi.max(*si)),
                Merge::Concat => {
                    y[..b.len()].copy_from_slice(&b);
                    y[b.len()..].copy_from_slice(&s);
                }
            }
        } else if self.is_affine() {
            self.apply_affine(x, y, true);
        } else {
            self.apply_nonlinear(x, y);
        }
    }

    fn apply_affine(&self, x: &[f64], y: &mut [f64], with_bias: bool) {
        debug_assert_eq!(x.len(), self.input.numel());
        debug_assert_eq!(y.len(), self.output.numel());
        match &self.kind {
            LayerKind::Linear { weight, bias } => {
                let n_in = x.len();
                for (o, yo) in y.iter_mut().enumerate() {
                    let row = &weight[o * n_in..(o + 1) * n_in];
                    let dot: f64 = row.iter().zip(x).map(|(w, v)| w * v).sum();
                    *yo = dot + if with_bias { bias[o] } else { 0.0 };
                }
            }
            LayerKind::Conv2d { weight, bias, window, groups } => {
                let (Shape::Image { c: ic, h, w }, Shape::Image { c: oc, h: oh, w: ow }) = (self.input, self.output)
                else {
                    unreachable!("conv2d shapes are validated as images")
                };
                let icg = ic / groups;
                let ocg = oc / groups;
                let [kh, kw] = window.kernel;
                for o in 0..oc {
                    let g = o / ocg;
                    let b = if with_bias { bias[o] } else { 0.0 };
                    for oy in 0..oh {
                        for ox in 0..ow {
                            let mut acc = b;
                            for ci in 0..icg {
                                let cin = g * icg + ci;
                                for (ky, kx, iy, ix) in window.taps(oy, ox, h, w) {
                                    let wv = weight[((o * icg + ci) * kh + ky) * kw + kx];
                                    acc += wv * x[(cin * h + iy) * w + ix];
                                }
                            }
                            y[(o * oh + oy) * ow + ox] = acc;
                        }
                    }
                }
            }
            LayerKind::BatchNorm { scale, shift } => {
                let per = self.input.per_channel();
                for (i, (yi, xi)) in y.iter_mut().zip(x).enumerate() {
                    let c = i / per;
                    *yi = scale[c] * xi + if with_bias { shift[c] } else { 0.0 };
                }
            }
            LayerKind::AvgPool2d { window } => {
                let (Shape::Image { c, h, w }, Shape::Image { h: oh, w: ow, .. }) = (self.input, self.output) else {
                    unreachable!("avg_pool2d shapes are validated as images")
                };
                let [kh, kw] = window.kernel;
                let inv = 1.0 / (kh * kw) as f64;
                for ch in 0..c {
                    for oy in 0..oh {
                        for ox in 0..ow {
                            let mut acc = 0.0;
                            for (_, _, iy, ix) in window.taps(oy, ox, h, w) {
                                acc += x[(ch * h + iy) * w + ix];
                            }
                            y[(ch * oh + oy) * ow + ox] = acc * inv;
                        }
                    }
                }
            }
            LayerKind::Flatten => y.copy_from_slice(x),
            _ => unreachable!("apply_affine on a nonlinear layer"),
        }
    }

    fn apply_nonlinear(&self, x: &[f64], y: &mut [f64]) {
        match &self.kind {
            LayerKind::Activation(act) => {
                let per = self.input.per_channel();
                for (i, (yi, &xi)) in y.iter_mut().zip(x).enumerate() {
                    *yi = act.eval(xi, i / per);
                }
            }
            LayerKind::MaxPool2d { .. } | LayerKind::Maxout { .. } => {
                for (g, yg) in self.max_groups().iter().zip(y.iter_mut()) {
                    *yg = g.iter().map(|&i| x[i as usize]).fold(f64::NEG_INFINITY, f64::max);
                }
            }
            _ => unreachable!("apply_nonlinear on an affine layer"),
        }
    }

    /// For max-type layers: the candidate input indices of each output unit, in increasing
    /// order (ties go to the first). Empty for other layers.
    pub fn max_groups(&self) -> Vec<Vec<u32>> {
        match &self.kind {
            LayerKind::Maxout { pool } => {
                (0..self.output.numel()).map(|o| ((o * pool) as u32..((o + 1) * pool) as u32).collect()).collect()
            }
            LayerKind::MaxPool2d { window } => {
                let (Shape::Image { c, h, w }, Shape::Image { h: oh, w: ow, .. }) = (self.input, self.output) else {
                    return Vec::new();
                };
                let mut groups = Vec::with_capacity(c * oh * ow);
                for ch in 0..c {
                    for oy in 0..oh {
                        for ox in 0..ow {
                            let mut g: Vec<u32> = window
                                .taps(oy, ox, h, w)
                                .map(|(_, _, iy, ix)| ((ch * h + iy) * w + ix) as u32)
                                .collect();
                            g.sort_unstable();
                            g.dedup();
                            groups.push(g);
                        }
                    }
                }
                groups
            }
            _ => Vec::new(),
        }
    }
}

/// Runs a chain of layers on one input.
pub(crate) fn run_chain(layers: &[Layer], x: &[f64]) -> Vec<f64> {
    run(layers, x, Layer::apply)
}

fn run(layers: &[Layer], x: &[f64], step: fn(&Layer, &[f64], &mut [f64])) -> Vec<f64> {
    let mut cur = x.to_vec();
    for l in layers {
        let mut next = vec![0.0; l.output.numel()];
        step(l, &cur, &mut next);
        cur = next;
    }
    cur
}

/// A validated sequential network.
#[derive(Clone, Debug, PartialEq)]
pub struct Network {
    /// Shape of one input.
    pub input_shape: Shape,
    /// Layers in order; `layers[i].input == layers[i-1].output`.
    pub layers: Vec<Layer>,
}

impl Network {
    /// Shape of the output.
    pub fn output_shape(&self) -> Shape {
        self.layers.last().map_or(self.input_shape, |l| l.output)
    }

    /// Plain forward pass of one input (flattened row-major), in f64.
    ///
    /// This is the reference every partition is checked against; it shares no code with the
    /// partition engine beyond the layer definitions.
    pub fn forward(&self, x: &[f64]) -> Vec<f64> {
        run_chain(&self.layers, x)
    }

    /// Total parameter count.
    pub fn parameter_count(&self) -> usize {
        self.layers.iter().map(Layer::parameter_count).sum()
    }

    /// Number of piecewise-linear units (activation units plus max groups).
    pub fn pwl_unit_count(&self) -> usize {
        self.layers.iter().map(Layer::pwl_unit_count).sum()
    }

    /// Whether any layer is a two-branch block (residual, max or concat).
    pub fn has_residual(&self) -> bool {
        self.layers.iter().any(|l| matches!(l.kind, LayerKind::Residual { .. }))
    }
}
