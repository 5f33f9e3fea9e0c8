//! `tessera verify`: the partition's self-check against a forward pass, and the exact-rational
//! certificate.

use super::args::VerifyArgs;
use super::{config, partition_with_progress, CliError, MAX_POINTS};

pub fn verify(a: VerifyArgs) -> Result<i32, CliError> {
    if a.points > MAX_POINTS {
        return Err(CliError::Usage(format!("--points {} is above the limit of {MAX_POINTS}", a.points)));
    }
    let net = config::load_model(&a.model)?;
    let slice = config::build_slice(&net, &a.slice)?;
    let part = partition_with_progress(&net, &slice, &a.slice)?;
    let report = tessera::check(&net, &slice, &part, a.points, a.seed);
    eprintln!(
        "{} regions; checked {} points ({} random, one per region); worst relative map error {:.3e} (tolerance {:.0e})",
        part.regions.len(),
        report.map_points,
        a.points,
        report.max_map_error,
        tessera::partition::MAP_TOL
    );
    let mut ok = report.is_ok();
    if ok {
        eprintln!("ok: the partition is consistent and every map matches the forward pass");
    } else {
        for v in &report.violations {
            eprintln!("mismatch: {v}");
        }
    }
    if a.exact {
        let start = std::time::Instant::now();
        let cert = tessera::certify::certify(&net, &slice, &part);
        eprintln!(
            "exact: {} regions, {} unit-vertex comparisons, area sum off by {:.3e} of the domain (allowed {:.3e}), in {:.2} s",
            cert.regions,
            cert.comparisons,
            cert.area_discrepancy,
            cert.area_bound,
            start.elapsed().as_secs_f64()
        );
        if cert.within_tolerance > 0 {
            // δ in normalised coordinates (side 2): as a fraction of the domain's side.
            let frac = cert.max_delta / 2.0;
            eprintln!(
                "note: {} decisions were within the tolerance of their line (up to {frac:.1e} of the domain's side){}",
                cert.within_tolerance,
                if frac > 1e-6 {
                    ": huge terms in the network make the rounding noise this large, and regions thinner than that may be merged"
                } else {
                    ""
                }
            );
        }
        if cert.is_ok() {
            eprintln!("ok: certified in exact arithmetic");
        } else {
            for v in &cert.violations {
                eprintln!("not certified: {v}");
            }
            ok = false;
        }
    }
    Ok(if ok { 0 } else { 1 })
}
