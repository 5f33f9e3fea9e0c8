//! Turns raw flags into a validated model and slice.

use super::args::SliceArgs;
use super::CliError;
use std::path::Path;
use tessera::network::{json, Network};
use tessera::slice::{PlaneSpec, Slice};

pub fn decision(args: &super::args::DecisionArgs, outputs: usize) -> Result<tessera::boundary::Decision, CliError> {
    use tessera::boundary::Decision;
    if args.threshold.is_some_and(|t| !t.is_finite()) {
        return Err(CliError::Usage("--threshold must be a finite number".into()));
    }
    Ok(match &args.level {
        Some(text) => Decision::parse_level(text, outputs)?,
        None => Decision::for_outputs(outputs, args.threshold),
    })
}

/// `--size W,H`: 16 to 20000 pixels each way.
pub fn picture_size(text: &str) -> Result<(u32, u32), CliError> {
    let bad = || CliError::Usage(format!("--size expects W,H in pixels (16 to 20000 each), got `{text}`"));
    let (w, h) = text.split_once(',').ok_or_else(bad)?;
    let (w, h): (u32, u32) = (w.trim().parse().map_err(|_| bad())?, h.trim().parse().map_err(|_| bad())?);
    if !(16..=20_000).contains(&w) || !(16..=20_000).contains(&h) {
        return Err(bad());
    }
    Ok((w, h))
}

pub fn render_options(p: &super::args::PictureArgs) -> Result<tessera::render::RenderOptions, CliError> {
    use super::args::{ColorArg, EdgesArg};
    use tessera::render::{ColorScheme, EdgeMode, RenderOptions};
    let (w, h) = picture_size(&p.size)?;
    Ok(RenderOptions {
        size: (w, h),
        color: match p.color {
            ColorArg::Pattern => ColorScheme::Pattern,
            ColorArg::Class => ColorScheme::Class,
            ColorArg::Area => ColorScheme::Area,
            ColorArg::Slope => ColorScheme::Slope,
            ColorArg::Density => ColorScheme::Density,
        },
        edges: match (p.no_edges, p.edges) {
            (true, _) | (_, EdgesArg::None) => EdgeMode::None,
            (false, EdgesArg::Plain) => EdgeMode::Plain,
            (false, EdgesArg::Layer) => EdgeMode::Layer,
        },
        axes: !p.no_axes,
        title: None,
    })
}

/// Loads a `tessera-model/1` JSON file, or an ONNX file (by its `.onnx` extension); notes from
/// the ONNX lowering go to stderr.
pub fn load_model(path: &Path) -> Result<Network, CliError> {
    if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("onnx")) {
        let lowered = tessera::network::onnx::load_path(path).map_err(tessera::Error::from)?;
        for note in &lowered.notes {
            eprintln!("note: {note}");
        }
        return Ok(lowered.network);
    }
    Ok(json::load_path(path).map_err(tessera::Error::from)?)
}

/// `--box` of a 3D map: six numbers.
pub fn parse_box3(text: &str) -> Result<[f64; 6], CliError> {
    let bad = || CliError::Usage(format!("--box with --dims 3 expects six numbers X0,X1,Y0,Y1,Z0,Z1, got `{text}`"));
    let parts: Vec<f64> = text.split(',').map(|p| p.trim().parse().map_err(|_| bad())).collect::<Result<_, _>>()?;
    parts.try_into().map_err(|_| bad())
}

fn parse_box(text: &str) -> Result<[f64; 4], CliError> {
    let parts: Vec<&str> = text.split(',').map(str::trim).collect();
    let bad = || CliError::Usage(format!("--box expects four numbers U0,U1,V0,V1, got `{text}`"));
    if parts.len() != 4 {
        return Err(bad());
    }
    let mut out = [0.0; 4];
    for (o, p) in out.iter_mut().zip(&parts) {
        *o = p.parse().map_err(|_| bad())?;
    }
    Ok(out)
}

pub fn read_vector(path: &Path, n: usize, what: &str) -> Result<Vec<f64>, CliError> {
    let arr = tessera::npy::read(path).map_err(tessera::Error::from)?;
    // Any shape with the input's number of values: the input's own shape, a batch of one, or flat.
    if arr.data.len() != n {
        return Err(CliError::Usage(format!(
            "{what} ({}) has shape {:?} ({} values) but the model input has {n} values",
            path.display(),
            arr.shape,
            arr.data.len()
        )));
    }
    Ok(arr.data)
}

pub fn build_slice(net: &Network, args: &SliceArgs) -> Result<Slice, CliError> {
    if let Some(t) = args.time_limit {
        if std::time::Duration::try_from_secs_f64(t).is_err() {
            return Err(CliError::Usage(format!("--time-limit expects seconds (a non-negative number), got {t}")));
        }
    }
    let n = net.input_shape.numel();
    let user_box = args.box_.as_deref().map(parse_box).transpose()?;
    let plane = if let Some(list) = &args.anchors {
        let files: Vec<&str> = list.split(',').collect();
        if files.len() != 3 {
            return Err(CliError::Usage(format!("--anchors expects three files A,B,C, got `{list}`")));
        }
        PlaneSpec::Anchors {
            a: read_vector(Path::new(files[0]), n, "anchor A")?,
            b: read_vector(Path::new(files[1]), n, "anchor B")?,
            c: read_vector(Path::new(files[2]), n, "anchor C")?,
        }
    } else if let (Some(o), Some(du), Some(dv)) = (&args.origin, &args.du, &args.dv) {
        PlaneSpec::Vectors {
            origin: read_vector(o, n, "--origin")?,
            du: read_vector(du, n, "--du")?,
            dv: read_vector(dv, n, "--dv")?,
        }
    } else if n == 2 {
        PlaneSpec::Identity
    } else {
        return Err(CliError::Usage(format!(
            "the model input has {n} features: give a plane with --origin/--du/--dv or --anchors"
        )));
    };
    Ok(Slice::build(n, plane, user_box).map_err(tessera::Error::from)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn box_accepts_negative_numbers() {
        assert_eq!(parse_box("-2,2,-2.5,1e-3").unwrap(), [-2.0, 2.0, -2.5, 1e-3]);
        assert!(parse_box("1,2,3").is_err());
        assert!(parse_box("a,b,c,d").is_err());
    }
}
