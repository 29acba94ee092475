//! Reads the text of a stunnel-style file into sections of `key = value` entries, each with the
//! line it came from.
//!
//! rust-ini does the INI parsing proper (it keeps repeated keys and repeated sections); it
//! reports no line numbers for entries, so a light scan of the same text pairs every entry with
//! its line. Nothing here knows what an option means.

use std::path::Path;
use std::sync::Arc;

use ini::{Ini, ParseOption};

/// One `key = value` line.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The key as written (trimmed).
    pub key: String,
    /// The value as written (trimmed; backslashes kept).
    pub value: String,
    /// 1-based line number.
    pub line: usize,
    /// The `include`d file it came from; `None`: the main file.
    pub file: Option<Arc<Path>>,
}

/// One `[name]` section, or the global part before the first section.
#[derive(Debug, Clone)]
pub struct Section {
    /// The section name, trimmed; `None` for the global part.
    pub name: Option<String>,
    /// The line of the `[name]` header (0 for the global part).
    pub line: usize,
    /// The entries in file order.
    pub entries: Vec<Entry>,
    /// The `include`d file it came from; `None`: the main file.
    pub file: Option<Arc<Path>>,
}

/// A syntax error, with the line it was found on.
#[derive(Debug, Clone)]
pub struct SyntaxError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// The largest config file read: far above any real one, and a bound on what a wrong path
/// (a log file, a device) can make retunnel load.
const MAX_FILE: u64 = 1 << 20;

/// The longest section name: it names the service in every log line and metric label.
pub const MAX_SECTION_NAME: usize = 255;

/// How much of a name or value a message quotes.
const SHOWN: usize = 64;

/// `text` as a message quotes it: whole when short, else its first 64 characters, "…" and its
/// length (a 900 KB value pasted by mistake must not come back whole in the error).
pub fn shown(text: &str) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(SHOWN) {
        None => text.into(),
        Some((cut, _)) => format!("{}… ({} bytes)", &text[..cut], text.len()).into(),
    }
}

/// Reads a config file as text: a regular file (not a device or a pipe, which could be
/// endless), at most 1 MiB, in UTF-8. The error is a sentence without the path.
pub fn read_file(path: &std::path::Path) -> Result<String, String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    // Without O_NONBLOCK, opening a FIFO waits for a writer: forever, for `check --offline`.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| format!("cannot read it: {e}"))?;
    let meta = file.metadata().map_err(|e| format!("cannot read it: {e}"))?;
    if !meta.is_file() {
        return Err("is not a regular file; give the path of the configuration file".into());
    }
    if meta.len() > MAX_FILE {
        return Err(format!(
            "is {} bytes, more than a configuration file can be ({MAX_FILE}); check the path",
            meta.len()
        ));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read it: {e}"))?;
    String::from_utf8(bytes).map_err(|e| not_utf8(e.as_bytes(), e.utf8_error().valid_up_to()))
}

/// Where the first byte that is not UTF-8 is, by line and column as an editor shows them.
fn not_utf8(bytes: &[u8], at: usize) -> String {
    let before = &bytes[..at];
    let line = 1 + before.iter().filter(|b| **b == b'\n').count();
    let column = 1 + before.iter().rev().take_while(|b| **b != b'\n').count();
    format!(
        "not UTF-8 text: line {line}, column {column} holds byte 0x{:02x}; save the file as UTF-8 (`iconv -f latin1 -t utf-8` converts a Latin-1 one)",
        bytes[at]
    )
}

/// Strips a UTF-8 byte-order mark, turns CRLF and lone CR line ends into LF, and drops the
/// blanks that start a line. stunnel skips them before comments, options and section headers
/// alike (indented files come from YAML ConfigMaps, heredocs and templates); left in, rust-ini
/// would take an indented comment for the continuation of the line above.
pub fn normalize(text: &str) -> String {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        out.push_str(line.trim_start_matches([' ', '\t']));
    }
    out
}

/// Splits normalized text into the global part (always first) and its sections.
pub fn read(text: &str) -> Result<Vec<Section>, SyntaxError> {
    let layout = scan(text)?;
    let ini = Ini::load_from_str_opt(
        text,
        ParseOption {
            enabled_quote: false,
            enabled_escape: false,
            enabled_indented_mutiline_value: false,
            enabled_preserve_key_leading_whitespace: false,
        },
    )
    .map_err(|e| SyntaxError {
        line: e.line + 1,
        message: e.msg.to_string(),
    })?;

    let mut sections = Vec::with_capacity(layout.len());
    let mut ini_sections = ini.iter().filter(|(name, props)| name.is_some() || !props.is_empty());
    for (i, (name, line, key_lines)) in layout.into_iter().enumerate() {
        // rust-ini lists the general section only when it has entries.
        let props = if i == 0 && key_lines.is_empty() {
            None
        } else {
            ini_sections.next().map(|(_, p)| p)
        };
        let pairs: Vec<(&str, &str)> = props.map(|p| p.iter().collect()).unwrap_or_default();
        if pairs.len() != key_lines.len() {
            return Err(SyntaxError {
                line: line.max(1),
                message: "this section could not be read line by line; check for stray characters".into(),
            });
        }
        let entries = pairs
            .into_iter()
            .zip(key_lines)
            .map(|((k, v), line)| Entry {
                key: k.trim().to_string(),
                value: v.trim().to_string(),
                line,
                file: None,
            })
            .collect();
        sections.push(Section {
            name,
            line,
            entries,
            file: None,
        });
    }
    Ok(sections)
}

