//! Output files that cannot destroy anything.
//!
//! Every output of a command (`compute --grad-out/--loss-out`, `bench --json/--plot`) is
//! planned by [`plan`] before any work, and refused (bad input, exit 2) when it is:
//! - not a file name (it ends in `..`, `.` or a separator), or in a folder that does not
//!   exist or is not a directory;
//! - an input of the same call (by file identity: device and inode on unix, so a `..`, a
//!   symlink or a hard link to the input is caught), or the same file as another output;
//! - an existing directory or anything but a regular file (a FIFO, a device: a rename would
//!   replace `/dev/null` itself), a read-only file, or one that cannot be opened for writing;
//! - in a folder that is read-only or where no file can be created.
//!
//! The last check is the creation of the output's temporary file itself: [`plan`] creates
//! one per output up front, exclusively (`O_EXCL`) under an unpredictable name
//! (`.NAME.XXXXXX.tmp`) in the destination's folder, so a link planted under a guessable name
//! is never followed. The result is written there ([`Staged::write_npy`],
//! [`Staged::write_bytes`]) and [`commit`] renames every temporary file into place only once
//! all of them are written and flushed to disk. An existing file at a destination is
//! replaced by that rename, atomically; a symlink at a destination is replaced, not followed.
//!
//! The temporary files never outlive the process: [`Staged`]'s `Drop` removes its file (on an
//! error, and on a panic as it unwinds), and SIGINT, SIGTERM and SIGHUP are caught while any
//! exists: a handler thread removes every registered temporary file and exits with 128 + the
//! signal's number (130, 143, 129). The registry's lock is held over every creation, every
//! removal and the whole series of renames of [`commit`], so a signal never sees a file half
//! registered, and never interrupts a commit between two renames.

use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};

use ndarray::ArrayD;
use ndarray_npy::WriteNpyExt;
use tempfile::NamedTempFile;

use super::Failure;
use super::npy::FileError;

/// The temporary files that exist now, for the signal handler to remove.
static TEMPS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// The registry, even if a thread panicked while holding it (it is a plain list).
fn temps() -> MutexGuard<'static, Vec<PathBuf>> {
    TEMPS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A one-line bad-input failure about `path`, control characters in the path escaped.
fn refuse(path: &Path, problem: impl Into<String>) -> Failure {
    Failure::input(FileError {
        path: path.to_path_buf(),
        problem: problem.into(),
    })
}

/// A one-line runtime failure about `path` (the disk filled up, a rename failed).
fn failed(path: &Path, problem: impl Into<String>) -> Failure {
    Failure::runtime(FileError {
        path: path.to_path_buf(),
        problem: problem.into(),
    })
}

/// What makes two paths the same file: device and inode on unix, the canonical path
/// elsewhere.
#[derive(Clone, Debug, PartialEq, Eq)]
struct FileId(#[cfg(unix)] (u64, u64), #[cfg(not(unix))] PathBuf);

/// The identity of the existing file `path`, whose metadata (symlinks followed) is `meta`.
fn file_id(meta: &fs::Metadata, path: &Path) -> FileId {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let _ = path;
        FileId((meta.dev(), meta.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        FileId(fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()))
    }
}

/// A file the command reads, as found before any work.
struct Input<'a> {
    /// Its flag (`--pred`).
    flag: &'a str,
    /// Its path as given.
    path: &'a Path,
    /// Its canonical path, where it exists.
    canonical: Option<PathBuf>,
    /// Its identity, where it exists.
    id: Option<FileId>,
}

impl<'a> Input<'a> {
    fn new(flag: &'a str, path: &'a Path) -> Self {
        let id = fs::metadata(path).ok().map(|m| file_id(&m, path));
        Input {
            flag,
            path,
            canonical: fs::canonicalize(path).ok(),
            id,
        }
    }
}

/// An output located: where it will be renamed to, and what is there now.
struct Located<'a> {
    flag: &'a str,
    /// The path as given, for messages.
    shown: &'a Path,
    /// The canonical folder: `..` and symlinks of the folder resolved.
    dir: PathBuf,
    /// The file name, as given.
    name: std::ffi::OsString,
    /// `dir` joined with `name`: what is renamed over.
    dest: PathBuf,
    /// What the destination is now (symlinks followed), where it exists.
    existing: Option<fs::Metadata>,
    /// Its identity, where it exists.
    id: Option<FileId>,
}

