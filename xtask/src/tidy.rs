//! `cargo xtask tidy`: checks of the checkout itself that need no build (rust-analyzer's
//! `tidy` style), also run as a test so that README's test command runs them:
//!
//! - every `.rs` file starts with a `//!` module doc;
//! - no path in a `.rs` or `.toml` file leaves the repository: no mention of the project's
//!   reference folder beside the checkout (the fixtures live in `tests/fixtures`), and no
//!   relative path literal that climbs above the repository root (literals are taken relative
//!   to their package's folder, the one holding the nearest `Cargo.toml`; `#[path]` attributes
//!   and `.toml` strings relative to their own file's folder);
//! - a Markdown line `<!-- tidy: same-as PATH -->` right before a fenced code block pins the
//!   block to the file `PATH` (relative to the repository root): the block's content must equal
//!   the file's, ignoring one trailing newline.
//!
//! Files are those git knows (tracked, or untracked and not ignored); outside a git checkout,
//! every file outside `target*` and hidden folders. Each violation prints as
//! `path:line: message`.

use anyhow::{bail, Context, Result};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The reference folder that sits beside the project's own checkout, but not beside a user's
/// clone (spelled in two pieces so that this file does not mention it).
const SHARED: &str = concat!("..", "/shared");

/// The marker that pins a code block to a file.
const SAME_AS: &str = "<!-- tidy: same-as ";

/// One broken rule at one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Path relative to the repository root, with `/` separators.
    pub path: String,
    /// 1-based line number.
    pub line: usize,
    /// What is wrong, and what to do about it.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.path, self.line, self.message)
    }
}

fn violation(path: &str, line: usize, message: impl Into<String>) -> Violation {
    Violation {
        path: path.to_string(),
        line,
        message: message.into(),
    }
}

/// `cargo xtask tidy`: prints every violation and fails if there is one.
pub fn run(args: &[String]) -> Result<()> {
    if let Some(a) = args.first() {
        bail!("tidy takes no arguments (got `{a}`)");
    }
    let root = crate::root();
    let found = check_repo(&root)?;
    for v in &found {
        println!("{v}");
    }
    if !found.is_empty() {
        bail!("{} tidy violation(s)", found.len());
    }
    println!("tidy: ok");
    Ok(())
}

/// Runs every check on the checkout at `root`.
pub fn check_repo(root: &Path) -> Result<Vec<Violation>> {
    let mut out = Vec::new();
    for rel in repo_files(root)? {
        let ext = rel.rsplit_once('.').map_or("", |(_, e)| e);
        if !matches!(ext, "rs" | "toml" | "md") {
            continue;
        }
        let path = root.join(&rel);
        // Listed but deleted in the working tree (a move in progress): nothing to check.
        let Ok(text) = std::fs::read_to_string(&path) else {
            if path.is_file() {
                out.push(violation(&rel, 1, "not valid UTF-8"));
            }
            continue;
        };
        match ext {
            "rs" => {
                out.extend(check_module_doc(&rel, &text));
                let package = package_depth(root, &rel);
                out.extend(check_rust_paths(&rel, &text, package, dir_depth(&rel)));
            }
            "toml" => out.extend(check_toml_paths(&rel, &text, dir_depth(&rel))),
            _ => out.extend(check_pinned_blocks(&rel, &text, |p| {
                std::fs::read_to_string(root.join(p)).ok()
            })),
        }
    }
    Ok(out)
}