/// Section headers and key lines, in order, with their line numbers; also the syntax checks
/// rust-ini is lenient about (a line that is neither a comment, a header nor `key = value`).
type Layout = Vec<(Option<String>, usize, Vec<usize>)>;

fn scan(text: &str) -> Result<Layout, SyntaxError> {
    let mut layout: Layout = vec![(None, 0, Vec::new())];
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let t = raw.trim();
        if t.is_empty() || t.starts_with(';') || t.starts_with('#') {
            continue;
        }
        if let Some(rest) = t.strip_prefix('[') {
            let Some(name) = rest.strip_suffix(']') else {
                return Err(SyntaxError {
                    line,
                    message: format!("`{}` opens a section but has no closing `]`", shown(t)),
                });
            };
            let name = name.trim();
            if name.is_empty() {
                return Err(SyntaxError {
                    line,
                    message: "a section needs a name, as in `[redis]`".into(),
                });
            }
            if name.len() > MAX_SECTION_NAME {
                return Err(SyntaxError {
                    line,
                    message: format!(
                        "section name `{}` is longer than {MAX_SECTION_NAME} bytes; give the section a short name",
                        shown(name)
                    ),
                });
            }
            layout.push((Some(name.to_string()), line, Vec::new()));
            continue;
        }
        match t.find('=') {
            Some(0) => {
                return Err(SyntaxError {
                    line,
                    message: format!("`{}` has no option name before `=`", shown(t)),
                });
            }
            Some(eq) if !t[..eq].contains(':') => layout.last_mut().expect("never empty").2.push(line),
            _ => {
                return Err(SyntaxError {
                    line,
                    message: format!(
                        "`{}` is not `option = value`, a `[section]` header or a comment",
                        shown(t)
                    ),
                });
            }
        }
    }
    Ok(layout)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_str(s: &str) -> Vec<Section> {
        read(&normalize(s)).unwrap()
    }

    #[test]
    fn pairs_entries_with_lines_and_keeps_repeats() {
        let s = read_str("; c\nfips = no\noptions = A\noptions=B\n\n[one]\n# c\n connect = x:1 \nconnect=y:2\n[one]\n");
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].name, None);
        let g: Vec<_> = s[0]
            .entries
            .iter()
            .map(|e| (e.key.as_str(), e.value.as_str(), e.line))
            .collect();
        assert_eq!(g, [("fips", "no", 2), ("options", "A", 3), ("options", "B", 4)]);
        assert_eq!(s[1].name.as_deref(), Some("one"));
        assert_eq!(s[1].line, 6);
        let e: Vec<_> = s[1].entries.iter().map(|e| (e.value.as_str(), e.line)).collect();
        assert_eq!(e, [("x:1", 8), ("y:2", 9)]);
        assert_eq!(s[2].entries.len(), 0);
    }

    #[test]
    fn bom_crlf_blanks_and_backslashes() {
        let s = read_str("\u{feff}[ svc ]\r\nCAfile = C:\\certs\\ca.pem \r\n");
        assert_eq!(s[1].name.as_deref(), Some("svc"));
        assert_eq!(s[1].entries[0].value, "C:\\certs\\ca.pem");
        assert_eq!(s[1].entries[0].line, 2);
    }

    /// As stunnel's own test configs write them (`    ;cert = …`), and YAML ConfigMaps.
    #[test]
    fn leading_blanks_before_comments_options_and_headers() {
        let s = read_str(
            "  debug = 7\n\t[svc]\n    # an indented comment\n    ;cert = x.pem\n  accept = 1\n\t connect = h:1\n   [two]\n accept = 2\n",
        );
        assert_eq!(s[0].entries[0].key, "debug");
        assert_eq!(s[1].name.as_deref(), Some("svc"));
        let e: Vec<_> = s[1]
            .entries
            .iter()
            .map(|e| (e.key.as_str(), e.value.as_str(), e.line))
            .collect();
        assert_eq!(e, [("accept", "1", 5), ("connect", "h:1", 6)]);
        assert_eq!((s[2].name.as_deref(), s[2].line), (Some("two"), 7));
        assert_eq!(s[2].entries[0].line, 8);
    }

    #[test]
    fn empty_global_part() {
        let s = read_str("[a]\naccept = 1\n");
        assert!(s[0].entries.is_empty());
        assert_eq!(s[1].entries[0].value, "1");
    }

    #[test]
    fn syntax_errors_name_the_line() {
        for (text, line) in [("[a]\nclient yes\n", 2), ("[a\n", 1), ("x=1\n[]\n", 2), ("= 3\n", 1)] {
            let e = read(&normalize(text)).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {}", e.message);
        }
    }
}
