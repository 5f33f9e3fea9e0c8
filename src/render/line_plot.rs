//! The picture of a 1D path (`tessera line --png/--svg`, drawn with plotters): every output
//! along the path parameter, the pieces' breakpoints as ticks, the class of each stretch shaded
//! in its class colour, and segment joints as dashed lines.

use super::colors::class_color;
use crate::boundary::Decision;
use crate::line::Line;
use plotters::coord::Shift;
use plotters::prelude::*;

/// The path parameter of piece-local `t` on `segment`: segments follow each other on `[0, K]`.
fn s(segment: usize, t: f64) -> f64 {
    segment as f64 + t
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    line: &Line,
    decision: &Decision,
    title: &str,
) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(err)?;
    let outputs = line.pieces.first().map_or(0, |p| p.y0.len());
    let segments = line.segment_lengths.len().max(1) as f64;
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for p in &line.pieces {
        for v in p.y0.iter().chain(&p.y1) {
            lo = lo.min(*v);
            hi = hi.max(*v);
        }
    }
    if !(lo.is_finite() && hi.is_finite()) {
        (lo, hi) = (-1.0, 1.0);
    }
    let pad = ((hi - lo) * 0.05).max(1e-9);
    let (lo, hi) = (lo - pad, hi + pad);
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..segments, lo..hi)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc(if segments > 1.0 { "path (segment + t)" } else { "t" })
        .y_desc("outputs")
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(err)?;
    // Class stretches: from the path's start, each class until the next change.
    let mut start = (0usize, 0.0);
    // Without a change the whole path has the class of its middle.
    let first = line.pieces.first().map(|p| decision.class_of(&p.eval(0.5 * (p.t0 + p.t1))));
    let mut class = line.class_changes.first().map(|c| c.from).or(first).unwrap_or(0);
    let mut stretches = Vec::new();
    for c in &line.class_changes {
        stretches.push((s(start.0, start.1), s(c.segment, c.t), class));
        start = (c.segment, c.t);
        class = c.to;
    }
    stretches.push((s(start.0, start.1), segments, class));
    chart
        .draw_series(stretches.iter().map(|&(a, b, k)| {
            let c = class_color(k).lighten(0.8);
            Rectangle::new([(a, lo), (b, hi)], RGBColor(c.0, c.1, c.2).filled())
        }))
        .map_err(err)?;
    // Breakpoints as ticks at the bottom (a tenth of the height), joints dashed.
    let tick = lo + 0.04 * (hi - lo);
    chart
        .draw_series(line.pieces.iter().skip(1).map(|p| {
            let x = s(p.segment, p.t0);
            PathElement::new(vec![(x, lo), (x, tick)], RGBColor(90, 90, 90).stroke_width(1))
        }))
        .map_err(err)?;
    for k in 1..line.segment_lengths.len() {
        let x = k as f64;
        chart
            .draw_series(DashedLineSeries::new(vec![(x, lo), (x, hi)], 6, 4, RGBColor(60, 60, 60).stroke_width(1)))
            .map_err(err)?;
    }
    for o in 0..outputs {
        let c = class_color(o);
        let mut pts = Vec::with_capacity(line.pieces.len() + 1);
        for p in &line.pieces {
            if pts.is_empty() || p.t0 == 0.0 {
                pts.push((s(p.segment, p.t0), p.y0[o]));
            }
            pts.push((s(p.segment, p.t1), p.y1[o]));
        }
        chart
            .draw_series(LineSeries::new(pts, RGBColor(c.0, c.1, c.2).stroke_width(2)))
            .map_err(err)?
            .label(format!("output {o}"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], RGBColor(c.0, c.1, c.2).stroke_width(2)));
    }
    if outputs > 0 {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 13))
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(err)?;
    }
    root.present().map_err(err)?;
    Ok(())
}

/// The path's picture as PNG bytes.
pub fn line_png(line: &Line, decision: &Decision, title: &str, size: (u32, u32)) -> Result<Vec<u8>, String> {
    super::canvas::register_font();
    let mut buf = vec![255u8; size.0 as usize * size.1 as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut buf, size).into_drawing_area();
        draw(&root, line, decision, title)?;
    }
    Ok(super::encode_png(&buf, size.0, size.1))
}

/// The path's picture as an SVG document.
pub fn line_svg(line: &Line, decision: &Decision, title: &str, size: (u32, u32)) -> Result<String, String> {
    super::canvas::register_font();
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, size).into_drawing_area();
        draw(&root, line, decision, title)?;
    }
    Ok(out)
}
