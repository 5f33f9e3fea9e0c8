//! Activation patterns and where each nonlinear layer's units sit in them. Shared by the engine
//! (which writes patterns) and the partition (which stores and compares them).

/// An activation pattern: one bit per hinge of every elementwise unit, and the winning position
/// of every max group (in `ceil(log2(largest group of the layer))` bits, at least one), over all
/// nonlinear layers, in the order of [`LayerBits`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct Pattern(pub Vec<u64>);

impl Pattern {
    /// A pattern of `bits` zero bits.
    pub fn zeros(bits: usize) -> Self {
        Pattern(vec![0; bits.div_ceil(64)])
    }

    /// Sets bit `bit`.
    #[inline]
    pub fn set_bit(&mut self, bit: usize) {
        self.0[bit / 64] |= 1 << (bit % 64);
    }

    /// Clears bit `bit`.
    #[inline]
    pub fn clear_bit(&mut self, bit: usize) {
        self.0[bit / 64] &= !(1 << (bit % 64));
    }

    /// Writes the `width` low bits of `value` at `offset`.
    #[inline]
    pub fn set_bits(&mut self, offset: usize, width: usize, value: u64) {
        for k in 0..width {
            if value >> k & 1 == 1 {
                self.set_bit(offset + k);
            } else {
                self.clear_bit(offset + k);
            }
        }
    }

    /// Bit `bit` of the pattern.
    pub fn bit(&self, bit: usize) -> bool {
        self.0.get(bit / 64).is_some_and(|w| w >> (bit % 64) & 1 == 1)
    }

    /// The `width` bits at `offset` as a number.
    pub fn bits(&self, offset: usize, width: usize) -> u64 {
        (0..width).filter(|&k| self.bit(offset + k)).fold(0, |a, k| a | (1 << k))
    }

    /// The first bit where two patterns differ (`None` when equal).
    pub fn first_difference(&self, other: &Pattern) -> Option<usize> {
        let w = self.0.iter().zip(&other.0).position(|(x, y)| x != y)?;
        Some(w * 64 + (self.0[w] ^ other.0[w]).trailing_zeros() as usize)
    }

    /// A short stable id (a 64-bit hash of the bits): tooltips, graph nodes.
    pub fn id(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = rustc_hash::FxHasher::default();
        self.hash(&mut h);
        h.finish()
    }

    /// Compact hexadecimal id (little-endian words, trailing zero words trimmed).
    pub fn to_hex(&self) -> String {
        let mut words = self.0.as_slice();
        while let [rest @ .., 0] = words {
            words = rest;
        }
        if words.is_empty() {
            return "0".into();
        }
        words.iter().map(|w| format!("{w:016x}")).collect::<Vec<_>>().join("")
    }
}

/// Where one nonlinear layer's units sit in an activation pattern.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LayerBits {
    /// Index of the layer in the model.
    pub layer: usize,
    /// Its op name.
    pub op: String,
    /// First bit.
    pub offset: usize,
    /// Number of bits.
    pub bits: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_round_trip() {
        let mut p = Pattern::zeros(130);
        p.set_bits(62, 5, 0b10110);
        assert_eq!(p.bits(62, 5), 0b10110);
        p.set_bits(62, 5, 0b00001);
        assert_eq!(p.bits(62, 5), 1);
        p.set_bit(129);
        assert!(p.bit(129) && !p.bit(128));
        assert_eq!(Pattern::zeros(64).to_hex(), "0");
    }
}
