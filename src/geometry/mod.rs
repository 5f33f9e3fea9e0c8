//! Planar geometry that knows nothing about networks: the tolerance policy and convex polygons.

pub mod envelope;
pub mod polygon;
pub mod predicates;
pub mod weld;
