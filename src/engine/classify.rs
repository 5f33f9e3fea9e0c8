//! Classifying a polygon against the units that can differ from a base.
//!
//! Given a base of a stage (classified over a polygon containing `poly`) and the accumulated
//! corrections of the stage's pre-activations, only two kinds of units can behave differently on
//! `poly` than the base says: those undecided over the base's polygon, and those whose
//! pre-activations the corrections touch. [`candidates`] classifies exactly those, for a cell
//! (which splits along the crossing ones) and for a derived base (which patches a copy of its
//! parent's classification with them).

use super::acc::Acc;
use super::base::{Base, Class};
use super::maxgroup::{box_center, Contest};
use super::plan::{Nonlinearity, Stage};
use super::pwl::Crossing;
use crate::geometry::polygon::ConvexPolygon;

/// A candidate unit (elementwise stages) or group (max stages), classified on the polygon.
pub(crate) struct Verdict {
    /// The unit or group.
    pub index: u32,
    /// Its post-activation map on the polygon (crossing hinges and contests at their defaults).
    pub t: [f64; 3],
    /// Its pattern bits: one per hinge slot (set when above), or the winner's position.
    pub bits: u64,
}

/// The classification of the candidates of one polygon.
#[derive(Default)]
pub(crate) struct Candidates {
    pub verdicts: Vec<Verdict>,
    /// Crossing hinges (elementwise stages), with their units' pre-activation maps.
    pub crossing: Vec<(Crossing, [f64; 3])>,
    /// Contested groups (max stages).
    pub contests: Vec<Contest>,
    /// `(index, t − t_base)` for every candidate whose post-activation differs from the base's.
    pub changes: Vec<(u32, [f64; 3])>,
}

/// Epoch marks for visiting each candidate once.
#[derive(Default)]
pub(crate) struct Seen {
    marks: Vec<u32>,
    epoch: u32,
}

impl Seen {
    fn start(&mut self, n: usize) -> u32 {
        if self.marks.len() < n {
            self.marks.resize(n, 0);
        }
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.marks.iter_mut().for_each(|m| *m = 0);
            self.epoch = 1;
        }
        self.epoch
    }
}

/// Classifies on `poly` every unit (or group) of `stage` that can differ from `base`, whose
/// pre-activations are `base.z` plus `acc`.
pub(crate) fn candidates(stage: &Stage, base: &Base, acc: &Acc, poly: &ConvexPolygon, seen: &mut Seen) -> Candidates {
    let class = base.class.as_ref().expect("stage bases are classified");
    let n = stage.n_in;
    let zb = &base.z;
    let z_of = |u: usize| {
        let d = acc.get(u);
        [zb[u] + d[0], zb[n + u] + d[1], zb[2 * n + u] + d[2]]
    };
    let center = box_center(poly);
    let bb = poly.bbox();
    let half = [0.5 * (bb[1] - bb[0]), 0.5 * (bb[3] - bb[2])];
    let t_base = class.t();
    let m = stage.n_out;
    let epoch = seen.start(n.max(m));
    let marks = &mut seen.marks;
    let mut out = Candidates::default();
    let record = |out: &mut Candidates, index: usize, t: [f64; 3], bits: u64| {
        let d = [t[0] - t_base[index], t[1] - t_base[m + index], t[2] - t_base[2 * m + index]];
        if d != [0.0; 3] {
            out.changes.push((index as u32, d));
        }
        out.verdicts.push(Verdict { index: index as u32, t, bits });
    };
    match (&stage.nonlin, class) {
        (Nonlinearity::Pwl(layer), Class::Pwl(c)) => {
            let mut crossing = Vec::new();
            let mut visit = |u: usize, out: &mut Candidates| {
                if marks[u] == epoch {
                    return;
                }
                marks[u] = epoch;
                let z = z_of(u);
                let before = crossing.len();
                let mut bits = 0u64;
                let t = layer.classify_one(u, z, stage.noise[u], (poly, center, half), &mut crossing, |j, above| {
                    bits |= u64::from(above) << j;
                });
                out.crossing.extend(crossing.drain(before..).map(|x| (x, z)));
                record(out, u, t, bits);
            };
            for x in &c.crossing {
                visit(x.unit as usize, &mut out);
            }
            acc.for_each_unit(|u| visit(u, &mut out));
        }
        (Nonlinearity::Max(layer), Class::Max(c)) if layer.has_quads() => {
            // Groups of four (2 × 2 pooling): the candidate groups in the order of the general
            // loop below, then the box test of each from its gathered maps in straight-line
            // code (the bounds and rule of `undominated`'s box phase, operation for operation);
            // only the groups it leaves open take the vertex test.
            let mut groups = Vec::new();
            let mut add = |g: usize| {
                if marks[g] != epoch {
                    marks[g] = epoch;
                    groups.push(g as u32);
                }
            };
            for k in &c.contests {
                add(k.group as usize);
            }
            acc.for_each_unit(|u| {
                for &g in layer.groups_of(u) {
                    add(g as usize);
                }
            });
            for &g in &groups {
                let units: [u32; 4] = layer.group(g as usize).try_into().expect("a group of four");
                let maps = units.map(|u| z_of(u as usize));
                let noise = units.map(|u| stage.noise[u as usize]);
                let (w, contest) = match super::kernels::box_winner4_of_maps(maps, noise, center, half) {
                    Some(w) => (w as u32, None),
                    None => {
                        let cands: [(u32, u32, [f64; 3]); 4] = std::array::from_fn(|k| (k as u32, units[k], maps[k]));
                        layer.classify_group(g as usize, &cands, poly, center, &stage.noise, true)
                    }
                };
                out.contests.extend(contest);
                record(&mut out, g as usize, maps[w as usize], u64::from(w));
            }
        }
        (Nonlinearity::Max(layer), Class::Max(c)) => {
            let mut cands = Vec::new();
            let mut visit = |g: usize, out: &mut Candidates| {
                if marks[g] == epoch {
                    return;
                }
                marks[g] = epoch;
                cands.clear();
                cands.extend(layer.group(g).iter().enumerate().map(|(pos, &u)| (pos as u32, u, z_of(u as usize))));
                let (w, contest) = layer.classify_group(g, &cands, poly, center, &stage.noise, false);
                out.contests.extend(contest);
                record(out, g, cands[w as usize].2, u64::from(w));
            };
            for k in &c.contests {
                visit(k.group as usize, &mut out);
            }
            acc.for_each_unit(|u| {
                for &g in layer.groups_of(u) {
                    visit(g as usize, &mut out);
                }
            });
        }
        _ => unreachable!("a base's classification matches its stage"),
    }
    out
}