/// The files to check, relative to `root`, sorted.
fn repo_files(root: &Path) -> Result<Vec<String>> {
    let git = Command::new("git")
        .current_dir(root)
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .output();
    let mut files: Vec<String> = match git {
        Ok(o) if o.status.success() => String::from_utf8(o.stdout)
            .context("git ls-files printed a path that is not UTF-8")?
            .split('\0')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        // Not a git checkout (a source archive): walk the folder.
        _ => {
            let mut v = Vec::new();
            walk(root, root, &mut v)?;
            v
        }
    };
    files.sort();
    files.dedup();
    Ok(files)
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        let path = e.path();
        if e.file_type()?.is_dir() {
            if !name.starts_with('.') && !name.starts_with("target") {
                walk(root, &path, out)?;
            }
        } else if let Ok(rel) = path.strip_prefix(root) {
            out.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
    Ok(())
}

/// How many folders deep the folder of file `rel` is (`a/b/c.rs` → 2).
fn dir_depth(rel: &str) -> usize {
    rel.matches('/').count()
}

/// How many folders deep the package holding `rel` is: its nearest ancestor folder with a
/// `Cargo.toml` (the repository root, depth 0, when none is nearer).
fn package_depth(root: &Path, rel: &str) -> usize {
    let mut dir = PathBuf::from(rel);
    while dir.pop() {
        if dir.as_os_str().is_empty() {
            break;
        }
        if root.join(&dir).join("Cargo.toml").is_file() {
            return dir.components().count();
        }
    }
    0
}

/// Check (a): the file's first line is a `//!` module doc.
pub fn check_module_doc(path: &str, text: &str) -> Option<Violation> {
    let first = text.lines().next().unwrap_or("");
    (!first.starts_with("//!")).then(|| {
        violation(
            path,
            1,
            "no `//!` module doc on the first line (say in a line what the file is for)",
        )
    })
}

/// How many folders above its start the relative path `p` reaches (`../../a` → 2,
/// `a/../../b` → 1, `/abs/..` → 0: absolute paths are not relative to anything here).
pub fn climb(p: &str) -> usize {
    if p.starts_with('/') {
        return 0;
    }
    let (mut depth, mut lowest) = (0i64, 0i64);
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                depth -= 1;
                lowest = lowest.min(depth);
            }
            _ => depth += 1,
        }
    }
    (-lowest) as usize
}

/// Whether a string literal looks like a path worth checking (no spaces, quotes or URLs).
fn path_like(s: &str) -> bool {
    !s.is_empty() && !s.contains(char::is_whitespace) && !s.contains('"') && !s.contains("://")
}

fn shared_violation(path: &str, line: usize) -> Violation {
    violation(
        path,
        line,
        format!(
            "mentions `{SHARED}`, which a clone does not have: use (or cite) the copy in \
             `tests/fixtures/` (see its README)"
        ),
    )
}

/// Check (b) on a Rust file: every line mentioning the reference folder beside the checkout
/// (code or comment), and every relative path literal that climbs above the repository root.
/// `package_depth` is the depth of the package folder (the base of `CARGO_MANIFEST_DIR`-relative
/// paths) and `file_depth` that of the file's folder (the base of `#[path]`).
pub fn check_rust_paths(
    path: &str,
    text: &str,
    package_depth: usize,
    file_depth: usize,
) -> Vec<Violation> {
    let mut out: Vec<Violation> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains(SHARED))
        .map(|(i, _)| shared_violation(path, i + 1))
        .collect();
    for lit in rust_string_literals(text) {
        if !path_like(&lit.value) || lit.value.contains(SHARED) {
            continue;
        }
        let base = if lit.path_attr {
            file_depth
        } else {
            package_depth
        };
        let up = climb(&lit.value);
        if up > base {
            let from = if lit.path_attr {
                "this file's folder"
            } else {
                "the package folder"
            };
            out.push(violation(
                path,
                lit.line,
                format!(
                    "`{}` climbs {up} folder(s) above {from}, {} above the repository root: \
                     keep test and source paths inside the checkout",
                    lit.value,
                    up - base
                ),
            ));
        }
    }
    out
}

