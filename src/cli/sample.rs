//! `tessera sample`: points on the decision boundary, pairs across it, and one interior point per
//! region, each checked by a forward pass.

use super::args::{self, SampleArgs};
use super::{config, output, partition_with_progress, CliError, MAX_POINTS};
use tessera::boundary::decision_boundary;

/// Relative tolerance of the forward-pass check of boundary points.
const BOUNDARY_TOL: f64 = 1e-9;

pub fn sample(a: SampleArgs) -> Result<i32, CliError> {
    if a.boundary_points.is_none() && a.region_points.is_none() {
        return Err(CliError::Usage("nothing to sample: give --boundary N and/or --regions N".into()));
    }
    if a.boundary_points.unwrap_or(0) > MAX_POINTS || a.region_points.unwrap_or(0) > MAX_POINTS {
        return Err(CliError::Usage(format!("at most {MAX_POINTS} points can be sampled")));
    }
    if a.near_boundary.is_some_and(|e| !(e.is_finite() && e > 0.0)) {
        return Err(CliError::Usage("--near-boundary must be a positive distance".into()));
    }
    for (given, source, flag, needs) in [
        (a.out.is_some(), a.boundary_points.is_some(), "--out", "--boundary N"),
        (a.pairs_out.is_some(), a.near_boundary.is_some(), "--pairs-out", "--near-boundary EPS"),
        (a.regions_out.is_some(), a.region_points.is_some(), "--regions-out", "--regions N"),
    ] {
        if given && !source {
            return Err(CliError::Usage(format!("{flag} needs {needs}")));
        }
    }
    let outputs_given = a.out.is_some() || a.regions_out.is_some() || a.pairs_out.is_some() || a.json.is_some();
    if !outputs_given {
        return Err(CliError::Usage("no output: give --out, --regions-out, --pairs-out or --json".into()));
    }
    let net = config::load_model(&a.model)?;
    let slice = config::build_slice(&net, &a.slice)?;
    let decision = config::decision(&a.decision, net.output_shape().numel())?;
    let part = partition_with_progress(&net, &slice, &a.slice)?;
    let dims: Vec<u64> = net.input_shape.dims().iter().map(|&d| d as u64).collect();
    let encode = |n: usize, per: &[u64], data: &[f64]| {
        let mut shape = vec![n as u64];
        shape.extend_from_slice(per);
        match a.dtype {
            args::Dtype::F32 => tessera::npy::to_bytes_f32(&shape, data),
            args::Dtype::F64 => tessera::npy::to_bytes_f64(&shape, data),
        }
    };
    let mut failures = 0usize;
    let mut doc = serde_json::Map::new();
    if let Some(n) = a.boundary_points {
        let boundary = decision_boundary(&part, &decision);
        let pts = tessera::sample::boundary_points(&part, &boundary, &decision, n, a.seed);
        if pts.len() < n {
            eprintln!("mismatch: the decision boundary is empty on this domain: no boundary points");
            failures += 1;
        }
        let (mut flat, mut items, mut worst) = (Vec::new(), Vec::new(), 0.0f64);
        let (mut pairs, mut pair_items, mut flips) = (Vec::new(), Vec::new(), 0usize);
        for p in &pts {
            let x = slice.plane.point(p.uv[0], p.uv[1]);
            let y = net.forward(&x);
            match tessera::sample::boundary_gap(&decision, &y, p.classes, BOUNDARY_TOL) {
                Some(gap) if gap <= BOUNDARY_TOL => worst = worst.max(gap),
                Some(gap) => {
                    worst = worst.max(gap);
                    failures += 1;
                }
                None => {
                    worst = f64::INFINITY;
                    failures += 1;
                }
            }
            let (c0, c1) = p.classes;
            items.push(serde_json::json!({"uv": p.uv, "classes": [c0, c1], "region": p.region,
                "scores": [decision.score(&y, c0), decision.score(&y, c1)], "outputs": y}));
            flat.extend_from_slice(&x);
            if let Some(eps) = a.near_boundary {
                let side = |s: f64| [p.uv[0] + s * eps * p.normal[0], p.uv[1] + s * eps * p.normal[1]];
                let (q0, q1) = (side(-1.0), side(1.0));
                let (x0, x1) = (slice.plane.point(q0[0], q0[1]), slice.plane.point(q1[0], q1[1]));
                let (k0, k1) = (decision.class_of(&net.forward(&x0)), decision.class_of(&net.forward(&x1)));
                if (k0, k1) == (c0, c1) {
                    flips += 1;
                } else {
                    failures += 1;
                }
                pair_items.push(serde_json::json!({"uv": [q0, q1], "classes": [k0, k1]}));
                pairs.extend_from_slice(&x0);
                pairs.extend_from_slice(&x1);
            }
        }
        eprintln!(
            "{} boundary points (length {:.6}): worst relative score gap {:.3e} (tolerance {BOUNDARY_TOL:.0e})",
            pts.len(),
            boundary.length,
            worst
        );
        if let Some(path) = &a.out {
            output::write_atomically(path, |w| w.write_all(&encode(pts.len(), &dims, &flat)))?;
        }
        doc.insert("boundary".into(), serde_json::Value::Array(items));
        if let Some(eps) = a.near_boundary {
            eprintln!("{flips} of {} near-boundary pairs (eps {eps:e}) fall on the two expected classes", pts.len());
            if let Some(path) = &a.pairs_out {
                let mut per = vec![2];
                per.extend_from_slice(&dims);
                output::write_atomically(path, |w| w.write_all(&encode(pts.len(), &per, &pairs)))?;
            }
            doc.insert("near_boundary".into(), serde_json::Value::Array(pair_items));
        }
    }
    if let Some(n) = a.region_points {
        let pts = tessera::sample::region_points(&part, n, a.seed);
        let mut flat = Vec::new();
        let mut items = Vec::new();
        for &(region, c, r) in &pts {
            let x = slice.plane.point(c[0], c[1]);
            let y = net.forward(&x);
            items.push(serde_json::json!({"uv": c, "region": region, "radius": r,
                "class": decision.class_of(&y), "outputs": y}));
            flat.extend_from_slice(&x);
        }
        eprintln!("{} region points (Chebyshev centres)", pts.len());
        if let Some(path) = &a.regions_out {
            output::write_atomically(path, |w| w.write_all(&encode(pts.len(), &dims, &flat)))?;
        }
        doc.insert("regions".into(), serde_json::Value::Array(items));
    }
    if let Some(path) = &a.json {
        let value = serde_json::Value::Object(doc);
        output::write_atomically(path, |w| serde_json::to_writer(w, &value).map_err(std::io::Error::other))?;
    }
    if failures > 0 {
        eprintln!("mismatch: {failures} sampled points failed the forward-pass check");
        return Ok(1);
    }
    Ok(0)
}
