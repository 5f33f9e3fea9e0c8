//! Loader for ONNX models exported by PyTorch (`torch.onnx.export`, both the TorchScript-based
//! and the dynamo-based exporter, opsets 9 to 21): a graph lowering.
//!
//! The protobuf is decoded with prost from message declarations in `onnx_proto` (no `protoc`,
//! no build script). The graph is analysed first: nodes sorted topologically (a cycle or a
//! tensor nobody produces is an error naming the node), constants (initializers, `Constant`
//! nodes) known by name. Then every node in order is either *folded* (all its inputs are
//! constants, or it only reads the known shape of a data tensor: the shape arithmetic exporters
//! emit) or *lowered* by the one function registered for its op type (`ops.rs`) into nodes of
//! the network graph ([`super::Node`]), validated by [`super::build`]. Data tensors carry their
//! full ONNX shape (batch 1 first); the network sees `[n]`, `[c, length]` (as a height-1
//! image) or `[c, h, w]`. Nodes that do not reach the output are dropped. Anything not
//! piecewise linear, an unknown op or an unsupported attribute is an error naming the node
//! (and the attribute) before any computation.

mod ops;
mod tensor;

use super::build::{self, LayerError};
use super::onnx_proto as pb;
use super::{json, LayerKind, Network, Node, Shape, Src};
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use tensor::{IndexMap, Tensor};

/// Why an ONNX model could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OnnxError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The bytes are not an ONNX model.
    #[error("{path}: not a valid ONNX model: {message}")]
    Decode {
        /// The file.
        path: String,
        /// The decoder's message.
        message: String,
    },
    /// The graph as a whole is unsupported or malformed.
    #[error("ONNX graph: {0}")]
    Graph(String),
    /// One node is unsupported or malformed.
    #[error("ONNX node `{node}` ({op}): {message}")]
    Node {
        /// The node's name (or its first output when unnamed).
        node: String,
        /// Its op_type.
        op: String,
        /// What is wrong.
        message: String,
    },
    /// The lowered model failed validation.
    #[error("ONNX model lowered to invalid layers: {0}")]
    Model(#[from] json::ModelError),
}

pub use ops::SUPPORTED_OPS;

/// A loaded model with notes about what the lowering did.
#[derive(Debug, Clone)]
pub struct Lowered {
    /// The network.
    pub network: Network,
    /// Remarks (for example a trailing softmax that was dropped).
    pub notes: Vec<String>,
}

/// Reads an ONNX file (external data is looked up next to it).
pub fn load_path(path: &Path) -> Result<Lowered, OnnxError> {
    let name = path.display().to_string();
    let size = std::fs::metadata(path).map_err(|source| OnnxError::Io { path: name.clone(), source })?.len();
    if size > json::MAX_FILE_BYTES {
        return Err(OnnxError::Decode {
            path: name,
            message: format!("{size} bytes, above the limit of {}", json::MAX_FILE_BYTES),
        });
    }
    let bytes = std::fs::read(path).map_err(|source| OnnxError::Io { path: name.clone(), source })?;
    parse_bytes(&bytes, &name, path.parent())
}

/// Largest number of values all initializers may hold together (2^27: 1 GiB as f64).
const MAX_WEIGHTS: usize = 1 << 27;

/// Largest number of nodes of a graph (far above any exported vision model).
const MAX_NODES: usize = 1 << 20;

/// A tensor of the data path: the network node that computes it (or the input) and its ONNX
/// shape, batch first (always 1).
#[derive(Clone, Debug)]
struct Data {
    pub src: Src,
    pub dims: Vec<usize>,
}

/// What a tensor name holds during lowering.
#[derive(Clone, Debug)]
enum Val {
    Const(Tensor),
    Data(Data),
}

/// The network shape of a data tensor of ONNX shape `dims`: `[1, n]`, `[1, c, l]` and
/// `[1, c, h, w]` are what they say (the batch is one input); any other shape is a flat vector
/// of its entries (one input is mapped, so a size-1 batch axis may move anywhere).
fn canonical(dims: &[usize]) -> Result<Shape, String> {
    match dims {
        [1, n] => Ok(Shape::Flat(*n)),
        [1, c, l] => Ok(Shape::Image { c: *c, h: 1, w: *l }),
        [1, c, h, w] => Ok(Shape::Image { c: *c, h: *h, w: *w }),
        other => Ok(Shape::Flat(tensor::numel(other).ok_or("shape overflows")?)),
    }
}

/// The lowering state of one graph.
struct Cx<'a> {
    vals: HashMap<String, Val>,
    /// The network nodes built so far.
    nodes: Vec<Node>,
    input_shape: Shape,
    dir: Option<&'a Path>,
    notes: Vec<String>,
    /// The ONNX node being lowered: its name, and how many network nodes it made.
    current: String,
    made: usize,
    /// The graph's output tensor.
    output: String,
}

