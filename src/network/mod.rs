//! The network model: a validated sequence of layers with known shapes, and a plain forward
//! pass that serves as the independent reference for every partition.
//!
//! Loaders (`json`) build a [`Network`]; the engine lowers it further (see `crate::engine`).
//! Everything here is f64; f32 weights from PyTorch are represented exactly.

pub mod build;
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

/// Geometry of a 2D window operation (convolution or pooling). A 1D operation is the 2D one
/// on a height-1 image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// Kernel size (height, width).
    pub kernel: [usize; 2],
    /// Stride (height, width).
    pub stride: [usize; 2],
    /// Zero (or -inf for max pooling) padding before the first row and column (height, width).
    pub padding: [usize; 2],
    /// Padding after the last row and column (height, width); equal to `padding` for PyTorch's
    /// symmetric padding.
    pub padding_end: [usize; 2],
    /// Dilation (height, width).
    pub dilation: [usize; 2],
    /// Pooling's `ceil_mode`: the output size rounds up, as long as the last window starts
    /// inside the input or its leading padding.
    pub ceil_mode: bool,
}

impl Window {
    /// A window with symmetric padding and floor rounding (PyTorch's layers).
    pub fn symmetric(kernel: [usize; 2], stride: [usize; 2], padding: [usize; 2], dilation: [usize; 2]) -> Self {
        Window { kernel, stride, padding, padding_end: padding, dilation, ceil_mode: false }
    }

    /// Output spatial size for an input of `(h, w)`, or `None` when the window does not fit.
    /// Arithmetic is checked: absurd sizes give `None`, never an overflow.
    pub fn output_size(&self, h: usize, w: usize) -> Option<(usize, usize)> {
        let dim = |n: usize, i: usize| -> Option<usize> {
            let span = self.dilation[i].checked_mul(self.kernel[i].checked_sub(1)?)?.checked_add(1)?;
            let padded = n.checked_add(self.padding[i])?.checked_add(self.padding_end[i])?;
            if padded < span || self.stride[i] == 0 {
                return None;
            }
            let s = self.stride[i];
            let mut out = if self.ceil_mode { (padded - span).div_ceil(s) + 1 } else { (padded - span) / s + 1 };
            // PyTorch's and ONNX's rule: the last window must start inside the input or the
            // leading padding.
            if self.ceil_mode && (out - 1).checked_mul(s)? >= n.checked_add(self.padding[i])? {
                out -= 1;
            }
            Some(out)
        };
        Some((dim(h, 0)?, dim(w, 1)?))
    }

