//! `.npy` input for the CLI: a hardened reader of NumPy's `.npy` format (f32 as is; f64 and
//! f16 converted to f32; integer class indices as i32 or i64).
//!
//! The reader is written for hostile input. Nothing is allocated from what a header claims
//! until the claim has been checked against the number of bytes really there; the header is
//! parsed by a small non-recursive parser in one pass; only regular files are opened (a FIFO,
//! a directory or a device is refused before it is read). Every error is one line naming the
//! file first (`{path}: {problem}`), with control bytes and non-ASCII from the file escaped
//! (`\x00`, `\x1b`) and long excerpts cut short with `…`.
//!
//! [`parse_f32`] and [`parse_target`] read a `.npy` held in memory, so that the format can be
//! fuzzed without files; [`read_f32`] and [`read_target`] check the file, read it and call the
//! same code. The reading part depends only on std, ndarray, half and thiserror.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use ndarray::{ArrayD, IxDyn, ShapeBuilder};

/// The largest header read, in bytes: numpy's own reader refuses larger ones by default
/// (`max_header_size=10000`).
pub const MAX_HEADER_LEN: usize = 10_000;

/// The most dimensions a numpy array has (`NPY_MAXDIMS` in numpy 2; numpy 1 allowed 32).
pub const MAX_DIMS: usize = 64;

/// The first six bytes of every `.npy` file.
const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// Magic, version and the longest (4-byte) header-length field.
const PREAMBLE_MAX: usize = 12;

/// Data is read and converted this many bytes at a time (a multiple of every item size).
const CHUNK: usize = 1 << 16;

/// Longest excerpt of a file's text quoted in a message, in characters after escaping.
const EXCERPT_CHARS: usize = 48;

/// A CLI input/output failure, with the file it concerns. It displays as one line,
/// `{path}: {problem}`, control characters in either escaped.
#[derive(Debug, thiserror::Error)]
#[error("{}: {}", escape_controls(&path.display().to_string()), escape_controls(problem))]
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

// ---------------------------------------------------------------------------------------------
// Escaping
// ---------------------------------------------------------------------------------------------

