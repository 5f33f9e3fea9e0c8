//! The 3D traversal: every cell goes through the network's nodes in order, its vertices carrying
//! the tensors still to be read. At a nonlinear node the cell is split by every unit whose
//! hinge plane crosses it (or into the upper envelope cells of every max group), then the node
//! is applied at the vertices; affine nodes run over a cell's vertices in one batched product.
//! Cells that finish the last node are the regions.
//!
//! Children of a split are independent: they run in parallel (rayon), and their results are
//! joined in split order, so counts, volumes and region order do not depend on the number of
//! threads.

use super::mesh::{self, Patch};
use super::polytope::{lerp3, mean, signs, FacetLabel, Gradient, Poly, Side, Split, VRef};
use super::{Facet, Options3, Region3, Slice3, Solid, Summary3};
use crate::engine::EngineError;
use crate::geometry::predicates::Sign;
use crate::network::{HingeForm, Network, Src};
use crate::partition::LayerCount;
use crate::pattern::{LayerBits, Pattern};
use crate::pointwise::{self, apply_node, decision_values, nonlinear, Nonlinear, Ops};
use rayon::prelude::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Instant;

type Tensor = Arc<[f64]>;

/// One vertex's tensors: the network input there, and every node output still to be read.
#[derive(Clone)]
struct Vtx {
    x: Tensor,
    vals: Vec<Option<Tensor>>,
}

fn lerp(a: &[f64], b: &[f64], t: f64) -> Tensor {
    a.iter().zip(b).map(|(p, q)| p + t * (q - p)).collect()
}

impl Vtx {
    fn lerp(&self, other: &Vtx, t: f64) -> Vtx {
        let vals = self
            .vals
            .iter()
            .zip(&other.vals)
            .map(|(p, q)| match (p, q) {
                (Some(p), Some(q)) => Some(lerp(p, q, t)),
                _ => None,
            })
            .collect();
        Vtx { x: lerp(&self.x, &other.x, t), vals }
    }

    fn read(&self, s: &Src) -> &[f64] {
        match *s {
            Src::Input => &self.x,
            Src::Node(j) => self.vals[j].as_deref().expect("alive until its last reader"),
        }
    }
}

#[derive(Clone)]
struct Cell {
    poly: Poly,
    vtx: Vec<Vtx>,
    pattern: Pattern,
}

/// What a subtree of cells produced.
#[derive(Default)]
struct Out {
    regions: Vec<Region3>,
    patches: Vec<Patch>,
    count: u64,
    volume: f64,
    min: f64,
    max: f64,
    vertices: u64,
    facets: u64,
}

impl Out {
    fn append(&mut self, mut o: Out) {
        if o.count == 0 {
            return;
        }
        self.min = if self.count == 0 { o.min } else { self.min.min(o.min) };
        self.max = self.max.max(o.max);
        self.count += o.count;
        self.volume += o.volume;
        self.vertices += o.vertices;
        self.facets += o.facets;
        self.regions.append(&mut o.regions);
        self.patches.append(&mut o.patches);
    }
}

struct Ctx<'a> {
    net: &'a Network,
    slice: &'a Slice3,
    opts: &'a Options3,
    kinds: Vec<Option<Nonlinear<'a>>>,
    forms: Vec<Option<(Vec<HingeForm>, usize)>>,
    ops: Ops,
    last: Vec<Option<usize>>,
    /// Stage (position in the layout) of each nonlinear node.
    stage: Vec<usize>,
    layout: Vec<LayerBits>,
    per_stage: Vec<AtomicU64>,
    regions: AtomicU64,
    bytes: AtomicU64,
    stop: AtomicBool,
    error: Mutex<Option<EngineError>>,
    start: Instant,
    half: [f64; 3],
    center: [f64; 3],
    classes: usize,
}

