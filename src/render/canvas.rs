//! Two drawing surfaces behind one interface: an SVG writer and an RGB bitmap (plotters).
//!
//! The SVG is written directly rather than through plotters' SVG backend because every region
//! needs a `<title>` tooltip, which that backend cannot emit, and because writing compact
//! coordinates ourselves keeps 100k-region files small enough for a browser.

use super::colors::Rgb;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::fmt::Write;

/// Horizontal alignment of text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Align {
    /// Text starts at the point.
    Start,
    /// Text is centred on the point.
    Middle,
    /// Text ends at the point.
    End,
}

/// Drawing operations in pixel coordinates (origin top-left, y down).
pub trait Canvas {
    /// A filled polygon without outline, with an optional tooltip.
    fn polygon(&mut self, pts: &[(f64, f64)], fill: Rgb, title: Option<&str>);
    /// An open polyline.
    fn polyline(&mut self, pts: &[(f64, f64)], color: Rgb, width: f64);
    /// A filled circle with an outline.
    fn circle(&mut self, center: (f64, f64), r: f64, fill: Rgb, stroke: Rgb);
    /// Text whose vertical centre is at `at.1`.
    fn text(&mut self, at: (f64, f64), s: &str, size: f64, color: Rgb, align: Align);
    /// Many separate straight segments of one colour and width (one SVG path).
    fn segments(&mut self, segs: &[[(f64, f64); 2]], color: Rgb, width: f64);
}

/// An SVG document being written.
pub struct SvgCanvas {
    out: String,
    /// The fill of the open `<g>` of polygons, when one is open.
    group: Option<Rgb>,
}

fn num(out: &mut String, v: f64) {
    // One decimal in pixel units: a tenth of a pixel, and short files.
    let r = (v * 10.0).round() / 10.0;
    if r == r.trunc() {
        let _ = write!(out, "{}", r as i64);
    } else {
        let _ = write!(out, "{r:.1}");
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

impl SvgCanvas {
    /// A `width × height` document with a white background.
    pub fn new(width: u32, height: u32) -> Self {
        let mut out = String::new();
        let _ = write!(
            out,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" font-family=\"DejaVu Sans, sans-serif\">\n<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n"
        );
        SvgCanvas { out, group: None }
    }

    fn close_group(&mut self) {
        if self.group.take().is_some() {
            self.out.push_str("</g>\n");
        }
    }

    /// The finished document.
    pub fn finish(mut self) -> String {
        self.close_group();
        self.out.push_str("</svg>\n");
        self.out
    }

    fn points(&mut self, pts: &[(f64, f64)]) {
        for (i, p) in pts.iter().enumerate() {
            if i > 0 {
                self.out.push(' ');
            }
            num(&mut self.out, p.0);
            self.out.push(',');
            num(&mut self.out, p.1);
        }
    }
}

impl Canvas for SvgCanvas {
    fn polygon(&mut self, pts: &[(f64, f64)], fill: Rgb, title: Option<&str>) {
        // Consecutive polygons of one colour share a group's fill: smaller files.
        if self.group != Some(fill) {
            self.close_group();
            let _ = writeln!(self.out, "<g fill=\"{}\">", fill.hex());
            self.group = Some(fill);
        }
        self.out.push_str("<polygon points=\"");
        self.points(pts);
        match title {
            Some(t) => {
                let _ = writeln!(self.out, "\"><title>{}</title></polygon>", escape(t));
            }
            None => self.out.push_str("\"/>\n"),
        }
    }

    fn polyline(&mut self, pts: &[(f64, f64)], color: Rgb, width: f64) {
        self.close_group();
        self.out.push_str("<polyline points=\"");
        self.points(pts);
        let _ = writeln!(
            self.out,
            "\" fill=\"none\" stroke=\"{}\" stroke-width=\"{width}\" stroke-linejoin=\"round\" stroke-linecap=\"round\"/>",
            color.hex()
        );
    }

    fn circle(&mut self, c: (f64, f64), r: f64, fill: Rgb, stroke: Rgb) {
        self.close_group();
        self.out.push_str("<circle cx=\"");
        num(&mut self.out, c.0);
        self.out.push_str("\" cy=\"");
        num(&mut self.out, c.1);
        let _ = writeln!(
            self.out,
            "\" r=\"{r}\" fill=\"{}\" stroke=\"{}\" stroke-width=\"1.5\"/>",
            fill.hex(),
            stroke.hex()
        );
    }

    fn text(&mut self, at: (f64, f64), s: &str, size: f64, color: Rgb, align: Align) {
        let anchor = match align {
            Align::Start => "start",
            Align::Middle => "middle",
            Align::End => "end",
        };
        self.close_group();
        self.out.push_str("<text x=\"");
        num(&mut self.out, at.0);
        self.out.push_str("\" y=\"");
        num(&mut self.out, at.1);
        let _ = writeln!(
            self.out,
            "\" font-size=\"{size}\" fill=\"{}\" text-anchor=\"{anchor}\" dominant-baseline=\"central\">{}</text>",
            color.hex(),
            escape(s)
        );
    }

    fn segments(&mut self, segs: &[[(f64, f64); 2]], color: Rgb, width: f64) {
        self.close_group();
        self.out.push_str("<path d=\"");
        for [a, b] in segs {
            self.out.push('M');
            num(&mut self.out, a.0);
            self.out.push(',');
            num(&mut self.out, a.1);
            self.out.push('L');
            num(&mut self.out, b.0);
            self.out.push(',');
            num(&mut self.out, b.1);
        }
        let _ = writeln!(self.out, "\" fill=\"none\" stroke=\"{}\" stroke-width=\"{width}\"/>", color.hex());
    }
}

/// Registers the bundled font with plotters (once).
pub(crate) fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // A bundled font: text renders on machines without any system fonts.
        static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
        plotters::style::register_font("sans-serif", FontStyle::Normal, FONT)
            .unwrap_or_else(|_| unreachable!("the bundled font is a valid TrueType file"));
    });
}

