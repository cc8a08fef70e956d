//! The properties of the `cli` fuzz target, shared with `tests/fuzz_regressions.rs` (which
//! includes this file by path, as the target does).
//!
//! An input becomes a command line ([`argv`]): its first byte picks the command (bits 0-1:
//! `compute`, `bench`, none: the main job, or the first word as given), the memory the CLI
//! believes it has (bits 2-4: `WGPU_LOSS_MEMORY_AVAILABLE` 32 GiB, 0, 4 KiB, 1 GiB, or not a
//! number) and whether the path tokens go through [`TWIN`], a symlink named with control
//! characters (bit 5). Each byte after it is one word, a token of [`DICT`] (flags, values,
//! numbers huge and odd, and the paths of the fixtures), except [`LITERAL`] (`0xff`), which
//! starts a word of raw bytes up to the next NUL byte (its path part contained, see below).
//! The command line is parsed as `wgpu-loss` parses it and only the checking half of its
//! command runs (`cli::check_only`: `compute::prepare`, `bench::prepare`,
//! `main_job::prepare`), never a GPU and never the work.
//!
//! The fixtures ([`Fixtures`]) are made once, in a fresh directory `wgpu-loss-fuzz-cli-PID`
//! of the system's temporary folder, whose `fx` folder is the working directory of every
//! input (the previous one restored after it): `.npy` inputs of several dtypes, shapes and
//! byte orders, an empty one with a dimension of 2^32, broken ones, a sparse 16 GiB one
//! (`huge.npy`, 2^32 elements, of which only the header may be read), names with a newline
//! and an escape sequence in them, a folder, a read-only folder, a read-only file, a FIFO, a
//! symlink to an input, a dangling symlink, a hard link, a symlink to `fx` named with control
//! characters ([`TWIN`]), and one input in the folder above (reached by
//! `..`). A literal word loses any leading `/`, and any `..` that would climb above that folder
//! is made `_` ([`contain`]), so that temporary files are only ever made under it (the tokens
//! `/dev/null` and `/` are the exceptions, and make none).
//!
//! Properties ([`check`]): no panic; a refusal is one line (no newline, no control
//! character) of bounded length, with exit code 1 or 2; while an accepted command's result is
//! held, the only new entries of the fixture tree are its temporary files (`.NAME.XXXXXX.tmp`);
//! once it is dropped the tree (every entry's name, type, mode, size, time, bytes and link
//! target) is exactly as made. Timing (no input over 100 ms) is checked by scripts/fuzz.sh.
//! With `WGPU_LOSS_FUZZ_SHOW` set, each input's command line and outcome go to stderr.

use std::ffi::OsString;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::cli::{self, Checked};

/// A refusal's length bound: this many characters, plus [`MESSAGE_PER_ARG_BYTE`] per byte of
/// the command line (a message quotes paths and values, escaped).
pub const MESSAGE_BASE_CHARS: usize = 400;
/// See [`MESSAGE_BASE_CHARS`].
pub const MESSAGE_PER_ARG_BYTE: usize = 12;

