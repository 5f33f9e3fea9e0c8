//! The slope-stream sweep behind [`super::trace`]: every tensor along a segment kept as its
//! value at the segment's start, its slope on the first piece, and the sparse changes of its
//! slope where later pieces begin.
//!
//! Why streams: along a path through an image model, a breakpoint changes the slope of one
//! unit (the unit crossing its hinge, the group whose winner changes), and that change reaches
//! only the units in that unit's column of the next affine layer (a conv stencil of a few
//! hundred entries). Evaluating every tensor at every breakpoint costs each layer's full width
//! (and a full product) per breakpoint; pushing slope changes costs the columns. And a unit's
//! value is affine between its own slope changes, so its hinge crossings are found once per
//! such span of pieces (an O(1) test), not once per piece.
//!
//! The decisions are the ones the tolerance rule makes on a piece: a crossing found on a
//! unit's span is accepted or refused on the piece holding it, from the unit's values at the
//! piece's two ends ([`super::crossing`], [`super::group_changes`]); a piece's bits are the
//! signs at its middle. Values are sums of slope changes times piece lengths: their rounding
//! grows with the number of slope changes of a unit, far below the noise floor on paths of
//! thousands of pieces.

use super::{argmax, crossing, group_changes, Piece};
use crate::engine::affine::{Op, SparseVec};
use crate::geometry::predicates::DIST;
use crate::network::{HingeForm, LayerKind, Merge, Network, Src};
use crate::pattern::{LayerBits, Pattern};
use crate::pointwise::{nonlinear, Nonlinear, Ops};
use rayon::prelude::*;

/// A tensor along the segment: affine on every piece, continuous up to rounding.
///
/// Where an elementwise unit changes mode, its value may also jump by a rounding-sized amount
/// (`j`): the value its readers reach there is set to the function's exact value on the new
/// piece, so that a unit switched off is exactly zero (and ties between such units in a max
/// pool are ties, as in a forward pass), not the rounding residue of its slopes.
#[derive(Clone, Debug)]
struct Stream {
    /// Value at the first breakpoint.
    v0: Vec<f64>,
    /// Slope (per unit of `t`) on piece 0.
    s0: Vec<f64>,
    /// Piece `p`'s changes are `idx`/`d`/`j` at `off[p]..off[p + 1]` (piece 0 has none; an
    /// index may repeat, the changes add in order): slope changes `d`, value jumps `j` (empty
    /// when there are none: jumps are rare, and most streams, such as every output of a max
    /// node, have none).
    off: Vec<usize>,
    idx: Vec<u32>,
    d: Vec<f64>,
    j: Vec<f64>,
}

/// One piece's changes.
struct Row<'a> {
    idx: &'a [u32],
    d: &'a [f64],
    /// Empty when there are no jumps.
    j: &'a [f64],
}

impl Row<'_> {
    /// `(unit, Δslope, Δvalue)`.
    fn iter(&self) -> impl Iterator<Item = (usize, f64, f64)> + '_ {
        let j = self.j;
        self.idx
            .iter()
            .zip(self.d)
            .enumerate()
            .map(move |(e, (&u, &d))| (u as usize, d, if j.is_empty() { 0.0 } else { j[e] }))
    }
}

/// Rows of changes being built in piece order.
#[derive(Default)]
struct Rows {
    off: Vec<usize>,
    idx: Vec<u32>,
    d: Vec<f64>,
    j: Vec<f64>,
}

impl Rows {
    fn new() -> Rows {
        Rows { off: vec![0], ..Rows::default() }
    }

    #[inline]
    fn push(&mut self, u: usize, d: f64, j: f64) {
        // The jumps are kept from the first nonzero one on (zeros before it).
        if j != 0.0 && self.j.is_empty() {
            self.j.resize(self.idx.len(), 0.0);
        }
        self.idx.push(u as u32);
        self.d.push(d);
        if !self.j.is_empty() {
            self.j.push(j);
        }
    }

    fn reserve(&mut self, changes: usize) {
        self.idx.reserve(changes);
        self.d.reserve(changes);
    }

    fn end_row(&mut self) {
        self.off.push(self.idx.len());
    }

    fn stream(self, v0: Vec<f64>, s0: Vec<f64>) -> Stream {
        Stream { v0, s0, off: self.off, idx: self.idx, d: self.d, j: self.j }
    }
}

impl Stream {
    /// The straight segment `a + t·(b − a)` from `t = 0` on (one piece).
    fn segment(a: &[f64], b: &[f64]) -> Stream {
        let s0 = a.iter().zip(b).map(|(p, q)| q - p).collect();
        Stream { v0: a.to_vec(), s0, off: vec![0, 0], idx: Vec::new(), d: Vec::new(), j: Vec::new() }
    }

    /// A one-piece stream from `t = 0` on, from `t0` on instead.
    fn from(&self, t0: f64) -> Stream {
        debug_assert!(self.pieces() == 1, "a prefix value is affine");
        let v0 =
            if t0 == 0.0 { self.v0.clone() } else { self.v0.iter().zip(&self.s0).map(|(v, s)| v + t0 * s).collect() };
        Stream { v0, s0: self.s0.clone(), off: vec![0, 0], idx: Vec::new(), d: Vec::new(), j: Vec::new() }
    }

    fn width(&self) -> usize {
        self.v0.len()
    }

    fn pieces(&self) -> usize {
        self.off.len() - 1
    }

    fn row(&self, p: usize) -> Row<'_> {
        let r = self.off[p]..self.off[p + 1];
        let j = if self.j.is_empty() { &[] } else { &self.j[r.clone()] };
        Row { idx: &self.idx[r.clone()], d: &self.d[r], j }
    }

    /// The stream on refined pieces: new piece `p` starts at `plan[p]` (an old breakpoint, or
    /// a cut inside old piece `plan[p].0`); the changes stay at the old breakpoints.
    fn refine(&mut self, plan: &[(usize, Option<f64>)]) {
        let mut off = Vec::with_capacity(plan.len());
        let mut at = 0;
        off.push(0);
        for &(k, l) in &plan[..plan.len() - 1] {
            if l.is_none() {
                at = self.off[k + 1];
            }
            off.push(at);
        }
        self.off = off;
    }

    /// A stream from changes `(piece, unit, Δslope, Δvalue)` (none at piece 0), in order within
    /// each piece.
    fn from_events(v0: Vec<f64>, s0: Vec<f64>, pieces: usize, events: &[(u32, u32, f64, f64)]) -> Stream {
        let mut off = vec![0usize; pieces + 1];
        for e in events {
            off[e.0 as usize + 1] += 1;
        }
        for p in 0..pieces {
            off[p + 1] += off[p];
        }
        let mut next = off.clone();
        let jumps = events.iter().any(|e| e.3 != 0.0);
        let (mut idx, mut d) = (vec![0u32; events.len()], vec![0.0; events.len()]);
        let mut j = if jumps { vec![0.0; events.len()] } else { Vec::new() };
        for &(p, u, dv, jv) in events {
            let at = &mut next[p as usize];
            idx[*at] = u;
            d[*at] = dv;
            if jumps {
                j[*at] = jv;
            }
            *at += 1;
        }
        Stream { v0, s0, off, idx, d, j }
    }

    /// `−self`.
    fn negated(mut self) -> Stream {
        self.v0.iter_mut().chain(&mut self.s0).chain(&mut self.d).chain(&mut self.j).for_each(|x| *x = -*x);
        self
    }

    /// The streams side by side (`shift[i]`: where part `i` starts), or summed (all shifts 0).
    fn join(parts: &[&Stream], shift: &[usize], width: usize) -> Stream {
        let (mut v0, mut s0) = (vec![0.0; width], vec![0.0; width]);
        for (s, &o) in parts.iter().zip(shift) {
            v0[o..o + s.width()].iter_mut().zip(&s.v0).for_each(|(a, b)| *a += b);
            s0[o..o + s.width()].iter_mut().zip(&s.s0).for_each(|(a, b)| *a += b);
        }
        let mut rows = Rows::new();
        for p in 0..parts[0].pieces() {
            for (s, &o) in parts.iter().zip(shift) {
                s.row(p).iter().for_each(|(u, d, j)| rows.push(u + o, d, j));
            }
            rows.end_row();
        }
        rows.stream(v0, s0)
    }

    /// The values at every breakpoint `ts` (row `k`: at `ts[k]`, after the changes there),
    /// as its readers' [`Lines`] reach them.
    fn values(&self, ts: &[f64]) -> Vec<f64> {
        let w = self.width();
        let n = self.pieces();
        let mut out = Vec::with_capacity(ts.len() * w);
        let mut lines = Lines::new(self, ts[0]);
        out.extend_from_slice(&self.v0);
        for (p, &tp) in ts.iter().enumerate().skip(1) {
            if p < n {
                self.row(p).iter().for_each(|(u, d, j)| lines.change(u, p, tp, d, j));
            }
            out.extend((0..w).map(|u| lines.at(u, tp)));
        }
        out
    }
}

