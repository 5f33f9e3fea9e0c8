//! Welding points that the tolerance policy calls the same: copies of one vertex computed in
//! different regions.

use super::predicates::{same_point, WELD_CELL};

/// Grid cells (much larger than the tolerance) with the ids and positions of their points.
type Buckets = rustc_hash::FxHashMap<(i64, i64), Vec<(usize, [f64; 2])>>;

/// Welds points (frame coordinates) that the tolerance rule calls the same, handing out one id
/// per distinct point.
#[derive(Default)]
pub struct Welder {
    grid: Buckets,
    count: usize,
}

impl Welder {
    /// An empty welder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of distinct points so far (ids are `0..len()`).
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether no point was welded yet.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The id of `p` (the id of an earlier point within tolerance, or a new one), and whether
    /// it is new.
    pub fn id(&mut self, p: [f64; 2]) -> (usize, bool) {
        let key = ((p[0] / WELD_CELL).floor() as i64, (p[1] / WELD_CELL).floor() as i64);
        for dx in -1..=1 {
            for dy in -1..=1 {
                if let Some(list) = self.grid.get(&(key.0 + dx, key.1 + dy)) {
                    if let Some(&(id, _)) = list.iter().find(|(_, q)| same_point(p, *q)) {
                        return (id, false);
                    }
                }
            }
        }
        let id = self.count;
        self.count += 1;
        self.grid.entry(key).or_default().push((id, p));
        (id, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_share_an_id_across_cell_borders() {
        let mut w = Welder::new();
        let (a, new_a) = w.id([0.1, 0.2]);
        assert!(new_a);
        assert_eq!(w.id([0.1 + 1e-13, 0.2 - 1e-13]), (a, false));
        let edge = (0.3 / WELD_CELL).floor() * WELD_CELL;
        let (b, _) = w.id([edge - 1e-12, 0.5]);
        assert_eq!(w.id([edge + 1e-12, 0.5]), (b, false));
        assert_ne!(w.id([0.1, 0.2 + 1e-6]).0, a);
    }
}
