//! Reading `.npy` arrays (float32 or float64, C order) as flat f64 vectors.

use std::path::Path;

/// Why an array could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NpyError {
    /// The file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The content is not a supported `.npy` array.
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// A flat array and its shape.
#[derive(Clone, Debug, PartialEq)]
pub struct Array {
    /// Dimensions as stored.
    pub shape: Vec<u64>,
    /// Entries in C (row-major) order.
    pub data: Vec<f64>,
}

/// Reads a float32 or float64 `.npy` file in C order.
pub fn read(path: &Path) -> Result<Array, NpyError> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| NpyError::Io { path: name.clone(), source })?;
    parse(&bytes).map_err(|message| NpyError::Format { path: name, message })
}

/// Parses the bytes of a `.npy` file.
pub fn parse(bytes: &[u8]) -> Result<Array, String> {
    check_header(bytes)?;
    let npy = npyz::NpyFile::new(bytes).map_err(|e| format!("not a valid .npy file: {e}"))?;
    if npy.order() != npyz::Order::C {
        return Err("Fortran-ordered arrays are not supported; save with np.ascontiguousarray".into());
    }
    let shape = npy.shape().to_vec();
    let expected = shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d)).ok_or("shape overflows")?;
    let dtype = npy.dtype();
    let descr = match &dtype {
        npyz::DType::Plain(t) => t.to_string(),
        _ => return Err("structured arrays are not supported".into()),
    };
    let data: Vec<f64> = match descr.as_str() {
        "<f8" => npy.into_vec::<f64>().map_err(|e| format!("bad float64 data: {e}"))?,
        "<f4" => {
            npy.into_vec::<f32>().map_err(|e| format!("bad float32 data: {e}"))?.into_iter().map(f64::from).collect()
        }
        other => return Err(format!("dtype {other} is not supported; use float32 or float64")),
    };
    if data.len() as u64 != expected {
        return Err(format!("expected {expected} values for shape {shape:?}, found {}", data.len()));
    }
    if let Some(i) = data.iter().position(|x| !x.is_finite()) {
        return Err(format!("entry {i} is not finite"));
    }
    Ok(Array { shape, data })
}

/// Longest header accepted. NumPy writes headers of about a hundred bytes
/// and itself refuses headers over 10 kB unless told otherwise.
const MAX_HEADER: usize = 1 << 16;

/// Deepest bracket nesting accepted in the header. A valid header is a
/// dict holding a shape tuple: depth 2.
const MAX_NESTING: usize = 4;

/// Bounds the header before it reaches the literal parser, whose
/// backtracking grows exponentially with nested brackets: a 100-byte
/// header of nested braces otherwise takes minutes (found by fuzzing).
fn check_header(bytes: &[u8]) -> Result<(), String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("not a valid .npy file: missing the \\x93NUMPY magic".into());
    }
    let (len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
        v => return Err(format!("not a valid .npy file: unsupported format version {v}")),
    };
    if len > MAX_HEADER {
        return Err(format!("not a valid .npy file: header of {len} bytes (at most {MAX_HEADER})"));
    }
    let header = bytes.get(start..start + len).ok_or("not a valid .npy file: header is truncated")?;
    let mut depth = 0usize;
    for &b in header {
        match b {
            b'(' | b'[' | b'{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err("not a valid .npy file: header nests brackets too deeply".into());
                }
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    // The reader multiplies the shape's sizes unchecked: refuse shapes whose product overflows.
    let text = String::from_utf8_lossy(header);
    if let Some(tuple) = text.split_once("'shape'").and_then(|(_, rest)| {
        let (_, after) = rest.split_once('(')?;
        after.split_once(')').map(|(inside, _)| inside.to_string())
    }) {
        let sizes: Vec<u64> = tuple.split(',').filter_map(|d| d.trim().parse().ok()).collect();
        if sizes.iter().try_fold(1u64, |a, &d| a.checked_mul(d)).is_none() {
            return Err(format!("not a valid .npy file: shape {sizes:?} overflows"));
        }
    }
    Ok(())
}

/// Encodes a C-order float64 array as `.npy` bytes.
pub fn to_bytes_f64(shape: &[u64], data: &[f64]) -> Vec<u8> {
    encode(shape, data.iter().copied())
}

/// Encodes a C-order array as float32 `.npy` bytes (values rounded to nearest).
pub fn to_bytes_f32(shape: &[u64], data: &[f64]) -> Vec<u8> {
    encode(shape, data.iter().map(|&x| x as f32))
}

fn encode<T: npyz::Serialize + npyz::AutoSerialize>(shape: &[u64], data: impl Iterator<Item = T>) -> Vec<u8> {
    use npyz::WriterBuilder;
    let mut out = Vec::new();
    let mut writer = npyz::WriteOptions::<T>::new()
        .default_dtype()
        .shape(shape)
        .writer(&mut out)
        .begin_nd()
        .expect("writing to memory cannot fail");
    writer.extend(data).expect("writing to memory cannot fail");
    writer.finish().expect("writing to memory cannot fail");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        let bytes = to_bytes_f64(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.5]);
        let a = parse(&bytes).unwrap();
        assert_eq!(a.shape, vec![2, 3]);
        assert_eq!(a.data[5], 6.5);
        assert!(parse(b"\x93NUMPY garbage").is_err());
        let a32 = parse(&to_bytes_f32(&[3], &[0.5, -1.25, 3.0])).unwrap();
        assert_eq!(a32.data, vec![0.5, -1.25, 3.0]);
        assert!(parse(&bytes[..bytes.len() - 3]).is_err());
    }

    /// Found by fuzzing: nested braces in the header made the literal
    /// parser backtrack for minutes; the header check refuses them at once.
    #[test]
    fn deeply_nested_header_is_refused_quickly() {
        let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': (2, {}8, 8, ), }}", "{".repeat(22));
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend_from_slice(&(dict.len() as u16).to_le_bytes());
        bytes.extend_from_slice(dict.as_bytes());
        let err = parse(&bytes).unwrap_err();
        assert!(err.contains("nests brackets"), "{err}");
        let mut long = b"\x93NUMPY\x02\x00".to_vec();
        long.extend_from_slice(&(1u32 << 20).to_le_bytes());
        assert!(parse(&long).unwrap_err().contains("header of"));
        // A shape whose sizes multiply past 64 bits.
        let dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (18446744073709551615, 2), }";
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend_from_slice(&(dict.len() as u16).to_le_bytes());
        bytes.extend_from_slice(dict.as_bytes());
        assert!(parse(&bytes).unwrap_err().contains("overflows"));
    }
}