impl Cx<'_> {
    /// The value of input `i` of `node` (`None` for an absent optional input).
    pub fn input(&self, node: &pb::NodeProto, i: usize) -> Result<Option<&Val>, String> {
        match node.input.get(i).filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(name) => self.vals.get(name).map(Some).ok_or_else(|| format!("input `{name}` is not computed")),
        }
    }

    /// Input `i`, which must be a constant.
    pub fn konst(&self, node: &pb::NodeProto, i: usize) -> Result<Option<Tensor>, String> {
        match self.input(node, i)? {
            None => Ok(None),
            Some(Val::Const(t)) => Ok(Some(t.clone())),
            Some(Val::Data(_)) => {
                Err(format!("input {i} (`{}`) must be a constant, but it depends on the network input", node.input[i]))
            }
        }
    }

    /// Input `i`, which must be present and constant.
    pub fn need_konst(&self, node: &pb::NodeProto, i: usize) -> Result<Tensor, String> {
        self.konst(node, i)?.ok_or_else(|| format!("input {i} is missing"))
    }

    /// Input `i`, which must be on the data path.
    pub fn data(&self, node: &pb::NodeProto, i: usize) -> Result<Data, String> {
        match self.input(node, i)? {
            Some(Val::Data(d)) => Ok(d.clone()),
            Some(Val::Const(_)) => Err(format!("input {i} is a constant where the data path is expected")),
            None => Err(format!("input {i} is missing")),
        }
    }

    /// Sets output `k` of `node`.
    pub fn set(&mut self, node: &pb::NodeProto, k: usize, v: Val) -> Result<(), String> {
        let name = node.output.get(k).filter(|s| !s.is_empty()).ok_or_else(|| format!("output {k} is missing"))?;
        self.vals.insert(name.clone(), v);
        Ok(())
    }

    /// Appends a network node computing `kind` from `inputs`, with output ONNX shape `dims`.
    pub fn emit(&mut self, kind: LayerKind, inputs: &[&Data], dims: Vec<usize>, op: &str) -> Result<Data, String> {
        let shapes: Vec<Shape> = inputs.iter().map(|d| canonical(&d.dims)).collect::<Result<_, _>>()?;
        let out = canonical(&dims)?;
        let to = matches!(kind, LayerKind::Reshape | LayerKind::Gather(_)).then_some(out);
        let layer = build::layer(kind, &shapes, op, to).map_err(|e: LayerError| match e.field {
            Some(f) => format!("{} ({f})", e.message),
            None => e.message,
        })?;
        if layer.output != out {
            return Err(format!(
                "lowered to a {} layer giving {} where {out} ({dims:?}) is expected",
                layer.op, layer.output
            ));
        }
        if self.nodes.len() >= MAX_NODES {
            return Err(format!("the lowered network would have more than {MAX_NODES} nodes"));
        }
        let name = if self.made == 0 { self.current.clone() } else { format!("{}#{}", self.current, self.made) };
        self.made += 1;
        self.nodes.push(Node { layer, inputs: inputs.iter().map(|d| d.src).collect(), name });
        Ok(Data { src: Src::Node(self.nodes.len() - 1), dims })
    }

    /// `d` seen with ONNX shape `dims` (same entries): a reshape node only when the network
    /// shape changes.
    pub fn reshape(&mut self, d: &Data, dims: Vec<usize>) -> Result<Data, String> {
        if tensor::numel(&dims) != tensor::numel(&d.dims) {
            return Err(format!("cannot reshape {:?} to {dims:?}", d.dims));
        }
        if canonical(&dims)? == canonical(&d.dims)? {
            return Ok(Data { src: d.src, dims });
        }
        self.emit(LayerKind::Reshape, &[d], dims, "reshape")
    }

    /// `d` through an index map (a reshape when the map is the identity).
    pub fn gather(&mut self, d: &Data, m: IndexMap, op: &str) -> Result<Data, String> {
        if m.index.len() == tensor::numel(&d.dims).unwrap_or(0) && m.is_identity() {
            return self.reshape(d, m.dims);
        }
        self.emit(LayerKind::Gather(super::Gather { index: m.index }), &[d], m.dims, op)
    }

    /// Records a remark for the user.
    pub fn note(&mut self, s: String) {
        self.notes.push(s);
    }

    /// Whether output `k` of `node` is the graph's output.
    pub fn is_output(&self, node: &pb::NodeProto) -> bool {
        node.output.first() == Some(&self.output)
    }

    /// The directory of external data.
    pub fn dir(&self) -> Option<&Path> {
        self.dir
    }
}

