//! The README's layout section is how a newcomer finds a thing by its name:
//! it must name every folder under `src/` and every file under `tests/`, so
//! the tree and its map cannot drift apart.

use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The fenced block under "## Layout".
fn layout_section() -> String {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let section = readme
        .split("\n## Layout")
        .nth(1)
        .expect("the README has a '## Layout' section");
    let section = section.split("\n## ").next().unwrap_or(section);
    section
        .split("```")
        .nth(1)
        .expect("the layout is a fenced block")
        .to_owned()
}

fn folders_below(dir: &Path, into: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable folder").flatten() {
        let path = entry.path();
        if path.is_dir() {
            into.push(path.clone());
            folders_below(&path, into);
        }
    }
}

/// Words of the layout, split on white space and the punctuation prose puts
/// around names.
fn words(layout: &str) -> Vec<String> {
    layout
        .split(|c: char| c.is_whitespace() || matches!(c, ',' | ';' | '(' | ')' | '`' | ':'))
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_layout_names_every_folder_under_src() {
    let layout = layout_section();
    let words = words(&layout);
    let src = root().join("src");
    let mut folders = Vec::new();
    folders_below(&src, &mut folders);
    let missing: Vec<String> = folders
        .iter()
        .map(|f| f.strip_prefix(root()).expect("below the root").display().to_string())
        .filter(|path| {
            let name = path.rsplit('/').next().unwrap_or(path);
            let top_level = path.matches('/').count() == 1;
            // A top-level folder by its path; a nested one by its path or
            // by its name as a folder (`templates/`) in its parent's entry.
            !(words.iter().any(|w| w.trim_end_matches('/') == path)
                || (!top_level && words.iter().any(|w| w == &format!("{name}/"))))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "README's layout does not name these folders: {missing:?}"
    );
}

#[test]
fn the_layout_names_every_file_under_tests() {
    let layout = layout_section();
    let words = words(&layout);
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(root().join("tests")).expect("tests/").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let named = if entry.path().is_dir() {
            format!("{name}/")
        } else {
            name.clone()
        };
        if !words
            .iter()
            .any(|w| w.trim_end_matches('.') == named || w == &format!("tests/{named}"))
        {
            missing.push(named);
        }
    }
    missing.sort();
    assert!(
        missing.is_empty(),
        "README's layout does not name these test files: {missing:?}"
    );
}

#[test]
fn the_layout_names_only_what_exists() {
    let layout = layout_section();
    let mut stale = Vec::new();
    for word in words(&layout) {
        let path = word.trim_end_matches("'s").trim_end_matches(['.', '/']);
        if (path.starts_with("src/") || path.starts_with("tests/") || path.starts_with("migrations/"))
            && !root().join(path).exists()
        {
            stale.push(word);
        }
    }
    assert!(
        stale.is_empty(),
        "README's layout names paths that do not exist: {stale:?}"
    );
}