/// The tokens a byte stands for (by its value modulo the count). Every token from
/// [`FIRST_PATH`] on is a path. New tokens go at the end only: an insertion would change what
/// the committed seeds and regressions mean.
pub const DICT: &[&str] = &[
    // Commands and flags.
    "compute",
    "bench",
    "help",
    "--help",
    "--version",
    "--loss",
    "--pred",
    "--target",
    "--reduction",
    "--weight",
    "--pos-weight",
    "--delta",
    "--class-weight",
    "--label-smoothing",
    "--ignore-index",
    "--z-loss",
    "--eps",
    "--grad-out",
    "--loss-out",
    "--device",
    "--json",
    "--quick",
    "--losses",
    "--repeats",
    "--plot",
    "--seed",
    "--wall-clock",
    "--dtype",
    "--sizes",
    "--rows",
    "--max-elements",
    "--unroll",
    "--elements",
    "--classes",
    "--",
    "-",
    // Values.
    "mse",
    "mae",
    "huber",
    "bce",
    "bce-with-logits",
    "cce",
    "softmax-ce",
    "cosine",
    "mse,cosine,mse",
    "mean",
    "sum",
    "none",
    "gpu",
    "cpu",
    "reference",
    "f32",
    "f16",
    "bf16",
    "true",
    "false",
    // Numbers.
    "0",
    "1",
    "-1",
    "2",
    "3",
    "1000",
    "4096",
    "32000",
    "65536",
    "1000000",
    "1000001",
    "4294967294",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "18446744073709551615",
    "18446744073709551616",
    "340282366920938463463374607431768211456",
    "-100",
    "-9223372036854775808",
    "0.5",
    "1e-8",
    "1e38",
    "1e39",
    "-0",
    "nan",
    "inf",
    "-inf",
    "1,2,3",
    "0,1",
    "4096x128256",
    "65536x65536",
    "1x4294967295",
    "4294967296x1",
    "18446744073709551615x18446744073709551615",
    "0x5",
    "3x",
    "2X3",
    "128x8192,1x1",
    // Input fixtures.
    "p.npy",
    "t.npy",
    "p64.npy",
    "p16.npy",
    "pbe.npy",
    "pf.npy",
    "c64.npy",
    "c32.npy",
    "cu8.npy",
    "cbig.npy",
    "w.npy",
    "neg.npy",
    "nan.npy",
    "row.npy",
    "s.npy",
    "e.npy",
    "e03.npy",
    "bool.npy",
    "bad.npy",
    "trunc.npy",
    "claim.npy",
    "new\nline.npy",
    "esc\x1b[31m.npy",
    "ro.npy",
    "link.npy",
    "hard.npy",
    "dangling.npy",
    "fifo",
    "sub",
    "sub/",
    "sub/q.npy",
    "sub/../p.npy",
    "./p.npy",
    "dirlink/q.npy",
    "ro_dir/r.npy",
    "../up.npy",
    "p.npy/x",
    // Output places.
    "o.npy",
    "o2.npy",
    "o.json",
    "o.svg",
    "sub/o.npy",
    "sub/../o.npy",
    "dirlink/o.npy",
    "missing/o.npy",
    "ro_dir/o.npy",
    "../o.npy",
    "..",
    ".",
    "sub/..",
    "o.npy/",
    "o.npy/.",
    "new\nline.out",
    "/dev/null",
    "/",
    "",
    "dangling.npy",
    "ro_dir",
    "dirlink",
    // Appended later: the list only grows at its end, so that stored inputs keep their meaning.
    "huge.npy",
    "e0big.npy",
];

/// A symlink in `fx` to `fx` itself, whose name holds a newline, escape sequences, a carriage
/// return and a C1 control: with bit 5 of the first byte set, every path token of [`DICT`]
/// (not the absolute ones, nor the empty one), and every literal word that spells one, is
/// reached through it, `TWIN/p.npy` for `p.npy`. The same files, so the same outcome, but every path that a message quotes now has
/// control characters in it, which must come out escaped.
pub const TWIN: &str = "d\n\x1b[2J\r\u{85}";

/// The first path token of [`DICT`]: every token from it on is a path.
const FIRST_PATH: &str = "p.npy";

/// One entry of the fixture tree as seen: its path under the base, its type, mode, size,
/// modification time and bytes (regular files, the first [`HEAD_BYTES`]) or target (symlinks).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    path: PathBuf,
    kind: &'static str,
    mode: u32,
    len: u64,
    /// Modification time in nanoseconds (0 for folders, which gain and lose temporary files).
    mtime: i128,
    bytes: Vec<u8>,
}

/// The fixture tree, made once; the working directory is its `fx` folder.
pub struct Fixtures {
    /// The base folder: `fx` and `up.npy`.
    pub base: PathBuf,
    /// The working directory of every input.
    pub fx: PathBuf,
    /// Every entry as made.
    tree: Vec<Entry>,
}