/// Finds an output's folder and what is at its name now; refuses a path that is not a file
/// name, and a folder that does not exist.
fn locate<'a>(flag: &'a str, path: &'a Path) -> Result<Located<'a>, Failure> {
    // The last segment as written: `Path::components` would drop a trailing `.` or `/`.
    let raw = path.as_os_str().to_string_lossy();
    let last = raw
        .rsplit(std::path::is_separator)
        .next()
        .unwrap_or_default();
    let name = match path.components().next_back() {
        Some(Component::Normal(n)) if !matches!(last, "" | "." | "..") => n.to_os_string(),
        _ => {
            return Err(refuse(
                path,
                format!("cannot write {flag}: the path names a folder, not a file"),
            ));
        }
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let canonical = fs::canonicalize(dir).map_err(|e| {
        let problem = if e.kind() == io::ErrorKind::NotFound {
            format!("cannot write: directory {} does not exist", dir.display())
        } else {
            format!("cannot write: directory {}: {e}", dir.display())
        };
        refuse(path, problem)
    })?;
    if !canonical.is_dir() {
        return Err(refuse(
            path,
            format!("cannot write: {} is not a directory", dir.display()),
        ));
    }
    let dest = canonical.join(&name);
    let existing = match fs::metadata(&dest) {
        Ok(m) => Some(m),
        // Nothing there, or a dangling symlink (which the rename replaces).
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(refuse(path, format!("cannot write: {e}"))),
    };
    let id = existing.as_ref().map(|m| file_id(m, &dest));
    Ok(Located {
        flag,
        shown: path,
        dir: canonical,
        name,
        dest,
        existing,
        id,
    })
}

/// What kind of file that is not a regular file `t` is, in words.
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

/// Refuses a destination that exists and cannot be replaced by a file of ours: a directory,
/// anything but a regular file, a read-only file or one this process cannot open for writing;
/// and a folder that is read-only.
fn check_writable(o: &Located<'_>) -> Result<(), Failure> {
    if let Some(m) = &o.existing {
        if m.is_dir() {
            return Err(refuse(o.shown, "cannot write: it is a directory"));
        }
        if !m.is_file() {
            let kind = kind_of(&m.file_type());
            return Err(refuse(
                o.shown,
                format!("cannot write: it is {kind}, not a regular file"),
            ));
        }
        if m.permissions().readonly() {
            return Err(refuse(
                o.shown,
                "cannot write: the file exists and is read-only",
            ));
        }
        // Opened, not truncated: proves the file is writable by this process.
        if let Err(e) = fs::OpenOptions::new().write(true).open(&o.dest) {
            return Err(refuse(o.shown, format!("cannot write: {e}")));
        }
    }
    let dir_meta =
        fs::metadata(&o.dir).map_err(|e| refuse(o.shown, format!("cannot write: {e}")))?;
    if dir_meta.permissions().readonly() {
        return Err(refuse(
            o.shown,
            format!("cannot write: folder {} is read-only", o.dir.display()),
        ));
    }
    Ok(())
}

/// Refuses an output that is an input, and two outputs that are the same file.
fn check_identities(outs: &[Located<'_>], inputs: &[Input<'_>]) -> Result<(), Failure> {
    for (k, o) in outs.iter().enumerate() {
        for i in inputs {
            let same_file = o.id.is_some() && o.id == i.id;
            let same_path = i.canonical.as_ref() == Some(&o.dest);
            if same_file || same_path {
                return Err(refuse(
                    o.shown,
                    format!(
                        "{} would overwrite the input {} ({}): refusing to write an input",
                        o.flag,
                        i.flag,
                        i.path.display()
                    ),
                ));
            }
        }
        for other in &outs[..k] {
            if other.dest == o.dest || (o.id.is_some() && o.id == other.id) {
                return Err(refuse(
                    o.shown,
                    format!("{} and {} name the same file", other.flag, o.flag),
                ));
            }
        }
    }
    Ok(())
}

/// One output: its temporary file, created and registered, and where it goes.
pub(crate) struct Staged {
    /// The path as given, for messages.
    shown: PathBuf,
    /// The canonical folder joined with the file name.
    dest: PathBuf,
    /// The temporary file; `None` once committed or handed over.
    tmp: Option<NamedTempFile>,
}

/// The outputs of one command, in the order given: each with its temporary file.
pub(crate) struct Outputs(Vec<Staged>);

impl Outputs {
    /// No outputs.
    pub(crate) fn none() -> Self {
        Outputs(Vec::new())
    }

    /// The `k`-th output given to [`plan`].
    pub(crate) fn get(&mut self, k: usize) -> Option<&mut Staged> {
        self.0.get_mut(k)
    }
}

impl Staged {
    /// The temporary file, for writing; an error once committed.
    fn file(&mut self) -> Result<&mut fs::File, Failure> {
        match self.tmp.as_mut() {
            Some(t) => Ok(t.as_file_mut()),
            None => Err(failed(&self.shown, "internal error: written after commit")),
        }
    }

    /// Writes `arr` as `.npy` (C order) into the temporary file, flushed.
    pub(crate) fn write_npy(&mut self, arr: &ArrayD<f32>) -> Result<(), Failure> {
        let shown = self.shown.clone();
        let mut w = BufWriter::new(self.file()?);
        arr.as_standard_layout()
            .write_npy(&mut w)
            .map_err(|e| failed(&shown, format!("cannot write: {e}")))?;
        w.flush()
            .map_err(|e| failed(&shown, format!("cannot write: {e}")))
    }

    /// Writes `bytes` into the temporary file, flushed.
    pub(crate) fn write_bytes(&mut self, bytes: &[u8]) -> Result<(), Failure> {
        let shown = self.shown.clone();
        let f = self.file()?;
        f.write_all(bytes)
            .and_then(|()| f.flush())
            .map_err(|e| failed(&shown, format!("cannot write: {e}")))
    }

    /// The temporary file's path (for tests of the registry).
    #[cfg(test)]
    fn tmp_path(&self) -> Option<&Path> {
        self.tmp.as_ref().map(|t| t.path())
    }
}

impl Drop for Staged {
    /// Removes the temporary file unless it was committed, and unregisters it.
    fn drop(&mut self) {
        if let Some(t) = self.tmp.take() {
            let mut reg = temps();
            let p = t.path().to_path_buf();
            drop(t); // NamedTempFile removes its file
            reg.retain(|q| *q != p);
        }
    }
}

/// Checks every output (`(flag, path)`) against the inputs (`(flag, path)`) and each other,
/// then creates each one's temporary file in its folder (which proves the folder writable),
/// registered for the signal handler. Everything is refused with exit 2 before any work.
pub(crate) fn plan(
    outputs: &[(&str, &Path)],
    inputs: &[(&str, &Path)],
) -> Result<Outputs, Failure> {
    if outputs.is_empty() {
        return Ok(Outputs::none());
    }
    let located = outputs
        .iter()
        .map(|&(flag, path)| locate(flag, path))
        .collect::<Result<Vec<_>, _>>()?;
    let inputs: Vec<Input<'_>> = inputs.iter().map(|&(f, p)| Input::new(f, p)).collect();
    check_identities(&located, &inputs)?;
    for o in &located {
        check_writable(o)?;
    }
    install_signal_handler()?;
    let mut staged = Vec::with_capacity(located.len());
    for o in &located {
        staged.push(create_temp(o)?);
    }
    Ok(Outputs(staged))
}

/// The temporary file's name prefix: `.NAME.` with NAME cut to 100 characters, so that the
/// whole name stays within every file system's limit.
fn temp_prefix(name: &std::ffi::OsStr) -> String {
    let name: String = name.to_string_lossy().chars().take(100).collect();
    format!(".{name}.")
}

/// Creates and registers `o`'s temporary file: exclusively, under an unpredictable name, in
/// the destination's folder, readable as a new file would be (`0666` less the umask).
fn create_temp(o: &Located<'_>) -> Result<Staged, Failure> {
    let prefix = temp_prefix(&o.name);
    let mut b = tempfile::Builder::new();
    b.prefix(&prefix).suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        b.permissions(fs::Permissions::from_mode(0o666));
    }
    let mut reg = temps();
    let tmp = b.tempfile_in(&o.dir).map_err(|e| {
        refuse(
            o.shown,
            format!(
                "cannot write: cannot create a file in folder {}: {e}",
                o.dir.display()
            ),
        )
    })?;
    reg.push(tmp.path().to_path_buf());
    Ok(Staged {
        shown: o.shown.to_path_buf(),
        dest: o.dest.clone(),
        tmp: Some(tmp),
    })
}

