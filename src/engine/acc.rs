//! Corrections, and their accumulator on one target's pre-activations.
//!
//! A correction says how one unit's post-activation differs from a base's default (`Δt`); the
//! corrections of one source stage travel together in a [`Chunk`], shared by every piece that
//! inherits them. [`scatter`] pushes them through the edges into a target.
//!
//! Corrections arrive as columns of edges: a convolution's column is a stencil of `C_out` values
//! at each of `k·k` pixels. The accumulator is therefore laid out pixel by pixel (a pixel's
//! channels contiguous, in three rows: `∂/∂s`, `∂/∂t`, value) with one mark per pixel, so that a
//! stencil is a few contiguous runs, each weight is read once for the three rows, and the
//! bookkeeping is one mark per pixel, not per unit. A flat target is one pixel of `n` channels.
//! Units are addressed in the network's channel-major order (`u = channel · pixels + pixel`).

use super::plan::{Plan, Source};
use std::sync::Arc;

/// Corrections of one source stage: `(output unit, Δt)`.
pub(crate) struct Chunk {
    pub source: usize,
    pub corrs: Vec<(u32, [f64; 3])>,
}

/// Pushes every correction of `chunks` through the edges into `target`, into `acc`.
pub(crate) fn scatter(plan: &Plan, chunks: &[Arc<Chunk>], target: usize, acc: &mut Acc) {
    let (channels, pixels) = plan.target_layout(target);
    acc.reset(channels, pixels);
    for chunk in chunks {
        for edge in plan.edges(Source::Stage(chunk.source)).iter().filter(|e| e.target == target) {
            edge.map.scatter_all(&chunk.corrs, acc, edge.offset);
        }
    }
}

/// The chunks that still feed a target after stage `s`.
pub(crate) fn live_after(plan: &Plan, chunks: &[Arc<Chunk>], s: usize) -> Vec<Arc<Chunk>> {
    chunks.iter().filter(|c| plan.stages[c.source].last_target() > s).cloned().collect()
}

/// A sparse accumulator of `3`-vectors over a target's units.
///
/// Each pixel's block holds three rows of `channels` entries (`∂/∂s`, `∂/∂t`, value): a
/// column's weights at one pixel are then read once for the three rows, and every row is one
/// contiguous run, vector lanes wide. (Interleaved 3-vectors needed each weight stored three
/// times, and three times the weight traffic from the cache.)
#[derive(Default)]
pub(crate) struct Acc {
    channels: usize,
    pixels: usize,
    v: Vec<f64>,
    mark: Vec<bool>,
    touched: Vec<u32>,
}

impl Acc {
    /// Clears the accumulator for a target of `channels × pixels` units.
    pub(crate) fn reset(&mut self, channels: usize, pixels: usize) {
        if channels == self.channels && pixels == self.pixels {
            for &p in &self.touched {
                let p = p as usize;
                self.v[3 * p * channels..3 * (p + 1) * channels].fill(0.0);
                self.mark[p] = false;
            }
        } else {
            self.v.clear();
            self.v.resize(3 * channels * pixels, 0.0);
            self.mark.clear();
            self.mark.resize(pixels, false);
            self.channels = channels;
            self.pixels = pixels;
        }
        self.touched.clear();
    }

    pub(crate) fn pixels(&self) -> usize {
        self.pixels
    }

    /// The three rows (`∂/∂s`, `∂/∂t`, value) of the channels of pixel `p`, marking it touched.
    #[inline]
    pub(crate) fn block(&mut self, p: usize) -> [&mut [f64]; 3] {
        if !self.mark[p] {
            self.mark[p] = true;
            self.touched.push(p as u32);
        }
        let c = self.channels;
        let (r0, rest) = self.v[3 * p * c..3 * (p + 1) * c].split_at_mut(c);
        let (r1, r2) = rest.split_at_mut(c);
        [r0, r1, r2]
    }

    /// Adds `coef · w` to unit `u`.
    #[inline]
    pub(crate) fn add(&mut self, u: usize, coef: [f64; 3], w: f64) {
        let (c, p) = (u / self.pixels, u % self.pixels);
        let [r0, r1, r2] = self.block(p);
        r0[c] += coef[0] * w;
        r1[c] += coef[1] * w;
        r2[c] += coef[2] * w;
    }

    /// The accumulated value of unit `u` (zero when untouched).
    #[inline]
    pub(crate) fn get(&self, u: usize) -> [f64; 3] {
        let (c, p) = (u / self.pixels, u % self.pixels);
        if self.mark[p] {
            let (b, ch) = (3 * p * self.channels + c, self.channels);
            [self.v[b], self.v[b + ch], self.v[b + 2 * ch]]
        } else {
            [0.0; 3]
        }
    }

    /// Number of units in touched pixels.
    pub(crate) fn count(&self) -> usize {
        self.touched.len() * self.channels
    }

    /// Calls `f(u)` for every unit of every touched pixel whose accumulated value is not zero
    /// (a unit whose corrections cancel exactly is unchanged).
    pub(crate) fn for_each_unit(&self, mut f: impl FnMut(usize)) {
        let ch = self.channels;
        for &p in &self.touched {
            let p = p as usize;
            let (r0, rest) = self.v[3 * p * ch..3 * (p + 1) * ch].split_at(ch);
            let (r1, r2) = rest.split_at(ch);
            for c in 0..ch {
                if r0[c] != 0.0 || r1[c] != 0.0 || r2[c] != 0.0 {
                    f(c * self.pixels + p);
                }
            }
        }
    }

    /// `z += acc` for a map `z` in structure-of-arrays form (`3 × n`, channel-major units).
    pub(crate) fn add_to(&self, z: &mut [f64]) {
        let n = self.channels * self.pixels;
        debug_assert_eq!(z.len(), 3 * n);
        let ch = self.channels;
        let (z0, rest) = z.split_at_mut(n);
        let (z1, z2) = rest.split_at_mut(n);
        for &p in &self.touched {
            let p = p as usize;
            let (r0, rest) = self.v[3 * p * ch..3 * (p + 1) * ch].split_at(ch);
            let (r1, r2) = rest.split_at(ch);
            for c in 0..ch {
                let u = c * self.pixels + p;
                z0[u] += r0[c];
                z1[u] += r1[c];
                z2[u] += r2[c];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accumulates_by_pixel_and_resets() {
        let mut a = Acc::default();
        a.reset(2, 3);
        a.add(4, [1.0, 2.0, 3.0], 2.0); // channel 1, pixel 1
        a.add(1, [1.0, 0.0, 0.0], 1.0); // channel 0, pixel 1
        assert_eq!(a.get(4), [2.0, 4.0, 6.0]);
        assert_eq!(a.get(1), [1.0, 0.0, 0.0]);
        assert_eq!(a.get(0), [0.0; 3]);
        assert_eq!(a.count(), 2);
        let mut units = Vec::new();
        a.for_each_unit(|u| units.push(u));
        assert_eq!(units, vec![1, 4]);
        let mut z = vec![0.0; 18];
        a.add_to(&mut z);
        assert_eq!((z[4], z[6 + 4], z[12 + 4], z[1]), (2.0, 4.0, 6.0, 1.0));
        a.reset(2, 3);
        assert_eq!((a.get(4), a.count()), ([0.0; 3], 0));
    }
}