/// A `.npy` file's bytes: version 1.0, `descr`, `shape`, then `data`.
fn npy_bytes(descr: &str, fortran: bool, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let shape = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let fortran = if fortran { "True" } else { "False" };
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

fn f32s(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The probabilities of the (2, 3) inputs.
const P: [f32; 6] = [0.1, 0.2, 0.7, 0.3, 0.3, 0.4];

/// Every fixture file (path under `fx`, bytes).
fn files() -> Vec<(&'static str, Vec<u8>)> {
    let p = npy_bytes("<f4", false, &[2, 3], &f32s(&P));
    let t = npy_bytes(
        "<f4",
        false,
        &[2, 3],
        &f32s(&[0.2, 0.2, 0.6, 0.5, 0.25, 0.25]),
    );
    let p64: Vec<u8> = P.iter().flat_map(|&x| f64::from(x).to_le_bytes()).collect();
    let p16: Vec<u8> = P
        .iter()
        .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
        .collect();
    let pbe: Vec<u8> = P.iter().flat_map(|x| x.to_be_bytes()).collect();
    let mut pf = Vec::new();
    for c in 0..3 {
        for r in 0..2 {
            pf.extend_from_slice(&P[r * 3 + c].to_le_bytes());
        }
    }
    let classes: [i64; 2] = [0, 2];
    let c64: Vec<u8> = classes.iter().flat_map(|c| c.to_le_bytes()).collect();
    let c32: Vec<u8> = classes
        .iter()
        .flat_map(|&c| (c as i32).to_le_bytes())
        .collect();
    let cbig: Vec<u8> = [0u64, u64::MAX]
        .iter()
        .flat_map(|c| c.to_le_bytes())
        .collect();
    let mut claim = npy_bytes("<f4", false, &[1 << 33], &[]);
    claim.extend_from_slice(&[0; 64]);
    let mut trunc = p.clone();
    trunc.truncate(p.len() - 5);
    vec![
        ("p.npy", p.clone()),
        ("t.npy", t),
        ("p64.npy", npy_bytes("<f8", false, &[2, 3], &p64)),
        ("p16.npy", npy_bytes("<f2", false, &[2, 3], &p16)),
        ("pbe.npy", npy_bytes(">f4", false, &[2, 3], &pbe)),
        ("pf.npy", npy_bytes("<f4", true, &[2, 3], &pf)),
        ("c64.npy", npy_bytes("<i8", false, &[2], &c64)),
        ("c32.npy", npy_bytes("<i4", false, &[2], &c32)),
        ("cu8.npy", npy_bytes("|u1", false, &[2], &[0, 2])),
        ("cbig.npy", npy_bytes("<u8", false, &[2], &cbig)),
        (
            "w.npy",
            npy_bytes("<f4", false, &[3], &f32s(&[1.0, 2.0, 0.5])),
        ),
        (
            "neg.npy",
            npy_bytes("<f4", false, &[3], &f32s(&[1.0, -2.0, 0.5])),
        ),
        (
            "nan.npy",
            npy_bytes(
                "<f4",
                false,
                &[2, 3],
                &f32s(&[f32::NAN, f32::INFINITY, 0.5, -0.0, 1.0, 2.0]),
            ),
        ),
        (
            "row.npy",
            npy_bytes("<f4", false, &[2], &f32s(&[0.5, 0.25])),
        ),
        ("s.npy", npy_bytes("<f4", false, &[], &f32s(&[0.5]))),
        ("e.npy", npy_bytes("<f4", false, &[0], &[])),
        ("e03.npy", npy_bytes("<f4", false, &[0, 3], &[])),
        ("e0big.npy", npy_bytes("<f4", false, &[0, 1 << 32], &[])),
        ("bool.npy", npy_bytes("|b1", false, &[2], &[0, 1])),
        ("bad.npy", b"PK\x03\x04 not a .npy file\n".to_vec()),
        ("trunc.npy", trunc),
        ("claim.npy", claim),
        ("new\nline.npy", p.clone()),
        ("esc\x1b[31m.npy", p.clone()),
        ("ro.npy", p.clone()),
        ("sub/q.npy", p.clone()),
        ("ro_dir/r.npy", p),
    ]
}

/// The first [`HEAD_BYTES`] bytes of the file at `path` (all of every fixture but the sparse
/// `huge.npy`, whose size and modification time are compared too).
fn head(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    if let Ok(f) = fs::File::open(path) {
        let _ = f.take(HEAD_BYTES).read_to_end(&mut out);
    }
    out
}

/// See [`head`].
const HEAD_BYTES: u64 = 1 << 16;

/// Every entry under `dir` (recursively, symlinks not followed), sorted by path.
fn walk(base: &Path) -> Vec<Entry> {
    fn go(base: &Path, dir: &Path, out: &mut Vec<Entry>) {
        let Ok(rd) = fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let path = e.path();
            let Ok(m) = fs::symlink_metadata(&path) else {
                continue;
            };
            let t = m.file_type();
            let (kind, bytes) = if t.is_symlink() {
                let target = fs::read_link(&path).unwrap_or_default();
                ("symlink", target.into_os_string().into_vec())
            } else if t.is_dir() {
                ("dir", Vec::new())
            } else if t.is_file() {
                ("file", head(&path))
            } else {
                ("other", Vec::new())
            };
            out.push(Entry {
                path: path.strip_prefix(base).unwrap_or(&path).to_path_buf(),
                kind,
                mode: m.mode(),
                len: if t.is_dir() { 0 } else { m.len() },
                mtime: if t.is_dir() {
                    0
                } else {
                    i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec())
                },
                bytes,
            });
            if t.is_dir() {
                go(base, &path, out);
            }
        }
    }
    let mut out = Vec::new();
    go(base, base, &mut out);
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

impl Fixtures {
    /// Makes the tree in a fresh `wgpu-loss-fuzz-cli-PID` folder of the temporary folder.
    fn make() -> Fixtures {
        let base = std::env::temp_dir().join(format!("wgpu-loss-fuzz-cli-{}", std::process::id()));
        remove_tree(&base);
        let fx = base.join("fx");
        for d in ["sub", "ro_dir"] {
            fs::create_dir_all(fx.join(d)).expect("make a fixture folder");
        }
        for (name, bytes) in files() {
            let mut f = fs::File::create(fx.join(name)).expect("make a fixture");
            f.write_all(&bytes).expect("write a fixture");
        }
        fs::write(
            base.join("up.npy"),
            npy_bytes("<f4", false, &[2, 3], &f32s(&P)),
        )
        .expect("make the fixture above");
        // 2^32 float32 (16 GiB, over one GPU call), sparse: only its header is ever read.
        let header = npy_bytes("<f4", false, &[1 << 32], &[]);
        let huge = fs::File::create(fx.join("huge.npy")).expect("make huge.npy");
        (&huge).write_all(&header).expect("write huge.npy");
        huge.set_len(header.len() as u64 + (4u64 << 32))
            .expect("size huge.npy");
        let ro = fs::Permissions::from_mode(0o444);
        fs::set_permissions(fx.join("ro.npy"), ro).expect("make ro.npy read-only");
        std::os::unix::fs::symlink("p.npy", fx.join("link.npy")).expect("symlink");
        std::os::unix::fs::symlink("nothing.npy", fx.join("dangling.npy")).expect("symlink");
        std::os::unix::fs::symlink("sub", fx.join("dirlink")).expect("symlink");
        std::os::unix::fs::symlink(".", fx.join(TWIN)).expect("symlink");
        fs::hard_link(fx.join("p.npy"), fx.join("hard.npy")).expect("hard link");
        // A FIFO, where mkfifo exists (no libc binding here).
        let _ = std::process::Command::new("mkfifo")
            .arg(fx.join("fifo"))
            .status();
        fs::set_permissions(fx.join("ro_dir"), fs::Permissions::from_mode(0o555))
            .expect("make ro_dir read-only");
        let tree = walk(&base);
        Fixtures { base, fx, tree }
    }

    /// The entries that differ from the tree as made (added, removed or changed), by path.
    fn changes(&self) -> (Vec<Entry>, Vec<Entry>) {
        let now = walk(&self.base);
        let added: Vec<Entry> = now
            .iter()
            .filter(|e| !self.tree.contains(e))
            .cloned()
            .collect();
        let gone: Vec<Entry> = self
            .tree
            .iter()
            .filter(|e| !now.contains(e))
            .cloned()
            .collect();
        (added, gone)
    }
}

/// Removes `dir` and everything under it, read-only folders included.
pub fn remove_tree(dir: &Path) {
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir()) {
                let _ = fs::set_permissions(&p, fs::Permissions::from_mode(0o755));
                remove_tree(&p);
            } else {
                let _ = fs::remove_file(&p);
            }
        }
    }
    let _ = fs::remove_dir(dir);
}