/// `s` with every control character escaped (`\x1b`, `\u{85}`), so that it prints as one
/// line and moves no cursor. Everything else, backslashes included, is kept. (Also for the
/// paths that the commands' messages quote.)
pub(crate) fn escape_controls(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            let n = u32::from(c);
            if n < 0x80 {
                out.push_str(&format!("\\x{n:02x}"));
            } else {
                out.push_str(&format!("\\u{{{n:x}}}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Bytes from a file as text: printable ASCII as is, a backslash as `\\`, every other byte as
/// `\xNN`; cut at about `max` characters with `…`.
fn escape_bytes(bytes: &[u8], max: usize) -> String {
    let mut out = String::new();
    for &b in bytes {
        let piece = match b {
            b'\\' => "\\\\".to_string(),
            0x20..=0x7e => char::from(b).to_string(),
            _ => format!("\\x{b:02x}"),
        };
        if out.len() + piece.len() > max {
            out.push('…');
            return out;
        }
        out.push_str(&piece);
    }
    out
}

/// Up to 16 bytes either side of `pos` in `text`, escaped, with `…` where cut.
fn excerpt(text: &[u8], pos: usize) -> String {
    let start = pos.saturating_sub(16).min(text.len());
    let end = pos.saturating_add(16).min(text.len());
    let mut out = String::new();
    if start > 0 {
        out.push('…');
    }
    out.push_str(&escape_bytes(&text[start..end], EXCERPT_CHARS));
    if end < text.len() && !out.ends_with('…') {
        out.push('…');
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Data types
// ---------------------------------------------------------------------------------------------

/// The element types read (bool only as a target; as a float array it is refused by name).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Bool,
    I1,
    U1,
    I2,
    U2,
    I4,
    U4,
    I8,
    U8,
    F2,
    F4,
    F8,
}

impl Kind {
    fn from_code(code: &str) -> Option<Kind> {
        Some(match code {
            "b1" => Kind::Bool,
            "i1" => Kind::I1,
            "u1" => Kind::U1,
            "i2" => Kind::I2,
            "u2" => Kind::U2,
            "i4" => Kind::I4,
            "u4" => Kind::U4,
            "i8" => Kind::I8,
            "u8" => Kind::U8,
            "f2" => Kind::F2,
            "f4" => Kind::F4,
            "f8" => Kind::F8,
            _ => return None,
        })
    }

    fn size(self) -> usize {
        match self {
            Kind::Bool | Kind::I1 | Kind::U1 => 1,
            Kind::I2 | Kind::U2 | Kind::F2 => 2,
            Kind::I4 | Kind::U4 | Kind::F4 => 4,
            Kind::I8 | Kind::U8 | Kind::F8 => 8,
        }
    }

    fn is_float(self) -> bool {
        matches!(self, Kind::F2 | Kind::F4 | Kind::F8)
    }
}

/// An element type and its byte order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Dtype {
    kind: Kind,
    little: bool,
}

/// What the caller takes: floats only, or floats and integer class indices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want {
    Floats,
    Target,
}

impl Want {
    fn expected(self) -> &'static str {
        match self {
            Want::Floats => "expected float32, float64 or float16",
            Want::Target => "expected float32, float64, float16, bool or integer",
        }
    }
}

/// The dtype a `descr` string names, if the caller takes it. Accepted: a byte-order
/// character (`<` little, `>` big, `=` native, or `|` "not applicable", for 1-byte types
/// only; none means native) then one of `f2 f4 f8 i1 u1 i2 u2 i4 u4 i8 u8`.
fn resolve(descr: &str, want: Want) -> Result<Dtype, String> {
    let unsupported = |why: &str| {
        format!(
            "unsupported dtype '{}' ({why}{})",
            escape_bytes(descr.as_bytes(), 24),
            want.expected()
        )
    };
    let native_little = cfg!(target_endian = "little");
    let (order, code) = match descr.as_bytes().first() {
        Some(b'<' | b'>' | b'=' | b'|') => (descr.as_bytes()[0], &descr[1..]),
        _ => (b'=', descr),
    };
    let Some(kind) = Kind::from_code(code) else {
        return Err(unsupported(""));
    };
    let little = match order {
        b'<' => true,
        b'>' => false,
        b'|' if kind.size() == 1 => true,
        b'|' => {
            return Err(unsupported(
                "byte order '|' is only for 1-byte types; use '<' or '>'; ",
            ));
        }
        _ => native_little,
    };
    match (kind, want) {
        (Kind::Bool, Want::Floats) => Err(unsupported("bool; ")),
        (k, Want::Floats) if !k.is_float() => Err(unsupported("")),
        _ => Ok(Dtype { kind, little }),
    }
}

// ---------------------------------------------------------------------------------------------
// Header
// ---------------------------------------------------------------------------------------------

/// The header dict's values.
#[derive(Debug, PartialEq, Eq)]
struct Dict {
    descr: String,
    fortran_order: bool,
    shape: Vec<usize>,
}

/// A header parse failure: what was wrong, at which byte of the header text.
struct Syntax {
    pos: usize,
    what: String,
}

/// A one-pass parser of the header's Python dict literal: `{'descr': '<f4', 'fortran_order':
/// False, 'shape': (2, 3), }`: keys in any order, each exactly once; strings in single or
/// double quotes (printable ASCII, no escapes); `True`/`False`; the shape a tuple of
/// non-negative decimal integers (`()`, `(3,)`, `(2, 3)`, a trailing comma allowed); white
/// space (space, tab, newline, carriage return, form feed) between any two tokens. No
/// recursion: the grammar has no nesting beyond the one tuple.
struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Parser<'a> {
    fn fail<T>(&self, what: impl Into<String>) -> Result<T, Syntax> {
        Err(Syntax {
            pos: self.i,
            what: what.into(),
        })
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r' | b'\x0c')) {
            self.i += 1;
        }
    }

    fn want_byte(&mut self, c: u8, what: &str) -> Result<(), Syntax> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            self.fail(format!("expected {what}"))
        }
    }

    fn string(&mut self) -> Result<&'a str, Syntax> {
        let quote = match self.peek() {
            Some(q @ (b'\'' | b'"')) => q,
            _ => return self.fail("expected a quoted string"),
        };
        self.i += 1;
        let start = self.i;
        loop {
            match self.peek() {
                Some(c) if c == quote => break,
                Some(b'\\') => return self.fail("escape sequences in strings are not read"),
                Some(0x20..=0x7e) => self.i += 1,
                Some(_) => return self.fail("a byte that is not printable ASCII in a string"),
                None => return self.fail("an unterminated string"),
            }
        }
        let text = std::str::from_utf8(&self.s[start..self.i]).or_else(|_| self.fail("bad text"));
        self.i += 1;
        text
    }

    fn boolean(&mut self) -> Result<bool, Syntax> {
        let rest = &self.s[self.i..];
        for (word, value) in [(&b"True"[..], true), (&b"False"[..], false)] {
            let follows = rest.get(word.len()).copied();
            let boundary = !matches!(follows, Some(c) if c.is_ascii_alphanumeric() || c == b'_');
            if rest.starts_with(word) && boundary {
                self.i += word.len();
                return Ok(value);
            }
        }
        self.fail("expected True or False for 'fortran_order'")
    }

    fn dimension(&mut self) -> Result<usize, Syntax> {
        if self.peek() == Some(b'-') {
            return self.fail("a negative dimension in 'shape'");
        }
        let start = self.i;
        let mut n: usize = 0;
        while let Some(c @ b'0'..=b'9') = self.peek() {
            let next = n
                .checked_mul(10)
                .and_then(|n| n.checked_add(usize::from(c - b'0')));
            let Some(next) = next else {
                self.i = start;
                return self.fail("a dimension in 'shape' too large for this machine");
            };
            n = next;
            self.i += 1;
        }
        if self.i == start {
            return self.fail("expected a non-negative integer dimension in 'shape'");
        }
        if matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || c == b'_' || c == b'.') {
            return self.fail("a dimension in 'shape' that is not a decimal integer");
        }
        Ok(n)
    }

    fn shape(&mut self) -> Result<Vec<usize>, Syntax> {
        if self.peek() != Some(b'(') {
            return self.fail("expected a tuple such as (3,) or (2, 3) for 'shape'");
        }
        let open = self.i;
        self.i += 1;
        let mut dims = Vec::new();
        let mut comma = false;
        loop {
            self.ws();
            if self.peek() == Some(b')') {
                break;
            }
            dims.push(self.dimension()?);
            self.ws();
            match self.peek() {
                Some(b',') => {
                    comma = true;
                    self.i += 1;
                }
                Some(b')') => break,
                _ => return self.fail("expected ',' or ')' in 'shape'"),
            }
        }
        if dims.len() == 1 && !comma {
            self.i = open;
            return self.fail("'shape' is a parenthesised integer, not a tuple (write (n,))");
        }
        self.i += 1;
        Ok(dims)
    }

    fn dict(&mut self) -> Result<Dict, Syntax> {
        let (mut descr, mut fortran, mut shape) = (None, None, None);
        self.ws();
        self.want_byte(b'{', "'{' (the header is a Python dict literal)")?;
        self.ws();
        while self.peek() != Some(b'}') {
            let at = self.i;
            let key = self.string()?;
            self.ws();
            self.want_byte(b':', "':' after a key")?;
            self.ws();
            let dup = match key {
                "descr" => {
                    if self.peek() == Some(b'[') {
                        return self.fail("a structured dtype (a list 'descr'), not read");
                    }
                    descr.replace(self.string()?.to_string()).is_some()
                }
                "fortran_order" => fortran.replace(self.boolean()?).is_some(),
                "shape" => shape.replace(self.shape()?).is_some(),
                _ => {
                    self.i = at;
                    return self
                        .fail("a key other than 'descr', 'fortran_order' and 'shape' in the dict");
                }
            };
            if dup {
                self.i = at;
                return self.fail(format!("the key '{key}' twice"));
            }
            self.ws();
            match self.peek() {
                Some(b',') => {
                    self.i += 1;
                    self.ws();
                }
                Some(b'}') => {}
                _ => return self.fail("expected ',' or '}' after a value"),
            }
        }
        self.i += 1;
        self.ws();
        if self.i < self.s.len() {
            return self.fail("bytes after the dict");
        }
        let missing = |k: &str| Syntax {
            pos: self.s.len(),
            what: format!("no '{k}' key"),
        };
        Ok(Dict {
            descr: descr.ok_or_else(|| missing("descr"))?,
            fortran_order: fortran.ok_or_else(|| missing("fortran_order"))?,
            shape: shape.ok_or_else(|| missing("shape"))?,
        })
    }
}