    /// The divisor of average pooling at output `(oy, ox)` of an `h × w` input: the window's
    /// taps inside the input, plus (with `count_include_pad`) those in the padding, never those
    /// beyond it (a ceil-mode window overhanging the padded input).
    pub fn avg_divisor(&self, oy: usize, ox: usize, h: usize, w: usize, count_include_pad: bool) -> usize {
        let axis = |o: usize, i: usize, n: usize| -> usize {
            if count_include_pad {
                let (s, d, p) = (self.stride[i] as i128, self.dilation[i] as i128, self.padding[i] as i128);
                let start = o as i128 * s - p;
                let end = n as i128 + self.padding_end[i] as i128;
                // Taps k >= 0 (all at or after -p, since start >= -p) with start + k·d < end.
                let hi = (end - start + d - 1).div_euclid(d).clamp(0, self.kernel[i] as i128);
                hi as usize
            } else {
                self.axis_taps(o, i, n).count()
            }
        };
        axis(oy, 0, h) * axis(ox, 1, w)
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

    /// The hinges `v` is past (bit `j`: `v > hinges[j].0`), as an activation pattern records
    /// them.
    #[inline]
    pub fn bits(&self, v: f64) -> u64 {
        // Unrolled over the (at most two) hinges: this runs once per unit and piece in the
        // path tracer's sweeps.
        let past = |j: usize| (self.n_hinges > j && v > self.hinges[j].0) as u64;
        past(0) | past(1) << 1
    }

    /// `(slope, intercept)` of the piece whose passed hinges are the set bits of `bits` (bit
    /// `j`: past hinge `j`), as an activation pattern records it.
    #[inline]
    pub fn piece(&self, bits: u64) -> (f64, f64) {
        let (mut slope, mut intercept) = (self.slope0, self.intercept0);
        for (j, &(bp, da)) in self.hinges().iter().enumerate() {
            if bits >> j & 1 == 1 {
                slope += da;
                intercept -= da * bp;
            }
        }
        (slope, intercept)
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
    /// `y = W x + b`, `weight` row-major `out × in` (`out` is the bias length).
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
    /// `y_i = scale_i·x_i + shift_i` per entry (constant `Mul`, `Div`, `Add`, `Sub`, `Neg`).
    Scale {
        /// One multiplier per entry.
        scale: Vec<f64>,
        /// One offset per entry.
        shift: Vec<f64>,
    },
    /// Average pooling (dilation 1).
    AvgPool2d {
        /// Kernel, stride, padding, ceil mode.
        window: Window,
        /// Whether the divisor counts padded positions (PyTorch's default) or only the inputs.
        count_include_pad: bool,
    },
    /// The same entries under another shape (flatten, reshape, squeeze): no data moves.
    Reshape,
    /// `y_i = x[index_i]`, or 0 where `index_i` is [`Gather::ZERO`]: every reordering, slice,
    /// padding (zero, reflect, edge), nearest upsampling and constant gather.
    Gather(Gather),
    /// Elementwise piecewise-linear activation.
    Activation(Activation),
    /// Max pooling; padded positions never win.
    MaxPool2d {
        /// Kernel, stride, padding, dilation, ceil mode.
        window: Window,
    },
    /// Max over consecutive groups of `pool` features (`x.view(n, out, pool).max(-1)`).
    Maxout {
        /// Group size.
        pool: usize,
    },
    /// A join of two or more tensors (the node's inputs, in order).
    Merge(Merge),
}

/// The index map of a [`LayerKind::Gather`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gather {
    /// Per output entry, the input entry it copies, or [`Gather::ZERO`].
    pub index: Vec<u32>,
}

impl Gather {
    /// The index of an output that is zero (constant padding).
    pub const ZERO: u32 = u32::MAX;
}

/// How the inputs of a join are merged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Merge {
    /// `a + b + ...`.
    Add,
    /// `a`, then `b`, ... along channels (flat vectors: one after another).
    Concat,
    /// Elementwise maximum; ties go to the first input.
    Max,
    /// Elementwise minimum; ties go to the first input.
    Min,
}

impl Merge {
    /// The op name in `tessera-model/1`.
    pub fn name(self) -> &'static str {
        match self {
            Merge::Add => "add",
            Merge::Concat => "concat",
            Merge::Max => "max",
            Merge::Min => "min",
        }
    }
}

/// A layer with its input and output shapes and where it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Layer {
    /// What the layer computes.
    pub kind: LayerKind,
    /// Shape consumed (of every input: joins of several inputs record the first; a concat's
    /// inputs may differ in channels).
    pub input: Shape,
    /// Shape produced.
    pub output: Shape,
    /// The op name in the source file (e.g. `"relu6"`, `"linear"`).
    pub op: String,
}