/// Flushes every output's temporary file to disk, then renames each into place, in order.
/// A signal waits until the renames are done. If a flush fails, nothing is renamed; if a
/// rename fails (the folder vanished), the outputs after it are removed and the error says
/// which were already in place.
pub(crate) fn commit(mut outputs: Outputs) -> Result<(), Failure> {
    for s in &mut outputs.0 {
        let shown = s.shown.clone();
        s.file()?
            .sync_all()
            .map_err(|e| failed(&shown, format!("cannot write: {e}")))?;
    }
    let mut reg = temps();
    let files: Vec<(NamedTempFile, PathBuf, PathBuf)> = outputs
        .0
        .iter_mut()
        .filter_map(|s| s.tmp.take().map(|t| (t, s.dest.clone(), s.shown.clone())))
        .collect();
    drop(outputs); // each without its file now: their Drop does nothing
    for (t, ..) in &files {
        reg.retain(|q| q != t.path());
    }
    let mut done: Vec<String> = Vec::new();
    let mut result = Ok(());
    for (t, dest, shown) in files {
        if result.is_err() {
            drop(t); // removes it
            continue;
        }
        match t.persist(&dest) {
            Ok(_) => done.push(shown.display().to_string()),
            Err(e) => {
                let already = if done.is_empty() {
                    String::new()
                } else {
                    format!(" ({} already written)", done.join(", "))
                };
                result = Err(failed(
                    &shown,
                    format!("cannot write: {}{already}", e.error),
                ));
            }
        }
    }
    drop(reg);
    result
}

