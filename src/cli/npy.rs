//! `.npy` input and output for the CLI: f32 as is; f64 and f16 converted to f32.
//! Every error names the file and the problem in one line.

use std::fs;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use ndarray::ArrayD;
use ndarray_npy::npy::header::Header;
use ndarray_npy::{ReadDataError, ReadNpyExt, ReadableElement, WriteNpyExt};
use py_literal::Value as PyValue;

/// A CLI input/output failure, with the file it concerns.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {problem}")]
pub struct FileError {
    pub path: PathBuf,
    pub problem: String,
}

fn err(path: &Path, problem: impl Into<String>) -> FileError {
    FileError {
        path: path.to_path_buf(),
        problem: problem.into(),
    }
}

/// IEEE half, read from `<f2` data.
#[derive(Clone, Copy)]
struct F16(half::f16);

impl ReadableElement for F16 {
    fn read_to_end_exact_vec<R: std::io::Read>(
        mut reader: R,
        type_desc: &PyValue,
        len: usize,
    ) -> Result<Vec<Self>, ReadDataError> {
        let little = match type_desc {
            PyValue::String(s) if s == "<f2" || s == "=f2" => true,
            PyValue::String(s) if s == ">f2" => false,
            other => return Err(ReadDataError::WrongDescriptor(other.clone())),
        };
        let mut bytes = Vec::new();
        reader.read_to_end(&mut bytes).map_err(ReadDataError::Io)?;
        let need = len.checked_mul(2).ok_or(ReadDataError::MissingData)?;
        if bytes.len() < need {
            return Err(ReadDataError::MissingData);
        }
        if bytes.len() > need {
            return Err(ReadDataError::ExtraBytes(bytes.len() - need));
        }
        Ok(bytes
            .chunks_exact(2)
            .map(|b| {
                let raw = [b[0], b[1]];
                F16(if little {
                    half::f16::from_le_bytes(raw)
                } else {
                    half::f16::from_be_bytes(raw)
                })
            })
            .collect())
    }
}

fn describe(e: ndarray_npy::ReadNpyError) -> String {
    use ndarray_npy::ReadNpyError as E;
    match e {
        E::Io(e) => format!("read error: {e}"),
        E::ParseHeader(e) => format!("not a valid .npy file ({e})"),
        E::MissingData => {
            "truncated .npy file: it holds fewer elements than its header says".into()
        }
        E::ExtraBytes(n) => format!("malformed .npy file: {n} bytes after the data"),
        E::LengthOverflow => "the shape in the header overflows".into(),
        other => other.to_string(),
    }
}

/// Reads a `.npy` file of f32, f64 or f16 (any byte order, C or Fortran order) as f32.
pub fn read_f32(path: &Path) -> Result<ArrayD<f32>, FileError> {
    let bytes = fs::read(path).map_err(|e| err(path, format!("cannot read: {e}")))?;
    let header = Header::from_reader(&mut Cursor::new(&bytes))
        .map_err(|e| err(path, format!("not a valid .npy file ({e})")))?;
    let descr = match &header.type_descriptor {
        PyValue::String(s) => s.clone(),
        other => {
            return Err(err(
                path,
                format!("unsupported dtype {other} (expected float32, float64 or float16)"),
            ));
        }
    };
    let kind = descr.trim_start_matches(['<', '>', '=', '|']);
    let read = || Cursor::new(&bytes);
    let arr = match kind {
        "f4" => ArrayD::<f32>::read_npy(read()).map_err(|e| err(path, describe(e)))?,
        "f8" => ArrayD::<f64>::read_npy(read())
            .map_err(|e| err(path, describe(e)))?
            .mapv(|v| v as f32),
        "f2" => ArrayD::<F16>::read_npy(read())
            .map_err(|e| err(path, describe(e)))?
            .mapv(|v| v.0.to_f32()),
        _ => {
            return Err(err(
                path,
                format!("unsupported dtype '{descr}' (expected float32, float64 or float16)"),
            ));
        }
    };
    Ok(arr)
}