/// Check (b) on a TOML file: the reference folder, and quoted relative paths that climb above
/// the repository root from the file's own folder (`file_depth` deep).
pub fn check_toml_paths(path: &str, text: &str, file_depth: usize) -> Vec<Violation> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.contains(SHARED) {
            out.push(shared_violation(path, i + 1));
            continue;
        }
        for value in toml_strings(line) {
            let up = climb(value);
            if path_like(value) && up > file_depth {
                out.push(violation(
                    path,
                    i + 1,
                    format!(
                        "`{value}` climbs {up} folder(s) above this file's folder, {} above the \
                         repository root: keep paths inside the checkout",
                        up - file_depth
                    ),
                ));
            }
        }
    }
    out
}

/// The quoted strings of one TOML line (basic `"…"` and literal `'…'`), before any comment.
fn toml_strings(line: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(start) = rest.find(['"', '\'', '#']) {
        let quote = rest.as_bytes()[start];
        if quote == b'#' {
            break;
        }
        let body = &rest[start + 1..];
        let mut end = None;
        let mut escaped = false;
        for (j, c) in body.char_indices() {
            if escaped {
                escaped = false;
            } else if c == '\\' && quote == b'"' {
                escaped = true;
            } else if c as u32 == u32::from(quote) {
                end = Some(j);
                break;
            }
        }
        let Some(end) = end else { break };
        out.push(&body[..end]);
        rest = &body[end + 1..];
    }
    out
}

/// A string literal of Rust source, as written (escapes not processed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Literal {
    /// 1-based line where the literal starts.
    pub line: usize,
    /// The text between the quotes.
    pub value: String,
    /// Whether it is the value of a `#[path = …]` attribute.
    pub path_attr: bool,
}

/// The string literals of Rust source `text`, outside comments: plain, byte, C and raw strings.
/// Char literals and lifetimes are told apart well enough that `'"'` opens no string.
pub fn rust_string_literals(text: &str) -> Vec<Literal> {
    let b = text.as_bytes();
    let (mut i, mut line) = (0usize, 1usize);
    let mut out = Vec::new();
    let newlines = |s: &[u8]| s.iter().filter(|&&c| c == b'\n').count();
    while i < b.len() {
        let c = b[i];
        if c == b'\n' {
            line += 1;
            i += 1;
        } else if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let mut depth = 1;
            i += 2;
            while i < b.len() && depth > 0 {
                if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                    depth -= 1;
                    i += 2;
                } else {
                    line += usize::from(b[i] == b'\n');
                    i += 1;
                }
            }
        } else if c == b'\'' {
            // A char literal ('x', '\n', '\'', 'é') or a lifetime / label ('a).
            if b.get(i + 1) == Some(&b'\\') {
                let mut j = i + 3;
                while j < b.len() && b[j] != b'\'' && b[j] != b'\n' {
                    j += 1;
                }
                i = j + 1;
            } else if let Some(ch) = text[i + 1..].chars().next() {
                let after = i + 1 + ch.len_utf8();
                i = if b.get(after) == Some(&b'\'') {
                    after + 1
                } else {
                    i + 1
                };
            } else {
                i += 1;
            }
        } else if c == b'"' {
            let start = i + 1;
            let mut j = start;
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            let end = j.min(b.len());
            out.push(literal(text, i, line, &text[start..end]));
            line += newlines(&b[start..end]);
            i = end + 1;
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            let word = &text[start..i];
            if matches!(word, "r" | "br" | "cr") {
                let mut hashes = 0;
                while b.get(i + hashes) == Some(&b'#') {
                    hashes += 1;
                }
                if b.get(i + hashes) == Some(&b'"') {
                    let body = i + hashes + 1;
                    let closing = format!("\"{}", "#".repeat(hashes));
                    let end = text[body..].find(&closing).map_or(b.len(), |k| body + k);
                    out.push(literal(text, start, line, &text[body..end]));
                    line += newlines(&b[body..end]);
                    i = (end + closing.len()).min(b.len());
                }
            }
            // `b"…"` and `c"…"`: the quote is handled as a plain string next.
        } else {
            i += 1;
        }
    }
    out
}