/// `dims` as numpy prints a shape, cut at about 60 characters.
fn shape_text(dims: &[usize]) -> String {
    let mut s = String::from("(");
    for (k, d) in dims.iter().enumerate() {
        if s.len() > 60 {
            s.push('…');
            break;
        }
        if k > 0 {
            s.push_str(", ");
        }
        s.push_str(&d.to_string());
    }
    if dims.len() == 1 {
        s.push(',');
    }
    s.push(')');
    s
}

/// Everything known before the data is read: the dtype, the shape, where the data starts
/// and how many elements it holds. Every size here has been checked against the input.
#[derive(Debug)]
struct Plan {
    dtype: Dtype,
    fortran: bool,
    shape: Vec<usize>,
    elements: usize,
    data_start: usize,
}

/// Reads and checks the preamble and header from `prefix` (the input's first bytes, at least
/// its first `PREAMBLE_MAX + MAX_HEADER_LEN` bytes or all of it) of an input of `total` bytes,
/// resolves the dtype for `want`, and checks the data's size against `total`.
fn plan(prefix: &[u8], total: u64, want: Want) -> Result<Plan, String> {
    if total == 0 {
        return Err("not a valid .npy file: it is empty".into());
    }
    if !MAGIC.starts_with(&prefix[..prefix.len().min(MAGIC.len())]) {
        return Err(format!(
            "not a valid .npy file: it does not start with \\x93NUMPY (it starts with '{}')",
            escape_bytes(&prefix[..prefix.len().min(12)], 40)
        ));
    }
    let short = || format!("not a valid .npy file: it ends inside its preamble ({total} bytes)");
    let (major, minor) = match (prefix.get(6), prefix.get(7)) {
        (Some(&a), Some(&b)) => (a, b),
        _ => return Err(short()),
    };
    let (len_bytes, start) = match (major, minor) {
        (1, 0) => (2, 10),
        (2, 0) | (3, 0) => (4, 12),
        _ => {
            return Err(format!(
                "unsupported .npy format version {major}.{minor} (versions 1.0, 2.0 and 3.0 \
                 are read)"
            ));
        }
    };
    let Some(field) = prefix.get(8..8 + len_bytes) else {
        return Err(short());
    };
    let header_len = field
        .iter()
        .rev()
        .fold(0u64, |n, &b| (n << 8) | u64::from(b));
    if header_len > MAX_HEADER_LEN as u64 {
        return Err(format!(
            "not a valid .npy header: its length field says {header_len} bytes, over the \
             {MAX_HEADER_LEN} that numpy reads"
        ));
    }
    let data_start = start + header_len as usize;
    if data_start as u64 > total {
        return Err(format!(
            "not a valid .npy header: its length field says {header_len} bytes, but the file \
             ends {} bytes after the preamble",
            total.saturating_sub(start as u64)
        ));
    }
    let Some(text) = prefix.get(start..data_start) else {
        return Err("internal error: the header was not read in full".into());
    };
    let dict = Parser { s: text, i: 0 }.dict().map_err(|e| {
        format!(
            "not a valid .npy header: {} at header byte {} (near '{}')",
            e.what,
            e.pos,
            excerpt(text, e.pos)
        )
    })?;
    let dtype = resolve(&dict.descr, want)?;
    if dict.shape.len() > MAX_DIMS {
        return Err(format!(
            "not a valid .npy header: its shape has {} dimensions, more than numpy's {MAX_DIMS}",
            dict.shape.len()
        ));
    }

    // Sizes, before anything is allocated: the element count (ndarray also needs the product
    // of the non-zero dimensions to fit isize), then the bytes.
    let overflow = || {
        format!(
            "shape {} is too large: its element count or byte size overflows this machine's \
             addresses",
            shape_text(&dict.shape)
        )
    };
    let mut nonzero: usize = 1;
    for &d in &dict.shape {
        nonzero = nonzero.checked_mul(d.max(1)).ok_or_else(overflow)?;
    }
    let elements = if dict.shape.contains(&0) { 0 } else { nonzero };
    let bytes = elements
        .checked_mul(dtype.kind.size())
        .filter(|&b| nonzero <= isize::MAX as usize && b <= isize::MAX as usize)
        .ok_or_else(overflow)?;
    let held = total - data_start as u64;
    if held != bytes as u64 {
        let what = if held < bytes as u64 {
            "truncated"
        } else {
            "extra bytes"
        };
        return Err(format!(
            "{what}: header says {elements} elements ({bytes} bytes), file holds {held} bytes \
             after the header"
        ));
    }
    Ok(Plan {
        dtype,
        fortran: dict.fortran_order,
        shape: dict.shape,
        elements,
        data_start,
    })
}

