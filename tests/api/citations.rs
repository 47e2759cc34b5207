//! Citations that point nowhere fail the build. Comments and documents cite
//! either a file of this repository or the RFC or draft section that states
//! the rule, never a document that lives outside it; and every relative
//! Markdown link resolves to a file that exists and, with an `#anchor`, to a
//! heading of that file (GitHub's anchors). Every problem is reported at
//! once, with its file and line.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Directories never scanned: build output and git's own files.
const SKIPPED_DIRS: &[&str] = &["target", ".git", "node_modules"];

/// Directories whose every text file is scanned for outside citations,
/// besides the `.rs` files of `src`, `tests`, `benches` and `sdk/src` and every `.md`.
const SCRIPT_DIRS: &[&str] = &["examples", "interop", "bench", ".ci"];

/// The phrases that cite documents outside this repository (compared
/// lowercase). Built at run time so that this file does not match itself.
fn outside_citations() -> Vec<String> {
    let section = |word: &str| format!("{word} \u{a7}");
    vec![
        section("design"),
        section("protocols"),
        ["protocols", "digest"].join(" "),
        ["shared", "design"].join("/"),
    ]
}

/// Every file under `dir`, skipping [`SKIPPED_DIRS`], sorted.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                if !SKIPPED_DIRS.iter().any(|s| name == *s) {
                    stack.push(path);
                }
            } else if kind.is_file() {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn has_ext(path: &Path, ext: &str) -> bool {
    path.extension().is_some_and(|e| e == ext)
}

fn markdown_files() -> Vec<PathBuf> {
    files_under(Path::new(ROOT))
        .into_iter()
        .filter(|p| has_ext(p, "md"))
        .collect()
}

fn relative(path: &Path) -> String {
    path.strip_prefix(ROOT).unwrap_or(path).display().to_string()
}

/// A line's text with a leading comment marker (`//!`, `///`, `//`, `#`)
/// removed, for joining a phrase a comment wraps over two lines.
fn comment_text(line: &str) -> &str {
    let t = line.trim_start();
    for marker in ["//!", "///", "//", "#"] {
        if let Some(rest) = t.strip_prefix(marker) {
            return rest.trim_start();
        }
    }
    t
}

/// `(line number, phrase)` for every outside citation in `text`, including
/// one that a comment wraps from one line onto the next.
fn find_outside_citations(text: &str) -> Vec<(usize, String)> {
    let phrases = outside_citations();
    let lines: Vec<String> = text.lines().map(str::to_lowercase).collect();
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        for p in &phrases {
            if line.contains(p.as_str()) {
                found.push((i + 1, p.clone()));
            }
        }
        if let Some(next) = lines.get(i + 1) {
            let joined = format!("{} {}", line.trim_end(), comment_text(next));
            for p in &phrases {
                let within_one = line.contains(p.as_str()) || next.contains(p.as_str());
                if !within_one && joined.contains(p.as_str()) {
                    found.push((i + 1, p.clone()));
                }
            }
        }
    }
    found
}

/// The files the outside-citation rule covers.
fn files_cited_from() -> Vec<PathBuf> {
    let root = Path::new(ROOT);
    let mut files: BTreeSet<PathBuf> = BTreeSet::new();
    for dir in ["src", "tests", "benches", "sdk/src"] {
        files.extend(files_under(&root.join(dir)).into_iter().filter(|p| has_ext(p, "rs")));
    }
    for dir in SCRIPT_DIRS {
        files.extend(files_under(&root.join(dir)));
    }
    files.extend(markdown_files());
    files.into_iter().collect()
}

