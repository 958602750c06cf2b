//! The documentation's links lead somewhere. Every relative link and image in
//! README.md and docs/**/*.md names a file or folder of the repository, and every
//! `#anchor` names a heading of its markdown target (GitHub's heading slugs).
//! References to `docs/….md#anchor` in code comments are checked the same way,
//! and README.md stays under 12,000 characters. Reads files only; needs no adapter.

use std::path::{Component, Path, PathBuf};

const README_LIMIT: usize = 12_000;

/// GitHub's anchor for a heading's text: lower case; letters, digits, `_` and `-`
/// kept, spaces made `-`, everything else dropped.
fn slug(text: &str) -> String {
    text.trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '_' || c == '-' => Some(c),
            _ => None,
        })
        .collect()
}

/// Whether a line opens or closes a fenced code block: its fence characters.
fn fence(line: &str) -> Option<&'static str> {
    let t = line.trim_start();
    if t.starts_with("```") {
        Some("```")
    } else if t.starts_with("~~~") {
        Some("~~~")
    } else {
        None
    }
}

/// The markdown with fenced code blocks blanked and inline code spans replaced by
/// spaces, newlines kept, so that positions still give line numbers.
fn prose(markdown: &str) -> String {
    let mut out = String::with_capacity(markdown.len());
    let mut open: Option<&str> = None;
    for line in markdown.split_inclusive('\n') {
        let f = fence(line);
        let code = match (open, f) {
            (None, Some(f)) => {
                open = Some(f);
                true
            }
            (Some(o), Some(f)) if o == f => {
                open = None;
                true
            }
            (Some(_), _) => true,
            (None, None) => false,
        };
        if code {
            out.extend(line.chars().map(|c| if c == '\n' { '\n' } else { ' ' }));
        } else {
            out.push_str(line);
        }
    }
    blank_code_spans(&out)
}

/// Inline code spans (a run of n backticks up to the next run of exactly n,
/// possibly across lines) replaced by spaces; an unclosed run stays as it is.
fn blank_code_spans(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let run_at = |i: usize| chars[i..].iter().take_while(|&&c| c == '`').count();
    let mut out = chars.clone();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '`' {
            i += 1;
            continue;
        }
        let n = run_at(i);
        let mut j = i + n;
        let mut close = None;
        while j < chars.len() {
            if chars[j] == '`' {
                let m = run_at(j);
                if m == n {
                    close = Some(j);
                    break;
                }
                j += m;
            } else {
                j += 1;
            }
        }
        match close {
            Some(j) => {
                for c in &mut out[i..j + n] {
                    if *c != '\n' {
                        *c = ' ';
                    }
                }
                i = j + n;
            }
            None => i += n,
        }
    }
    out.into_iter().collect()
}

/// The anchors of a markdown file's ATX headings in order, repeats suffixed
/// `-1`, `-2`, … as GitHub does.
fn anchors(markdown: &str) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    let mut open: Option<&str> = None;
    for line in markdown.lines() {
        match (open, fence(line)) {
            (None, Some(f)) => {
                open = Some(f);
                continue;
            }
            (Some(o), Some(f)) if o == f => {
                open = None;
                continue;
            }
            (Some(_), _) => continue,
            (None, None) => {}
        }
        let t = line.trim_start();
        if line.len() - t.len() > 3 {
            continue;
        }
        let hashes = t.chars().take_while(|&c| c == '#').count();
        if !(1..=6).contains(&hashes) {
            continue;
        }
        let rest = &t[hashes..];
        if !(rest.is_empty() || rest.starts_with(' ') || rest.starts_with('\t')) {
            continue;
        }
        let text = rest.trim().trim_end_matches('#').trim_end();
        let base = slug(&link_texts(text));
        let mut anchor = base.clone();
        let mut k = 0;
        while found.contains(&anchor) {
            k += 1;
            anchor = format!("{base}-{k}");
        }
        found.push(anchor);
    }
    found
}

/// `[text](target)` replaced by `text`, as a heading renders.
fn link_texts(text: &str) -> String {
    let mut out = text.to_string();
    while let Some(mid) = out.find("](") {
        let Some(end) = out[mid..].find(')').map(|e| mid + e) else {
            break;
        };
        let start = out[..mid].rfind('[').unwrap_or(mid);
        let inner = out[start + 1..mid].to_string();
        out.replace_range(start..=end, &inner);
    }
    out
}