/// Every unit's current line: value `v` at `t` (the start of piece `k`, where its slope last
/// changed) and slope `s`.
///
/// One record per unit (not four arrays): a change reads and writes all four fields of a
/// unit in random unit order, and one cache line per unit instead of four is what makes the
/// sweeps fast on wide layers.
struct Lines(Vec<Line>);

#[derive(Clone, Copy)]
struct Line {
    v: f64,
    t: f64,
    s: f64,
    k: usize,
}

impl Lines {
    fn new(x: &Stream, t0: f64) -> Lines {
        Lines::with(&x.v0, &x.s0, t0)
    }

    fn with(v0: &[f64], s0: &[f64], t0: f64) -> Lines {
        Lines(v0.iter().zip(s0).map(|(&v, &s)| Line { v, t: t0, s, k: 0 }).collect())
    }

    #[inline]
    fn at(&self, u: usize, t: f64) -> f64 {
        let l = &self.0[u];
        l.v + l.s * (t - l.t)
    }

    /// Unit `u`'s slope.
    #[inline]
    fn s(&self, u: usize) -> f64 {
        self.0[u].s
    }

    /// The piece where unit `u`'s current line begins.
    #[inline]
    fn k(&self, u: usize) -> usize {
        self.0[u].k
    }

    /// Unit `u`'s slope changes by `d` and its value by `j` where piece `p` (at `tp`) begins.
    #[inline]
    fn change(&mut self, u: usize, p: usize, tp: f64, d: f64, j: f64) {
        let l = &mut self.0[u];
        if l.k != p {
            l.v += l.s * (tp - l.t);
            l.t = tp;
            l.k = p;
        }
        l.s += d;
        l.v += j;
    }
}

/// The piece in `ks..p` holding `t`.
fn piece_of(ts: &[f64], ks: usize, p: usize, t: f64) -> usize {
    ks + ts[ks + 1..p].partition_point(|&x| x <= t)
}

/// The middle of piece `q`.
fn mid(ts: &[f64], q: usize) -> f64 {
    0.5 * (ts[q] + ts[q + 1])
}

/// The hinges unit `u`'s line passes in its span `lines.k(u)..p`, accepted by the tolerance rule
/// on the piece holding each: `(piece, relative position)`.
fn hinge_cuts(lines: &Lines, ts: &[f64], u: usize, p: usize, form: &HingeForm, cuts: &mut Vec<(usize, f64)>) {
    let ks = lines.k(u);
    if ks == p {
        return;
    }
    let (t0, t1) = (ts[ks], ts[p]);
    let Line { v: va, s, .. } = lines.0[u];
    let vb = va + s * (t1 - t0);
    for &(h, _) in form.hinges() {
        let (fa, fb) = (va - h, vb - h);
        if (fa < 0.0 && fb > 0.0) || (fa > 0.0 && fb < 0.0) {
            let k = piece_of(ts, ks, p, t0 + fa / (fa - fb) * (t1 - t0));
            let (ta, tb) = (ts[k], ts[k + 1]);
            if let Some(l) = crossing(va + s * (ta - t0), va + s * (tb - t0), h, tb - ta) {
                cuts.push((k, l));
            }
        }
    }
}

/// Where a node's output slope changes and its pattern bits flip, collected over the sweep.
struct Out {
    /// Slope on piece 0.
    s0: Vec<f64>,
    /// Every output unit's line as the output's readers will follow it ([`Lines`], mirrored
    /// operation for operation, so that a value set here is the value they reach).
    line: Lines,
    /// `(piece, unit, Δslope, Δvalue)`.
    events: Vec<(u32, u32, f64, f64)>,
    /// `(piece, pattern bit)`: bits that toggle where the piece begins (piece 0: bits set).
    flips: Vec<(u32, u32)>,
}

impl Out {
    /// An output starting at `v0` at `t0`, with room for `events` changes (an estimate: the
    /// input's changes; growing the list by copies costs more than the room).
    fn new(v0: &[f64], t0: f64, events: usize) -> Out {
        let w = v0.len();
        let line = Lines::with(v0, &vec![0.0; w], t0);
        Out { s0: vec![0.0; w], line, events: Vec::with_capacity(events), flips: Vec::new() }
    }

    /// Output unit `u` has slope `o` from piece `q` (at `tq`) on, and value `y` there when
    /// given (where its mode changes).
    #[inline]
    fn set(&mut self, q: usize, tq: f64, u: usize, o: f64, y: Option<f64>) {
        if q == 0 {
            self.s0[u] = o;
            self.line.0[u].s = o;
            return;
        }
        let d = o - self.line.s(u);
        let j = y.map_or(0.0, |y| y - if self.line.k(u) == q { self.line.0[u].v } else { self.line.at(u, tq) });
        if d != 0.0 || j != 0.0 {
            self.events.push((q as u32, u as u32, d, j));
            self.line.change(u, q, tq, d, j);
        }
    }

    /// The bits `mask` at `offset` toggle where piece `q` begins.
    #[inline]
    fn flip(&mut self, q: usize, offset: usize, mask: u64) {
        flip(&mut self.flips, q, offset, mask);
    }
}

/// Records that the bits `mask` at `offset` toggle where piece `q` begins.
#[inline]
fn flip(flips: &mut Vec<(u32, u32)>, q: usize, offset: usize, mut mask: u64) {
    while mask != 0 {
        flips.push((q as u32, (offset + mask.trailing_zeros() as usize) as u32));
        mask &= mask - 1;
    }
}

