//! The documentation is run: every command README.md, docs/operators.md and samples/README.md
//! show is executed here and the outcomes they claim are checked; every function and test that
//! docs/design.md names (its rules index above all) must exist.
//!
//! Convention for the documents (write new walk-throughs this way):
//!
//! - A fenced block opened with ` ```sh ` is a walk-through. Its commands run in order, each
//!   with `bash -euo pipefail -c`, in one fresh temporary folder per document that holds a copy
//!   of `samples/` (so paths read as from the repository root and nothing in the repository
//!   changes). `nhi-linkage` is the binary under test (linked onto PATH), and
//!   `cargo run --release --` is replaced by it. `cargo test` is not run (it is what runs this
//!   test); no other `cargo` command may appear in a walk-through.
//! - A command is one line, or several: a line ending in `\` continues, and a compound command
//!   (a `for` loop) takes lines until `bash -n` accepts it.
//! - Comment lines beginning with `# →` right after a command state what it does, and are
//!   checked: `# → exit N` (without one, exit 0 is expected) and `# → "text"` (stdout or stderr
//!   contains `text`; `\"` stands for a quote). Other comment lines are prose.
//! - The folder also holds the example configuration `docs/nhi-linkage.example.toml`, which
//!   docs/operators.md shows in full (checked: the `toml` block equals the file).
//! - Blocks of the kinds in [`EXAMPLE_KINDS`] are examples and are never run: `text` (command
//!   synopses, console output, crontab lines, JP1 job definitions), `ini` (systemd units),
//!   `toml` (configuration files), `json`, `xml`, `csv`. Any other block kind, or a fence
//!   without a kind, fails this test, so that no block looks runnable without being run.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The example configuration docs/operators.md shows and its walk-through uses.
const CONFIG: &str = "docs/nhi-linkage.example.toml";

/// Block kinds that are shown, never run.
const EXAMPLE_KINDS: &[&str] = &["text", "ini", "toml", "json", "xml", "csv"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// One command of a walk-through and the outcome its `# →` lines claim.
#[derive(Debug)]
struct Step {
    /// Where it is: document and line.
    at: String,
    script: String,
    exit: i32,
    says: Vec<String>,
}

/// The fenced blocks of a Markdown document: (kind, first line number, lines).
fn blocks(doc: &str, text: &str) -> Vec<(String, usize, Vec<String>)> {
    let mut out = Vec::new();
    let mut open: Option<(String, usize, Vec<String>)> = None;
    for (i, line) in text.lines().enumerate() {
        let fence = line.trim_start().starts_with("```");
        match (&mut open, fence) {
            (None, true) => {
                let kind = line.trim_start().trim_start_matches('`').trim().to_owned();
                assert!(
                    !kind.is_empty(),
                    "{doc}:{}: a fenced block needs a kind (sh to run it, or one of {EXAMPLE_KINDS:?})",
                    i + 1
                );
                open = Some((kind, i + 2, Vec::new()));
            }
            (Some(_), true) => out.push(open.take().unwrap()),
            (Some((_, _, lines)), false) => lines.push(line.to_owned()),
            (None, false) => {}
        }
    }
    assert!(open.is_none(), "{doc}: a fenced block is not closed");
    out
}

fn complete(script: &str) -> bool {
    Command::new("bash")
        .args(["-n", "-c", script])
        .output()
        .expect("bash runs")
        .status
        .success()
}

/// The commands of a document's `sh` blocks, in order, with their claimed outcomes.
fn steps(doc: &str) -> Vec<Step> {
    let text = read(doc);
    let mut steps: Vec<Step> = Vec::new();
    for (kind, first, lines) in blocks(doc, &text) {
        if kind != "sh" {
            assert!(
                EXAMPLE_KINDS.contains(&kind.as_str()),
                "{doc}:{first}: block kind `{kind}` is neither run (sh) nor an example ({EXAMPLE_KINDS:?})"
            );
            continue;
        }
        let mut pending = String::new();
        let mut pending_at = 0;
        // a `# →` line belongs to the last complete command of this block
        let mut last: Option<usize> = None;
        for (j, line) in lines.iter().enumerate() {
            let at = first + j;
            let t = line.trim();
            if pending.is_empty() {
                if let Some(claim) = t.strip_prefix("# →") {
                    let i = last.unwrap_or_else(|| panic!("{doc}:{at}: `# →` without a command before it"));
                    let claim = claim.trim();
                    if let Some(n) = claim.strip_prefix("exit ") {
                        steps[i].exit = n
                            .trim()
                            .parse()
                            .unwrap_or_else(|_| panic!("{doc}:{at}: exit status `{n}`"));
                    } else if let Some(s) = claim.strip_prefix('"').and_then(|c| c.strip_suffix('"')) {
                        steps[i].says.push(s.replace("\\\"", "\""));
                    } else {
                        panic!("{doc}:{at}: a `# →` line says `exit N` or \"text\", not `{claim}`");
                    }
                    continue;
                }
                if t.is_empty() || t.starts_with('#') {
                    continue;
                }
                pending_at = at;
            }
            pending.push_str(line);
            pending.push('\n');
            if t.ends_with('\\') || !complete(&pending) {
                continue;
            }
            let script = std::mem::take(&mut pending);
            let script = script.replace("cargo run --release --", "nhi-linkage");
            if script.trim() == "cargo test" {
                last = None;
                continue;
            }
            assert!(
                !script.trim_start().starts_with("cargo "),
                "{doc}:{pending_at}: a walk-through runs no cargo command but `cargo run --release --` and `cargo test`"
            );
            steps.push(Step {
                at: format!("{doc}:{pending_at}"),
                script,
                exit: 0,
                says: Vec::new(),
            });
            last = Some(steps.len() - 1);
        }
        assert!(
            pending.is_empty(),
            "{doc}: the block at line {first} ends inside a command"
        );
    }
    steps
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

/// Runs a document's walk-throughs in a fresh folder; returns how many commands ran.
fn run_document(doc: &str) -> usize {
    let steps = steps(doc);
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("repo");
    copy_dir(&root().join("samples"), &work.join("samples"));
    std::fs::create_dir_all(work.join("docs")).unwrap();
    std::fs::copy(root().join(CONFIG), work.join(CONFIG)).unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_nhi-linkage"), bin.join("nhi-linkage")).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    for s in &steps {
        let out = Command::new("bash")
            .args(["-euo", "pipefail", "-c", &s.script])
            .current_dir(&work)
            .env("PATH", &path)
            .env_remove("NHI_LOG")
            .output()
            .unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            out.status.code(),
            Some(s.exit),
            "{}: `{}` should exit {}; it said:\n{said}",
            s.at,
            s.script.trim(),
            s.exit
        );
        for want in &s.says {
            assert!(
                said.contains(want.as_str()),
                "{}: `{}` should say \"{want}\"; it said:\n{said}",
                s.at,
                s.script.trim()
            );
        }
    }
    steps.len()
}