/// Every inline link or image target, `[text](target)` or `![alt](target)`, outside
/// code, with its line number (from 1). A title after the target is dropped.
fn links(markdown: &str) -> Vec<(usize, String)> {
    let text = prose(markdown);
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = text[from..].find("](") {
        let start = from + at + 2;
        let rest = &text[start..];
        let (target, len) = if let Some(inner) = rest.strip_prefix('<') {
            match inner.find('>') {
                Some(e) => (inner[..e].to_string(), e + 2),
                None => (String::new(), 1),
            }
        } else {
            // Up to the `)` that closes the link, parentheses inside balanced.
            let mut depth = 0usize;
            let mut end = rest.len();
            for (i, c) in rest.char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' if depth == 0 => {
                        end = i;
                        break;
                    }
                    ')' => depth -= 1,
                    '\n' => {
                        end = i;
                        break;
                    }
                    _ => {}
                }
            }
            let target = rest[..end].split_whitespace().next().unwrap_or("").to_string();
            (target, end)
        };
        let line = text[..start].matches('\n').count() + 1;
        if !target.is_empty() {
            found.push((line, target));
        }
        from = start + len.max(1);
    }
    found
}

/// `%20` and other percent escapes decoded.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `path` with `.` and `..` resolved lexically; None when `..` climbs above its start.
fn normalize(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            c => out.push(c),
        }
    }
    Some(out)
}

/// README.md and every `.md` file under docs/, relative to `root`, sorted.
fn doc_files(root: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            return;
        };
        for entry in entries {
            let name = entry.unwrap().file_name();
            let rel = dir.join(&name);
            if root.join(&rel).is_dir() {
                walk(root, &rel, out);
            } else if rel.extension().is_some_and(|e| e == "md") {
                out.push(rel);
            }
        }
    }
    let mut files = Vec::new();
    if root.join("README.md").is_file() {
        files.push(PathBuf::from("README.md"));
    }
    walk(root, Path::new("docs"), &mut files);
    files.sort();
    files
}

/// What is wrong with one link target written in `from` (a path relative to
/// `root`), or None when it leads somewhere.
fn check_target(root: &Path, from: &Path, target: &str) -> Option<String> {
    let lower = target.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") || lower.starts_with("mailto:") {
        return None;
    }
    if target.contains("://") {
        return Some("a scheme other than http(s) or mailto".into());
    }
    let (path, anchor) = match target.split_once('#') {
        Some((p, a)) => (p, Some(a)),
        None => (target, None),
    };
    let path = percent_decode(path);
    let rel = if path.is_empty() {
        from.to_path_buf()
    } else if let Some(abs) = path.strip_prefix('/') {
        PathBuf::from(abs)
    } else {
        from.parent().unwrap_or(Path::new("")).join(&path)
    };
    let Some(rel) = normalize(&rel) else {
        return Some("outside the repository".into());
    };
    let full = root.join(&rel);
    if !full.exists() {
        return Some(format!("no such file: {}", rel.display()));
    }
    let anchor = anchor?;
    if full.extension().is_none_or(|e| e != "md") {
        return None;
    }
    let text = std::fs::read_to_string(&full).unwrap_or_default();
    if anchors(&text).iter().any(|a| a == anchor) {
        None
    } else {
        Some(format!("no heading #{anchor} in {}", rel.display()))
    }
}

/// Every broken link of README.md and docs/**/*.md under `root`, as
/// `file:line: target: why`.
fn broken_links(root: &Path) -> Vec<String> {
    let mut bad = Vec::new();
    for file in doc_files(root) {
        let text = std::fs::read_to_string(root.join(&file)).unwrap();
        for (line, target) in links(&text) {
            if let Some(why) = check_target(root, &file, &target) {
                bad.push(format!("{}:{line}: {target}: {why}", file.display()));
            }
        }
    }
    bad
}

/// References `docs/NAME.md` or `docs/NAME.md#anchor` in the text of a source file.
fn doc_references(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let mut from = 0;
        while let Some(at) = line[from..].find("docs/") {
            let start = from + at;
            let word: String = line[start..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || "_-./#".contains(*c))
                .collect();
            let word = word.trim_end_matches(['.', '#']);
            let path = word.split('#').next().unwrap();
            if path.ends_with(".md") {
                found.push((i + 1, word.to_string()));
            }
            from = start + "docs/".len();
        }
    }
    found
}

/// The files under `dir` (relative to `root`) whose extension is one of `exts`,
/// leaving out `target/` and hidden folders.
fn files_with(root: &Path, dir: &Path, exts: &[&str], out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
        return;
    };
    for entry in entries {
        let name = entry.unwrap().file_name();
        if name == "target" || name.to_string_lossy().starts_with('.') {
            continue;
        }
        let rel = dir.join(&name);
        if root.join(&rel).is_dir() {
            files_with(root, &rel, exts, out);
        } else if rel.extension().is_some_and(|e| exts.iter().any(|x| e == *x)) {
            out.push(rel);
        }
    }
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn every_link_in_readme_and_docs_leads_somewhere() {
    let files = doc_files(root());
    assert!(files.len() >= 2, "found only {files:?}");
    let bad = broken_links(root());
    assert!(bad.is_empty(), "broken links:\n{}", bad.join("\n"));
}

