//! Statistics plots of a partition (PNG, drawn with plotters): the distribution of region areas
//! on a log scale, of vertices per region, and the region count after each nonlinear layer.

use crate::partition::Partition;
use plotters::prelude::*;

/// A named bar chart: labels on x, one value per bar.
struct Bars {
    title: String,
    x_label: String,
    y_label: String,
    labels: Vec<String>,
    values: Vec<f64>,
}

fn draw_bars(bars: &Bars, size: (u32, u32)) -> Result<Vec<u8>, String> {
    super::canvas::register_font();
    let mut buf = vec![255u8; size.0 as usize * size.1 as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut buf, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let n = bars.values.len().max(1);
        let top = bars.values.iter().cloned().fold(0.0, f64::max).max(1.0) * 1.05;
        let mut chart = ChartBuilder::on(&root)
            .caption(&bars.title, ("sans-serif", 20))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..n as f64, 0f64..top)
            .map_err(|e| e.to_string())?;
        let labels = bars.labels.clone();
        let step = (n / 12).max(1);
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_desc(bars.x_label.as_str())
            .y_desc(bars.y_label.as_str())
            .x_labels(n.min(13))
            .x_label_formatter(&|x| {
                let i = x.floor() as usize;
                if i < labels.len() && i.is_multiple_of(step) {
                    labels[i].clone()
                } else {
                    String::new()
                }
            })
            .label_style(("sans-serif", 13))
            .draw()
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(bars.values.iter().enumerate().map(|(i, &v)| {
                Rectangle::new([(i as f64 + 0.1, 0.0), (i as f64 + 0.9, v)], RGBColor(31, 119, 180).filled())
            }))
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(super::encode_png(&buf, size.0, size.1))
}

/// The three statistics plots as `(file stem, PNG bytes)`.
pub fn stats_plots(part: &Partition, size: (u32, u32)) -> Result<Vec<(&'static str, Vec<u8>)>, String> {
    let logs: Vec<f64> = part.regions.iter().map(|r| r.area.log10()).collect();
    let (lo, hi) = logs.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x)));
    let bins = 30;
    let width = ((hi - lo) / bins as f64).max(1e-12);
    let mut counts = vec![0.0; bins];
    for &l in &logs {
        counts[(((l - lo) / width) as usize).min(bins - 1)] += 1.0;
    }
    let area = Bars {
        title: format!("region areas ({} regions)", part.regions.len()),
        x_label: "log10(area), bin start".into(),
        y_label: "regions".into(),
        labels: (0..bins).map(|i| format!("{:.1}", lo + i as f64 * width)).collect(),
        values: counts,
    };
    let max_v = part.regions.iter().map(|r| r.polygon.pts.len()).max().unwrap_or(3);
    let mut vcounts = vec![0.0; max_v + 1];
    for r in &part.regions {
        vcounts[r.polygon.pts.len()] += 1.0;
    }
    let vertices = Bars {
        title: "vertices per region".into(),
        x_label: "vertices".into(),
        y_label: "regions".into(),
        labels: (3..=max_v).map(|k| k.to_string()).collect(),
        values: vcounts[3.min(vcounts.len())..].to_vec(),
    };
    let layers = Bars {
        title: "regions after each nonlinear layer".into(),
        x_label: "layer".into(),
        y_label: "regions".into(),
        labels: part.summary.regions_per_layer.iter().map(|c| format!("{} #{}", c.op, c.layer)).collect(),
        values: part.summary.regions_per_layer.iter().map(|c| c.regions as f64).collect(),
    };
    Ok(vec![
        ("areas", draw_bars(&area, size)?),
        ("vertices", draw_bars(&vertices, size)?),
        ("layers", draw_bars(&layers, size)?),
    ])
}

/// A bar chart (PNG): one bar per label.
pub fn bar_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    labels: Vec<String>,
    values: Vec<f64>,
    size: (u32, u32),
) -> Result<Vec<u8>, String> {
    draw_bars(&Bars { title: title.into(), x_label: x_label.into(), y_label: y_label.into(), labels, values }, size)
}

/// Line plots (PNG) of named series over the same points `0..n`, labelled on x by `labels`:
/// statistics over checkpoints, for instance.
pub fn line_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    labels: &[String],
    series: &[(String, Vec<f64>)],
    size: (u32, u32),
) -> Result<Vec<u8>, String> {
    super::canvas::register_font();
    let mut buf = vec![255u8; size.0 as usize * size.1 as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut buf, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let n = labels.len().max(2);
        let top = series.iter().flat_map(|(_, v)| v.iter().copied()).fold(0.0, f64::max).max(1e-12) * 1.08;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(15)
            .margin_right(45)
            .x_label_area_size(45)
            .y_label_area_size(80)
            .build_cartesian_2d(0f64..(n - 1) as f64, 0f64..top)
            .map_err(|e| e.to_string())?;
        let names = labels.to_vec();
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .x_labels(n.min(12))
            .x_label_formatter(&|x| {
                let i = x.round() as usize;
                if (x - i as f64).abs() < 1e-6 {
                    names.get(i).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .label_style(("sans-serif", 13))
            .draw()
            .map_err(|e| e.to_string())?;
        for (k, (name, values)) in series.iter().enumerate() {
            let c = super::colors::CATEGORICAL[k % super::colors::CATEGORICAL.len()];
            let color = RGBColor(c.0, c.1, c.2);
            let pts: Vec<(f64, f64)> = values.iter().enumerate().map(|(i, &v)| (i as f64, v)).collect();
            chart
                .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
                .map_err(|e| e.to_string())?
                .label(name.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
            chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled()))).map_err(|e| e.to_string())?;
        }
        if series.len() > 1 {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font(("sans-serif", 13))
                .draw()
                .map_err(|e| e.to_string())?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(super::encode_png(&buf, size.0, size.1))
}
