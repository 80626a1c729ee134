//! The README documents the repository itself: every file or folder of the
//! checkout it names exists, its links to its own sections lead to a
//! heading, and it points at nothing outside the repository.
//!
//! A path is a backticked word that starts with one of the checkout's
//! top-level folders (`host/`, `tests/`, `deploy/`, ...); placeholders
//! (`<name>`) and build outputs (`target/`, `.venv/`, `node_modules/`,
//! made by the set-up commands) are not checked.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The checkout's root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The README's text.
fn readme() -> String {
    std::fs::read_to_string(root().join("README.md")).expect("README.md")
}

/// Every backticked word of `text`, with the line it is on (1-based).
fn backticked(text: &str) -> Vec<(usize, &str)> {
    let mut words = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let mut parts = line.split('`');
        // Odd parts are inside backticks.
        parts.next();
        while let Some(inside) = parts.next() {
            if !inside.contains(char::is_whitespace) {
                words.push((number + 1, inside));
            }
            parts.next();
        }
    }
    words
}

/// The checkout's top-level folders, the roots a README path starts from.
fn top_level_folders() -> BTreeSet<String> {
    std::fs::read_dir(root())
        .expect("the checkout")
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.path().is_dir())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| !matches!(name.as_str(), "target" | ".git" | ".venv"))
        .collect()
}

/// GitHub's anchor for a heading: lower case, spaces to `-`, punctuation
/// other than `-` and `_` dropped.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn every_path_the_readme_names_is_in_the_checkout() {
    let readme = readme();
    let folders = top_level_folders();
    let mut missing = Vec::new();
    let mut checked = 0;
    for (line, word) in backticked(&readme) {
        let Some((first, _)) = word.split_once('/') else {
            continue;
        };
        let generated = ["node_modules", ".venv", "target"]
            .iter()
            .any(|part| word.split('/').any(|p| p == *part));
        if !folders.contains(first) || word.contains('<') || generated {
            continue;
        }
        checked += 1;
        if !root().join(word).exists() {
            missing.push(format!("README.md:{line}: `{word}`"));
        }
    }
    assert!(
        checked > 50,
        "only {checked} paths found: is the parser right?"
    );
    assert!(
        missing.is_empty(),
        "the README names paths that are not in the checkout:\n{}",
        missing.join("\n")
    );
}

#[test]
fn every_link_in_the_readme_leads_somewhere() {
    let readme = readme();
    let mut anchors = BTreeSet::new();
    let mut in_code = false;
    for line in readme.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            anchors.insert(anchor(line.trim_start_matches('#')));
        }
    }
    let mut broken = Vec::new();
    for (number, line) in readme.lines().enumerate() {
        for rest in line.split("](").skip(1) {
            let target = rest.split(')').next().unwrap_or(rest);
            let ok = if let Some(section) = target.strip_prefix('#') {
                anchors.contains(section)
            } else if target.starts_with("https://") {
                true
            } else {
                !target.starts_with("..") && root().join(target).exists()
            };
            if !ok {
                broken.push(format!("README.md:{}: ({target})", number + 1));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "links that lead nowhere in the checkout:\n{}",
        broken.join("\n")
    );
}

#[test]
fn the_readme_points_at_nothing_outside_the_repository() {
    let readme = readme();
    let outside: Vec<String> = readme
        .lines()
        .enumerate()
        .filter(|(_, line)| line.contains("../shared") || line.contains("](../"))
        .map(|(number, line)| format!("README.md:{}: {line}", number + 1))
        .collect();
    assert!(outside.is_empty(), "{}", outside.join("\n"));
}

#[test]
fn the_anchor_of_a_heading_is_github_s() {
    assert_eq!(
        anchor(" Against the bar, honestly"),
        "against-the-bar-honestly"
    );
    assert_eq!(
        anchor(" What the agent's own API calls cost"),
        "what-the-agents-own-api-calls-cost"
    );
    assert_eq!(anchor(" `[agent]`"), "agent");
    assert_eq!(anchor(" Set-up: two commands"), "set-up-two-commands");
}

/// Every file under `dir` (recursively) whose name ends in one of `exts`.
fn files_under(dir: &Path, exts: &[&str], found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if !name.starts_with('.') && name != "target" && name != "node_modules" {
                files_under(&path, exts, found);
            }
        } else if exts.iter().any(|ext| name.ends_with(ext)) {
            found.push(path);
        }
    }
}