// ---------------------------------------------------------------------------------------------
// Data
// ---------------------------------------------------------------------------------------------

fn read_problem(e: io::Error) -> String {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        "truncated: the file ended early while it was read (did it change?)".into()
    } else {
        format!("cannot read: {e}")
    }
}

/// Reads `n` items of `N` bytes from `r`, each converted by `conv`, `CHUNK` bytes at a time.
/// `n * N` has been checked against the input's size.
fn read_items<T, const N: usize, R: Read + ?Sized>(
    r: &mut R,
    n: usize,
    conv: impl Fn([u8; N]) -> T,
) -> Result<Vec<T>, String> {
    let mut out = Vec::new();
    out.try_reserve_exact(n)
        .map_err(|_| format!("cannot allocate memory for {n} elements"))?;
    let per_chunk = CHUNK / N;
    let mut buf = vec![0u8; per_chunk.min(n) * N];
    let mut left = n;
    while left > 0 {
        let k = left.min(per_chunk);
        let chunk = &mut buf[..k * N];
        r.read_exact(chunk).map_err(read_problem)?;
        out.extend(chunk.chunks_exact(N).map(|b| {
            let mut a = [0u8; N];
            a.copy_from_slice(b);
            conv(a)
        }));
        left -= k;
    }
    Ok(out)
}