/// Runs the traversal on `slice`'s box.
pub(super) fn run(net: &Network, slice: &Slice3, opts: &Options3) -> Result<Solid, EngineError> {
    let layout = net.pattern_layout();
    let kinds: Vec<Option<Nonlinear>> = net.nodes.iter().map(nonlinear).collect();
    let mut stage = vec![usize::MAX; net.nodes.len()];
    let mut s = 0;
    for (i, k) in kinds.iter().enumerate() {
        if k.is_some() {
            stage[i] = s;
            s += 1;
        }
    }
    let (center, half) = slice.center_half();
    let ctx = Ctx {
        net,
        slice,
        opts,
        forms: net.nodes.iter().map(|n| n.layer.hinge_forms()).collect(),
        kinds,
        ops: pointwise::batched_ops(net),
        last: net.last_uses().1,
        stage,
        per_stage: (0..layout.len()).map(|_| AtomicU64::new(0)).collect(),
        layout,
        regions: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        error: Mutex::new(None),
        start: Instant::now(),
        half,
        center,
        classes: opts.surface.as_ref().map_or(0, |d| d.classes(net.output_shape().numel())),
    };
    let cube = Poly::cube();
    let vtx = cube
        .pts
        .iter()
        .map(|&u| Vtx { x: slice.point(slice.from_unit(u)).into(), vals: vec![None; net.nodes.len()] })
        .collect();
    let words = ctx.layout.last().map_or(0, |l| (l.offset + l.bits).div_ceil(64));
    let root = Cell { poly: cube, vtx, pattern: Pattern(vec![0; words]) };
    let out = match opts.engine.threads {
        0 => ctx.run(root, 0),
        t => rayon::ThreadPoolBuilder::new()
            .num_threads(t)
            .build()
            .map_err(|e| EngineError::Threads { threads: t, message: e.to_string() })?
            .install(|| ctx.run(root, 0)),
    };
    if let Some(e) = ctx.error.lock().expect("no panics while holding it").take() {
        return Err(e);
    }
    let scale = half[0] * half[1] * half[2];
    let summary = Summary3 {
        regions: out.count,
        regions_per_layer: ctx
            .layout
            .iter()
            .zip(&ctx.per_stage)
            .map(|(l, c)| LayerCount { layer: l.layer, op: l.op.clone(), regions: c.load(Relaxed) })
            .collect(),
        volume: slice.volume(),
        volume_sum: out.volume * scale,
        min_volume: out.min * scale,
        max_volume: out.max * scale,
        mean_vertices: out.vertices as f64 / out.count.max(1) as f64,
        mean_facets: out.facets as f64 / out.count.max(1) as f64,
    };
    let surface = opts.surface.as_ref().map(|_| mesh::build(out.patches, slice));
    Ok(Solid { summary, regions: out.regions, layout: ctx.layout, surface })
}