/// An elementwise node's bits and output slopes over unit `u`'s span `lines.k(u)..p`.
struct ActivationSweep<'a> {
    forms: &'a [HingeForm],
    /// Bit of unit `u`'s hinge 0.
    offset: usize,
    slots: usize,
    /// Passed hinges of each unit on the last piece closed.
    bits: Vec<u64>,
    out: Out,
}

impl ActivationSweep<'_> {
    fn close(&mut self, lines: &Lines, ts: &[f64], u: usize, p: usize) {
        let ks = lines.k(u);
        if ks == p {
            return;
        }
        let f = &self.forms[u];
        let s = lines.s(u);
        let bits_at = |q: usize| {
            let v = lines.at(u, mid(ts, q));
            f.bits(v)
        };
        let first = bits_at(ks);
        self.set(ks, ts[ks], u, first, s, lines.at(u, ts[ks]));
        let last = if p - 1 == ks { first } else { bits_at(p - 1) };
        if last == first {
            return;
        }
        // The line is monotone: each hinge's bit flips once in the span, at the first piece
        // whose middle is past it.
        let mut at: Vec<(usize, usize)> = Vec::with_capacity(2);
        for j in 0..f.n_hinges {
            if (first ^ last) >> j & 1 == 1 {
                let flipped = |q: usize| (bits_at(q) ^ first) >> j & 1 == 1;
                let (mut lo, mut hi) = (ks + 1, p - 1);
                while lo < hi {
                    let m = (lo + hi) / 2;
                    if flipped(m) {
                        hi = m;
                    } else {
                        lo = m + 1;
                    }
                }
                at.push((lo, j));
            }
        }
        at.sort_unstable();
        let mut cur = first;
        for (q, j) in at {
            cur ^= 1 << j;
            self.set(q, ts[q], u, cur, s, lines.at(u, ts[q]));
        }
    }

    /// Unit `u` is past hinges `bits` from piece `q` (at `tq`) on, with input slope `s` and
    /// input value `z` at `tq`.
    fn set(&mut self, q: usize, tq: f64, u: usize, bits: u64, s: f64, z: f64) {
        let toggled = if q == 0 { bits } else { bits ^ self.bits[u] };
        self.out.flip(q, self.offset + u * self.slots, toggled);
        self.bits[u] = bits;
        let (slope, intercept) = self.forms[u].piece(bits);
        self.out.set(q, tq, u, slope * s, (toggled != 0).then_some(slope * z + intercept));
    }
}

/// A sparse elementwise node: where its input crosses a hinge (the cuts), and its output and
/// bit flips on the pieces the cuts make, in one sweep over the input and a short second one.
///
/// A span of unit `u` (between two changes of its slope) strictly on one side of every hinge
/// at both ends keeps its bits on every piece the cuts make of it (the line is monotone, and
/// rounding is monotone too), so its output is written in the first sweep, at the old index
/// of the piece it starts (renumbered afterwards). From its first span that is not, a unit
/// waits: its later changes are kept and replayed on the refined pieces ([`ActivationSweep`]
/// with the bits at the pieces' middles). Only the units crossing a hinge in the sub-segment
/// are swept twice.
struct SparseActivation<'a> {
    sweep: ActivationSweep<'a>,
    /// Units that wait for the refined pieces.
    deferred: Vec<bool>,
    /// Their lines where the span they wait from begins.
    starts: Vec<(u32, Line)>,
    /// Their changes from there on, `(old piece, change)`, in order.
    later: Vec<(u32, u32)>,
}

impl<'a> SparseActivation<'a> {
    fn new(forms: &'a [HingeForm], offset: usize, slots: usize, v0: &[f64], t0: f64, changes: usize) -> Self {
        let w = v0.len();
        SparseActivation {
            sweep: ActivationSweep { forms, offset, slots, bits: vec![0; w], out: Out::new(v0, t0, changes + w) },
            deferred: vec![false; w],
            starts: Vec::new(),
            later: Vec::new(),
        }
    }

    /// Closes unit `u`'s span `lines.k(u)..p` in the first sweep: written out, or (crossing or
    /// touching a hinge) its cuts found and the unit deferred (whose later spans only give
    /// their cuts in this sweep).
    fn close(&mut self, lines: &Lines, ts: &[f64], u: usize, p: usize, cuts: &mut Vec<(usize, f64)>) {
        let ks = lines.k(u);
        if ks == p {
            return;
        }
        let Line { v: va, s, .. } = lines.0[u];
        let vb = va + s * (ts[p] - ts[ks]);
        let f = &self.sweep.forms[u];
        let clean = f.hinges().iter().all(|&(h, _)| (va > h && vb > h) || (va < h && vb < h));
        if clean {
            self.sweep.set(ks, ts[ks], u, f.bits(va), s, lines.at(u, ts[ks]));
        } else {
            hinge_cuts(lines, ts, u, p, f, cuts);
            self.deferred[u] = true;
            self.starts.push((u as u32, lines.0[u]));
        }
    }

    /// The first sweep over `x` on pieces `ts`: the cuts.
    fn cuts(&mut self, x: &Stream, ts: &[f64]) -> Vec<(usize, f64)> {
        let n = x.pieces();
        let mut lines = Lines::new(x, ts[0]);
        let mut cuts = Vec::new();
        for p in 1..n {
            for (e, (u, d, j)) in (x.off[p]..).zip(x.row(p).iter()) {
                if self.deferred[u] {
                    hinge_cuts(&lines, ts, u, p, &self.sweep.forms[u], &mut cuts);
                } else {
                    self.close(&lines, ts, u, p, &mut cuts);
                }
                if self.deferred[u] {
                    self.later.push((p as u32, e as u32));
                }
                lines.change(u, p, ts[p], d, j);
            }
        }
        for u in 0..x.width() {
            if self.deferred[u] {
                hinge_cuts(&lines, ts, u, n, &self.sweep.forms[u], &mut cuts);
            } else {
                self.close(&lines, ts, u, n, &mut cuts);
            }
        }
        cuts
    }

    /// The output and bit flips on the refined pieces `ts` (`plan`: how they refine the first
    /// sweep's; none when nothing was cut), `v0` the output at the start.
    fn finish(
        mut self,
        x: &Stream,
        ts: &[f64],
        plan: Option<&[(usize, Option<f64>)]>,
        v0: Vec<f64>,
    ) -> (Stream, Vec<(u32, u32)>) {
        let n = ts.len() - 1;
        // New index of each old breakpoint.
        let map: Vec<u32> = match plan {
            Some(plan) => plan.iter().enumerate().filter(|(_, e)| e.1.is_none()).map(|(i, _)| i as u32).collect(),
            None => (0..=n as u32).collect(),
        };
        let out = &mut self.sweep.out;
        out.events.iter_mut().for_each(|e| e.0 = map[e.0 as usize]);
        out.flips.iter_mut().for_each(|f| f.0 = map[f.0 as usize]);
        out.line.0.iter_mut().for_each(|l| l.k = map[l.k] as usize);
        let mut lines = Lines(vec![Line { v: 0.0, t: 0.0, s: 0.0, k: 0 }; x.width()]);
        for &(u, line) in &self.starts {
            lines.0[u as usize] = Line { k: map[line.k] as usize, ..line };
        }
        for &(p, e) in &self.later {
            let (p, e) = (map[p as usize] as usize, e as usize);
            let u = x.idx[e] as usize;
            self.sweep.close(&lines, ts, u, p);
            lines.change(u, p, ts[p], x.d[e], if x.j.is_empty() { 0.0 } else { x.j[e] });
        }
        for &(u, _) in &self.starts {
            self.sweep.close(&lines, ts, u as usize, n);
        }
        let out = self.sweep.out;
        (Stream::from_events(v0, out.s0, n, &out.events), out.flips)
    }
}