/// Reads the plan's items, each decoded by `$le` or `$be` (`fn([u8; N]) -> T`) by byte order.
macro_rules! items {
    ($r:expr, $plan:expr, $n:literal, $le:expr, $be:expr) => {
        if $plan.dtype.little {
            read_items::<_, $n, _>($r, $plan.elements, $le)
        } else {
            read_items::<_, $n, _>($r, $plan.elements, $be)
        }
    };
}

/// `values` (in the file's order) as an array of the plan's shape, in C order.
fn to_array<T: Clone>(plan: &Plan, values: Vec<T>) -> Result<ArrayD<T>, String> {
    let shape = IxDyn(&plan.shape);
    let bad = |e: ndarray::ShapeError| format!("internal error: shape {e}");
    if plan.fortran && plan.shape.len() > 1 {
        let a = ArrayD::from_shape_vec(shape.f(), values).map_err(bad)?;
        Ok(a.as_standard_layout().into_owned())
    } else {
        ArrayD::from_shape_vec(shape, values).map_err(bad)
    }
}

fn read_floats<R: Read + ?Sized>(plan: &Plan, r: &mut R) -> Result<ArrayD<f32>, String> {
    let v = match plan.dtype.kind {
        Kind::F4 => items!(r, plan, 4, f32::from_le_bytes, f32::from_be_bytes)?,
        Kind::F8 => items!(
            r,
            plan,
            8,
            |b| f64::from_le_bytes(b) as f32,
            |b| f64::from_be_bytes(b) as f32
        )?,
        Kind::F2 => items!(r, plan, 2, |b| half::f16::from_le_bytes(b).to_f32(), |b| {
            half::f16::from_be_bytes(b).to_f32()
        })?,
        k => return Err(format!("internal error: {k:?} read as floats")),
    };
    to_array(plan, v)
}