/// The attributes of a node, with a record of those a lowering read: any attribute left unread
/// is one the lowering does not support (reported by name).
struct Attrs<'a> {
    node: &'a pb::NodeProto,
    read: RefCell<HashSet<&'a str>>,
}

impl<'a> Attrs<'a> {
    fn new(node: &'a pb::NodeProto) -> Self {
        Attrs { node, read: RefCell::new(HashSet::new()) }
    }

    pub fn get(&self, name: &str) -> Option<&'a pb::AttributeProto> {
        let a = self.node.attribute.iter().find(|a| a.name == name)?;
        self.read.borrow_mut().insert(a.name.as_str());
        Some(a)
    }

    pub fn int(&self, name: &str, default: i64) -> i64 {
        self.get(name).map_or(default, |a| a.i)
    }

    pub fn float(&self, name: &str, default: f64) -> f64 {
        self.get(name).map_or(default, |a| a.f as f64)
    }

    pub fn ints(&self, name: &str) -> Option<Vec<i64>> {
        self.get(name).map(|a| a.ints.clone())
    }

    pub fn string(&self, name: &str, default: &str) -> String {
        self.get(name).map_or(default.to_string(), |a| String::from_utf8_lossy(&a.s).into_owned())
    }

    /// Marks attributes that do not change the function (e.g. a dropout's seed) as read.
    pub fn ignore(&self, names: &[&str]) {
        for n in names {
            let _ = self.get(n);
        }
    }

    /// The first attribute no lowering read.
    fn unread(&self) -> Option<&'a str> {
        let read = self.read.borrow();
        self.node.attribute.iter().map(|a| a.name.as_str()).find(|n| !read.contains(n))
    }
}

/// Parses ONNX bytes; `origin` names them in errors, `dir` holds external data files.
pub fn parse_bytes(bytes: &[u8], origin: &str, dir: Option<&Path>) -> Result<Lowered, OnnxError> {
    let model: pb::ModelProto = prost::Message::decode(bytes)
        .map_err(|e| OnnxError::Decode { path: origin.to_string(), message: e.to_string() })?;
    let graph =
        model.graph.ok_or_else(|| OnnxError::Decode { path: origin.to_string(), message: "no graph".into() })?;
    if graph.node.len() > MAX_NODES {
        return Err(OnnxError::Graph(format!("{} nodes, above the limit of {MAX_NODES}", graph.node.len())));
    }
    let mut vals = HashMap::new();
    let mut total = 0usize;
    for t in &graph.initializer {
        let value = tensor::decode(t, dir).map_err(|m| OnnxError::Graph(format!("initializer `{}`: {m}", t.name)))?;
        // All weights together are bounded too (each tensor is by MAX_ELEMENTS).
        total += value.data.len();
        if total > MAX_WEIGHTS {
            return Err(OnnxError::Graph(format!("the initializers hold more than {MAX_WEIGHTS} values")));
        }
        vals.insert(t.name.clone(), Val::Const(value));
    }
    let inputs: Vec<&pb::ValueInfoProto> = graph.input.iter().filter(|i| !vals.contains_key(&i.name)).collect();
    let [input] = inputs.as_slice() else {
        return Err(OnnxError::Graph(format!("expected one data input, found {}", inputs.len())));
    };
    let dims: Vec<Option<i64>> = input
        .r#type
        .as_ref()
        .and_then(|t| t.tensor_type.as_ref())
        .and_then(|t| t.shape.as_ref())
        .map(|s| s.dim.iter().map(|d| d.dim_value).collect())
        .ok_or_else(|| OnnxError::Graph(format!("input `{}` has no tensor shape", input.name)))?;
    // The first dimension is the batch (dynamic or fixed); the rest must be known.
    let known: Option<Vec<usize>> = dims.iter().skip(1).map(|d| d.and_then(|v| usize::try_from(v).ok())).collect();
    let input_shape = match known.as_deref() {
        Some(rest @ ([_] | [_, _] | [_, _, _])) if rest.iter().all(|&d| d > 0) => json::shape_of_dims(rest).ok(),
        _ => None,
    }
    .ok_or_else(|| {
        OnnxError::Graph(format!(
            "input `{}` must be [batch, features], [batch, channels, length] or [batch, channels, height, width] with known sizes (at most {} values), got {dims:?}",
            input.name,
            super::MAX_ELEMENTS
        ))
    })?;
    let mut full = vec![1usize];
    full.extend(known.unwrap_or_default());
    vals.insert(input.name.clone(), Val::Data(Data { src: Src::Input, dims: full }));
    let [output] = &graph.output[..] else {
        return Err(OnnxError::Graph(format!("expected one output, found {}", graph.output.len())));
    };
    let order = topological(&graph.node, &vals)?;
    let mut cx = Cx {
        vals,
        nodes: Vec::new(),
        input_shape,
        dir,
        notes: Vec::new(),
        current: String::new(),
        made: 0,
        output: output.name.clone(),
    };
    for &k in &order {
        let node = &graph.node[k];
        let name = node_name(node);
        let err = |message: String| OnnxError::Node { node: name.clone(), op: node.op_type.clone(), message };
        if !node.domain.is_empty() && node.domain != "ai.onnx" {
            return Err(err(format!("custom domain `{}` is not supported", node.domain)));
        }
        cx.current = name.clone();
        cx.made = 0;
        let attrs = Attrs::new(node);
        ops::lower(&mut cx, node, &attrs).map_err(err)?;
        if let Some(a) = attrs.unread() {
            return Err(err(format!("attribute `{a}` is not supported")));
        }
    }
    let out = match cx.vals.get(&output.name) {
        Some(Val::Data(d)) => d.clone(),
        Some(Val::Const(_)) => {
            return Err(OnnxError::Graph(format!("the output `{}` does not depend on the input", output.name)))
        }
        None => return Err(OnnxError::Graph(format!("no node computes the output `{}`", output.name))),
    };
    let Src::Node(last) = out.src else {
        return Err(OnnxError::Graph("the output is the input itself: the model computes nothing".into()));
    };
    let mut nodes = prune(std::mem::take(&mut cx.nodes), last);
    // The output keeps the shape ONNX gives it (a final reshape the network must see).
    let want = canonical(&out.dims).map_err(OnnxError::Graph)?;
    if nodes.last().is_some_and(|n| n.layer.output != want) {
        let prev = nodes.len() - 1;
        let layer = build::layer(LayerKind::Reshape, &[nodes[prev].layer.output], "reshape", Some(want))
            .map_err(|e| OnnxError::Graph(e.message))?;
        nodes.push(Node { layer, inputs: vec![Src::Node(prev)], name: "output".into() });
    }
    let network = Network::new(cx.input_shape, nodes).map_err(|e| OnnxError::Node {
        node: e.name,
        op: "(lowered)".into(),
        message: e.message,
    })?;
    Ok(Lowered { network, notes: cx.notes })
}