#[test]
fn every_document_the_sources_name_is_in_the_repository() {
    // The code's comments and messages cite the project's documents by
    // name (`docs/SIMULATION.md`); each must be a file of the checkout,
    // not of the brief the project was written from.
    let root = root();
    let mut sources = Vec::new();
    for dir in ["host", "plugins", "docs", "wit"] {
        files_under(
            &root.join(dir),
            &[".rs", ".md", ".py", ".js", ".wit"],
            &mut sources,
        );
    }
    assert!(sources.len() > 50, "found only {} sources", sources.len());
    let mut missing = Vec::new();
    for file in &sources {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        for (number, line) in text.lines().enumerate() {
            for word in line.split(|c: char| !(c.is_ascii_alphanumeric() || "_/.-".contains(c))) {
                // A sentence's full stop is not part of the name.
                let word = word.trim_end_matches('.');
                let Some(stem) = word.strip_suffix(".md") else {
                    continue;
                };
                // Documents are named in capitals (`docs/ALARM_CASES.md`); lower
                // case names are files a command writes (`bench.md`).
                let name = stem.rsplit('/').next().unwrap_or(stem);
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
                    continue;
                }
                if word.starts_with("..") || !root.join(word).is_file() {
                    missing.push(format!(
                        "{}:{}: {word} (documents are named by their path from the checkout's root)",
                        file.strip_prefix(&root).unwrap_or(file).display(),
                        number + 1
                    ));
                }
            }
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

/// The README's headings, as written after their `#`s.
fn headings(readme: &str) -> BTreeSet<String> {
    let mut headings = BTreeSet::new();
    let mut in_code = false;
    for line in readme.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            headings.insert(line.trim_start_matches('#').trim().to_owned());
        }
    }
    headings
}

/// The section titles `text` quotes after the word README (`README,
/// "Title"`, `README: "Title"`, `the README's "Title"`), a string
/// literal's escaped quotes and line continuations included.
fn quoted_sections(text: &str) -> Vec<String> {
    let mut titles = Vec::new();
    for (at, _) in text.match_indices("README") {
        let mut rest = &text[at + "README".len()..];
        rest = rest.strip_prefix("'s").unwrap_or(rest);
        // Separators, whitespace, line continuations and comment marks
        // between the word and the title.
        loop {
            let trimmed = rest
                .trim_start_matches([',', ':', ' ', '\t', '\n', '#', '/'])
                .trim_start_matches("\\n\\\n")
                .trim_start_matches("\\n");
            if trimmed.len() == rest.len() {
                break;
            }
            rest = trimmed;
        }
        let (quote, body) = if let Some(body) = rest.strip_prefix("\\\"") {
            ("\\\"", body)
        } else if let Some(body) = rest.strip_prefix('"') {
            ("\"", body)
        } else {
            continue;
        };
        if let Some(end) = body.find(quote) {
            titles.push(body[..end].to_owned());
        }
    }
    titles
}

#[test]
fn every_readme_section_the_sources_quote_is_a_heading() {
    // A generated file or a message that sends the reader to a README
    // section must name one that exists (`import alarms` once pointed
    // at a "Policies" that never did).
    let headings = headings(&readme());
    let root = root();
    let mut sources = Vec::new();
    files_under(&root.join("host").join("src"), &[".rs"], &mut sources);
    let mut quoted = 0;
    let mut missing = Vec::new();
    for file in &sources {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        for title in quoted_sections(&text) {
            quoted += 1;
            if !headings.contains(&title) {
                missing.push(format!(
                    "{}: README section \"{title}\" is no heading",
                    file.strip_prefix(&root).unwrap_or(file).display()
                ));
            }
        }
    }
    assert!(quoted >= 2, "found only {quoted} quoted sections");
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

#[test]
fn a_quoted_section_is_found_in_comments_and_string_literals() {
    assert_eq!(
        quoted_sections("(the README's \"Against the bar, honestly\")."),
        ["Against the bar, honestly"]
    );
    assert_eq!(
        quoted_sections("before switching (README:\\n\\\n             # \\\"Migrating\\\")."),
        ["Migrating"]
    );
    assert_eq!(
        quoted_sections("# (README, \\\"Policies\\\"); hold"),
        ["Policies"]
    );
    assert!(quoted_sections("the README's table").is_empty());
}