/// A target file's contents: floats (converted to f32) or class indices.
pub enum TargetData {
    /// Float targets.
    F32(ArrayD<f32>),
    /// Integer targets of at most 32 bits (int8/16/32, uint8/16), as i32.
    I32(ArrayD<i32>),
    /// int64 and uint32 targets, as i64.
    I64(ArrayD<i64>),
    /// uint64 targets: as i64, values above `i64::MAX` clamped to it (still out of range, so
    /// still reported), and the values as read, for the error message.
    U64 {
        /// The class indices, clamped into i64.
        clamped: ArrayD<i64>,
        /// The class indices as read.
        original: ArrayD<u64>,
    },
}

/// Reads a target `.npy`: float (as [`read_f32`]) or integer class indices.
pub fn read_target(path: &Path) -> Result<TargetData, FileError> {
    let bytes = fs::read(path).map_err(|e| err(path, format!("cannot read: {e}")))?;
    let header = Header::from_reader(&mut Cursor::new(&bytes))
        .map_err(|e| err(path, format!("not a valid .npy file ({e})")))?;
    let kind = match &header.type_descriptor {
        PyValue::String(s) => s.trim_start_matches(['<', '>', '=', '|']).to_string(),
        _ => String::new(),
    };
    let read = || Cursor::new(&bytes);
    let d = |e| err(path, describe(e));
    Ok(match kind.as_str() {
        "i1" => TargetData::I32(ArrayD::<i8>::read_npy(read()).map_err(d)?.mapv(i32::from)),
        "u1" => TargetData::I32(ArrayD::<u8>::read_npy(read()).map_err(d)?.mapv(i32::from)),
        "i2" => TargetData::I32(ArrayD::<i16>::read_npy(read()).map_err(d)?.mapv(i32::from)),
        "u2" => TargetData::I32(ArrayD::<u16>::read_npy(read()).map_err(d)?.mapv(i32::from)),
        "i4" => TargetData::I32(ArrayD::<i32>::read_npy(read()).map_err(d)?),
        "u4" => TargetData::I64(ArrayD::<u32>::read_npy(read()).map_err(d)?.mapv(i64::from)),
        "i8" => TargetData::I64(ArrayD::<i64>::read_npy(read()).map_err(d)?),
        "u8" => {
            let original = ArrayD::<u64>::read_npy(read()).map_err(d)?;
            TargetData::U64 {
                clamped: original.mapv(|v| i64::try_from(v).unwrap_or(i64::MAX)),
                original,
            }
        }
        _ => TargetData::F32(read_f32(path).map_err(|e| {
            err(
                path,
                e.problem.replace(
                    "(expected float32, float64 or float16)",
                    "(expected float32, float64, float16 or integer class indices)",
                ),
            )
        })?),
    })
}

/// Writes `arr` to a temporary file beside `path`; [`Staged::commit`] renames it into place.
/// Nothing appears at `path` unless every output of the call was written.
pub struct Staged {
    tmp: PathBuf,
    path: PathBuf,
    committed: bool,
}

impl Staged {
    pub fn write(path: &Path, arr: &ArrayD<f32>) -> Result<Staged, FileError> {
        let name = path
            .file_name()
            .ok_or_else(|| err(path, "not a file path"))?
            .to_string_lossy();
        let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
        let file = fs::File::create(&tmp).map_err(|e| err(path, format!("cannot create: {e}")))?;
        let mut w = std::io::BufWriter::new(file);
        let res = arr
            .as_standard_layout()
            .write_npy(&mut w)
            .map_err(|e| err(path, format!("cannot write: {e}")))
            .and_then(|()| {
                std::io::Write::flush(&mut w).map_err(|e| err(path, format!("cannot write: {e}")))
            });
        if let Err(e) = res {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        Ok(Staged {
            tmp,
            path: path.to_path_buf(),
            committed: false,
        })
    }

    pub fn commit(mut self) -> Result<(), FileError> {
        fs::rename(&self.tmp, &self.path)
            .map_err(|e| err(&self.path, format!("cannot write: {e}")))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}