/// A node's name for messages (its first output when unnamed).
fn node_name(node: &pb::NodeProto) -> String {
    if node.name.is_empty() {
        node.output.first().cloned().unwrap_or_default()
    } else {
        node.name.clone()
    }
}

/// The nodes in an order where every tensor is produced before it is read (Kahn's algorithm,
/// keeping the file order among ready nodes). Errors name a node on a cycle, or a node reading
/// a tensor nothing produces.
fn topological(nodes: &[pb::NodeProto], known: &HashMap<String, Val>) -> Result<Vec<usize>, OnnxError> {
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (k, n) in nodes.iter().enumerate() {
        for o in n.output.iter().filter(|o| !o.is_empty()) {
            if known.contains_key(o) || producer.insert(o.as_str(), k).is_some() {
                return Err(OnnxError::Node {
                    node: node_name(n),
                    op: n.op_type.clone(),
                    message: format!("output `{o}` is produced twice"),
                });
            }
        }
    }
    let mut reads: Vec<Vec<usize>> = Vec::with_capacity(nodes.len());
    for n in nodes {
        let mut deps = Vec::new();
        for i in n.input.iter().filter(|i| !i.is_empty()) {
            match producer.get(i.as_str()) {
                Some(&p) => deps.push(p),
                None if known.contains_key(i) => {}
                None => {
                    return Err(OnnxError::Node {
                        node: node_name(n),
                        op: n.op_type.clone(),
                        message: format!("reads `{i}`, which no node, initializer or graph input produces"),
                    })
                }
            }
        }
        reads.push(deps);
    }
    super::topological_order(&reads).map_err(|k| OnnxError::Node {
        node: node_name(&nodes[k]),
        op: nodes[k].op_type.clone(),
        message: "the graph has a cycle through this node".into(),
    })
}

/// The nodes `last` depends on, renumbered in order (the others do not change the output, and
/// their nonlinearities must not split regions).
fn prune(nodes: Vec<Node>, last: usize) -> Vec<Node> {
    let mut keep = vec![false; nodes.len()];
    keep[last] = true;
    for i in (0..=last).rev() {
        if keep[i] {
            for s in &nodes[i].inputs {
                if let Src::Node(j) = *s {
                    keep[j] = true;
                }
            }
        }
    }
    let mut map = vec![usize::MAX; nodes.len()];
    let mut out = Vec::new();
    for (i, mut n) in nodes.into_iter().enumerate().take(last + 1) {
        if !keep[i] {
            continue;
        }
        for s in n.inputs.iter_mut() {
            if let Src::Node(j) = s {
                *j = map[*j];
            }
        }
        map[i] = out.len();
        out.push(n);
    }
    out
}