fn read_target_data<R: Read + ?Sized>(plan: &Plan, r: &mut R) -> Result<TargetData, String> {
    use TargetData as T;
    let i32s = |v: Vec<i32>| to_array(plan, v).map(T::I32);
    let i64s = |v: Vec<i64>| to_array(plan, v).map(T::I64);
    match plan.dtype.kind {
        Kind::F2 | Kind::F4 | Kind::F8 => read_floats(plan, r).map(T::F32),
        Kind::I1 => i32s(read_items::<_, 1, _>(r, plan.elements, |b| {
            i32::from(i8::from_le_bytes(b))
        })?),
        Kind::U1 => to_array(plan, read_items::<_, 1, _>(r, plan.elements, |[b]| b)?).map(T::U8),
        Kind::Bool => {
            let bytes = to_array(plan, read_items::<_, 1, _>(r, plan.elements, |[b]| b)?)?;
            // numpy writes 0 and 1; any other byte is refused, never read as true.
            if let Some((k, b)) = bytes.iter().enumerate().find(|(_, b)| **b > 1) {
                return Err(format!(
                    "bool element {k} (in C order) is the byte {b}, not 0 or 1"
                ));
            }
            Ok(T::Bool(bytes.mapv(|b| b == 1)))
        }
        Kind::I2 => i32s(items!(
            r,
            plan,
            2,
            |b| i32::from(i16::from_le_bytes(b)),
            |b| i32::from(i16::from_be_bytes(b))
        )?),
        Kind::U2 => i32s(items!(
            r,
            plan,
            2,
            |b| i32::from(u16::from_le_bytes(b)),
            |b| i32::from(u16::from_be_bytes(b))
        )?),
        Kind::I4 => i32s(items!(r, plan, 4, i32::from_le_bytes, i32::from_be_bytes)?),
        Kind::U4 => i64s(items!(
            r,
            plan,
            4,
            |b| i64::from(u32::from_le_bytes(b)),
            |b| i64::from(u32::from_be_bytes(b))
        )?),
        Kind::I8 => i64s(items!(r, plan, 8, i64::from_le_bytes, i64::from_be_bytes)?),
        Kind::U8 => {
            let a = to_array(
                plan,
                items!(r, plan, 8, u64::from_le_bytes, u64::from_be_bytes)?,
            )?;
            // In C order; the first value beyond int64 is refused, never clamped.
            let mut v = Vec::new();
            v.try_reserve_exact(a.len())
                .map_err(|_| format!("cannot allocate memory for {} elements", a.len()))?;
            for (k, &c) in a.iter().enumerate() {
                let c = i64::try_from(c).map_err(|_| {
                    format!(
                        "class {c} of row {k} is outside int64 (uint64 class indices above {} \
                         are refused, not clamped)",
                        i64::MAX
                    )
                })?;
                v.push(c);
            }
            ArrayD::from_shape_vec(a.raw_dim(), v)
                .map(T::I64)
                .map_err(|e| format!("internal error: shape {e}"))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Entry points
// ---------------------------------------------------------------------------------------------

/// A target file's contents: floats (converted to f32) or class indices.
#[derive(Debug)]
pub enum TargetData {
    /// Float targets (float32, float64 or float16).
    F32(ArrayD<f32>),
    /// Integer targets of at most 32 bits (int8/16/32, uint16), as i32.
    I32(ArrayD<i32>),
    /// int64, uint32 and uint64 targets, as i64 (a uint64 value above `i64::MAX` is an error,
    /// never clamped).
    I64(ArrayD<i64>),
    /// uint8 targets, as read: float targets (0 to 255) or class indices, as the loss and the
    /// shape say (`compute`).
    U8(ArrayD<u8>),
    /// bool targets (`|b1`, each byte 0 or 1): 0/1 float targets.
    Bool(ArrayD<bool>),
}

/// Parses a whole `.npy` file held in memory as f32.
///
/// The format read:
/// - the magic `\x93NUMPY`, then version 1.0 (a 2-byte little-endian header length) or 2.0
///   or 3.0 (a 4-byte one);
/// - a header of at most [`MAX_HEADER_LEN`] bytes: a Python dict literal with exactly the keys
///   `'descr'`, `'fortran_order'` and `'shape'`, in any order, in single or double quotes,
///   with white space and a trailing comma anywhere Python allows them (numpy pads with
///   spaces and ends with a newline); `fortran_order` is `True` or `False`; `shape` a tuple
///   of at most [`MAX_DIMS`] non-negative decimal integers: `()` (a scalar), `(3,)`, `(2, 3)`;
/// - then exactly `shape × item size` bytes of data, nothing after.
///
/// The dtypes read here: `f4`, `f8` and `f2`, with byte order `<`, `>` or `=` (or none:
/// native); f8 and f2 are converted to f32. Fortran-order data is returned in C order.
///
/// The error is one line of text, control bytes and non-ASCII from the input escaped.
#[allow(
    dead_code,
    reason = "the in-memory entry point, for the fuzzer and tests"
)]
pub fn parse_f32(bytes: &[u8]) -> Result<ArrayD<f32>, String> {
    let p = plan(bytes, bytes.len() as u64, Want::Floats)?;
    read_floats(&p, &mut bytes.get(p.data_start..).unwrap_or_default())
}

/// Parses a whole target `.npy` held in memory: floats as [`parse_f32`], or integer class
/// indices: `i1 i2 u2 i4` (as i32), `u4 i8 u8` (as i64) and `u1` (as u8), byte order `<`,
/// `>`, `=` or none, and `|` for the 1-byte ones; or bool (`b1`, each byte 0 or 1). A uint64
/// value above `i64::MAX`, or a bool byte other than 0 and 1, is an error naming its flat
/// (C-order) index.
#[allow(
    dead_code,
    reason = "the in-memory entry point, for the fuzzer and tests"
)]
pub fn parse_target(bytes: &[u8]) -> Result<TargetData, String> {
    let p = plan(bytes, bytes.len() as u64, Want::Target)?;
    read_target_data(&p, &mut bytes.get(p.data_start..).unwrap_or_default())
}