#[test]
fn readme_walkthroughs_run_as_written() {
    let readme = read("README.md");
    // .ci/run runs "the README's test command"
    assert!(
        readme.lines().any(|l| l.trim() == "cargo test"),
        "README.md states the test command `cargo test`"
    );
    assert!(run_document("README.md") >= 5, "README's tour runs commands");
}

#[test]
fn operator_guide_walkthroughs_run_as_written() {
    assert!(run_document("docs/operators.md") >= 10);
}

#[test]
fn the_configuration_shown_is_the_example_file() {
    let guide = read("docs/operators.md");
    let shown: Vec<String> = blocks("docs/operators.md", &guide)
        .into_iter()
        .filter(|(kind, _, _)| kind == "toml")
        .map(|(_, _, lines)| lines.join("\n") + "\n")
        .collect();
    assert_eq!(shown, vec![read(CONFIG)], "docs/operators.md shows {CONFIG} as it is");
}

#[test]
fn samples_readme_walkthroughs_run_as_written() {
    assert!(run_document("samples/README.md") >= 5);
}

/// Whether `name` is defined as a function in `text` (`fn name(` or `fn name<`).
fn defines_fn(text: &str, name: &str) -> bool {
    text.contains(&format!("fn {name}(")) || text.contains(&format!("fn {name}<"))
}

fn defines_type(text: &str, name: &str) -> bool {
    ["struct ", "enum ", "trait ", "impl ", "for "]
        .iter()
        .any(|k| text.contains(&format!("{k}{name} ")) || text.contains(&format!("{k}{name}<")))
}

