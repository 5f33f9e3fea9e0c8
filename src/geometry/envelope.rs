//! The upper envelope of affine functions over a convex polygon: the cells where each function
//! is the maximum. One routine serves maxout, max-pool, max joins and argmax (decision) cells.
//!
//! The cells are built by a tournament against the current winner, so that they tile the polygon
//! by construction: the polygon starts as one leaf won by candidate 0; each further candidate `d`
//! is compared with the winner `w` of every leaf and takes the part of the leaf where it is larger
//! (`f_d − f_w` positive beyond the tolerance rule). Every comparison is one polygon split, so the
//! leaves always tile the polygon and each has exactly one winner; ties (the difference within the
//! tolerance) stay with `w`, the lower index, and identical candidates never split anything. The
//! parts `d` takes from several leaves together form its (convex) cell and are merged into one
//! polygon.

use super::polygon::{ConvexPolygon, Split};

/// Cells of `poly` where each of `k` affine functions is the maximum.
///
/// The functions are known through `diff(c, d, p)` = `f_c(p) − f_d(p)` and `tol(c, d)`, the
/// tolerance of that difference (`predicates::tolerance` of its gradient and of both noise
/// floors). Ties go to the lower index. Returns `(index, cell)` for every function whose cell is
/// not empty, in index order; the cells tile `poly`.
pub fn max_cells(
    poly: &ConvexPolygon,
    k: usize,
    diff: impl Fn(usize, usize, [f64; 2]) -> f64,
    tol: impl Fn(usize, usize) -> f64,
) -> Vec<(usize, ConvexPolygon)> {
    let mut leaves: Vec<(usize, ConvexPolygon)> = Vec::with_capacity(k);
    if k == 0 {
        return leaves;
    }
    leaves.push((0, poly.clone()));
    let mut values = Vec::new();
    for d in 1..k {
        let mut taken: Vec<ConvexPolygon> = Vec::new();
        let mut kept = Vec::with_capacity(leaves.len() + 1);
        for (w, leaf) in leaves {
            values.clear();
            values.extend(leaf.pts.iter().map(|&p| diff(d, w, p)));
            match leaf.split(&values, tol(d, w)) {
                Split::Above => taken.push(leaf),
                Split::Below | Split::OnLine => kept.push((w, leaf)),
                Split::Both(lower, upper) => {
                    kept.push((w, lower));
                    taken.push(upper);
                }
            }
        }
        match taken.len() {
            0 => {}
            1 => kept.push((d, taken.pop().expect("one piece"))),
            _ => {
                // The pieces share edges along earlier winners' boundaries; their union is d's
                // cell within the polygon, which is convex: its hull, without the points where
                // those boundaries met the cell's edges.
                let pts: Vec<[f64; 2]> = taken.iter().flat_map(|c| c.pts.iter().copied()).collect();
                kept.push((d, ConvexPolygon::hull(&pts)));
            }
        }
        leaves = kept;
    }
    leaves.sort_by_key(|(i, _)| *i);
    leaves
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::predicates::tolerance;

    type Diff<'a> = Box<dyn Fn(usize, usize, [f64; 2]) -> f64 + 'a>;
    type Tol<'a> = Box<dyn Fn(usize, usize) -> f64 + 'a>;

    fn affine(f: &[[f64; 3]]) -> (Diff<'_>, Tol<'_>) {
        (
            Box::new(move |c: usize, d: usize, p: [f64; 2]| {
                (f[c][0] - f[d][0]) * p[0] + (f[c][1] - f[d][1]) * p[1] + (f[c][2] - f[d][2])
            }),
            Box::new(move |c: usize, d: usize| tolerance(f[c][0] - f[d][0], f[c][1] - f[d][1], 1e-15)),
        )
    }

    #[test]
    fn tent_function_has_a_middle_cell() {
        // max(u, -u, 0.5) on [-1, 1]²: the constant wins only in the middle, at no vertex.
        let f = [[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 0.5]];
        let (diff, tol) = affine(&f);
        let cells = max_cells(&ConvexPolygon::rect(-1.0, 1.0, -1.0, 1.0), 3, diff, tol);
        let areas: Vec<(usize, f64)> = cells.iter().map(|(i, c)| (*i, c.area())).collect();
        assert_eq!(areas.len(), 3);
        assert!((areas[0].1 - 1.0).abs() < 1e-12 && (areas[1].1 - 1.0).abs() < 1e-12);
        assert!((areas[2].1 - 2.0).abs() < 1e-12);
        // The middle cell was taken from two leaves and merged: a rectangle, four corners.
        assert_eq!(cells[2].1.pts.len(), 4);
        assert!(cells.iter().all(|(_, c)| c.is_convex_ccw()));
    }

    #[test]
    fn identical_functions_keep_the_lower_index() {
        let sq = ConvexPolygon::rect(0.0, 1.0, 0.0, 1.0);
        let cells = max_cells(&sq, 2, |_, _, _| 0.0, |_, _| 1e-15);
        assert_eq!(cells.len(), 1);
        assert_eq!(cells[0].0, 0);
    }

    #[test]
    fn near_tied_candidates_with_a_large_offset_tile_the_polygon() {
        // Five candidates 1e3 + small slopes and offsets: the cells are thin bands, and must cover
        // the square.
        let f: Vec<[f64; 3]> =
            (0..5).map(|i| [1e-3 * (i as f64 - 2.0), 1e-4 * (i % 2) as f64, 1e3 + 1e-4 * (i * i) as f64]).collect();
        let (diff, _) = affine(&f);
        let tol = |c: usize, d: usize| tolerance(f[c][0] - f[d][0], f[c][1] - f[d][1], 2.0 * 1e-14 * 1e3);
        let sq = ConvexPolygon::rect(-1.0, 1.0, -1.0, 1.0);
        let cells = max_cells(&sq, 5, diff, tol);
        let total: f64 = cells.iter().map(|(_, c)| c.area()).sum();
        assert!((total - 4.0).abs() < 1e-12, "cells cover {total} of 4");
        // Whatever the rounding, the winner at each cell's centroid is the cell's candidate.
        for (i, c) in &cells {
            let p = c.centroid();
            let best = (0..5).max_by(|&a, &b| {
                let val = |i: usize| f[i][0] * p[0] + f[i][1] * p[1] + (f[i][2] - 1e3);
                let (va, vb) = (val(a), val(b));
                va.total_cmp(&vb).then(b.cmp(&a))
            });
            assert_eq!(Some(*i), best);
        }
    }
}