/// What kind of not-regular file `t` is, in words.
fn kind_of(t: &fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_socket() {
            return "a socket";
        }
        if t.is_block_device() {
            return "a block device";
        }
        if t.is_char_device() {
            return "a character device";
        }
    }
    if t.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    }
}

/// Opens `path` for reading, non-blocking where the flag is known (so that a FIFO swapped in
/// after the type check cannot block the open; reads of a regular file are unaffected).
fn open_nonblocking(path: &Path) -> io::Result<fs::File> {
    let mut o = fs::OpenOptions::new();
    o.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // O_NONBLOCK, as the libc crate defines it for these targets.
        #[cfg(all(
            target_os = "linux",
            any(
                target_arch = "x86",
                target_arch = "x86_64",
                target_arch = "arm",
                target_arch = "aarch64",
                target_arch = "riscv64",
                target_arch = "powerpc64",
                target_arch = "s390x",
                target_arch = "loongarch64"
            )
        ))]
        o.custom_flags(0o4000);
        #[cfg(any(
            target_os = "macos",
            target_os = "ios",
            target_os = "freebsd",
            target_os = "openbsd",
            target_os = "netbsd",
            target_os = "dragonfly"
        ))]
        o.custom_flags(0x4);
    }
    o.open(path)
}

/// Checks that `path` is a regular file (before and after opening it), reads its preamble and
/// header, and checks them and the data's size: the open file, its first bytes and the plan.
fn open_planned(path: &Path, want: Want) -> Result<(fs::File, Vec<u8>, Plan), FileError> {
    let cannot = |e: io::Error| err(path, format!("cannot read: {e}"));
    let meta = fs::metadata(path).map_err(cannot)?;
    if !meta.is_file() {
        let kind = kind_of(&meta.file_type());
        return Err(err(
            path,
            format!("cannot read: it is {kind}, not a regular .npy file"),
        ));
    }
    let mut file = open_nonblocking(path).map_err(cannot)?;
    let meta = file.metadata().map_err(cannot)?;
    if !meta.is_file() {
        let kind = kind_of(&meta.file_type());
        return Err(err(
            path,
            format!("cannot read: it became {kind} while it was opened"),
        ));
    }
    let total = meta.len();
    let prefix_len = total.min((PREAMBLE_MAX + MAX_HEADER_LEN) as u64) as usize;
    let mut prefix = vec![0u8; prefix_len];
    file.read_exact(&mut prefix)
        .map_err(|e| err(path, read_problem(e)))?;
    let p = plan(&prefix, total, want).map_err(|e| err(path, e))?;
    Ok((file, prefix, p))
}