/// What an elementwise node's cut sweep leaves for its output sweep.
enum Swept<'a> {
    /// The sparse sweep's state.
    Sparse(SparseActivation<'a>),
    /// The input's values at the breakpoints, from the dense scan.
    Dense(Vec<f64>),
}

/// Whether a stream's slope changes are dense enough (a quarter of its units per piece) that
/// scanning every unit on every piece (branch-light, in order) beats following each unit's
/// spans: the layers after a fully connected one.
fn dense(x: &Stream) -> bool {
    x.idx.len() * 4 >= x.pieces() * x.width()
}

/// The cuts of [`SparseActivation`], by scanning every unit on every piece, and the input's
/// values at the breakpoints ([`Stream::values`]), which the output sweep reuses.
fn activation_cuts_dense(x: &Stream, ts: &[f64], forms: &[HingeForm]) -> (Vec<(usize, f64)>, Vec<f64>) {
    let w = x.width();
    let v = x.values(ts);
    let mut cuts = Vec::new();
    for k in 0..x.pieces() {
        let (a, b) = (&v[k * w..(k + 1) * w], &v[(k + 1) * w..(k + 2) * w]);
        let dt = ts[k + 1] - ts[k];
        for (u, f) in forms.iter().enumerate() {
            for &(h, _) in f.hinges() {
                // Opposite sides beyond the tolerance are opposite sides.
                if (a[u] > h) != (b[u] > h) {
                    if let Some(l) = crossing(a[u], b[u], h, dt) {
                        cuts.push((k, l));
                    }
                }
            }
        }
    }
    (cuts, v)
}

/// Values at the breakpoints (rows of `w`) on the pieces `plan` refines them into: an old
/// breakpoint's row, or at a cut the row interpolated on its piece (the values are affine
/// there; the rounding differs from evaluating the lines by far less than the tolerance).
fn refine_values(v: Vec<f64>, w: usize, plan: Option<&[(usize, Option<f64>)]>) -> Vec<f64> {
    let Some(plan) = plan else { return v };
    let mut out = Vec::with_capacity(plan.len() * w);
    for &(k, l) in plan {
        let a = &v[k * w..(k + 1) * w];
        match l {
            None => out.extend_from_slice(a),
            Some(l) => out.extend(a.iter().zip(&v[(k + 1) * w..(k + 2) * w]).map(|(a, b)| a + l * (b - a))),
        }
    }
    out
}

/// An elementwise node's output and bit flips by scanning every unit on every piece (the
/// dense counterpart of [`SparseActivation`]), `v` its input's values at the breakpoints.
///
/// The pieces are visited in order, so the output's rows are written as they are found (no
/// events to sort); the readers' lines are mirrored operation for operation as in [`Out`], so
/// that a value set where a unit changes mode is the value they reach.
fn activation_dense(
    x: &Stream,
    ts: &[f64],
    forms: &[HingeForm],
    offset: usize,
    slots: usize,
    v0: Vec<f64>,
    v: &[f64],
) -> (Stream, Vec<(u32, u32)>) {
    let (w, n) = (x.width(), x.pieces());
    let mut s = x.s0.clone();
    let mut bits = vec![0u64; w];
    let mut flips = Vec::new();
    // The output's first slope, and its readers' lines: value `lv` at `lt`, slope `ls`.
    let mut s0 = vec![0.0; w];
    let (mut lv, mut lt, mut ls) = (v0.clone(), vec![ts[0]; w], vec![0.0; w]);
    let mut rows = Rows::new();
    rows.reserve(n * w);
    for q in 0..n {
        x.row(q).iter().for_each(|(u, d, _)| s[u] += d);
        let (a, b) = (&v[q * w..(q + 1) * w], &v[(q + 1) * w..(q + 2) * w]);
        let tq = ts[q];
        for (u, f) in forms.iter().enumerate() {
            let m = 0.5 * (a[u] + b[u]);
            let now = f.bits(m);
            let toggled = if q == 0 { now } else { now ^ bits[u] };
            if toggled != 0 {
                flip(&mut flips, q, offset + u * slots, toggled);
            }
            bits[u] = now;
            let (slope, intercept) = f.piece(now);
            let o = slope * s[u];
            if q == 0 {
                s0[u] = o;
                ls[u] = o;
                continue;
            }
            let d = o - ls[u];
            let at = lv[u] + ls[u] * (tq - lt[u]);
            let j = if toggled != 0 { slope * a[u] + intercept - at } else { 0.0 };
            if d != 0.0 || j != 0.0 {
                rows.push(u, d, j);
                lv[u] = at + j;
                lt[u] = tq;
                ls[u] += d;
            }
        }
        rows.end_row();
    }
    (rows.stream(v0, s0), flips)
}

/// The groups each candidate belongs to (compressed rows).
struct Membership {
    off: Vec<usize>,
    groups: Vec<u32>,
}

impl Membership {
    fn new(groups: &[Vec<u32>], candidates: usize) -> Membership {
        let mut off = vec![0usize; candidates + 1];
        groups.iter().flatten().for_each(|&u| off[u as usize + 1] += 1);
        for u in 0..candidates {
            off[u + 1] += off[u];
        }
        let mut next = off.clone();
        let mut of = vec![0u32; off[candidates]];
        for (g, group) in groups.iter().enumerate() {
            for &u in group {
                of[next[u as usize]] = g as u32;
                next[u as usize] += 1;
            }
        }
        Membership { off, groups: of }
    }

    fn of(&self, u: usize) -> &[u32] {
        &self.groups[self.off[u]..self.off[u + 1]]
    }
}

/// What a max node does when a group's span `start[g]..p` closes (every member affine on it).
trait GroupSpan {
    fn close(&mut self, lines: &Lines, ts: &[f64], g: usize, group: &[u32], ks: usize, p: usize);
}

/// Sweeps the groups of a max node over candidates `x`: a group's span ends where a member's
/// slope changes.
fn group_sweep(x: &Stream, ts: &[f64], groups: &[Vec<u32>], member: &Membership, sweep: &mut impl GroupSpan) {
    let n = x.pieces();
    let mut lines = Lines::new(x, ts[0]);
    let mut start = vec![0usize; groups.len()];
    let mut close = |lines: &Lines, g: usize, p: usize, start: &mut [usize]| {
        if start[g] != p {
            sweep.close(lines, ts, g, &groups[g], start[g], p);
            start[g] = p;
        }
    };
    for (p, &tp) in ts.iter().enumerate().take(n).skip(1) {
        let row = x.row(p);
        // Every span ending here closes before any member's line changes (windows overlap).
        for &u in row.idx {
            for &g in member.of(u as usize) {
                close(&lines, g as usize, p, &mut start);
            }
        }
        row.iter().for_each(|(u, d, j)| lines.change(u, p, tp, d, j));
    }
    for g in 0..groups.len() {
        close(&lines, g, n, &mut start);
    }
}