fn literal(text: &str, at: usize, line: usize, value: &str) -> Literal {
    let line_start = text[..at].rfind('\n').map_or(0, |k| k + 1);
    let before = text[line_start..at].trim_end();
    let path_attr = before.contains("#[")
        && before
            .strip_suffix('=')
            .is_some_and(|b| b.trim_end().ends_with("path"));
    Literal {
        line,
        value: value.to_string(),
        path_attr,
    }
}

/// Check (c): every `<!-- tidy: same-as PATH -->` line of Markdown file `path` is followed by a
/// fenced code block whose content equals `read(PATH)` (ignoring one trailing newline).
/// `read` returns `None` for a missing file.
pub fn check_pinned_blocks(
    path: &str,
    text: &str,
    read: impl Fn(&str) -> Option<String>,
) -> Vec<Violation> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let t = l.trim();
        if !t.starts_with("<!-- tidy:") {
            continue;
        }
        let here = |m: String| violation(path, i + 1, m);
        let Some(target) = t
            .strip_prefix(SAME_AS)
            .and_then(|r| r.strip_suffix("-->"))
            .map(str::trim)
            .filter(|p| !p.is_empty())
        else {
            out.push(here(format!(
                "unknown tidy marker `{t}` (the one known is `{SAME_AS}PATH -->`)"
            )));
            continue;
        };
        let Some((block, fence_line)) = fenced_block(&lines, i + 1) else {
            out.push(here(format!(
                "`same-as {target}` must be followed, on the next line, by a fenced code block \
                 (``` … ```) that is closed"
            )));
            continue;
        };
        let Some(file) = read(target) else {
            out.push(here(format!(
                "`same-as {target}`: no such file (the path is relative to the repository root)"
            )));
            continue;
        };
        let want = file.strip_suffix('\n').unwrap_or(&file);
        let want = want.strip_suffix('\r').unwrap_or(want);
        if block != want {
            let (doc_lines, file_lines): (Vec<&str>, Vec<&str>) =
                (block.split('\n').collect(), want.split('\n').collect());
            let k = doc_lines
                .iter()
                .zip(&file_lines)
                .take_while(|(a, b)| a.trim_end_matches('\r') == b.trim_end_matches('\r'))
                .count();
            let show = |v: &[&str]| v.get(k).map_or("(end)".to_string(), |s| format!("{s:?}"));
            out.push(violation(
                path,
                fence_line + 1 + k + 1,
                format!(
                    "the code block pinned to {target} differs from it at its line {}: the doc \
                     has {}, the file has {} (update one to match the other)",
                    k + 1,
                    show(&doc_lines),
                    show(&file_lines)
                ),
            ));
        }
    }
    out
}