impl Ctx<'_> {
    fn fail(&self, e: EngineError) {
        let mut slot = self.error.lock().expect("no panics while holding it");
        slot.get_or_insert(e);
        self.stop.store(true, Relaxed);
    }

    /// Runs `cell` from node `from` to the end.
    fn run(&self, mut cell: Cell, from: usize) -> Out {
        for i in from..self.net.nodes.len() {
            if self.stop.load(Relaxed) {
                return Out::default();
            }
            let Some(kind) = &self.kinds[i] else {
                self.apply(i, &mut cell);
                continue;
            };
            let node = &self.net.nodes[i];
            let negate = matches!(kind, Nonlinear::Max(_, true));
            let dv: Vec<Tensor> =
                cell.vtx.iter().map(|v| decision_values(node, |s| v.read(s), negate).into()).collect();
            let pieces = match kind {
                Nonlinear::Activation(_) => self.hinge_pieces(i, cell, dv),
                Nonlinear::Max(groups, _) => self.group_pieces(i, groups, cell, dv),
            };
            self.per_stage[self.stage[i]].fetch_add(pieces.len() as u64, Relaxed);
            let outs: Vec<Out> = pieces
                .into_par_iter()
                .map(|mut c| {
                    self.apply(i, &mut c);
                    self.run(c, i + 1)
                })
                .collect();
            let mut out = Out::default();
            outs.into_iter().for_each(|o| out.append(o));
            return out;
        }
        self.emit(cell)
    }

    /// Node `i`'s output at every vertex of `cell`; inputs read for the last time are dropped.
    fn apply(&self, i: usize, cell: &mut Cell) {
        let node = &self.net.nodes[i];
        let ys: Vec<Vec<f64>> = match &self.ops[i] {
            Some((op, bias)) => {
                let rows: Vec<&[f64]> = cell.vtx.iter().map(|v| v.read(&node.inputs[0])).collect();
                pointwise::apply_rows(op, bias, &rows)
            }
            None => cell.vtx.iter().map(|v| apply_node(node, self.kinds[i].as_ref(), |s| v.read(s))).collect(),
        };
        for (v, y) in cell.vtx.iter_mut().zip(ys) {
            for s in &node.inputs {
                if let Src::Node(j) = *s {
                    if self.last[j] == Some(i) {
                        v.vals[j] = None;
                    }
                }
            }
            v.vals[i] = Some(y.into());
        }
    }

    /// The two sides of `cell` (with decision values `dv`) cut where `s` vanishes.
    fn cut(
        &self,
        cell: &Cell,
        dv: &[Tensor],
        s: &[f64],
        sg: &[Sign],
        g: [f64; 3],
        label: FacetLabel,
    ) -> [(Cell, Vec<Tensor>); 2] {
        let split: Split = cell.poly.split(s, sg, g, label);
        let new_vtx: Vec<Vtx> =
            split.new.iter().map(|&(a, b, t)| cell.vtx[a as usize].lerp(&cell.vtx[b as usize], t)).collect();
        let new_dv: Vec<Tensor> =
            split.new.iter().map(|&(a, b, t)| lerp(&dv[a as usize], &dv[b as usize], t)).collect();
        let new_pts: Vec<[f64; 3]> =
            split.new.iter().map(|&(a, b, t)| lerp3(cell.poly.pts[a as usize], cell.poly.pts[b as usize], t)).collect();
        let side = |side: Side| -> (Cell, Vec<Tensor>) {
            let mut pts = Vec::with_capacity(side.verts.len());
            let mut vtx = Vec::with_capacity(side.verts.len());
            let mut d = Vec::with_capacity(side.verts.len());
            for v in &side.verts {
                match *v {
                    VRef::Old(i) => {
                        pts.push(cell.poly.pts[i as usize]);
                        vtx.push(cell.vtx[i as usize].clone());
                        d.push(dv[i as usize].clone());
                    }
                    VRef::New(k) => {
                        pts.push(new_pts[k as usize]);
                        vtx.push(new_vtx[k as usize].clone());
                        d.push(new_dv[k as usize].clone());
                    }
                }
            }
            (Cell { poly: Poly { pts, faces: side.faces }, vtx, pattern: cell.pattern.clone() }, d)
        };
        [side(split.neg), side(split.pos)]
    }

    /// Whether the hinge at `bp` of unit `u` crosses `cell`: its values minus `bp` at the
    /// vertices, their signs under the tolerance rule, and its gradient.
    fn crossing(
        &self,
        cell: &Cell,
        grad: Option<&Gradient>,
        dv: &[Tensor],
        u: usize,
        bp: f64,
    ) -> Option<(Vec<f64>, Vec<Sign>, [f64; 3])> {
        let s: Vec<f64> = dv.iter().map(|d| d[u] - bp).collect();
        let (lo, hi) = s.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
        if !(lo < 0.0 && hi > 0.0) {
            return None;
        }
        let g = grad.map_or([0.0; 3], |g| g.apply(|k| s[k]));
        let magnitude = dv.iter().fold(bp.abs(), |m, d| m.max(d[u].abs()));
        let (sg, neg, pos) = signs(&s, g, magnitude);
        debug_assert_eq!(sg.len(), cell.vtx.len());
        (neg && pos).then_some((s, sg, g))
    }

    /// `cell` split by every hinge of node `i` that crosses it, with the node's pattern bits.
    fn hinge_pieces(&self, i: usize, cell: Cell, dv: Vec<Tensor>) -> Vec<Cell> {
        let (forms, _) = self.forms[i].as_ref().expect("an activation has hinge forms");
        let grad = Gradient::of(&cell.poly.pts);
        let mut cands = Vec::new();
        for (u, f) in forms.iter().enumerate() {
            for (j, &(bp, _)) in f.hinges().iter().enumerate() {
                if self.crossing(&cell, grad.as_ref(), &dv, u, bp).is_some() {
                    cands.push((u as u32, j as u8, bp));
                }
            }
        }
        let mut out = Vec::new();
        self.hinge_rec(i, cell, dv, &cands, &mut out);
        out
    }

    fn hinge_rec(&self, i: usize, cell: Cell, dv: Vec<Tensor>, cands: &[(u32, u8, f64)], out: &mut Vec<Cell>) {
        let grad = Gradient::of(&cell.poly.pts);
        for (k, &(u, j, bp)) in cands.iter().enumerate() {
            if let Some((s, sg, g)) = self.crossing(&cell, grad.as_ref(), &dv, u as usize, bp) {
                let label = FacetLabel::Hinge { node: i as u32, unit: u, hinge: j };
                let [neg, pos] = self.cut(&cell, &dv, &s, &sg, g, label);
                drop(cell);
                self.hinge_rec(i, neg.0, neg.1, &cands[k + 1..], out);
                self.hinge_rec(i, pos.0, pos.1, &cands[k + 1..], out);
                return;
            }
        }
        // One piece of every hinge: the bits from the values at the vertex centroid.
        let mut cell = cell;
        let (forms, slots) = self.forms[i].as_ref().expect("an activation has hinge forms");
        let bits = &self.layout[self.stage[i]];
        let m = dv.len() as f64;
        for (u, f) in forms.iter().enumerate() {
            for (j, &(bp, _)) in f.hinges().iter().enumerate() {
                let mid = dv.iter().map(|d| d[u]).sum::<f64>() / m;
                if mid > bp {
                    cell.pattern.set_bit(bits.offset + u * slots + j);
                }
            }
        }
        out.push(cell);
    }

    /// `cell` split into the upper-envelope cells of every group of max-type node `i`.
    fn group_pieces(&self, i: usize, groups: &[Vec<u32>], cell: Cell, dv: Vec<Tensor>) -> Vec<Cell> {
        let bits = &self.layout[self.stage[i]];
        let width = bits.bits / groups.len().max(1);
        let mut cells = vec![(cell, dv)];
        for (g, group) in groups.iter().enumerate() {
            let mut next = Vec::with_capacity(cells.len());
            for (c, d) in cells {
                self.envelope(i, g, group, c, d, bits.offset + g * width, width, &mut next);
            }
            cells = next;
        }
        cells.into_iter().map(|(c, _)| c).collect()
    }

    /// The cells of `cell` where each candidate of `group` is the largest (ties to the lower
    /// position), with the winner's position written into the pattern.
    #[allow(clippy::too_many_arguments)]
    fn envelope(
        &self,
        i: usize,
        g: usize,
        group: &[u32],
        cell: Cell,
        dv: Vec<Tensor>,
        offset: usize,
        width: usize,
        out: &mut Vec<(Cell, Vec<Tensor>)>,
    ) {
        let diff = |d: &[Tensor], p: usize, q: usize| -> (Vec<f64>, f64) {
            let (a, b) = (group[p] as usize, group[q] as usize);
            let s: Vec<f64> = d.iter().map(|v| v[a] - v[b]).collect();
            let magnitude = d.iter().fold(0.0f64, |m, v| m.max(v[a].abs()).max(v[b].abs()));
            (s, magnitude)
        };
        let grad = Gradient::of(&cell.poly.pts);
        let gradient = |grad: &Option<Gradient>, s: &[f64]| grad.as_ref().map_or([0.0; 3], |g| g.apply(|k| s[k]));
        // Candidates: members no single other member beats on the whole cell.
        let cands: Vec<usize> = (0..group.len())
            .filter(|&p| {
                !(0..group.len()).any(|q| {
                    if q == p {
                        return false;
                    }
                    let (s, m) = diff(&dv, q, p);
                    let (sg, _, _) = signs(&s, gradient(&grad, &s), m);
                    sg.iter().all(|&x| x == Sign::Pos)
                })
            })
            .collect();
        if cands.len() == 1 {
            let mut cell = cell;
            cell.pattern.set_bits(offset, width, cands[0] as u64);
            out.push((cell, dv));
            return;
        }
        for &w in &cands {
            let mut piece = Some((cell.clone(), dv.clone()));
            for &o in cands.iter().filter(|&&o| o != w) {
                let Some((c, d)) = piece.take() else { break };
                let grad = Gradient::of(&c.poly.pts);
                let (s, m) = diff(&d, w, o);
                let gs = gradient(&grad, &s);
                let (sg, neg, pos) = signs(&s, gs, m);
                piece = match (neg, pos) {
                    (true, true) => {
                        let label =
                            FacetLabel::Tie { node: i as u32, group: g as u32, a: w.min(o) as u16, b: w.max(o) as u16 };
                        let [_, keep] = self.cut(&c, &d, &s, &sg, gs, label);
                        Some(keep)
                    }
                    (true, false) => None,
                    // Equal on the whole cell: the lower position wins.
                    (false, false) if w > o => None,
                    _ => Some((c, d)),
                };
            }
            if let Some((mut c, d)) = piece {
                c.pattern.set_bits(offset, width, w as u64);
                out.push((c, d));
            }
        }
    }

    /// A finished region: counted, checked against the limits, kept and sectioned if asked.
    fn emit(&self, cell: Cell) -> Out {
        let opts = &self.opts.engine;
        let vol = cell.poly.volume();
        if let Some(p) = &opts.progress {
            p.add(vol / 8.0);
        }
        let n = self.regions.fetch_add(1, Relaxed) + 1;
        if let Some(limit) = opts.max_regions {
            if n > limit {
                self.fail(EngineError::TooManyRegions { limit });
                return Out::default();
            }
        }
        if n.is_multiple_of(256) {
            if let Some(t) = opts.time_limit {
                if self.start.elapsed() > t {
                    self.fail(EngineError::TimeLimit { seconds: t.as_secs_f64() });
                    return Out::default();
                }
            }
            if opts.cancel.as_ref().is_some_and(|c| c.load(Relaxed)) {
                self.fail(EngineError::Cancelled);
                return Out::default();
            }
        }
        let scale = self.half[0] * self.half[1] * self.half[2];
        let ys: Vec<&[f64]> = match self.net.nodes.len() {
            0 => cell.vtx.iter().map(|v| &*v.x).collect(),
            k => cell.vtx.iter().map(|v| v.vals[k - 1].as_deref().expect("the output is alive")).collect(),
        };
        let mut out = Out {
            count: 1,
            volume: vol,
            min: vol,
            max: vol,
            vertices: cell.poly.pts.len() as u64,
            facets: cell.poly.faces.len() as u64,
            ..Out::default()
        };
        if let Some(decision) = &self.opts.surface {
            mesh::sections(&cell.poly, &ys, decision, self.classes, &mut out.patches);
        }
        if self.opts.keep_regions {
            let region = self.region(&cell, &ys, vol * scale);
            let bytes = (region.vertices.len() * 24
                + region.facets.iter().map(|f| 48 + 4 * f.vertices.len()).sum::<usize>()
                + region.offset.len() * 32
                + 8 * region.pattern.0.len()
                + 160) as u64;
            let total = self.bytes.fetch_add(bytes, Relaxed) + bytes;
            if let Some(limit) = opts.memory_limit {
                if total > limit {
                    self.fail(EngineError::MemoryLimit { megabytes: limit >> 20 });
                    return Out::default();
                }
            }
            out.regions.push(region);
        }
        out
    }

    /// The region of a finished cell in frame coordinates, with its map fitted to the outputs
    /// at the vertices (exact for the affine map the cell has, up to rounding).
    fn region(&self, cell: &Cell, ys: &[&[f64]], volume: f64) -> Region3 {
        let (c, h) = (self.center, self.half);
        let vertices = cell.poly.pts.iter().map(|&u| self.slice.from_unit(u)).collect();
        let grad = Gradient::of(&cell.poly.pts);
        let n_out = ys.first().map_or(0, |y| y.len());
        let centre = mean(&cell.poly.pts);
        let mut jacobian = Vec::with_capacity(n_out);
        let mut offset = Vec::with_capacity(n_out);
        for o in 0..n_out {
            let gn = grad.as_ref().map_or([0.0; 3], |g| g.apply(|k| ys[k][o]));
            let mean_y = ys.iter().map(|y| y[o]).sum::<f64>() / ys.len() as f64;
            // y = mean_y + gn·(u − centre) with u = (p − c) / h.
            let j = [gn[0] / h[0], gn[1] / h[1], gn[2] / h[2]];
            let off =
                mean_y - (0..3).map(|k| gn[k] * centre[k]).sum::<f64>() - (0..3).map(|k| j[k] * c[k]).sum::<f64>();
            jacobian.push(j);
            offset.push(off);
        }
        let facets =
            cell.poly.faces.iter().map(|(cyc, label)| Facet { vertices: cyc.clone(), label: *label }).collect();
        Region3 { vertices, facets, volume, pattern: cell.pattern.clone(), jacobian, offset }
    }
}