/// Where a group's winner changes, by the rule on each piece ([`group_changes`]).
struct GroupCuts {
    cuts: Vec<(usize, f64)>,
    scratch: (Vec<f64>, Vec<f64>, Vec<usize>, Vec<f64>),
}

impl GroupSpan for GroupCuts {
    fn close(&mut self, lines: &Lines, ts: &[f64], _: usize, group: &[u32], ks: usize, p: usize) {
        let (t0, t1) = (ts[ks], ts[p]);
        // Affine members: a winner at both ends wins throughout (the common case, found
        // without storing the ends).
        let (mut wa, mut wb) = ((0, f64::NEG_INFINITY), (0, f64::NEG_INFINITY));
        for (i, &u) in group.iter().enumerate() {
            let (va, vb) = (lines.at(u as usize, t0), lines.at(u as usize, t1));
            if va > wa.1 {
                wa = (i, va);
            }
            if vb > wb.1 {
                wb = (i, vb);
            }
        }
        if wa.0 == wb.0 {
            return;
        }
        let (a, b, pieces, found) = &mut self.scratch;
        a.clear();
        b.clear();
        a.extend(group.iter().map(|&u| lines.at(u as usize, t0)));
        b.extend(group.iter().map(|&u| lines.at(u as usize, t1)));
        pieces.clear();
        for i in 0..group.len() {
            for j in i + 1..group.len() {
                let (da, db) = (a[i] - a[j], b[i] - b[j]);
                if (da < 0.0 && db > 0.0) || (da > 0.0 && db < 0.0) {
                    pieces.push(piece_of(ts, ks, p, t0 + da / (da - db) * (t1 - t0)));
                }
            }
        }
        pieces.sort_unstable();
        pieces.dedup();
        for &k in pieces.iter() {
            a.clear();
            b.clear();
            a.extend(group.iter().map(|&u| lines.at(u as usize, ts[k])));
            b.extend(group.iter().map(|&u| lines.at(u as usize, ts[k + 1])));
            found.clear();
            group_changes(a, b, ts[k + 1] - ts[k], found);
            self.cuts.extend(found.iter().map(|&l| (k, l)));
        }
    }
}

/// A max node's winners (pattern bits) and output slopes.
struct GroupOut {
    /// Bits of group 0's field, and bits per group.
    offset: usize,
    width: usize,
    /// `−1` for a min join (the candidates are negated).
    sign: f64,
    winner: Vec<usize>,
    out: Out,
}

impl GroupOut {
    fn set(&mut self, q: usize, tq: f64, g: usize, w: usize, slope: f64) {
        let toggled = if q == 0 { w } else { w ^ self.winner[g] };
        self.out.flip(q, self.offset + g * self.width, toggled as u64);
        self.winner[g] = w;
        self.out.set(q, tq, g, self.sign * slope, None);
    }
}

impl GroupSpan for GroupOut {
    fn close(&mut self, lines: &Lines, ts: &[f64], g: usize, group: &[u32], ks: usize, p: usize) {
        let win = |q: usize| argmax(group.iter().map(|&u| lines.at(u as usize, mid(ts, q))));
        let slope = |w: usize| lines.s(group[w] as usize);
        let mut w = win(ks);
        self.set(ks, ts[ks], g, w, slope(w));
        let last = if p - 1 == ks { w } else { win(p - 1) };
        // Affine members: a winner holds an interval of the span and never returns, so the
        // next change is the first piece where the current winner has lost (a binary search).
        let mut q = ks;
        while w != last {
            let (mut lo, mut hi) = (q + 1, p - 1);
            while lo < hi {
                let m = (lo + hi) / 2;
                if win(m) != w {
                    hi = m;
                } else {
                    lo = m + 1;
                }
            }
            q = lo;
            w = win(q);
            self.set(q, ts[q], g, w, slope(w));
        }
    }
}

/// The pieces a plan of cuts makes: `(old piece, None)` for an old breakpoint, `(old piece,
/// Some(l))` for a cut at relative position `l` in it, ending with `(pieces, None)`.
fn plan(mut cuts: Vec<(usize, f64)>, ts: &[f64]) -> Vec<(usize, Option<f64>)> {
    cuts.sort_by(|x, y| x.0.cmp(&y.0).then(x.1.total_cmp(&y.1)));
    // Cuts closer than the tolerance in t are one breakpoint.
    cuts.dedup_by(|x, y| x.0 == y.0 && (x.1 - y.1) * (ts[x.0 + 1] - ts[x.0]) <= DIST);
    let n = ts.len() - 1;
    let mut out = Vec::with_capacity(ts.len() + cuts.len());
    let mut c = cuts.iter().peekable();
    for k in 0..n {
        out.push((k, None));
        while let Some(&(_, l)) = c.next_if(|x| x.0 == k) {
            out.push((k, Some(l)));
        }
    }
    out.push((n, None));
    out
}

/// Per nonlinear node: its refinement (the old piece of each new piece; `None` when it cut
/// nothing) and its bit flips `(piece, bit)`.
type Flipped = Vec<(Option<Vec<u32>>, Vec<(u32, u32)>)>;

/// The patterns of the final pieces, from each nonlinear node's bit flips (in the pieces it
/// left, `flips`) and its refinement (`map`: the piece before the node holding each piece after
/// it): one running pattern, each node's flips applied as the final pieces enter its pieces.
///
/// Built once at the end rather than per node: a pattern per piece and node would be copied
/// (and allocated) once per nonlinear node, the largest cost of a trace after the sweeps.
fn final_patterns(nodes: &mut Flipped, n: usize, words: usize) -> Vec<Pattern> {
    let mut to: Vec<Vec<u32>> = vec![Vec::new(); nodes.len()];
    let mut cur: Vec<u32> = (0..n as u32).collect();
    for (l, (map, flips)) in nodes.iter_mut().enumerate().rev() {
        flips.sort_unstable_by_key(|f| f.0);
        if let Some(map) = map {
            let up = cur.iter().map(|&q| map[q as usize]).collect();
            to[l] = std::mem::replace(&mut cur, up);
        } else {
            to[l] = cur.clone();
        }
    }
    let mut at = vec![0usize; nodes.len()];
    let mut pat = Pattern(vec![0; words]);
    (0..n)
        .map(|q| {
            for (l, (_, flips)) in nodes.iter().enumerate() {
                let target = to[l][q];
                while let Some(&(p, bit)) = flips.get(at[l]).filter(|f| f.0 <= target) {
                    debug_assert!(p <= target);
                    pat.0[bit as usize / 64] ^= 1 << (bit % 64);
                    at[l] += 1;
                }
            }
            pat.clone()
        })
        .collect()
}