/// The content of the fenced code block whose opening fence is `lines[at]`, and `at` itself;
/// `None` when `lines[at]` opens no block or the block is never closed.
fn fenced_block(lines: &[&str], at: usize) -> Option<(String, usize)> {
    let open = *lines.get(at)?;
    let indent = open.len() - open.trim_start_matches(' ').len();
    let fence = open.trim_start_matches(' ');
    let ch = fence.chars().next().filter(|c| *c == '`' || *c == '~')?;
    let n = fence.chars().take_while(|c| *c == ch).count();
    if n < 3 || indent > 3 {
        return None;
    }
    let mut body = Vec::new();
    for l in &lines[at + 1..] {
        let t = l.trim();
        if t.len() >= n && t.chars().all(|c| c == ch) {
            return Some((body.join("\n"), at));
        }
        let strip = (l.len() - l.trim_start_matches(' ').len()).min(indent);
        body.push(&l[strip..]);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_without_module_doc_is_reported_at_line_1() {
        assert_eq!(check_module_doc("a.rs", "//! Does a.\nfn a() {}\n"), None);
        let v = check_module_doc("src/b.rs", "// plain comment\nfn b() {}\n").unwrap();
        assert_eq!((v.path.as_str(), v.line), ("src/b.rs", 1));
        assert!(v.to_string().starts_with("src/b.rs:1: no `//!` module doc"));
        assert!(check_module_doc("c.rs", "").is_some());
        assert!(check_module_doc("d.rs", "\n//! Late.\n").is_some());
        assert!(check_module_doc("e.rs", "/// An item doc.\nfn e() {}\n").is_some());
    }

    /// `n` parent steps (`../..` for 2), built so that this file holds no climbing literal.
    fn up(n: usize) -> String {
        vec![".."; n].join("/")
    }

    #[test]
    fn climb_counts_folders_above_the_start() {
        assert_eq!(climb("tests/fixtures"), 0);
        assert_eq!(climb(&up(2)), 2);
        assert_eq!(climb(&format!("{}/tests/fixtures/x.json", up(2))), 2);
        assert_eq!(climb(&format!("a/{}/b", up(2))), 1);
        assert_eq!(climb("./a/./../.."), 1);
        assert_eq!(climb("/tmp/../.."), 0);
    }

    #[test]
    fn the_reference_folder_beside_the_checkout_is_reported_in_code_and_comments() {
        let src = format!(
            "//! Reads `{SHARED}/fixtures`.\n\nfn f() -> PathBuf {{\n    Path::new(env!(\"CARGO_MANIFEST_DIR\"))\n        .join(\"../../..{}/fixtures\")\n}}\n",
            &SHARED[2..]
        );
        let v = check_rust_paths("crates/x/tests/t.rs", &src, 2, 3);
        let at: Vec<usize> = v.iter().map(|v| v.line).collect();
        assert_eq!(at, [1, 5], "{v:?}");
        assert!(v[1].message.contains("tests/fixtures"), "{}", v[1]);
    }

    #[test]
    fn literals_climbing_above_the_root_are_reported_relative_to_their_base() {
        let src = "//! T.\nfn f() {\n    let ok = root.join(\"../../configs\");\n    \
                   let bad = root.join(\"../../../elsewhere/x.json\");\n    \
                   let joined = Path::new(\"a/../../../..\");\n}\n";
        let v = check_rust_paths("crates/x/src/lib.rs", src, 2, 3);
        assert_eq!(v.len(), 2, "{v:?}");
        assert_eq!((v[0].line, v[1].line), (4, 5));
        assert!(
            v[0].to_string().starts_with(
                "crates/x/src/lib.rs:4: `../../../elsewhere/x.json` climbs 3 folder(s) above the \
                 package folder, 1 above the repository root"
            ),
            "{}",
            v[0]
        );
        // The root package (depth 0): any climb leaves the repository.
        assert_eq!(check_rust_paths("tests/t.rs", src, 0, 1).len(), 3);
        // `#[path]` is relative to the file's own folder.
        let attr = "//! T.\n#[path = \"../../../tests/support/x.rs\"]\nmod x;\n";
        assert!(check_rust_paths("crates/x/tests/e2e.rs", attr, 2, 3).is_empty());
        let v = check_rust_paths("crates/x/e2e.rs", attr, 2, 2);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].message.contains("this file's folder"), "{}", v[0]);
    }

    #[test]
    fn comments_chars_and_text_are_not_path_literals() {
        let src = "//! `../../../x`\n// \"../../../y\"\n/* \"../../../z\" /* nested */ \"../../../w\" */\n\
                   fn f<'a>(s: &'a str) -> char { let _ = \"a sentence with ../../.. in it\"; '\"' }\n\
                   const Q: char = '\\'';\nconst R: &str = r#\"raw \"quoted\" ../../../r\"#;\n\
                   const S: &str = \"../../../s\";\n";
        let lits = rust_string_literals(src);
        let values: Vec<&str> = lits.iter().map(|l| l.value.as_str()).collect();
        assert_eq!(
            values[..2],
            [
                "a sentence with ../../.. in it",
                "raw \"quoted\" ../../../r"
            ]
        );
        assert_eq!(values[2], format!("{}/s", up(3)));
        assert_eq!(lits[2].line, 7);
        let v = check_rust_paths("crates/x/src/lib.rs", src, 2, 3);
        assert_eq!(v.iter().map(|v| v.line).collect::<Vec<_>>(), [7], "{v:?}");
    }

    #[test]
    fn toml_paths_are_relative_to_their_file() {
        let toml = "[dependencies]\na = { path = \"../a\" } # \"../../../../c\"\nb = { path = '../../../b' }\n";
        let v = check_toml_paths("crates/x/Cargo.toml", toml, 2);
        assert_eq!(v.iter().map(|v| v.line).collect::<Vec<_>>(), [3], "{v:?}");
        assert!(check_toml_paths("a/b/c/Cargo.toml", toml, 3).is_empty());
    }

    fn file(p: &str) -> Option<String> {
        (p == "examples/sel.rs").then(|| "fn rule() {\n    1\n}\n".to_string())
    }

    #[test]
    fn a_pinned_block_equal_to_its_file_passes() {
        let md = "# Plugins\n\n<!-- tidy: same-as examples/sel.rs -->\n```rust\nfn rule() {\n    1\n}\n```\n";
        assert_eq!(check_pinned_blocks("docs/p.md", md, file), []);
        // Indented fences (in a list item) are compared without their indentation.
        let md = "- item\n\n  <!-- tidy: same-as examples/sel.rs -->\n  ```rust\n  fn rule() {\n      1\n  }\n  ```\n";
        assert_eq!(check_pinned_blocks("docs/p.md", md, file), []);
    }

    #[test]
    fn a_stale_pinned_block_is_reported_at_its_first_differing_line() {
        let md = "<!-- tidy: same-as examples/sel.rs -->\n```rust\nfn rule() {\n    2\n}\n```\n";
        let v = check_pinned_blocks("docs/p.md", md, file);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].line, 4);
        assert!(
            v[0].to_string().starts_with(
                "docs/p.md:4: the code block pinned to examples/sel.rs differs from it at its \
                 line 2: the doc has \"    2\", the file has \"    1\""
            ),
            "{}",
            v[0]
        );
        // A block one line short.
        let md = "<!-- tidy: same-as examples/sel.rs -->\n```\nfn rule() {\n    1\n```\n";
        let v = check_pinned_blocks("docs/p.md", md, file);
        assert!(v[0].message.contains("the doc has (end)"), "{}", v[0]);
    }

    #[test]
    fn malformed_markers_are_reported() {
        let cases = [
            (
                "<!-- tidy: same-as examples/sel.rs -->\n\n```rust\nx\n```\n",
                "must be followed",
            ),
            (
                "<!-- tidy: same-as examples/sel.rs -->\n```rust\nfn rule() {\n",
                "must be followed",
            ),
            (
                "<!-- tidy: same-as examples/gone.rs -->\n```rust\nx\n```\n",
                "no such file",
            ),
            (
                "<!-- tidy: same-like x -->\n```\nx\n```\n",
                "unknown tidy marker",
            ),
        ];
        for (md, want) in cases {
            let v = check_pinned_blocks("docs/p.md", md, file);
            assert_eq!(v.len(), 1, "{md:?}: {v:?}");
            assert_eq!(v[0].line, 1);
            assert!(v[0].message.contains(want), "{md:?}: {}", v[0]);
        }
    }

    /// The checks on this checkout, so that `cargo test --workspace` runs them too.
    #[test]
    fn repository_is_tidy() {
        let found = check_repo(&crate::root()).unwrap();
        let list: Vec<String> = found.iter().map(|v| v.to_string()).collect();
        assert!(
            found.is_empty(),
            "cargo xtask tidy finds {} violation(s):\n{}",
            found.len(),
            list.join("\n")
        );
    }
}
