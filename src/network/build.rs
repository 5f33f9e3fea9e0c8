//! Building a validated [`Layer`] from its kind and input shapes: the one place where every
//! layer's parameters are checked against its shapes and tessera's limits. Both loaders (JSON
//! and ONNX) construct layers through [`layer`], so a model is validated the same way whatever
//! file it came from, and the work of every layer is bounded before anything runs.

use super::{merged_shape, Activation, Layer, LayerKind, Merge, Shape, MAX_ELEMENTS, MAX_LAYER_WORK, MAX_POOL_ENTRIES};

/// Why a layer is invalid: the field at fault (in `tessera-model/1` names), when one is.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerError {
    /// The field, e.g. `"weight"`, `"padding"`.
    pub field: Option<&'static str>,
    /// What is wrong.
    pub message: String,
}

fn fail<T>(field: Option<&'static str>, message: impl Into<String>) -> Result<T, LayerError> {
    Err(LayerError { field, message: message.into() })
}

fn finite(field: &'static str, values: &[f64]) -> Result<(), LayerError> {
    match values.iter().position(|v| !v.is_finite()) {
        Some(i) => fail(Some(field), format!("entry {i} is not finite ({})", values[i])),
        None => Ok(()),
    }
}

fn len(field: &'static str, values: &[f64], expected: usize) -> Result<(), LayerError> {
    if values.len() == expected {
        Ok(())
    } else {
        fail(Some(field), format!("expected {expected} values, found {}", values.len()))
    }
}

fn image(shape: Shape) -> Result<(usize, usize, usize), LayerError> {
    match shape {
        Shape::Image { c, h, w } => Ok((c, h, w)),
        Shape::Flat(n) => fail(None, format!("needs an image input [channels, height, width], got flat [{n}]")),
    }
}

/// Validates `kind` applied to inputs of `inputs` shapes (one, or two or more for a join) and
/// returns the layer with its output shape. `reshape_to` is the output shape of a
/// [`LayerKind::Reshape`] or [`LayerKind::Gather`] (ignored for other kinds; `None` for a reshape
/// means flatten).
pub fn layer(kind: LayerKind, inputs: &[Shape], op: &str, reshape_to: Option<Shape>) -> Result<Layer, LayerError> {
    let Some(&input) = inputs.first() else { return fail(None, "has no input") };
    if !matches!(kind, LayerKind::Merge(_)) && inputs.len() != 1 {
        return fail(None, format!("takes one input, got {}", inputs.len()));
    }
    let output = output_shape(&kind, inputs, reshape_to)?;
    let layer = Layer { kind, input, output, op: op.to_string() };
    match layer.output.checked_numel() {
        Some(n) if n > 0 && n <= MAX_ELEMENTS => {}
        _ => {
            return fail(
                None,
                format!(
                    "output shape {} is empty or has more than {MAX_ELEMENTS} entries (tessera's size limit)",
                    layer.output
                ),
            )
        }
    }
    match layer.work() {
        Some(w) if w <= MAX_LAYER_WORK => {}
        _ => {
            return fail(
                None,
                format!(
                    "one application takes more than {MAX_LAYER_WORK} multiply-adds (kernel or window too large for tessera)"
                ),
            )
        }
    }
    check_windows(&layer)?;
    Ok(layer)
}

/// Checks that need the output shape: pooling windows that see no input, candidate lists.
fn check_windows(layer: &Layer) -> Result<(), LayerError> {
    let (Shape::Image { h, w, .. }, Shape::Image { h: oh, w: ow, .. }) = (layer.input, layer.output) else {
        return Ok(());
    };
    let window = match &layer.kind {
        LayerKind::MaxPool2d { window } => {
            if layer.work().is_none_or(|w| w > MAX_POOL_ENTRIES) {
                return fail(None, format!("the pooling windows hold more than {MAX_POOL_ENTRIES} candidates in all"));
            }
            window
        }
        LayerKind::AvgPool2d { window, count_include_pad: false } => window,
        _ => return Ok(()),
    };
    if window.has_empty_window(0, h, oh) || window.has_empty_window(1, w, ow) {
        return fail(Some("padding"), "some pooling window lies entirely in the padding");
    }
    Ok(())
}