/// An affine node's output stream: its start and first slope by the batched product, the
/// changes pushed through its columns (or, when they are dense, batched too).
fn affine(x: &Stream, op: &Op, bias: &[f64], wt: Option<&[f64]>) -> Stream {
    let n_out = op.n_out();
    let y = op.apply_rows(&[x.v0.as_slice(), x.s0.as_slice()].concat(), 2);
    let v0 = y[..n_out].iter().zip(bias).map(|(a, b)| a + b).collect();
    let s0 = y[n_out..].to_vec();
    let pieces = x.pieces();
    let slopes = push_changes(op, wt, pieces, |p| {
        let r = x.off[p]..x.off[p + 1];
        (&x.idx[r.clone()], &x.d[r])
    });
    // Value jumps are rare (mode changes of elementwise units): pushed separately, only where
    // a row has any.
    let (mut joff, mut jidx, mut jv) = (vec![0], Vec::new(), Vec::new());
    for p in (0..pieces).filter(|_| !x.j.is_empty()) {
        for (u, _, j) in x.row(p).iter().filter(|e| e.2 != 0.0) {
            jidx.push(u as u32);
            jv.push(j);
        }
        joff.push(jidx.len());
    }
    if jidx.is_empty() {
        let (off, idx, d) = slopes;
        return Stream { v0, s0, off, idx, d, j: Vec::new() };
    }
    let jumps = push_changes(op, wt, pieces, |p| (&jidx[joff[p]..joff[p + 1]], &jv[joff[p]..joff[p + 1]]));
    let mut rows = Rows::new();
    for p in 0..pieces {
        let (o, i, d) = &slopes;
        (o[p]..o[p + 1]).for_each(|e| rows.push(i[e] as usize, d[e], 0.0));
        let (o, i, j) = &jumps;
        (o[p]..o[p + 1]).for_each(|e| rows.push(i[e] as usize, 0.0, j[e]));
        rows.end_row();
    }
    rows.stream(v0, s0)
}

/// Compressed rows `(offsets, indices, values)`.
type Csr = (Vec<usize>, Vec<u32>, Vec<f64>);

/// Sparse vectors (one per piece, `row(p)`) through `op`'s linear part (`wt`: a dense op's
/// transposed weights).
fn push_changes<'a>(op: &Op, wt: Option<&[f64]>, pieces: usize, row: impl Fn(usize) -> (&'a [u32], &'a [f64])) -> Csr {
    let (n_in, n_out) = (op.n_in(), op.n_out());
    let mut off = Vec::with_capacity(pieces + 1);
    let (mut idx, mut d) = (Vec::new(), Vec::new());
    off.push(0);
    let changed: Vec<usize> = (0..pieces).filter(|&p| !row(p).0.is_empty()).collect();
    let nnz: usize = changed.iter().map(|&p| row(p).0.len()).sum();
    let dense_rows = nnz * 4 >= changed.len() * n_in;
    if let Some(wt) = wt.filter(|_| !dense_rows) {
        // Columns of the transposed weights added into a dense row: contiguous, vectorised.
        let mut acc = vec![0.0; n_out];
        for p in 0..pieces {
            let (i, v) = row(p);
            if !i.is_empty() {
                acc.iter_mut().for_each(|z| *z = 0.0);
                for (&u, &dv) in i.iter().zip(v) {
                    let col = &wt[u as usize * n_out..(u as usize + 1) * n_out];
                    acc.iter_mut().zip(col).for_each(|(z, c)| *z += dv * c);
                }
                for (u, &y) in acc.iter().enumerate() {
                    if y != 0.0 {
                        idx.push(u as u32);
                        d.push(y);
                    }
                }
            }
            off.push(idx.len());
        }
    } else if dense_rows || nnz * 8 >= changed.len() * n_in {
        // Dense changes (a quarter of the inputs per piece for a dense layer, an eighth for
        // the others): one batched product per chunk of changed pieces.
        const CHUNK: usize = 32;
        idx.reserve(changed.len() * n_out);
        d.reserve(changed.len() * n_out);
        let mut m = Vec::new();
        // Rows are written in piece order: a chunk's products, then the pieces up to its last.
        let mut p = 0;
        for chunk in changed.chunks(CHUNK) {
            m.clear();
            m.resize(chunk.len() * n_in, 0.0);
            for (r, &q) in chunk.iter().enumerate() {
                let (i, v) = row(q);
                i.iter().zip(v).for_each(|(&u, &dv)| m[r * n_in + u as usize] += dv);
            }
            let y = op.apply_rows(&m, chunk.len());
            for (&q, r) in chunk.iter().zip(y.chunks_exact(n_out)) {
                while p < q {
                    off.push(idx.len());
                    p += 1;
                }
                for (u, &v) in r.iter().enumerate() {
                    if v != 0.0 {
                        idx.push(u as u32);
                        d.push(v);
                    }
                }
                off.push(idx.len());
                p += 1;
            }
        }
        while p < pieces {
            off.push(idx.len());
            p += 1;
        }
    } else {
        let mut acc = SparseVec::new(n_out);
        let mut entries = Vec::new();
        for p in 0..pieces {
            let (i, v) = row(p);
            if !i.is_empty() {
                entries.clear();
                entries.extend(i.iter().copied().zip(v.iter().copied()));
                op.push(&entries, &mut acc);
                acc.drain_nonzero(&mut idx, &mut d);
            }
            off.push(idx.len());
        }
    }
    (off, idx, d)
}

/// `m` (`rows × cols`, row-major) transposed.
fn transpose(m: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    let mut t = vec![0.0; m.len()];
    // In tiles, so that both sides stay in cache.
    const TILE: usize = 32;
    for r0 in (0..rows).step_by(TILE) {
        for c0 in (0..cols).step_by(TILE) {
            for r in r0..(r0 + TILE).min(rows) {
                for c in c0..(c0 + TILE).min(cols) {
                    t[c * rows + r] = m[r * cols + c];
                }
            }
        }
    }
    t
}

/// What the sub-segments of a segment share, per node.
struct Prepared<'a> {
    ops: &'a Ops,
    /// Decision kinds of the nonlinear nodes.
    kinds: Vec<Option<Nonlinear<'a>>>,
    /// Hinge forms (and slots per unit) of elementwise nodes.
    forms: Vec<Option<(Vec<HingeForm>, usize)>>,
    /// The groups each candidate of a max node belongs to.
    members: Vec<Option<Membership>>,
    /// Dense layers' transposed weights (contiguous columns).
    transposed: Vec<Option<Vec<f64>>>,
}

impl<'a> Prepared<'a> {
    fn new(net: &'a Network, ops: &'a Ops) -> Prepared<'a> {
        let kinds: Vec<Option<Nonlinear>> = net.nodes.iter().map(nonlinear).collect();
        let forms = net.nodes.iter().map(|n| n.layer.hinge_forms()).collect();
        let width = |s: &Src| match *s {
            Src::Input => net.input_shape.numel(),
            Src::Node(j) => net.nodes[j].layer.output.numel(),
        };
        let members = kinds
            .iter()
            .zip(&net.nodes)
            .map(|(k, n)| match k {
                Some(Nonlinear::Max(groups, _)) => Some(Membership::new(groups, n.inputs.iter().map(width).sum())),
                _ => None,
            })
            .collect();
        let transposed = ops
            .iter()
            .map(|o| match o {
                Some((Op::Dense { w, n_in, n_out }, _)) => Some(transpose(w, *n_out, *n_in)),
                _ => None,
            })
            .collect();
        Prepared { ops, kinds, forms, members, transposed }
    }
}

/// The value of source `s` (alive until its last reader).
fn get<'a>(s: &Src, xs: &'a Option<Stream>, vals: &'a [Option<Stream>]) -> &'a Stream {
    match *s {
        Src::Input => xs.as_ref().expect("alive until its last reader"),
        Src::Node(j) => vals[j].as_ref().expect("alive until its last reader"),
    }
}