/// Removes every registered temporary file (the signal handler's work).
fn remove_all(reg: &[PathBuf]) {
    for p in reg {
        let _ = fs::remove_file(p);
    }
}

/// Installs, once, a handler of SIGINT, SIGTERM and SIGHUP: a thread that removes every
/// registered temporary file, then exits with 128 + the signal's number without running
/// destructors or `atexit` handlers (`_exit`: the GPU driver's threads may be mid-call).
fn install_signal_handler() -> Result<(), Failure> {
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            #[cfg(unix)]
            {
                use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
                let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
                    .map_err(|e| format!("cannot install the signal handler: {e}"))?;
                std::thread::Builder::new()
                    .name("wgpu-loss-signals".into())
                    .spawn(move || {
                        if let Some(sig) = signals.forever().next() {
                            let reg = temps();
                            remove_all(&reg);
                            signal_hook::low_level::exit(128 + sig);
                        }
                    })
                    .map(drop)
                    .map_err(|e| format!("cannot start the signal handler: {e}"))
            }
            #[cfg(not(unix))]
            {
                Ok(())
            }
        })
        .clone()
        .map_err(Failure::runtime)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    /// A planned output's temporary file exists and is registered until the output is
    /// dropped, then is gone from the folder and the registry.
    #[test]
    fn dropped_outputs_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let g = dir.path().join("g.npy");
        let mut outs = plan(&[("--grad-out", &g)], &[]).unwrap();
        let tmp = outs.get(0).unwrap().tmp_path().unwrap().to_path_buf();
        assert!(tmp.exists());
        assert!(temps().contains(&tmp));
        let name = tmp.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with(".g.npy.") && name.ends_with(".tmp"),
            "{name}"
        );
        drop(outs);
        assert!(!tmp.exists());
        assert!(!temps().contains(&tmp));
        assert!(names(dir.path()).is_empty());
    }

    /// Committed outputs are in place with their contents, and nothing else is left.
    #[test]
    fn commit_renames_every_output() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.json"), dir.path().join("b.svg"));
        fs::write(&b, "old").unwrap();
        let mut outs = plan(&[("--json", &a), ("--plot", &b)], &[]).unwrap();
        outs.get(0).unwrap().write_bytes(b"[]\n").unwrap();
        outs.get(1).unwrap().write_bytes(b"<svg/>").unwrap();
        commit(outs).unwrap();
        assert_eq!(fs::read_to_string(&a).unwrap(), "[]\n");
        assert_eq!(fs::read_to_string(&b).unwrap(), "<svg/>");
        assert_eq!(names(dir.path()), ["a.json", "b.svg"]);
    }

    /// `sub/../x` and `x` are one file; an output named like an input through `..` is the
    /// input.
    #[test]
    fn identity_sees_through_dot_dot() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::create_dir(d.join("sub")).unwrap();
        fs::write(d.join("in.npy"), "x").unwrap();
        let (x, y) = (d.join("x.npy"), d.join("sub/../x.npy"));
        let e = plan(&[("--grad-out", &x), ("--loss-out", &y)], &[])
            .err()
            .unwrap();
        assert_eq!(e.code, 2);
        assert!(e.message.contains("name the same file"), "{}", e.message);
        let input = d.join("in.npy");
        let out = d.join("sub/../in.npy");
        let e = plan(&[("--grad-out", &out)], &[("--pred", &input)])
            .err()
            .unwrap();
        assert!(
            e.message.contains("would overwrite the input --pred"),
            "{}",
            e.message
        );
        assert_eq!(names(d), ["in.npy", "sub"]);
    }

    /// Paths that end in `..`, `.` or a separator name no file.
    #[test]
    fn folder_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for p in ["..", ".", "sub/..", "x.npy/", "x.npy/."] {
            let p = dir.path().join(p);
            let e = plan(&[("--grad-out", &p)], &[]).err().unwrap();
            assert_eq!(e.code, 2, "{}", p.display());
        }
    }
}