/// Resolves `module::…::[Type::]function` under src/; Err says what is missing.
fn resolve_rust_path(path: &str) -> Result<(), String> {
    let segs: Vec<&str> = path.split("::").collect();
    // the longest prefix that is a module file
    for n in (1..=segs.len()).rev() {
        let base = root().join("src").join(segs[..n].join("/"));
        let file = [base.with_extension("rs"), base.join("mod.rs")]
            .into_iter()
            .find(|p| p.is_file());
        let Some(file) = file else { continue };
        let text = std::fs::read_to_string(&file).unwrap();
        return match &segs[n..] {
            [] => Ok(()),
            [f] if defines_fn(&text, f) => Ok(()),
            [t] if t.starts_with(char::is_uppercase) && defines_type(&text, t) => Ok(()),
            [t, f] if defines_type(&text, t) && defines_fn(&text, f) => Ok(()),
            rest => Err(format!("{} has no {}", file.display(), rest.join("::"))),
        };
    }
    Err("no such module under src/".into())
}

/// Resolves `tests/file.rs::name` or `src/…/file.rs::name` (a test function).
fn resolve_test(path: &str) -> Result<(), String> {
    let (file, name) = path.rsplit_once("::").unwrap();
    let text = std::fs::read_to_string(root().join(file)).map_err(|e| format!("{file}: {e}"))?;
    if !defines_fn(&text, name) {
        return Err(format!("{file} has no fn {name}"));
    }
    // the test attribute sits right above the function (a doc comment may come between)
    let at = text.find(&format!("fn {name}(")).unwrap();
    let before: Vec<&str> = text[..at].lines().rev().skip(1).take(12).collect();
    let is_test = before
        .iter()
        .take_while(|l| {
            let l = l.trim();
            l.starts_with("#[") || l.starts_with("///") || l.starts_with("//")
        })
        .any(|l| l.trim().starts_with("#[test]") || l.contains("proptest"));
    if is_test || text[..at].trim_end().ends_with("#[test]") {
        Ok(())
    } else {
        Err(format!("{file}: fn {name} is not a #[test]"))
    }
}

/// Backticked spans of a text.
fn code_spans(text: &str) -> Vec<String> {
    text.split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s.to_owned())
        .collect()
}

/// `a::b::c` made of identifiers, with a first segment that is a module under src/.
fn is_rust_path(s: &str) -> bool {
    let segs: Vec<&str> = s.split("::").collect();
    segs.len() >= 2
        && segs
            .iter()
            .all(|g| !g.is_empty() && g.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        && (root().join("src").join(segs[0]).is_dir() || root().join("src").join(format!("{}.rs", segs[0])).is_file())
}

fn is_test_path(s: &str) -> bool {
    (s.starts_with("tests/") || s.starts_with("src/")) && s.contains(".rs::") && !s.contains(' ')
}

#[test]
fn design_names_only_functions_and_tests_that_exist() {
    let design = read("docs/design.md");
    let mut missing = Vec::new();
    let mut named = 0;
    for span in code_spans(&design) {
        let r = if is_test_path(&span) {
            resolve_test(&span)
        } else if is_rust_path(&span) {
            resolve_rust_path(&span)
        } else {
            continue;
        };
        named += 1;
        if let Err(e) = r {
            missing.push(format!("`{span}`: {e}"));
        }
    }
    assert!(
        missing.is_empty(),
        "docs/design.md names what does not exist:\n{}",
        missing.join("\n")
    );
    assert!(named >= 60, "docs/design.md names {named} functions and tests");
}

/// The rules index: one row per rule of the spec, each naming at least one enforcing function
/// and one test.
#[test]
fn the_rules_index_covers_every_rule_with_code_and_tests() {
    let design = read("docs/design.md");
    let section = &design[design.find("## Rules index").expect("a `## Rules index` section")..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    let mut seen = Vec::new();
    for row in section.lines().filter(|l| l.starts_with("| **R")) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        // | rule | what it says | enforced by | proved by |
        assert_eq!(cells.len(), 6, "four columns: {row}");
        let rule = cells[1].trim_matches('*').to_owned();
        let code: Vec<String> = code_spans(cells[3]).into_iter().filter(|s| is_rust_path(s)).collect();
        let tests: Vec<String> = code_spans(cells[4]).into_iter().filter(|s| is_test_path(s)).collect();
        assert!(!code.is_empty(), "{rule}: no enforcing function named");
        assert!(!tests.is_empty(), "{rule}: no test named");
        assert!(cells[2].len() > 20, "{rule}: one line of what the rule says");
        seen.push(rule);
    }
    let want: Vec<String> = ["R1", "R1a"]
        .iter()
        .map(|s| s.to_string())
        .chain((2..=14).map(|n| format!("R{n}")))
        .collect();
    assert_eq!(seen, want, "the rules index lists R1, R1a, R2 … R14 in order");
}