static FIXTURES: OnceLock<Fixtures> = OnceLock::new();

/// The fixtures, made on first use, and removed when the process exits normally (libFuzzer
/// ends with `exit`; a crash leaves them for scripts/fuzz.sh to remove).
pub fn fixtures() -> &'static Fixtures {
    FIXTURES.get_or_init(|| {
        unsafe extern "C" {
            fn atexit(f: extern "C" fn()) -> i32;
        }
        extern "C" fn remove_at_exit() {
            if let Some(f) = FIXTURES.get() {
                remove_tree(&f.base);
            }
        }
        // SAFETY: the C library's `atexit`, given a function that takes nothing and
        // unwinds never (remove_tree ignores every error).
        unsafe { atexit(remove_at_exit) };
        Fixtures::make()
    })
}

/// The byte that starts a literal word (up to the next NUL byte or the end); every other byte
/// is one token of [`DICT`].
pub const LITERAL: u8 = 0xff;

/// The memory figures the first byte chooses among. The first is 32 GiB, which leaves the
/// machine's own figure where it is smaller (the variable can only lower it) and keeps a
/// larger machine from reading `huge.npy` (16 GiB, sparse) whole.
const MEMORY: [Option<&str>; 8] = [
    Some("34359738368"),
    Some("34359738368"),
    Some("34359738368"),
    Some("34359738368"),
    Some("0"),
    Some("4096"),
    Some("1073741824"),
    Some("lots"),
];

