//! Layers point one way. This reads every `src/**/*.rs`, collects what each
//! file takes from `crate::…` (in `use` lines, grouped `use crate::{a, b}`,
//! and paths written inline), and fails naming the file, the line and the
//! import when a module reaches a layer above its own.

use std::path::{Path, PathBuf};

/// The layers, lowest first. A module may use its own layer and those below.
/// Modules in one layer may use each other, except the adapters: the API,
/// the dashboard and the broker sources each stand alone on the services.
const LAYERS: &[&[&str]] = &[
    &["domain"],
    &["config"],
    &["store"],
    &["telemetry"],
    &["delivery"],
    &["service"],
    &["api", "ui", "sources", "cli"],
    &["bench", "lib", "main"],
];

/// Adapters that must not import each other.
const SEPARATE: &[&str] = &["api", "ui", "sources", "cli"];

#[derive(Debug, Clone, PartialEq, Eq)]
struct Violation {
    file: String,
    line: usize,
    import: String,
    target: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: `{}` reaches {} from {}",
            self.file,
            self.line,
            self.import,
            self.target,
            module_of(&self.file)
        )
    }
}

fn rank(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// The top-level module a file belongs to: `src/store/rows.rs` → `store`,
/// `src/config.rs` → `config`, `src/lib.rs` → `lib`.
fn module_of(file: &str) -> String {
    let inside = file.strip_prefix("src/").unwrap_or(file);
    let first = inside.split('/').next().unwrap_or(inside);
    first.trim_end_matches(".rs").to_owned()
}

/// Whether `from` may use `to`; `Err` names a module missing from the table.
fn allowed(from: &str, to: &str) -> Result<bool, String> {
    if from == to {
        return Ok(true);
    }
    let unknown = |m: &str| format!("module `{m}` is not in LAYERS; give it a layer");
    let from_rank = rank(from).ok_or_else(|| unknown(from))?;
    let to_rank = rank(to).ok_or_else(|| unknown(to))?;
    if SEPARATE.contains(&from) && SEPARATE.contains(&to) {
        return Ok(false);
    }
    Ok(to_rank <= from_rank)
}

/// The source with comments blanked out (line structure kept), so that
/// prose about `crate::x` is not read as an import.
fn strip_comments(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut in_block = 0usize;
    for line in source.lines() {
        let mut kept = String::new();
        let mut rest = line;
        loop {
            if in_block > 0 {
                match rest.find("*/") {
                    Some(end) => {
                        in_block -= 1;
                        rest = &rest[end + 2..];
                    }
                    None => break,
                }
            } else {
                let line_comment = rest.find("//");
                let block = rest.find("/*");
                match (line_comment, block) {
                    (Some(l), Some(b)) if b < l => {
                        kept.push_str(&rest[..b]);
                        in_block += 1;
                        rest = &rest[b + 2..];
                    }
                    (Some(l), _) => {
                        kept.push_str(&rest[..l]);
                        break;
                    }
                    (None, Some(b)) => {
                        kept.push_str(&rest[..b]);
                        in_block += 1;
                        rest = &rest[b + 2..];
                    }
                    (None, None) => {
                        kept.push_str(rest);
                        break;
                    }
                }
            }
        }
        out.push_str(&kept);
        out.push('\n');
    }
    out
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn ident_at(text: &str) -> &str {
    let end = text.find(|c: char| !is_ident_char(c)).unwrap_or(text.len());
    &text[..end]
}

/// The first path segment of each item in a `{…}` group starting at `text`
/// (just after the `{`), at the group's top level.
fn group_heads(text: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0usize;
    let mut expecting = true;
    for (i, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => expecting = true,
            c if expecting && depth == 0 && is_ident_char(c) => {
                heads.push(ident_at(&text[i..]).to_owned());
                expecting = false;
            }
            _ => {}
        }
    }
    heads
}

/// Every top-level module `source` takes from `crate::`, with its line and
/// the path as written (up to the first `;`, `{`-group or space).
fn crate_imports(source: &str) -> Vec<(usize, String, String)> {
    let code = strip_comments(source);
    let mut found = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| is_ident_char(c) || c == '$') {
            continue;
        }
        let line = code[..at].matches('\n').count() + 1;
        let rest = &code[at + "crate::".len()..];
        let shown_end = rest.find([';', '\n']).unwrap_or(rest.len());
        let shown = format!("crate::{}", rest[..shown_end].trim_end());
        let heads = match rest.strip_prefix('{') {
            Some(group) => group_heads(group),
            None => vec![ident_at(rest).to_owned()],
        };
        for head in heads.into_iter().filter(|h| !h.is_empty() && h != "self") {
            found.push((line, head, shown.clone()));
        }
    }
    found
}

