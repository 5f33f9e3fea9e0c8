//! The region adjacency graph: regions as nodes (area, class, pattern id, centroid), shared
//! edges as edges (length, the unit whose breakpoint separates the two regions), written as
//! GraphML for networkx, igraph, Gephi.

use super::neurons::UnitLocator;
use super::AnalysisError;
use crate::boundary::Decision;
use crate::network::Network;
use crate::partition::Partition;
use petgraph::graph::{NodeIndex, UnGraph};
use std::io::Write;

/// A region in the graph.
#[derive(Clone, Debug, PartialEq)]
pub struct RegionNode {
    /// Index of the region in the partition.
    pub region: usize,
    /// Area in `(u, v)` units.
    pub area: f64,
    /// Class (of the decision) at the region's centroid.
    pub class: usize,
    /// `Pattern::id` of its activation pattern.
    pub pattern_id: u64,
    /// Centroid in `(u, v)`.
    pub centroid: [f64; 2],
}

/// Two regions sharing an edge.
#[derive(Clone, Debug, PartialEq)]
pub struct Adjacency {
    /// Length of the shared edge in `(u, v)`.
    pub length: f64,
    /// The node (network node index) and unit of the first unit whose piece differs between
    /// the two regions: the breakpoint line the edge lies on.
    pub unit: Option<(usize, usize)>,
}

/// The region adjacency graph of `part` (computed for `net`): one node per region, in region
/// order (node index = region index), one edge per pair of regions sharing a side (except at
/// T-junctions, see [`Partition::edges`]).
///
/// Fails when `part`'s pattern layout is not `net`'s.
pub fn region_graph(
    net: &Network,
    part: &Partition,
    decision: &Decision,
) -> Result<UnGraph<RegionNode, Adjacency>, AnalysisError> {
    let units = UnitLocator::new(net, &part.layout)?;
    let mut g: UnGraph<RegionNode, Adjacency> = UnGraph::with_capacity(part.regions.len(), 2 * part.regions.len());
    for (i, r) in part.regions.iter().enumerate() {
        let c = r.polygon.centroid();
        g.add_node(RegionNode {
            region: i,
            area: r.area,
            class: decision.class_of(&r.map.eval(c)),
            pattern_id: r.pattern.id(),
            centroid: part.frame.to_uv(c),
        });
    }
    // A pair meets along one side of each (convex polygons); should it come in two pieces (both
    // regions sharing a vertex in its middle), the lengths are summed. A side that a neighbour
    // splits at a vertex of its own (a T-junction, only in degenerate configurations) has no
    // neighbour in `Partition::edges`: such a pair is not joined.
    let mut seen: rustc_hash::FxHashMap<(usize, usize), petgraph::graph::EdgeIndex> = Default::default();
    for e in part.edges() {
        let Some(r) = e.right else { continue };
        let (p, q) = (part.frame.to_uv(e.a), part.frame.to_uv(e.b));
        let length = (p[0] - q[0]).hypot(p[1] - q[1]);
        let key = (e.left.min(r), e.left.max(r));
        if let Some(&ix) = seen.get(&key) {
            g[ix].length += length;
            continue;
        }
        let (a, b) = (&part.regions[e.left].pattern, &part.regions[r].pattern);
        let unit = a.first_difference(b).and_then(|bit| units.unit_of_bit(bit));
        let ix = g.add_edge(NodeIndex::new(key.0), NodeIndex::new(key.1), Adjacency { length, unit });
        seen.insert(key, ix);
    }
    Ok(g)
}

/// Writes `g` as GraphML with typed attributes (`double`, `int`, `string`): nodes `n<region>`
/// with `area`, `class`, `pattern` (hex id), `u`, `v`; edges with `length`, `layer`, `unit`
/// (−1 when no unit separates them).
///
/// Written by hand rather than with `petgraph-graphml`, which declares every attribute a
/// string (networkx would then read areas and lengths as text).
pub fn write_graphml<W: Write>(g: &UnGraph<RegionNode, Adjacency>, mut w: W) -> std::io::Result<()> {
    writeln!(w, r#"<?xml version="1.0" encoding="UTF-8"?>"#)?;
    writeln!(w, r#"<graphml xmlns="http://graphml.graphdrawing.org/xmlns">"#)?;
    for (id, on, name, ty) in [
        ("d0", "node", "area", "double"),
        ("d1", "node", "class", "int"),
        ("d2", "node", "pattern", "string"),
        ("d3", "node", "u", "double"),
        ("d4", "node", "v", "double"),
        ("d5", "edge", "length", "double"),
        ("d6", "edge", "layer", "int"),
        ("d7", "edge", "unit", "int"),
    ] {
        writeln!(w, r#"  <key id="{id}" for="{on}" attr.name="{name}" attr.type="{ty}"/>"#)?;
    }
    writeln!(w, r#"  <graph id="regions" edgedefault="undirected">"#)?;
    for n in g.node_weights() {
        writeln!(
            w,
            r#"    <node id="n{}"><data key="d0">{:e}</data><data key="d1">{}</data><data key="d2">{:016x}</data><data key="d3">{:e}</data><data key="d4">{:e}</data></node>"#,
            n.region, n.area, n.class, n.pattern_id, n.centroid[0], n.centroid[1]
        )?;
    }
    for e in g.edge_indices() {
        let (a, b) = g.edge_endpoints(e).expect("edge of the graph");
        let adj = &g[e];
        let (layer, unit) = adj.unit.map_or((-1, -1), |(l, u)| (l as i64, u as i64));
        writeln!(
            w,
            r#"    <edge source="n{}" target="n{}"><data key="d5">{:e}</data><data key="d6">{layer}</data><data key="d7">{unit}</data></edge>"#,
            g[a].region, g[b].region, adj.length
        )?;
    }
    writeln!(w, "  </graph>\n</graphml>")
}
