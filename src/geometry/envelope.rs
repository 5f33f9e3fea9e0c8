//! The upper envelope of affine functions over a convex polygon: the cells where each
//! function is the maximum. Used for max-pool / maxout splits and for argmax (decision) cells.

use super::polygon::{ConvexPolygon, Split};

/// Cells of `poly` where each of `k` affine functions is the maximum.
///
/// The functions are known through `diff(c, d, p)` = `f_c(p) − f_d(p)` and `scale(c, d)`, the
/// magnitude of the terms of that difference (see `predicates`). Ties go to the lower index: where
/// `f_c = f_d` on the whole polygon, only the lower of `c`, `d` keeps it. Returns `(index, cell)`
/// for every function whose cell is not empty, in index order (a cell cut from the polygon
/// keeps a vertex strictly off each cutting line, so it has positive area).
pub fn max_cells(
    poly: &ConvexPolygon,
    k: usize,
    diff: impl Fn(usize, usize, [f64; 2]) -> f64,
    scale: impl Fn(usize, usize) -> f64,
) -> Vec<(usize, ConvexPolygon)> {
    let mut cells = Vec::with_capacity(k);
    'cand: for c in 0..k {
        let mut cur = poly.clone();
        for d in (0..k).filter(|&d| d != c) {
            let values: Vec<f64> = cur.pts.iter().map(|&p| diff(c, d, p)).collect();
            match cur.split(&values, scale(c, d)) {
                Split::Above => {}
                Split::Below => continue 'cand,
                Split::OnLine => {
                    if c > d {
                        continue 'cand;
                    }
                }
                Split::Both(_, pos) => cur = pos,
            }
        }
        cells.push((c, cur));
    }
    cells
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tent_function_has_a_middle_cell() {
        // max(u, -u, 0.5) on [-1, 1]²: the constant wins only in the middle, at no vertex.
        let f = [[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 0.5]];
        let sq = ConvexPolygon::rect(-1.0, 1.0, -1.0, 1.0);
        let cells = max_cells(
            &sq,
            3,
            |c, d, p| (f[c][0] - f[d][0]) * p[0] + (f[c][1] - f[d][1]) * p[1] + f[c][2] - f[d][2],
            |_, _| 3.0,
        );
        let areas: Vec<(usize, f64)> = cells.iter().map(|(i, c)| (*i, c.area())).collect();
        assert_eq!(areas.len(), 3);
        assert!((areas[0].1 - 1.0).abs() < 1e-12 && (areas[1].1 - 1.0).abs() < 1e-12);
        assert!((areas[2].1 - 2.0).abs() < 1e-12);
    }

    #[test]
    fn identical_functions_keep_the_lower_index() {
        let sq = ConvexPolygon::rect(0.0, 1.0, 0.0, 1.0);
        let cells = max_cells(&sq, 2, |_, _, _| 0.0, |_, _| 1.0);
        assert_eq!(cells.len(), 1);
        assert_eq!(cells[0].0, 0);
    }
}