/// The output of node `i`, an affine node (or a reshape, sum or concatenation).
fn linear_node(net: &Network, prep: &Prepared, i: usize, xs: &Option<Stream>, vals: &[Option<Stream>]) -> Stream {
    let node = &net.nodes[i];
    let width = node.layer.output.numel();
    let ins: Vec<&Stream> = node.inputs.iter().map(|s| get(s, xs, vals)).collect();
    match (&prep.ops[i], &node.layer.kind) {
        (Some((op, bias)), _) => affine(ins[0], op, bias, prep.transposed[i].as_deref()),
        (None, LayerKind::Reshape) => ins[0].clone(),
        (None, LayerKind::Merge(Merge::Add)) => Stream::join(&ins, &[0].repeat(ins.len()), width),
        (None, LayerKind::Merge(Merge::Concat)) => {
            let mut shift = vec![0];
            ins.iter().for_each(|p| shift.push(shift.last().unwrap() + p.width()));
            Stream::join(&ins, &shift[..ins.len()], width)
        }
        // `batched_ops` gives every other affine kind its operator.
        (None, kind) => unreachable!("an affine node without an operator: {kind:?}"),
    }
}

/// Drops the values node `i` read last and keeps its output `out` when it is read later (or
/// is the network's output).
fn retire(
    net: &Network,
    i: usize,
    (input_last, last): (Option<usize>, &[Option<usize>]),
    xs: &mut Option<Stream>,
    vals: &mut [Option<Stream>],
    out: Stream,
) {
    for s in &net.nodes[i].inputs {
        match *s {
            Src::Input if input_last == Some(i) => *xs = None,
            Src::Node(j) if last[j] == Some(i) => vals[j] = None,
            _ => {}
        }
    }
    if last[i].is_some() || i + 1 == net.nodes.len() {
        vals[i] = Some(out);
    }
}

/// The nodes before the first nonlinear one, evaluated once per segment: on the whole segment
/// they are affine in `t` (one piece), so every sub-segment starts from them, shifted.
struct Prefix {
    /// How many nodes it holds.
    nodes: usize,
    /// The input and the node values alive after them, from `t = 0`.
    xs: Option<Stream>,
    vals: Vec<Option<Stream>>,
}

impl Prefix {
    fn new(net: &Network, prep: &Prepared, (a, b): (&[f64], &[f64])) -> Prefix {
        let (input_last, last) = net.last_uses();
        let nodes = prep.kinds.iter().position(Option::is_some).unwrap_or(net.nodes.len());
        let mut xs = Some(Stream::segment(a, b));
        let mut vals: Vec<Option<Stream>> = (0..net.nodes.len()).map(|_| None).collect();
        for i in 0..nodes {
            let out = linear_node(net, prep, i, &xs, &vals);
            retire(net, i, (input_last, &last), &mut xs, &mut vals, out);
        }
        Prefix { nodes, xs, vals }
    }
}

/// Sub-segments of a segment traced independently (in parallel): a fixed number, so that the
/// result does not depend on the thread count.
const PARTS: usize = 8;

/// The pieces of one segment, and the pieces after each nonlinear layer.
///
/// The segment is cut into [`PARTS`] equal sub-segments, each traced from its exact start; at
/// each junction the two pieces meeting there are one piece when their patterns are equal (and
/// one piece after layer `l` when they agree on the layers up to `l`).
pub(super) fn trace_segment(
    net: &Network,
    layout: &[LayerBits],
    ops: &Ops,
    (a, b): (&[f64], &[f64]),
    segment: usize,
) -> (Vec<Piece>, Vec<usize>) {
    let prep = Prepared::new(net, ops);
    let prefix = Prefix::new(net, &prep, (a, b));
    let parts: Vec<(Vec<Piece>, Vec<usize>)> = (0..PARTS)
        .into_par_iter()
        .map(|j| {
            let t = |j: usize| j as f64 / PARTS as f64;
            trace_part(net, layout, &prep, &prefix, (t(j), t(j + 1)), segment)
        })
        .collect();
    let mut pieces: Vec<Piece> = Vec::new();
    let mut counts = vec![0usize; layout.len()];
    for (part, c) in parts {
        counts.iter_mut().zip(&c).for_each(|(x, y)| *x += y);
        let mut part = part.into_iter();
        let first = if pieces.is_empty() { None } else { part.next() };
        if let (Some(last), Some(first)) = (pieces.last_mut(), first) {
            let diff = last.pattern.first_difference(&first.pattern);
            for (count, bits) in counts.iter_mut().zip(layout) {
                if diff.is_none_or(|d| d >= bits.offset + bits.bits) {
                    *count -= 1;
                }
            }
            if diff.is_none() {
                last.t1 = first.t1;
                last.y1 = first.y1;
            } else {
                pieces.push(first);
            }
        }
        pieces.extend(part);
    }
    (pieces, counts)
}