/// The command line an input stands for, the program's name first, and the value of
/// `WGPU_LOSS_MEMORY_AVAILABLE` it asks for.
pub fn argv(data: &[u8]) -> (Vec<OsString>, Option<&'static str>) {
    let (&mode, rest) = data.split_first().unwrap_or((&0, &[]));
    let mut args = vec![OsString::from("wgpu-loss")];
    match mode & 3 {
        0 => args.push("compute".into()),
        1 => args.push("bench".into()),
        _ => {} // the main job, or the first word as given
    }
    let memory = MEMORY[usize::from(mode >> 2) & 7];
    let twin = mode & 0x20 != 0;
    let first_path = DICT
        .iter()
        .position(|&t| t == FIRST_PATH)
        .unwrap_or(DICT.len());
    if rest.is_empty() {
        return (args, memory);
    }
    // A path token, or a literal word spelling one, through TWIN when bit 5 asks for it.
    let through_twin = |token: &str| {
        let k = DICT.iter().position(|&t| t == token);
        twin && k.is_some_and(|k| k >= first_path) && !token.is_empty() && !token.starts_with('/')
    };
    let mut i = 0;
    while i < rest.len() {
        let arg = if rest[i] == LITERAL {
            let word = &rest[i + 1..];
            let len = word.iter().position(|&b| b == 0).unwrap_or(word.len());
            let word = &word[..len];
            i += 2 + len;
            match word {
                // `--flag=value`: the value is the path.
                [b'-', ..] if word.contains(&b'=') => {
                    let eq = word.iter().position(|&b| b == b'=').unwrap_or(0);
                    let mut w = word[..=eq].to_vec();
                    w.extend(contain(&word[eq + 1..]));
                    OsString::from_vec(w)
                }
                _ => OsString::from_vec(contain(word)),
            }
        } else {
            i += 1;
            OsString::from(DICT[usize::from(rest[i - 1]) % DICT.len()])
        };
        let arg = match arg.to_str() {
            Some(t) if through_twin(t) => OsString::from(format!("{TWIN}/{t}")),
            _ => arg,
        };
        args.push(arg);
    }
    (args, memory)
}