#[test]
fn readme_is_under_12000_characters() {
    let text = std::fs::read_to_string(root().join("README.md")).unwrap();
    let n = text.chars().count();
    assert!(
        n < README_LIMIT,
        "README.md has {n} characters; keep it under {README_LIMIT} and move details into docs/"
    );
}

#[test]
fn docs_named_in_code_comments_exist() {
    let mut files = Vec::new();
    for dir in ["src", "shaders", "tests", "benches", "kernels-test", "examples"] {
        files_with(root(), Path::new(dir), &["rs", "wgsl"], &mut files);
    }
    let me = Path::new("tests").join("docs_links.rs");
    let mut bad = Vec::new();
    for file in files.iter().filter(|f| **f != me) {
        let text = std::fs::read_to_string(root().join(file)).unwrap();
        for (line, reference) in doc_references(&text) {
            // Written from the repository root.
            if let Some(why) = check_target(root(), Path::new("README.md"), &reference) {
                bad.push(format!("{}:{line}: {reference}: {why}", file.display()));
            }
        }
    }
    assert!(bad.is_empty(), "code comments name missing docs:\n{}", bad.join("\n"));
}

/// The project's design document lives outside the repository; nothing here may
/// send a reader to it (what the code needs from it is in docs/design-notes.md).
#[test]
fn nothing_points_outside_to_the_design_document() {
    let needle = concat!("DESIGN", ".md");
    let mut files = vec![PathBuf::from(".ci/run")];
    files_with(
        root(),
        Path::new(""),
        &["rs", "wgsl", "md", "toml", "sh", "json"],
        &mut files,
    );
    let mut bad = Vec::new();
    for file in &files {
        let Ok(text) = std::fs::read_to_string(root().join(file)) else {
            continue;
        };
        for (i, line) in text.lines().enumerate() {
            if line.contains(needle) {
                bad.push(format!("{}:{}: {}", file.display(), i + 1, line.trim()));
            }
        }
    }
    assert!(bad.is_empty(), "{needle} is not in the repository:\n{}", bad.join("\n"));
}

#[test]
fn slugs_follow_github() {
    assert_eq!(slug("Memory budgets: recompute"), "memory-budgets-recompute");
    assert_eq!(slug("f16 storage (`--precision f16`)"), "f16-storage---precision-f16");
    assert_eq!(
        slug("What the default run's levels do"),
        "what-the-default-runs-levels-do"
    );
    assert_eq!(slug("Ladder VAE merge"), "ladder-vae-merge");
    assert_eq!(slug("β per level, −ELBO"), "β-per-level-elbo");
    let doc = "# A\n## Same\n```\n# not a heading\n```\n## Same\n### [Linked](x.md) `code`\n";
    assert_eq!(anchors(doc), ["a", "same", "same-1", "linked-code"]);
}

#[test]
fn a_broken_link_is_reported() {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!("vdvae-docs-links-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(dir.join("docs/images")).unwrap();
    std::fs::write(dir.join("docs/images/ok.png"), b"").unwrap();
    std::fs::write(
        dir.join("README.md"),
        "# Title\n\
         [fine](docs/guide.md#real-heading) [web](https://example.com/x.md) ![pic](docs/images/ok.png)\n\
         [gone](docs/missing.md) and ![no picture](docs/images/none.png \"a title\")\n\
         [bad anchor](docs/guide.md#nope) [self](#title) [bad self](#no-such)\n\
         `[in code](nowhere.md)`\n\
         ```\n[in a fence](nowhere.md)\n```\n\
         [up and out](../outside.md)\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("docs/guide.md"),
        "## Real heading\n[back](../README.md#title) [folder](images/) [wrong](../README.md#real-heading)\n",
    )
    .unwrap();
    let bad = broken_links(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(
        bad,
        [
            "README.md:3: docs/missing.md: no such file: docs/missing.md",
            "README.md:3: docs/images/none.png: no such file: docs/images/none.png",
            "README.md:4: docs/guide.md#nope: no heading #nope in docs/guide.md",
            "README.md:4: #no-such: no heading #no-such in README.md",
            "README.md:9: ../outside.md: outside the repository",
            "docs/guide.md:2: ../README.md#real-heading: no heading #real-heading in README.md",
        ]
    );
}

#[test]
fn code_comment_references_are_found() {
    let text = "//! see docs/design-notes.md#the-vdvae-computation.\n// and docs/cli.md, not docs/images/\n";
    assert_eq!(
        doc_references(text),
        [
            (1, "docs/design-notes.md#the-vdvae-computation".to_string()),
            (2, "docs/cli.md".to_string())
        ]
    );
}