/// The pieces of the sub-segment `[t0, t1]` of a segment, and the pieces after each nonlinear
/// layer.
fn trace_part(
    net: &Network,
    layout: &[LayerBits],
    prep: &Prepared,
    prefix: &Prefix,
    (t0, t1): (f64, f64),
    segment: usize,
) -> (Vec<Piece>, Vec<usize>) {
    let (input_last, last) = net.last_uses();
    let words = layout.last().map_or(0, |l| (l.offset + l.bits).div_ceil(64));
    let mut ts: Vec<f64> = vec![t0, t1];
    let mut xs = prefix.xs.as_ref().map(|s| s.from(t0));
    let mut vals: Vec<Option<Stream>> = prefix.vals.iter().map(|v| v.as_ref().map(|s| s.from(t0))).collect();
    let mut flipped: Flipped = Vec::with_capacity(layout.len());
    let mut counts = Vec::with_capacity(layout.len());
    let mut stage = 0;
    for (i, node) in net.nodes.iter().enumerate().skip(prefix.nodes) {
        let width = node.layer.output.numel();
        let out = match &prep.kinds[i] {
            Some(kind) => {
                let bits = &layout[stage];
                stage += 1;
                // The values decided on: the input itself, or the inputs side by side (negated
                // for a min join).
                let negate = matches!(kind, Nonlinear::Max(_, true));
                let mut own = (node.inputs.len() > 1 || negate).then(|| {
                    let parts: Vec<&Stream> = node.inputs.iter().map(|s| get(s, &xs, &vals)).collect();
                    let mut shift = vec![0];
                    parts.iter().for_each(|p| shift.push(shift.last().unwrap() + p.width()));
                    let joined = Stream::join(&parts, &shift, *shift.last().unwrap());
                    if negate {
                        joined.negated()
                    } else {
                        joined
                    }
                });
                // What an elementwise node's cut sweep leaves for its output sweep: its output
                // at the start, and the sparse sweep's state (it sweeps its input once, and a
                // second time only for the units that cross a hinge) or the dense scan's values.
                let mut activation = None;
                let cuts = {
                    let x = own.as_ref().unwrap_or_else(|| get(&node.inputs[0], &xs, &vals));
                    match &kind {
                        Nonlinear::Activation(layer) => {
                            let (forms, slots) = prep.forms[i].as_ref().expect("an activation has hinge forms");
                            let mut v0 = vec![0.0; width];
                            layer.apply(&x.v0, &mut v0);
                            let (cuts, left) = if dense(x) {
                                let (cuts, v) = activation_cuts_dense(x, &ts, forms);
                                (cuts, Swept::Dense(v))
                            } else {
                                let mut s = SparseActivation::new(forms, bits.offset, *slots, &v0, ts[0], x.idx.len());
                                (s.cuts(x, &ts), Swept::Sparse(s))
                            };
                            activation = Some((v0, left));
                            cuts
                        }
                        Nonlinear::Max(groups, _) => {
                            let mut s = GroupCuts { cuts: Vec::new(), scratch: Default::default() };
                            group_sweep(x, &ts, groups, prep.members[i].as_ref().expect("a max node"), &mut s);
                            s.cuts
                        }
                    }
                };
                let plan = (!cuts.is_empty()).then(|| plan(cuts, &ts));
                if let Some(plan) = &plan {
                    ts = plan.iter().map(|&(k, l)| l.map_or(ts[k], |l| ts[k] + l * (ts[k + 1] - ts[k]))).collect();
                    xs.iter_mut().chain(vals.iter_mut().flatten()).chain(own.iter_mut()).for_each(|s| s.refine(plan));
                }
                let x = own.as_ref().unwrap_or_else(|| get(&node.inputs[0], &xs, &vals));
                let n = ts.len() - 1;
                let (stream, flips) = match &kind {
                    Nonlinear::Activation(_) => match activation.expect("the cut sweep ran") {
                        (v0, Swept::Sparse(sparse)) => sparse.finish(x, &ts, plan.as_deref(), v0),
                        (v0, Swept::Dense(v)) => {
                            let (forms, slots) = prep.forms[i].as_ref().expect("an activation has hinge forms");
                            let v = refine_values(v, x.width(), plan.as_deref());
                            activation_dense(x, &ts, forms, bits.offset, *slots, v0, &v)
                        }
                    },
                    Nonlinear::Max(groups, _) => {
                        let sign = if negate { -1.0 } else { 1.0 };
                        let v0: Vec<f64> = groups
                            .iter()
                            .map(|g| sign * g.iter().map(|&u| x.v0[u as usize]).fold(f64::NEG_INFINITY, f64::max))
                            .collect();
                        let mut s = GroupOut {
                            offset: bits.offset,
                            width: bits.bits / groups.len().max(1),
                            sign,
                            winner: vec![0; groups.len()],
                            out: Out::new(&v0, ts[0], x.idx.len() + width),
                        };
                        group_sweep(x, &ts, groups, prep.members[i].as_ref().expect("a max node"), &mut s);
                        (Stream::from_events(v0, s.out.s0, n, &s.out.events), s.out.flips)
                    }
                };
                flipped.push((plan.map(|pl| pl[..n].iter().map(|&(k, _)| k as u32).collect()), flips));
                counts.push(n);
                stream
            }
            None => linear_node(net, prep, i, &xs, &vals),
        };
        retire(net, i, (input_last, &last), &mut xs, &mut vals, out);
    }
    let out = match net.nodes.len() {
        0 => xs.expect("the input is the output"),
        n => vals[n - 1].take().expect("the output is alive"),
    };
    let w = out.width();
    let y = out.values(&ts);
    let pieces = final_patterns(&mut flipped, ts.len() - 1, words)
        .into_iter()
        .enumerate()
        .map(|(k, pattern)| Piece {
            segment,
            t0: ts[k],
            t1: ts[k + 1],
            pattern,
            y0: y[k * w..(k + 1) * w].to_vec(),
            y1: y[(k + 1) * w..(k + 2) * w].to_vec(),
        })
        .collect();
    (pieces, counts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// A random stream with changes on a `density` share of its units per piece.
    fn stream(r: &mut rand_chacha::ChaCha8Rng, w: usize, n: usize, density: f64) -> (Stream, Vec<f64>) {
        let mut ts: Vec<f64> = (0..n - 1).map(|_| r.random::<f64>()).collect();
        ts.extend([0.0, 1.0]);
        ts.sort_by(f64::total_cmp);
        let v0 = (0..w).map(|_| r.random_range(-1.0..1.0)).collect();
        let s0 = (0..w).map(|_| r.random_range(-2.0..2.0)).collect();
        let (mut off, mut idx, mut d) = (vec![0, 0], Vec::new(), Vec::new());
        for _ in 1..n {
            for u in 0..w {
                if r.random::<f64>() < density {
                    idx.push(u as u32);
                    d.push(r.random_range(-3.0..3.0));
                }
            }
            off.push(idx.len());
        }
        let j = vec![0.0; d.len()];
        (Stream { v0, s0, off, idx, d, j }, ts)
    }

    #[test]
    fn sparse_and_dense_activation_sweeps_agree() {
        let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(41);
        let forms: Vec<HingeForm> = (0..24)
            .map(|u| match u % 3 {
                0 => HingeForm::new(0.0, 0.0, &[(0.0, 1.0)]),
                1 => HingeForm::new(0.1, 0.0, &[(0.2, 0.9)]),
                _ => HingeForm::new(0.0, -0.5, &[(-0.5, 1.0), (0.5, -1.0)]),
            })
            .collect();
        let slots = 2;
        let f = |u: usize, z: f64| {
            let form: &HingeForm = &forms[u];
            let bits = form.hinges().iter().enumerate().fold(0, |b, (j, h)| if z > h.0 { b | 1 << j } else { b });
            let (a, c) = form.piece(bits);
            a * z + c
        };
        for density in [0.05, 0.3, 0.9] {
            let (mut x, mut ts) = stream(&mut r, forms.len(), 40, density);
            let fv0: Vec<f64> = x.v0.iter().enumerate().map(|(u, &z)| f(u, z)).collect();
            let mut one = SparseActivation::new(&forms, 3, slots, &fv0, ts[0], x.idx.len());
            let (mut sparse, (mut dense, v)) = (one.cuts(&x, &ts), activation_cuts_dense(&x, &ts, &forms));
            assert!(sparse.len() > 10, "the test crosses hinges");
            sparse.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
            dense.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
            assert_eq!(sparse.len(), dense.len());
            for (a, b) in sparse.iter().zip(&dense) {
                assert!(a.0 == b.0 && (a.1 - b.1).abs() < 1e-9, "{a:?} vs {b:?}");
            }
            let pl = plan(sparse, &ts);
            ts = pl.iter().map(|&(k, l)| l.map_or(ts[k], |l| ts[k] + l * (ts[k + 1] - ts[k]))).collect();
            x.refine(&pl);
            let (one, mut f1) = one.finish(&x, &ts, Some(&pl), fv0.clone());
            let v = refine_values(v, forms.len(), Some(&pl));
            let (two, mut flips) = activation_dense(&x, &ts, &forms, 3, slots, fv0, &v);
            f1.sort_unstable();
            flips.sort_unstable();
            assert_eq!(f1, flips, "the same bits flip on the same pieces");
            let (y1, y2) = (one.values(&ts), two.values(&ts));
            assert!(y1.iter().zip(&y2).all(|(a, b)| (a - b).abs() < 1e-12), "the same outputs");
            // The outputs are the function of the inputs at every breakpoint.
            let z = x.values(&ts);
            let w = forms.len();
            for (k, (y, z)) in y1.chunks(w).zip(z.chunks(w)).enumerate() {
                for u in 0..w {
                    assert!((y[u] - f(u, z[u])).abs() < 1e-9, "unit {u} at breakpoint {k}: {} vs {}", y[u], f(u, z[u]));
                }
            }
        }
    }
}