/// An RGB bitmap drawn with plotters.
pub struct BitmapCanvas<'a> {
    area: DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>,
}

fn color(c: Rgb) -> RGBColor {
    RGBColor(c.0, c.1, c.2)
}

fn px(p: (f64, f64)) -> (i32, i32) {
    (p.0.round() as i32, p.1.round() as i32)
}

impl<'a> BitmapCanvas<'a> {
    /// Draws into `buf` (`width × height × 3` bytes), cleared to white.
    pub fn new(buf: &'a mut [u8], width: u32, height: u32) -> Self {
        register_font();
        let area = BitMapBackend::with_buffer(buf, (width, height)).into_drawing_area();
        let _ = area.fill(&WHITE);
        BitmapCanvas { area }
    }

    /// Draws over the picture already in `buf`.
    pub fn over(buf: &'a mut [u8], width: u32, height: u32) -> Self {
        register_font();
        let area = BitMapBackend::with_buffer(buf, (width, height)).into_drawing_area();
        BitmapCanvas { area }
    }

    /// Flushes drawing into the buffer.
    pub fn finish(self) {
        let _ = self.area.present();
    }
}

impl Canvas for BitmapCanvas<'_> {
    fn polygon(&mut self, pts: &[(f64, f64)], fill: Rgb, _title: Option<&str>) {
        let pts: Vec<(i32, i32)> = pts.iter().map(|&p| px(p)).collect();
        let _ = self.area.draw(&Polygon::new(pts, color(fill).filled()));
    }

    fn polyline(&mut self, pts: &[(f64, f64)], c: Rgb, width: f64) {
        let pts: Vec<(i32, i32)> = pts.iter().map(|&p| px(p)).collect();
        let style = color(c).stroke_width(width.round().max(1.0) as u32);
        let _ = self.area.draw(&PathElement::new(pts, style));
    }

    fn circle(&mut self, c: (f64, f64), r: f64, fill: Rgb, stroke: Rgb) {
        let r = r.round() as i32;
        let _ = self.area.draw(&Circle::new(px(c), r, color(fill).filled()));
        let _ = self.area.draw(&Circle::new(px(c), r, color(stroke).stroke_width(2)));
    }

    fn segments(&mut self, segs: &[[(f64, f64); 2]], c: Rgb, width: f64) {
        for [a, b] in segs {
            self.polyline(&[*a, *b], c, width);
        }
    }

    fn text(&mut self, at: (f64, f64), s: &str, size: f64, c: Rgb, align: Align) {
        let h = match align {
            Align::Start => HPos::Left,
            Align::Middle => HPos::Center,
            Align::End => HPos::Right,
        };
        let rgb = color(c);
        let style = TextStyle::from(("sans-serif", size).into_font()).color(&rgb).pos(Pos::new(h, VPos::Center));
        let _ = self.area.draw(&Text::new(s.to_string(), px(at), style));
    }
}