impl Layer {
    /// True for layers that never split regions (affine maps, including add and concat joins).
    pub fn is_affine(&self) -> bool {
        match &self.kind {
            LayerKind::Activation(_) | LayerKind::MaxPool2d { .. } | LayerKind::Maxout { .. } => false,
            LayerKind::Merge(m) => matches!(m, Merge::Add | Merge::Concat),
            _ => true,
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

    /// Pattern bits per group of a max group of up to `largest` candidates: `⌈log2⌉`, at least one.
    pub fn max_bits(largest: usize) -> usize {
        (usize::BITS - (largest.max(2) - 1).leading_zeros()) as usize
    }

    /// Pattern bits of this node when it is nonlinear (an elementwise activation, a max kind or a
    /// max/min join): `Some((groups or units, bits per group or unit))`.
    pub fn pattern_width(&self) -> Option<(usize, usize)> {
        match &self.kind {
            LayerKind::Activation(act) => Some((self.input.numel(), act.hinge_slots())),
            LayerKind::MaxPool2d { .. } | LayerKind::Maxout { .. } => {
                let groups = self.max_groups();
                let largest = groups.iter().map(Vec::len).max().unwrap_or(1);
                Some((groups.len(), Layer::max_bits(largest)))
            }
            LayerKind::Merge(Merge::Max | Merge::Min) => None,
            _ => None,
        }
    }

    /// Number of trainable-style parameters (weights and biases; batch-norm counts 4 per channel).
    pub fn parameter_count(&self) -> usize {
        match &self.kind {
            LayerKind::Linear { weight, bias } | LayerKind::Conv2d { weight, bias, .. } => weight.len() + bias.len(),
            LayerKind::BatchNorm { scale, .. } => 4 * scale.len(),
            LayerKind::Activation(Activation::PRelu { slopes }) => slopes.len(),
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
            LayerKind::AvgPool2d { window, .. } | LayerKind::MaxPool2d { window } => {
                out.checked_mul(window.kernel[0] as u64)?.checked_mul(window.kernel[1] as u64)
            }
            LayerKind::Maxout { pool } => out.checked_mul(*pool as u64),
            _ => Some(out.max(self.input.numel() as u64)),
        }
    }

    /// Piecewise-linear units of the layer (its outputs for a nonlinear layer).
    pub fn pwl_unit_count(&self) -> usize {
        if self.is_affine() {
            0
        } else {
            self.output.numel()
        }
    }

    /// Applies a one-input layer's *linear part* (no bias) to `x`, writing `y` (`apply` minus
    /// `apply` of the zero vector). Only for affine one-input layers.
    pub fn apply_linear(&self, x: &[f64], y: &mut [f64]) {
        self.apply_affine(x, y, false);
    }

    /// The transpose of [`Layer::apply_linear`]: `gx = Lᵀ·gy` for the layer's linear part `L`
    /// (backpropagation of a gradient). Only for affine one-input layers.
    pub fn apply_linear_transpose(&self, gy: &[f64], gx: &mut [f64]) {
        debug_assert_eq!(gy.len(), self.output.numel());
        debug_assert_eq!(gx.len(), self.input.numel());
        gx.iter_mut().for_each(|v| *v = 0.0);
        match &self.kind {
            LayerKind::Linear { weight, .. } => {
                let n_in = gx.len();
                // Zero cotangents (units switched off) add nothing: skipped.
                for (o, &g) in gy.iter().enumerate().filter(|e| *e.1 != 0.0) {
                    let row = &weight[o * n_in..(o + 1) * n_in];
                    gx.iter_mut().zip(row).for_each(|(x, w)| *x += w * g);
                }
            }
            LayerKind::Conv2d { weight, window, groups, .. } => {
                let (Shape::Image { c: ic, h, w }, Shape::Image { c: oc, h: oh, w: ow }) = (self.input, self.output)
                else {
                    unreachable!("conv2d shapes are validated as images")
                };
                let (icg, ocg) = (ic / groups, oc / groups);
                let [kh, kw] = window.kernel;
                let mut taps = Vec::new();
                for oy in 0..oh {
                    for ox in 0..ow {
                        taps.clear();
                        taps.extend(window.taps(oy, ox, h, w).map(|(ky, kx, iy, ix)| (ky * kw + kx, iy * w + ix)));
                        for o in 0..oc {
                            let (g, go) = (o / ocg, gy[(o * oh + oy) * ow + ox]);
                            if go == 0.0 {
                                continue;
                            }
                            for ci in 0..icg {
                                let wk = &weight[(o * icg + ci) * kh * kw..];
                                let base = (g * icg + ci) * h * w;
                                for &(k, p) in &taps {
                                    gx[base + p] += wk[k] * go;
                                }
                            }
                        }
                    }
                }
            }
            LayerKind::BatchNorm { scale, .. } => {
                let per = self.input.per_channel();
                for (i, (x, g)) in gx.iter_mut().zip(gy).enumerate() {
                    *x = scale[i / per] * g;
                }
            }
            LayerKind::Scale { scale, .. } => gx.iter_mut().zip(gy).zip(scale).for_each(|((x, g), s)| *x = s * g),
            LayerKind::AvgPool2d { window, count_include_pad } => {
                let (Shape::Image { c, h, w }, Shape::Image { h: oh, w: ow, .. }) = (self.input, self.output) else {
                    unreachable!("avg_pool2d shapes are validated as images")
                };
                for ch in 0..c {
                    for oy in 0..oh {
                        for ox in 0..ow {
                            let div = window.avg_divisor(oy, ox, h, w, *count_include_pad) as f64;
                            let g = gy[(ch * oh + oy) * ow + ox] / div;
                            for (_, _, iy, ix) in window.taps(oy, ox, h, w) {
                                gx[(ch * h + iy) * w + ix] += g;
                            }
                        }
                    }
                }
            }
            LayerKind::Reshape => gx.copy_from_slice(gy),
            LayerKind::Gather(gather) => {
                for (&g, &j) in gy.iter().zip(&gather.index) {
                    if j != Gather::ZERO {
                        gx[j as usize] += g;
                    }
                }
            }
            _ => unreachable!("apply_linear_transpose on a nonlinear layer or a join"),
        }
    }

    /// Applies a one-input layer to `x`, writing `y` (biases included). Joins go through
    /// [`Layer::merge`].
    pub fn apply(&self, x: &[f64], y: &mut [f64]) {
        if self.is_affine() {
            self.apply_affine(x, y, true);
        } else {
            self.apply_nonlinear(x, y);
        }
    }

    /// A join of `inputs` (for [`LayerKind::Merge`] layers).
    pub fn merge(merge: Merge, inputs: &[&[f64]]) -> Vec<f64> {
        let first = inputs[0].to_vec();
        match merge {
            Merge::Concat => inputs.concat(),
            Merge::Add => inputs[1..].iter().fold(first, |mut acc, x| {
                acc.iter_mut().zip(x.iter()).for_each(|(a, b)| *a += b);
                acc
            }),
            Merge::Max | Merge::Min => inputs[1..].iter().fold(first, |mut acc, x| {
                for (a, &b) in acc.iter_mut().zip(x.iter()) {
                    // Strict comparisons: ties keep the earlier input.
                    if (merge == Merge::Max && b > *a) || (merge == Merge::Min && b < *a) {
                        *a = b;
                    }
                }
                acc
            }),
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
                // The taps of each output position, computed once for every channel.
                let mut taps = Vec::new();
                for oy in 0..oh {
                    for ox in 0..ow {
                        taps.clear();
                        taps.extend(window.taps(oy, ox, h, w).map(|(ky, kx, iy, ix)| (ky * kw + kx, iy * w + ix)));
                        for o in 0..oc {
                            let g = o / ocg;
                            let mut acc = if with_bias { bias[o] } else { 0.0 };
                            for ci in 0..icg {
                                let (wk, xc) = (&weight[(o * icg + ci) * kh * kw..], &x[(g * icg + ci) * h * w..]);
                                for &(k, p) in &taps {
                                    acc += wk[k] * xc[p];
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
            LayerKind::Scale { scale, shift } => {
                for (i, (yi, xi)) in y.iter_mut().zip(x).enumerate() {
                    *yi = scale[i] * xi + if with_bias { shift[i] } else { 0.0 };
                }
            }
            LayerKind::AvgPool2d { window, count_include_pad } => {
                let (Shape::Image { c, h, w }, Shape::Image { h: oh, w: ow, .. }) = (self.input, self.output) else {
                    unreachable!("avg_pool2d shapes are validated as images")
                };
                for ch in 0..c {
                    for oy in 0..oh {
                        for ox in 0..ow {
                            let mut acc = 0.0;
                            for (_, _, iy, ix) in window.taps(oy, ox, h, w) {
                                acc += x[(ch * h + iy) * w + ix];
                            }
                            let div = window.avg_divisor(oy, ox, h, w, *count_include_pad);
                            y[(ch * oh + oy) * ow + ox] = acc / div as f64;
                        }
                    }
                }
            }
            LayerKind::Reshape => y.copy_from_slice(x),
            LayerKind::Gather(g) => {
                for (yi, &j) in y.iter_mut().zip(&g.index) {
                    *yi = if j == Gather::ZERO { 0.0 } else { x[j as usize] };
                }
            }
            _ => unreachable!("apply_affine on a nonlinear layer or a join"),
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
            _ => unreachable!("apply_nonlinear on an affine layer or a join"),
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

/// Where a node reads a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Src {
    /// The network input.
    Input,
    /// The output of node `i` (an earlier node).
    Node(usize),
}

/// One node of the network graph: a layer applied to the outputs of earlier nodes.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// What it computes, with its shapes.
    pub layer: Layer,
    /// What it reads: one tensor, or two or more for a join.
    pub inputs: Vec<Src>,
    /// Its name in the source file (a layer index path for sequential models, the node name in
    /// graph models and ONNX files).
    pub name: String,
}

/// A validated network: a DAG of nodes in topological order; the last node's output is the
/// network's output. Sequential models are chains (each node reads the one before).
#[derive(Clone, Debug, PartialEq)]
pub struct Network {
    /// Shape of one input.
    pub input_shape: Shape,
    /// Nodes in topological order: every input of node `i` is the network input or a node
    /// before `i`.
    pub nodes: Vec<Node>,
}

/// Why a set of nodes is not a valid network (the node is named by index and name).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("node {index} (`{name}`): {message}")]
pub struct GraphError {
    /// Node index.
    pub index: usize,
    /// Node name.
    pub name: String,
    /// What is wrong.
    pub message: String,
}

impl Network {
    /// Checks the graph: inputs are earlier nodes with the shapes the layers expect, joins
    /// agree, and the model's work and live memory are within tessera's limits.
    pub fn new(input_shape: Shape, nodes: Vec<Node>) -> Result<Network, GraphError> {
        let err = |i: usize, n: &Node, message: String| GraphError { index: i, name: n.name.clone(), message };
        let shape_of = |src: Src, nodes: &[Node]| match src {
            Src::Input => input_shape,
            Src::Node(j) => nodes[j].layer.output,
        };
        let mut work = 0u64;
        for (i, n) in nodes.iter().enumerate() {
            if n.inputs.is_empty() {
                return Err(err(i, n, "has no inputs".into()));
            }
            if let Some(&Src::Node(j)) = n.inputs.iter().find(|s| matches!(s, Src::Node(j) if *j >= i)) {
                return Err(err(i, n, format!("reads node {j}, which does not come before it")));
            }
            let shapes: Vec<Shape> = n.inputs.iter().map(|&s| shape_of(s, &nodes)).collect();
            match &n.layer.kind {
                LayerKind::Merge(m) => {
                    if shapes.len() < 2 {
                        return Err(err(i, n, format!("a `{}` join needs two or more inputs", m.name())));
                    }
                    let want = merged_shape(*m, &shapes).map_err(|e| err(i, n, e))?;
                    if want != n.layer.output || shapes[0] != n.layer.input {
                        return Err(err(i, n, format!("the join gives {want}, not {}", n.layer.output)));
                    }
                }
                _ => {
                    if shapes.len() != 1 {
                        return Err(err(i, n, format!("op `{}` takes one input, got {}", n.layer.op, shapes.len())));
                    }
                    if shapes[0] != n.layer.input {
                        return Err(err(i, n, format!("expects {} but its input is {}", n.layer.input, shapes[0])));
                    }
                }
            }
            work = work.saturating_add(n.layer.work().unwrap_or(u64::MAX));
            if work > MAX_MODEL_WORK {
                return Err(err(
                    i,
                    n,
                    format!("the nodes up to this one take more than {MAX_MODEL_WORK} multiply-adds per input in all"),
                ));
            }
        }
        let net = Network { input_shape, nodes };
        let (live, at) = net.peak_live_entries();
        if live > MAX_LIVE_ELEMENTS {
            let n = &net.nodes[at];
            return Err(err(
                at,
                n,
                format!("{live} tensor entries are alive at once here, above tessera's limit of {MAX_LIVE_ELEMENTS}"),
            ));
        }
        Ok(net)
    }

    /// A chain of layers (each reads the one before), named by index.
    pub fn sequential(input_shape: Shape, layers: Vec<Layer>) -> Result<Network, GraphError> {
        let nodes = layers
            .into_iter()
            .enumerate()
            .map(|(i, layer)| Node {
                layer,
                inputs: vec![if i == 0 { Src::Input } else { Src::Node(i - 1) }],
                name: i.to_string(),
            })
            .collect();
        Network::new(input_shape, nodes)
    }

    /// Shape of the output.
    pub fn output_shape(&self) -> Shape {
        self.nodes.last().map_or(self.input_shape, |n| n.layer.output)
    }

    /// For every tensor (the input, then each node), the last node that reads it (`None` when
    /// no node does: the output, or an unused tensor).
    pub fn last_uses(&self) -> (Option<usize>, Vec<Option<usize>>) {
        let mut input = None;
        let mut nodes = vec![None; self.nodes.len()];
        for (i, n) in self.nodes.iter().enumerate() {
            for s in &n.inputs {
                match *s {
                    Src::Input => input = Some(i),
                    Src::Node(j) => nodes[j] = Some(i),
                }
            }
        }
        (input, nodes)
    }

    /// The largest number of tensor entries alive at once while the nodes run in order (the
    /// tensors still to be read, plus the node's output), and the node where it happens.
    pub fn peak_live_entries(&self) -> (usize, usize) {
        let (input_last, last) = self.last_uses();
        // Tensors whose last reader is node i die after it.
        let mut dying: Vec<Vec<usize>> = vec![Vec::new(); self.nodes.len()];
        for (j, l) in last.iter().enumerate() {
            if let Some(i) = *l {
                dying[i].push(j);
            }
        }
        let mut alive: usize = self.input_shape.numel();
        let mut input_alive = true;
        let (mut peak, mut at) = (alive, 0);
        for (i, n) in self.nodes.iter().enumerate() {
            alive = alive.saturating_add(n.layer.output.numel());
            if alive > peak {
                (peak, at) = (alive, i);
            }
            if input_alive && input_last.is_none_or(|l| l <= i) {
                alive = alive.saturating_sub(self.input_shape.numel());
                input_alive = false;
            }
            for &j in &dying[i] {
                alive = alive.saturating_sub(self.nodes[j].layer.output.numel());
            }
        }
        (peak, at)
    }

    /// Plain forward pass of one input (flattened row-major), in f64.
    ///
    /// This is the reference every partition is checked against; it shares no code with the
    /// partition engine beyond the layer definitions.
    pub fn forward(&self, x: &[f64]) -> Vec<f64> {
        self.forward_all(x, false).pop().flatten().unwrap_or_else(|| x.to_vec())
    }

    /// Where each nonlinear node's units sit in activation patterns: one entry per elementwise
    /// activation, max-type layer and max/min join, in node order, each starting on a 64-bit
    /// word (the 2D engine's layout: `engine::plan` checks that it agrees).
    pub fn pattern_layout(&self) -> Vec<crate::pattern::LayerBits> {
        let mut out = Vec::new();
        let mut next = 0usize;
        for (i, n) in self.nodes.iter().enumerate() {
            let width = match &n.layer.kind {
                LayerKind::Merge(Merge::Max | Merge::Min) => {
                    Some((n.layer.output.numel(), Layer::max_bits(n.inputs.len())))
                }
                _ => n.layer.pattern_width(),
            };
            if let Some((units, bits)) = width {
                let offset = next.next_multiple_of(64);
                out.push(crate::pattern::LayerBits { layer: i, op: n.layer.op.clone(), offset, bits: units * bits });
                next = offset + units * bits;
            }
        }
        out
    }

    /// Every node's output: all of them with `keep` (a backward pass reads them), else each is
    /// dropped after its last use, so only the last one and unused ones remain `Some`.
    pub(crate) fn forward_all(&self, x: &[f64], keep: bool) -> Vec<Option<Vec<f64>>> {
        let (_, last) = self.last_uses();
        let mut out: Vec<Option<Vec<f64>>> = vec![None; self.nodes.len()];
        for (i, n) in self.nodes.iter().enumerate() {
            let y = {
                let read = |s: &Src| -> &[f64] {
                    match *s {
                        Src::Input => x,
                        Src::Node(j) => out[j].as_deref().expect("inputs run before their readers"),
                    }
                };
                match &n.layer.kind {
                    LayerKind::Merge(m) => {
                        let ins: Vec<&[f64]> = n.inputs.iter().map(read).collect();
                        Layer::merge(*m, &ins)
                    }
                    _ => {
                        let mut y = vec![0.0; n.layer.output.numel()];
                        n.layer.apply(read(&n.inputs[0]), &mut y);
                        y
                    }
                }
            };
            for s in &n.inputs {
                if let Src::Node(j) = *s {
                    if last[j] == Some(i) && !keep {
                        out[j] = None;
                    }
                }
            }
            out[i] = Some(y);
        }
        out
    }

    /// Total parameter count.
    pub fn parameter_count(&self) -> usize {
        self.nodes.iter().map(|n| n.layer.parameter_count()).sum()
    }

    /// Number of piecewise-linear units (activation units plus max groups).
    pub fn pwl_unit_count(&self) -> usize {
        self.nodes.iter().map(|n| n.layer.pwl_unit_count()).sum()
    }

    /// Whether the network is a chain (no node reads anything but the node before it).
    pub fn is_chain(&self) -> bool {
        self.nodes
            .iter()
            .enumerate()
            .all(|(i, n)| n.inputs.len() == 1 && n.inputs[0] == if i == 0 { Src::Input } else { Src::Node(i - 1) })
    }
}

/// An order of `n` nodes in which every node comes after those it reads (`reads[i]`: the nodes
/// node `i` reads, duplicates allowed), keeping the given order among nodes that are ready
/// together (Kahn's algorithm). On a cycle, `Err` holds a node on it (or waiting for it).
pub(crate) fn topological_order(reads: &[Vec<usize>]) -> Result<Vec<usize>, usize> {
    let n = reads.len();
    let mut indegree = vec![0usize; n];
    let mut readers: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, r) in reads.iter().enumerate() {
        for &j in r {
            indegree[i] += 1;
            readers[j].push(i);
        }
    }
    let mut ready: std::collections::BTreeSet<usize> = (0..n).filter(|&i| indegree[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &k in &readers[i] {
            indegree[k] -= 1;
            if indegree[k] == 0 {
                ready.insert(k);
            }
        }
    }
    match (0..n).find(|&i| indegree[i] > 0) {
        Some(stuck) => Err(stuck),
        None => Ok(order),
    }
}

/// The shape a join of `shapes` gives, or why they cannot be joined.
pub fn merged_shape(merge: Merge, shapes: &[Shape]) -> Result<Shape, String> {
    let first = shapes[0];
    match merge {
        Merge::Add | Merge::Max | Merge::Min => match shapes.iter().find(|&&s| s != first) {
            Some(s) => Err(format!("cannot join {first} and {s} elementwise: shapes must match")),
            None => Ok(first),
        },
        Merge::Concat => {
            let mut total = 0usize;
            for s in shapes {
                let ok = match (first, *s) {
                    (Shape::Flat(_), Shape::Flat(_)) => true,
                    (Shape::Image { h, w, .. }, Shape::Image { h: h2, w: w2, .. }) => h == h2 && w == w2,
                    _ => false,
                };
                if !ok {
                    return Err(format!("cannot concatenate {first} and {s} along channels"));
                }
                total = total.checked_add(s.channels()).ok_or("concatenation too large")?;
            }
            Ok(match first {
                Shape::Flat(_) => Shape::Flat(total),
                Shape::Image { h, w, .. } => Shape::Image { c: total, h, w },
            })
        }
    }
}