/// A free word as a path that stays under the base: leading `/` removed, and every `..`
/// that would climb above the base (counting from `fx`, one below it) made `_`. (Symlinks
/// among the fixtures point within `fx`, so the lexical count is the real one.)
fn contain(word: &[u8]) -> Vec<u8> {
    let mut w = word;
    while let [b'/', tail @ ..] = w {
        w = tail;
    }
    let mut depth = 1usize;
    let mut out: Vec<&[u8]> = Vec::new();
    for part in w.split(|&b| b == b'/') {
        match part {
            b"" | b"." => out.push(part),
            b".." if depth > 0 => {
                depth -= 1;
                out.push(part);
            }
            b".." => out.push(b"_"),
            _ => {
                depth += 1;
                out.push(part);
            }
        }
    }
    out.join(&b'/')
}

/// Whether `e` (a path under the base) is a temporary output file: `.NAME.XXXXXX.tmp`.
fn is_temp(e: &Entry) -> bool {
    let name = e.path.file_name().map(|n| n.to_string_lossy().into_owned());
    e.kind == "file" && name.is_some_and(|n| n.starts_with('.') && n.ends_with(".tmp"))
}

/// The working directory before an input, restored when this is dropped (after the input,
/// or as a failed check unwinds), so that the fuzzer's own relative paths keep working.
struct Cwd(PathBuf);

impl Drop for Cwd {
    fn drop(&mut self) {
        let _ = std::env::set_current_dir(&self.0);
    }
}

/// Runs one input and checks every property; panics on a violation. The input runs in the
/// fixtures' `fx` folder; the working directory is restored afterwards.
pub fn check(data: &[u8]) {
    let fx = fixtures();
    let _cwd = Cwd(std::env::current_dir().expect("the working directory"));
    std::env::set_current_dir(&fx.fx).expect("enter the fixture folder");
    let (args, memory) = argv(data);
    // One thread calls this at a time: the fuzzer runs inputs one after another, and the
    // regression test from one test function.
    unsafe {
        match memory {
            Some(v) => std::env::set_var("WGPU_LOSS_MEMORY_AVAILABLE", v),
            None => std::env::remove_var("WGPU_LOSS_MEMORY_AVAILABLE"),
        }
    }
    let arg_bytes: usize = args.iter().map(|a| a.len()).sum();
    let result = cli::check_only(args.iter().cloned());
    if std::env::var_os("WGPU_LOSS_FUZZ_SHOW").is_some() {
        // For replaying an input by hand: what it ran and what came of it.
        let outcome = match &result {
            Err(e) => format!("usage error ({:?})", e.kind()),
            Ok(Err(f)) => format!("refused (exit {}): {:?}", f.code, f.message),
            Ok(Ok(_)) => "accepted".to_string(),
        };
        eprintln!("argv {args:?} memory {memory:?}: {outcome}");
    }
    match result {
        Err(_usage) => {} // clap's error (or --help): parsing only, nothing created
        Ok(Err(f)) => {
            assert!(
                f.code == 1 || f.code == 2,
                "exit code {}: {}",
                f.code,
                f.message
            );
            assert!(
                !f.message.chars().any(char::is_control),
                "a refusal with a control character: {:?} (argv {args:?})",
                f.message
            );
            let max = MESSAGE_BASE_CHARS + MESSAGE_PER_ARG_BYTE * arg_bytes;
            let n = f.message.chars().count();
            assert!(n <= max, "a refusal of {n} characters: {:?}", f.message);
            assert!(!f.message.is_empty(), "an empty refusal (argv {args:?})");
        }
        Ok(Ok(checked)) => {
            let (added, gone) = fx.changes();
            assert!(
                gone.is_empty(),
                "prepare changed or removed {gone:?} (argv {args:?})"
            );
            let other: Vec<&Entry> = added.iter().filter(|e| !is_temp(e)).collect();
            assert!(other.is_empty(), "prepare made {other:?} (argv {args:?})");
            drop::<Checked>(checked);
        }
    }
    let (added, gone) = fx.changes();
    assert!(
        added.is_empty() && gone.is_empty(),
        "the fixture tree changed: added or changed {added:?}, removed or changed {gone:?} \
         (argv {args:?})"
    );
}
