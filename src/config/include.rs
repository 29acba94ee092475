//! `include = DIR`: every `*.conf` file in DIR, in name order, as stunnel reads them. An
//! included file's global options join the global part; its sections follow the global part,
//! before the including file's own sections. Every entry keeps the file it came from, so that
//! messages name the included file and line. Relative directories start from the including
//! file's directory (stunnel uses the working directory, which a service manager sets to `/`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::Warning;
use super::lines::{self, Section};

/// How deep includes may nest: deeper is almost surely a directory that includes itself.
const MAX_DEPTH: usize = 8;

/// Replaces every global `include` entry by the files it names, recursively.
pub fn expand(
    sections: Vec<Section>,
    main: &Path,
    depth: usize,
    problems: &mut Vec<String>,
    warnings: &mut Vec<Warning>,
) -> Vec<Section> {
    let mut sections = sections.into_iter();
    let Some(mut global) = sections.next() else {
        return Vec::new();
    };
    let mut included = Vec::new();
    for entry in std::mem::take(&mut global.entries) {
        if !entry.key.eq_ignore_ascii_case("include") {
            global.entries.push(entry);
            continue;
        }
        let from = entry.file.as_deref().unwrap_or(main);
        let here = format!("{}:{}: include", from.display(), entry.line);
        if depth >= MAX_DEPTH {
            problems.push(format!(
                "{here}: includes nest more than {MAX_DEPTH} deep; does a directory include itself?"
            ));
            continue;
        }
        let dir = resolve(from, &entry.value);
        let (files, skipped) = match conf_files(&dir) {
            Ok(f) => f,
            Err(e) => {
                problems.push(format!(
                    "{here}: cannot read directory {}: {e}; {}",
                    dir.display(),
                    path_hint(from, &entry.value)
                ));
                continue;
            }
        };
        for (path, why) in skipped {
            warnings.push(Warning(format!("{here}: skipped {}: {why}", path.display())));
        }
        if files.is_empty() {
            warnings.push(Warning(format!(
                "{here}: {} holds no readable *.conf file",
                dir.display()
            )));
        }
        for file in files {
            let Some(parts) = read(&file, problems) else { continue };
            let mut parts = expand(parts, main, depth + 1, problems, warnings).into_iter();
            if let Some(g) = parts.next() {
                global.entries.extend(g.entries);
            }
            included.extend(parts);
        }
    }
    std::iter::once(global).chain(included).chain(sections).collect()
}

/// What to check about an `include` path that cannot be read: where a relative one starts.
fn path_hint(from: &Path, dir: &str) -> String {
    if Path::new(dir).is_absolute() {
        return "check the path".into();
    }
    let base = from
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    format!(
        "check the path (a relative one starts from the directory of {}: {})",
        from.display(),
        base.display()
    )
}

fn resolve(from: &Path, dir: &str) -> PathBuf {
    let dir = Path::new(dir);
    match from.parent() {
        Some(parent) if dir.is_relative() => parent.join(dir),
        _ => dir.to_path_buf(),
    }
}

/// A `*.conf` entry that is not read, and why.
type Skipped = (PathBuf, String);

/// The `*.conf` files of `dir`, sorted by name, and the `*.conf` entries that are not
/// regular files (a FIFO, a device, a directory, a dangling link or a symlink loop), each with
/// why it is skipped, so that the warning names them instead of an empty directory.
fn conf_files(dir: &Path) -> std::io::Result<(Vec<PathBuf>, Vec<Skipped>)> {
    let (mut files, mut skipped) = (Vec::new(), Vec::new());
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "conf") {
            continue;
        }
        match not_regular(&path) {
            None => files.push(path),
            Some(why) => skipped.push((path, why)),
        }
    }
    files.sort();
    skipped.sort();
    Ok((files, skipped))
}

/// Why `path` is not a regular file to read (following symlinks); `None` when it is one.
fn not_regular(path: &Path) -> Option<String> {
    use std::os::unix::fs::FileTypeExt;
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Some("it is a symlink loop; point the link at a file".into());
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Some("it is a symlink to nothing; point the link at a file or remove it".into());
        }
        Err(e) => return Some(format!("cannot read it: {e}")),
    };
    let t = meta.file_type();
    let what = if t.is_file() {
        return None;
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    };
    Some(format!(
        "it is {what}, not a regular file; only regular *.conf files are read"
    ))
}

/// Reads one included file into sections tagged with its path.
fn read(file: &Path, problems: &mut Vec<String>) -> Option<Vec<Section>> {
    let text = match lines::read_file(file) {
        Ok(t) => t,
        Err(why) => {
            problems.push(format!("included file {}: {why}", file.display()));
            return None;
        }
    };
    let mut sections = match lines::read(&lines::normalize(&text)) {
        Ok(s) => s,
        Err(e) => {
            problems.push(format!("{}:{}: {}", file.display(), e.line, e.message));
            return None;
        }
    };
    let tag: Arc<Path> = Arc::from(file);
    for s in &mut sections {
        s.file = Some(tag.clone());
        for e in &mut s.entries {
            e.file = Some(tag.clone());
        }
    }
    Some(sections)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tester finding 17: an absolute path got "(a relative one starts from )".
    #[test]
    fn the_path_hint_says_where_a_relative_path_starts() {
        assert_eq!(
            path_hint(Path::new("tunnel.conf"), "/etc/retunnel/conf.d"),
            "check the path"
        );
        assert_eq!(
            path_hint(Path::new("tunnel.conf"), "conf.d"),
            "check the path (a relative one starts from the directory of tunnel.conf: .)"
        );
        assert!(path_hint(Path::new("/etc/retunnel/tunnel.conf"), "conf.d").ends_with(": /etc/retunnel)"));
    }
}
