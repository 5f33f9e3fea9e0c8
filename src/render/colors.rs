//! Colours: a categorical palette, a perceptual colormap, and the stable per-region colouring
//! that keeps neighbours apart.

/// An sRGB colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Rgb(pub u8, pub u8, pub u8);

impl Rgb {
    /// `#rrggbb`.
    pub fn hex(self) -> String {
        format!("#{:02x}{:02x}{:02x}", self.0, self.1, self.2)
    }

    /// Mixes towards white by `t` in [0, 1].
    pub fn lighten(self, t: f64) -> Rgb {
        let m = |c: u8| (c as f64 + (255.0 - c as f64) * t).round() as u8;
        Rgb(m(self.0), m(self.1), m(self.2))
    }
}

/// Ten well-separated categorical colours (the "tab10" values), for classes and layers.
pub const CATEGORICAL: [Rgb; 10] = [
    Rgb(31, 119, 180),
    Rgb(255, 127, 14),
    Rgb(44, 160, 44),
    Rgb(214, 39, 40),
    Rgb(148, 103, 189),
    Rgb(140, 86, 75),
    Rgb(227, 119, 194),
    Rgb(127, 127, 127),
    Rgb(188, 189, 34),
    Rgb(23, 190, 207),
];

/// Colour of edges created by the `i`-th nonlinear layer: dark, and off the class colours'
/// order so that edges stay visible on class fills.
pub fn layer_color(i: usize) -> Rgb {
    const DARK: [Rgb; 6] =
        [Rgb(20, 20, 20), Rgb(150, 20, 60), Rgb(20, 90, 160), Rgb(0, 120, 60), Rgb(120, 60, 170), Rgb(160, 90, 0)];
    DARK[i % DARK.len()]
}

/// Colour of class `k`.
pub fn class_color(k: usize) -> Rgb {
    CATEGORICAL[k % CATEGORICAL.len()]
}

/// Anchor points of the viridis colormap at t = 0, 1/8, ..., 1.
const VIRIDIS: [(f64, f64, f64); 9] = [
    (68.0, 1.0, 84.0),
    (71.0, 44.0, 122.0),
    (59.0, 81.0, 139.0),
    (44.0, 113.0, 142.0),
    (33.0, 144.0, 141.0),
    (39.0, 173.0, 129.0),
    (92.0, 200.0, 99.0),
    (170.0, 220.0, 50.0),
    (253.0, 231.0, 37.0),
];

/// The viridis colormap at `t` in [0, 1] (clamped; NaN maps to 0).
pub fn viridis(t: f64) -> Rgb {
    let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) } * 8.0;
    let i = (t.floor() as usize).min(7);
    let f = t - i as f64;
    let (a, b) = (VIRIDIS[i], VIRIDIS[i + 1]);
    let mix = |x: f64, y: f64| (x + (y - x) * f).round() as u8;
    Rgb(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// A palette of 24 light, distinct colours for regions: the categorical colours at three
/// lightness levels, ordered so that consecutive entries differ in hue.
fn region_palette() -> Vec<Rgb> {
    let mut out = Vec::with_capacity(24);
    for (level, t) in [0.35, 0.6, 0.15].iter().enumerate() {
        for k in 0..8 {
            out.push(CATEGORICAL[(k * 3 + level) % 8].lighten(*t));
        }
    }
    out
}

/// Colours for `n` regions: each region starts from a colour chosen by `key` (a hash of its
/// pattern, so colours are stable across runs) and moves to the next palette colour not used by
/// an already-coloured neighbour (greedy colouring in region order).
pub fn distinct_colors(n: usize, key: impl Fn(usize) -> u64, neighbours: &[Vec<usize>]) -> Vec<Rgb> {
    let palette = region_palette();
    let mut chosen: Vec<Option<usize>> = vec![None; n];
    for i in 0..n {
        let start = (key(i) % palette.len() as u64) as usize;
        let used: Vec<usize> = neighbours[i].iter().filter_map(|&j| chosen[j]).collect();
        let pick = (0..palette.len()).map(|d| (start + d) % palette.len()).find(|c| !used.contains(c)).unwrap_or(start);
        chosen[i] = Some(pick);
    }
    chosen.into_iter().map(|c| palette[c.unwrap_or(0)]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn viridis_ends_and_clamps() {
        assert_eq!(viridis(0.0), Rgb(68, 1, 84));
        assert_eq!(viridis(1.0), Rgb(253, 231, 37));
        assert_eq!(viridis(2.0), viridis(1.0));
        assert_eq!(viridis(f64::NAN), viridis(0.0));
    }

    #[test]
    fn neighbours_get_different_colours() {
        // A cycle of five plus a hub touching all: needs at least four colours.
        let mut nb: Vec<Vec<usize>> = (0..5).map(|i| vec![(i + 1) % 5, (i + 4) % 5, 5]).collect();
        nb.push((0..5).collect());
        let colors = distinct_colors(6, |_| 7, &nb);
        for (i, list) in nb.iter().enumerate() {
            for &j in list {
                assert_ne!(colors[i], colors[j], "{i} and {j}");
            }
        }
    }
}