/// The upward imports of one file. A root item (`crate::Config`) counts as
/// an import from `lib`.
fn check_source(file: &str, source: &str, modules: &[String]) -> Result<Vec<Violation>, String> {
    let from = module_of(file);
    let mut violations = Vec::new();
    for (line, head, import) in crate_imports(source) {
        let target = if modules.contains(&head) {
            head
        } else {
            "lib".to_owned()
        };
        if !allowed(&from, &target)? {
            violations.push(Violation {
                file: file.to_owned(),
                line,
                import,
                target,
            });
        }
    }
    Ok(violations)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The crate's top-level modules, as the files under `src/` name them.
fn top_level_modules(root: &Path, files: &[PathBuf]) -> Vec<String> {
    let mut modules: Vec<String> = files.iter().map(|f| module_of(&relative(root, f))).collect();
    modules.sort();
    modules.dedup();
    modules
}

fn relative(root: &Path, file: &Path) -> String {
    file.strip_prefix(root)
        .unwrap_or(file)
        .to_string_lossy()
        .replace('\\', "/")
}

#[test]
fn no_module_imports_from_a_layer_above_its_own() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    files.sort();
    let modules = top_level_modules(root, &files);
    let mut violations = Vec::new();
    for file in &files {
        let source = std::fs::read_to_string(file).expect("read a source file");
        violations.extend(check_source(&relative(root, file), &source, &modules).unwrap_or_else(|e| panic!("{e}")));
    }
    let found: Vec<String> = violations.iter().map(ToString::to_string).collect();
    assert!(found.is_empty(), "imports from a layer above:\n{}", found.join("\n"));
}

fn modules() -> Vec<String> {
    LAYERS.iter().flat_map(|l| l.iter().map(|m| (*m).to_owned())).collect()
}

#[test]
fn a_planted_upward_import_is_named_with_its_file_and_line() {
    let source = "//! The clock.\n\nuse crate::domain::ids::AppId;\nuse crate::store::Store;\n";
    let found = check_source("src/domain/clock.rs", source, &modules()).unwrap();
    assert_eq!(
        found,
        vec![Violation {
            file: "src/domain/clock.rs".into(),
            line: 4,
            import: "crate::store::Store".into(),
            target: "store".into(),
        }]
    );
    assert_eq!(
        found[0].to_string(),
        "src/domain/clock.rs:4: `crate::store::Store` reaches store from domain"
    );
}

#[test]
fn grouped_and_inline_paths_are_read_too() {
    let source = "use crate::{\n    domain::clock::Clock,\n    delivery::{Dispatcher, lanes},\n};\n\
                  fn f() { let _ = crate::api::router; }\n\
                  // crate::ui in a comment is prose\n\
                  /// and so is crate::sources in a doc comment\n\
                  fn g() { let _ = \"$crate::x\"; }\n";
    let found = check_source("src/store/mod.rs", source, &modules()).unwrap();
    let targets: Vec<(&str, usize)> = found.iter().map(|v| (v.target.as_str(), v.line)).collect();
    assert_eq!(targets, vec![("delivery", 1), ("api", 5)]);
}

#[test]
fn adapters_do_not_import_each_other_but_use_what_is_below() {
    let source = "use crate::api::AppState;\nuse crate::service::Services;\nuse crate::domain::ids::AppId;\n";
    let found = check_source("src/ui/apps.rs", source, &modules()).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].target, "api");
    let found = check_source("src/lib.rs", source, &modules()).unwrap();
    assert!(found.is_empty(), "{found:?}");
}

#[test]
fn a_module_missing_from_the_table_is_an_error() {
    let e = check_source("src/cache/mod.rs", "use crate::domain::ids::AppId;\n", &modules()).unwrap_err();
    assert!(e.contains("`cache`"), "{e}");
}