fn output_shape(kind: &LayerKind, inputs: &[Shape], reshape_to: Option<Shape>) -> Result<Shape, LayerError> {
    let input = inputs[0];
    match kind {
        LayerKind::Linear { weight, bias } => {
            let Shape::Flat(n_in) = input else {
                return fail(None, format!("needs a flat input, got {input}; add {{\"op\": \"flatten\"}} before it"));
            };
            let out = bias.len();
            if out == 0 {
                return fail(Some("weight"), "has no rows");
            }
            if out.checked_mul(n_in) != Some(weight.len()) {
                return fail(
                    Some("weight"),
                    format!("{} values do not make {out} rows of the {n_in} input features", weight.len()),
                );
            }
            finite("weight", weight)?;
            finite("bias", bias)?;
            Ok(Shape::Flat(out))
        }
        LayerKind::Conv2d { weight, bias, window, groups } => {
            let (c, h, w) = image(input)?;
            let oc = bias.len();
            let groups = *groups;
            if groups == 0 || oc == 0 || c % groups != 0 || oc % groups != 0 {
                return fail(
                    Some("groups"),
                    format!("{groups} groups must divide the {c} input and {oc} output channels"),
                );
            }
            let [kh, kw] = window.kernel;
            if kh == 0 || kw == 0 {
                return fail(Some("weight"), "empty kernel");
            }
            let want = (oc as u128) * (c / groups) as u128 * kh as u128 * kw as u128;
            if want != weight.len() as u128 {
                return fail(
                    Some("weight"),
                    format!(
                        "{} values, expected {oc} × {} × {kh} × {kw} ([out_channels, in_channels / groups, kh, kw])",
                        weight.len(),
                        c / groups
                    ),
                );
            }
            finite("weight", weight)?;
            finite("bias", bias)?;
            if window.stride.contains(&0) || window.dilation.contains(&0) {
                return fail(Some("stride"), "stride and dilation must be positive");
            }
            if window.ceil_mode {
                return fail(None, "convolutions have no ceil mode");
            }
            let (oh, ow) = window.output_size(h, w).ok_or_else(|| LayerError {
                field: None,
                message: format!("a {kh}×{kw} kernel does not fit the {h}×{w} input"),
            })?;
            Ok(Shape::Image { c: oc, h: oh, w: ow })
        }
        LayerKind::BatchNorm { scale, shift } => {
            let ch = input.channels();
            len("weight", scale, ch)?;
            len("bias", shift, ch)?;
            finite("running_var", scale)?;
            finite("running_mean", shift)?;
            Ok(input)
        }
        LayerKind::Scale { scale, shift } => {
            let n = input.numel();
            len("scale", scale, n)?;
            len("shift", shift, n)?;
            finite("scale", scale)?;
            finite("shift", shift)?;
            Ok(input)
        }
        LayerKind::AvgPool2d { window, .. } | LayerKind::MaxPool2d { window } => {
            let (c, h, w) = image(input)?;
            let kernel = window.kernel;
            if kernel.contains(&0) || window.stride.contains(&0) || window.dilation.contains(&0) {
                return fail(Some("kernel_size"), "kernel, stride and dilation must be positive");
            }
            let pads = window.padding.iter().zip(&window.padding_end);
            if pads.zip(&kernel).any(|((&b, &e), &k)| b >= k || e >= k) {
                return fail(Some("padding"), "padding must be smaller than the kernel");
            }
            if matches!(kind, LayerKind::AvgPool2d { .. }) && window.dilation != [1, 1] {
                return fail(Some("dilation"), "avg_pool2d has no dilation");
            }
            let (oh, ow) = window.output_size(h, w).ok_or_else(|| LayerError {
                field: None,
                message: format!("a {}×{} window does not fit the {h}×{w} input", kernel[0], kernel[1]),
            })?;
            Ok(Shape::Image { c, h: oh, w: ow })
        }
        LayerKind::Reshape => {
            let to = reshape_to.unwrap_or(Shape::Flat(input.numel()));
            if to.checked_numel() != Some(input.numel()) {
                return fail(Some("shape"), format!("cannot reshape {input} to {to}"));
            }
            Ok(to)
        }
        LayerKind::Gather(g) => {
            let Some(to) = reshape_to else { return fail(Some("shape"), "a gather needs its output shape") };
            if to.checked_numel() != Some(g.index.len()) {
                return fail(Some("index"), format!("{} indices for an output of shape {to}", g.index.len()));
            }
            let n = input.numel();
            if let Some(i) = g.index.iter().position(|&j| j != super::Gather::ZERO && j as usize >= n) {
                return fail(Some("index"), format!("entry {i} reads {} of an input of {n} entries", g.index[i]));
            }
            Ok(to)
        }
        LayerKind::Activation(act) => {
            match act {
                Activation::LeakyRelu { slope } => finite("negative_slope", &[*slope])?,
                Activation::PRelu { slopes } => {
                    let ch = input.channels();
                    if slopes.len() != 1 && slopes.len() != ch {
                        return fail(
                            Some("weight"),
                            format!("expected 1 or {ch} (one per channel) values, found {}", slopes.len()),
                        );
                    }
                    finite("weight", slopes)?;
                }
                Activation::HardTanh { min, max } => {
                    finite("min_val", &[*min])?;
                    finite("max_val", &[*max])?;
                    if min >= max {
                        return fail(Some("max_val"), format!("max_val {max} must exceed min_val {min}"));
                    }
                }
                Activation::Relu | Activation::Abs => {}
            }
            Ok(input)
        }
        LayerKind::Maxout { pool } => {
            let n = input.numel();
            if *pool == 0 || !n.is_multiple_of(*pool) {
                return fail(Some("pool_size"), format!("{pool} must be positive and divide the {n} input features"));
            }
            Ok(Shape::Flat(n / pool))
        }
        LayerKind::Merge(m) => {
            if inputs.len() < 2 {
                return fail(Some("inputs"), format!("a `{}` join needs two or more inputs", m.name()));
            }
            if *m == Merge::Concat && inputs.len() > 1 << 16 {
                return fail(Some("inputs"), "too many inputs");
            }
            merged_shape(*m, inputs).map_err(|message| LayerError { field: Some("inputs"), message })
        }
    }
}