#[test]
fn nothing_cites_a_document_outside_the_repository() {
    let files = files_cited_from();
    let rs = files.iter().filter(|p| has_ext(p, "rs")).count();
    let md = files.iter().filter(|p| has_ext(p, "md")).count();
    assert!(
        rs > 20,
        "found only {rs} .rs files under src/, tests/, benches/ and sdk/src/"
    );
    assert!(md > 5, "found only {md} .md files");
    let mut problems = Vec::new();
    for file in &files {
        // Binary or non-UTF-8 files cite nothing.
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for (line, phrase) in find_outside_citations(&text) {
            problems.push(format!(
                "{}:{line}: cites \"{phrase}\", a document outside this repository: cite a file here \
                 (e.g. specs/decisions.md \u{a7}N) or the RFC/draft section itself",
                relative(file)
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{} citation(s) point outside the repository:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

// ---------------------------------------------------------------------------
// Markdown links and GitHub anchors
// ---------------------------------------------------------------------------

/// Whether `line` opens or closes a fenced code block.
fn is_fence(line: &str) -> bool {
    let t = line.trim_start();
    t.starts_with("```") || t.starts_with("~~~")
}

/// `line` with inline code spans blanked out (a code span is never a link,
/// and may hold brackets).
fn without_code_spans(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut in_code = false;
    for c in line.chars() {
        if c == '`' {
            in_code = !in_code;
            out.push(' ');
        } else if in_code {
            out.push(' ');
        } else {
            out.push(c);
        }
    }
    out
}

/// The text GitHub renders for a heading's source: links keep their text,
/// code spans lose their backticks, emphasis markers go.
fn heading_text(raw: &str) -> String {
    let mut out = String::new();
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '`' | '*' | '[' => {}
            ']' if chars.peek() == Some(&'(') => {
                // Skip the link destination.
                let mut depth = 0;
                for d in chars.by_ref() {
                    match d {
                        '(' => depth += 1,
                        ')' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                }
            }
            ']' => {}
            c => out.push(c),
        }
    }
    out
}

/// GitHub's anchor for a heading text: lowercase; letters, digits, `-` and
/// `_` kept; spaces become `-`; every other character dropped.
fn slug(text: &str) -> String {
    text.trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            '-' | '_' => Some(c),
            c if c.is_alphanumeric() => Some(c),
            _ => None,
        })
        .collect()
}

/// Every anchor GitHub makes for the headings of a Markdown document (ATX
/// `#` headings and setext underlines, outside code blocks), with `-1`,
/// `-2`… for repeated headings.
fn anchors(doc: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = BTreeSet::new();
    let mut add = |text: &str| {
        let base = slug(&heading_text(text));
        let n = seen.entry(base.clone()).or_insert(0);
        let anchor = if *n == 0 { base.clone() } else { format!("{base}-{n}") };
        *n += 1;
        out.insert(anchor);
    };
    let mut in_fence = false;
    let mut previous: Option<&str> = None;
    for line in doc.lines() {
        if is_fence(line) {
            in_fence = !in_fence;
            previous = None;
            continue;
        }
        if in_fence {
            continue;
        }
        let t = line.trim_start();
        let hashes = t.chars().take_while(|c| *c == '#').count();
        if (1..=6).contains(&hashes) && (t[hashes..].is_empty() || t[hashes..].starts_with(' ')) {
            let text = t[hashes..].trim().trim_end_matches('#').trim_end();
            add(text);
            previous = None;
            continue;
        }
        let underline = line.trim();
        let is_underline =
            !underline.is_empty() && (underline.chars().all(|c| c == '=') || underline.chars().all(|c| c == '-'));
        if is_underline
            && let Some(p) = previous
            && !p.trim().is_empty()
            && !p.trim_start().starts_with(['|', '-', '*', '>', '#'])
        {
            add(p.trim());
            previous = None;
            continue;
        }
        previous = Some(line);
    }
    out
}

/// One link found in a document.
#[derive(Debug, PartialEq, Eq)]
struct Link {
    line: usize,
    dest: String,
}

/// Every inline link and image destination (`[text](dest)`,
/// `[text](dest "title")`) and reference definition (`[label]: dest`) of a
/// Markdown document, outside code blocks and code spans.
fn links(doc: &str) -> Vec<Link> {
    let mut out = Vec::new();
    let mut in_fence = false;
    for (i, raw) in doc.lines().enumerate() {
        if is_fence(raw) {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            continue;
        }
        let line = without_code_spans(raw);
        // Reference definitions: `[label]: dest`.
        let t = line.trim_start();
        if t.starts_with('[')
            && let Some(close) = t.find("]:")
        {
            if let Some(dest) = t[close + 2..].split_whitespace().next() {
                out.push(Link {
                    line: i + 1,
                    dest: dest.trim_matches(['<', '>']).to_owned(),
                });
            }
            continue;
        }
        let bytes = line.as_bytes();
        let mut at = 0;
        while let Some(found) = line[at..].find("](") {
            let open = at + found + 2;
            let escaped = at + found > 0 && bytes[at + found - 1] == b'\\';
            let has_text = line[..at + found].contains('[');
            let mut depth = 1;
            let mut end = None;
            for (j, c) in line[open..].char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            end = Some(open + j);
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let Some(end) = end else {
                break;
            };
            if has_text && !escaped {
                let inner = line[open..end].trim();
                let dest = match inner.strip_prefix('<') {
                    Some(rest) => rest.split('>').next().unwrap_or_default(),
                    None => inner.split_whitespace().next().unwrap_or_default(),
                };
                out.push(Link {
                    line: i + 1,
                    dest: dest.to_owned(),
                });
            }
            at = end + 1;
        }
    }
    out
}

fn is_external(dest: &str) -> bool {
    let lower = dest.to_ascii_lowercase();
    ["http://", "https://", "mailto:", "ftp://", "tel:"]
        .iter()
        .any(|s| lower.starts_with(s))
}

/// `%XX` escapes decoded (a link to `a%20b.md` names `a b.md`).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `base/rel` with `.` and `..` resolved, without touching the file system.
fn resolve(base: &Path, rel: &str) -> PathBuf {
    let mut out = PathBuf::new();
    for c in base.join(rel).components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

/// Why a relative link of `file` does not resolve, if it does not.
/// `anchors_of` reads the anchors of a Markdown file.
fn broken(file: &Path, dest: &str, anchors_of: &mut impl FnMut(&Path) -> Option<BTreeSet<String>>) -> Option<String> {
    let (path, anchor) = match dest.split_once('#') {
        Some((p, a)) => (p, Some(percent_decode(a))),
        None => (dest, None),
    };
    // An empty path is the document itself, which exists: it is being read.
    let target = if path.is_empty() {
        file.to_path_buf()
    } else if let Some(from_root) = path.strip_prefix('/') {
        resolve(Path::new(ROOT), &percent_decode(from_root))
    } else {
        resolve(file.parent().unwrap_or(Path::new(ROOT)), &percent_decode(path))
    };
    if !path.is_empty() && !target.exists() {
        return Some(format!("{} does not exist", relative(&target)));
    }
    let anchor = anchor?;
    let doc = if target.is_dir() {
        target.join("README.md")
    } else {
        target.clone()
    };
    if has_ext(&doc, "md") {
        let known = anchors_of(&doc).unwrap_or_default();
        if known.contains(&anchor) {
            return None;
        }
        return Some(format!("{} has no heading with anchor #{anchor}", relative(&doc)));
    }
    // Other files have no headings; GitHub's line anchors (#L10, #L10-L20) are fine.
    let is_line_anchor = anchor.split('-').all(|part| {
        part.strip_prefix('L')
            .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
    });
    if is_line_anchor {
        None
    } else {
        Some(format!(
            "{} is not Markdown: #{anchor} names no heading",
            relative(&target)
        ))
    }
}

#[test]
fn every_relative_markdown_link_resolves() {
    let files = markdown_files();
    assert!(files.len() > 5, "found only {} .md files: {files:?}", files.len());
    let mut cache: BTreeMap<PathBuf, Option<BTreeSet<String>>> = BTreeMap::new();
    let mut anchors_of = |p: &Path| {
        cache
            .entry(p.to_path_buf())
            .or_insert_with(|| std::fs::read_to_string(p).ok().map(|d| anchors(&d)))
            .clone()
    };
    let (mut checked, mut with_anchor) = (0, 0);
    let mut problems = Vec::new();
    for file in &files {
        let doc = std::fs::read_to_string(file).unwrap();
        for link in links(&doc) {
            if link.dest.is_empty() || is_external(&link.dest) {
                continue;
            }
            checked += 1;
            with_anchor += usize::from(link.dest.contains('#'));
            if let Some(why) = broken(file, &link.dest, &mut anchors_of) {
                problems.push(format!("{}:{}: ({}): {why}", relative(file), link.line, link.dest));
            }
        }
    }
    assert!(
        checked > 20,
        "found only {checked} relative links in {} .md files",
        files.len()
    );
    assert!(with_anchor > 10, "found only {with_anchor} links with an #anchor");
    assert!(
        problems.is_empty(),
        "{} broken Markdown link(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

// ---------------------------------------------------------------------------
// The checkers themselves: they must find what they look for.
// ---------------------------------------------------------------------------

#[test]
fn the_citation_check_finds_outside_citations_even_across_a_line_break() {
    let (design, protocols) = ("design", "Protocols");
    let text = format!(
        "// fine: specs/decisions.md \u{a7}3\n\
         //! as the {} \u{a7}4 says\n\
         /// see the {protocols} Digest\n\
         //! wrapped ({design}\n\
         //! \u{a7}8): here\n\
         [x](../shared/{design}.md)\n\
         designs \u{a7}2 and redesign are words, not citations",
        design.to_uppercase()
    );
    let lines: Vec<usize> = find_outside_citations(&text).into_iter().map(|(l, _)| l).collect();
    assert_eq!(lines, vec![2, 3, 4, 6]);
}

#[test]
fn headings_get_githubs_anchors() {
    for (heading, anchor) in [
        ("12. ID-JAG `sub` and `client_id`", "12-id-jag-sub-and-client_id"),
        ("`[limits]` — rate limits", "limits--rate-limits"),
        (
            "19. Rate limits: 429 `temporarily_unavailable`",
            "19-rate-limits-429-temporarily_unavailable",
        ),
        ("Instance identity: `XAA_INSTANCE`", "instance-identity-xaa_instance"),
        ("The [specs](specs/README.md) *folder*", "the-specs-folder"),
        ("8. Metadata (RFC 8414, ID-JAG §7.2)", "8-metadata-rfc-8414-id-jag-72"),
    ] {
        assert_eq!(slug(&heading_text(heading)), anchor, "{heading}");
    }
    let doc = "# Title\n\n## Same\n\n```\n# not a heading\n```\n\n## Same\n\nSetext\n------\n\n---\n";
    let found: Vec<String> = anchors(doc).into_iter().collect();
    assert_eq!(found, ["same", "same-1", "setext", "title"]);
}

#[test]
fn the_link_check_finds_every_broken_link_and_anchor() {
    let doc = "\
[ok](README.md) [bad file](specs/nope.md) ![image](specs/missing.png)\n\
[ok anchor](specs/decisions.md#error-codes) [bad anchor](specs/decisions.md#no-such-heading)\n\
[local](#here) [missing local](#not-here) [web](https://example.com/x.md#y)\n\
`[code](not/a/link.md)` and [`config`](specs/config.md)\n\
```\n[fenced](not/a/link.md)\n```\n\
[ref]: specs/gone.md\n\
# Here\n";
    let file = Path::new(ROOT).join("CHECK.md");
    let mut anchors_of = |p: &Path| {
        if p == file {
            Some(anchors(doc))
        } else {
            std::fs::read_to_string(p).ok().map(|d| anchors(&d))
        }
    };
    let found = links(doc);
    let dests: Vec<&str> = found.iter().map(|l| l.dest.as_str()).collect();
    assert_eq!(
        dests,
        [
            "README.md",
            "specs/nope.md",
            "specs/missing.png",
            "specs/decisions.md#error-codes",
            "specs/decisions.md#no-such-heading",
            "#here",
            "#not-here",
            "https://example.com/x.md#y",
            "specs/config.md",
            "specs/gone.md",
        ]
    );
    let broken_dests: Vec<&str> = found
        .iter()
        .filter(|l| !is_external(&l.dest))
        .filter(|l| broken(&file, &l.dest, &mut anchors_of).is_some())
        .map(|l| l.dest.as_str())
        .collect();
    assert_eq!(
        broken_dests,
        [
            "specs/nope.md",
            "specs/missing.png",
            "specs/decisions.md#no-such-heading",
            "#not-here",
            "specs/gone.md",
        ]
    );
}