/// [`open_planned`], then reads the data (`decode`) and checks that nothing follows it.
fn read_file<T>(
    path: &Path,
    want: Want,
    decode: impl FnOnce(&Plan, &mut dyn Read) -> Result<T, String>,
) -> Result<T, FileError> {
    let (mut file, prefix, p) = open_planned(path, want)?;
    let rest = prefix.get(p.data_start..).unwrap_or_default();
    let value = decode(&p, &mut rest.chain(&mut file)).map_err(|e| err(path, e))?;
    let mut one = [0u8; 1];
    match file.read(&mut one) {
        Ok(0) => Ok(value),
        Ok(_) => Err(err(
            path,
            "extra bytes: the file grew while it was read (did it change?)",
        )),
        Err(e) => Err(err(path, read_problem(e))),
    }
}

/// The shape of the float `.npy` file at `path`, from its header alone (at most
/// [`MAX_HEADER_LEN`] bytes are read), with every check [`read_f32`] makes before it reads the
/// data: for sizing a job before anything is allocated.
pub fn peek_shape(path: &Path) -> Result<Vec<usize>, FileError> {
    open_planned(path, Want::Floats).map(|(_, _, p)| p.shape)
}

/// The shape of the target `.npy` file at `path` (floats or class indices), from its header
/// alone, with every check [`read_target`] makes before it reads the data.
pub fn peek_target_shape(path: &Path) -> Result<Vec<usize>, FileError> {
    open_planned(path, Want::Target).map(|(_, _, p)| p.shape)
}

/// Reads a `.npy` file of float32, float64 or float16 (any byte order, C or Fortran order) as
/// f32; the format is [`parse_f32`]'s. Only a regular file is read: a FIFO, a directory, a
/// device or a socket is refused before it is opened for reading.
pub fn read_f32(path: &Path) -> Result<ArrayD<f32>, FileError> {
    read_file(path, Want::Floats, |p, r| read_floats(p, r))
}

/// Reads a target `.npy` file: floats (as [`read_f32`]) or integer class indices, the format
/// [`parse_target`]'s.
pub fn read_target(path: &Path) -> Result<TargetData, FileError> {
    read_file(path, Want::Target, |p, r| read_target_data(p, r))
}
