//! Issue 15: shell completions and manual pages, generated from the program's own arguments.

mod common;
use common::*;
use std::process::Command;

#[test]
fn completions_and_manual_pages() {
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let o = Command::new(BIN).args(["completions", shell]).output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{shell}");
        let s = String::from_utf8(o.stdout).unwrap();
        assert!(s.contains("nhi-linkage"), "{shell}");
        assert!(
            s.contains("accept-flag-losses") && s.contains("merge-shards"),
            "{shell}: every command and option"
        );
    }
    let o = Command::new(BIN).args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "an unknown shell is a usage error");

    let o = Command::new(BIN).arg("man").output().unwrap();
    assert_eq!(o.status.code(), Some(0));
    let page = String::from_utf8(o.stdout).unwrap();
    assert!(page.starts_with(".ie") || page.contains(".TH nhi-linkage"), "{page}");
    assert!(page.contains("age\\-transition") && page.contains("migrate"), "{page}");

    let site = Site::new();
    let o = Command::new(BIN)
        .args(["man", "--out"])
        .arg(site.p("man1"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    for page in [
        "nhi-linkage.1",
        "nhi-linkage-run.1",
        "nhi-linkage-migrate.1",
        "nhi-linkage-age-transition-extract.1",
    ] {
        let text = std::fs::read_to_string(site.p("man1").join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.contains(".TH"), "{page}");
    }
    let run = std::fs::read_to_string(site.p("man1").join("nhi-linkage-run.1")).unwrap();
    assert!(run.contains("unmappable"), "the options of run");
}

/// `--format` meant three things (a file syntax in extract and generate, validate's printout,
/// `run`'s `--output-format`): one name per meaning now — `--output-format`/`--output-encoding`
/// for the files a command writes, `--message-format` for what validate prints — with the old
/// spellings kept as hidden aliases.
#[test]
fn one_option_name_per_meaning_old_spellings_still_accepted() {
    let samples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/inbox");
    let validate = |opt: &str| {
        let o = Command::new(BIN)
            .args(["validate", opt, "json"])
            .arg(&samples)
            .output()
            .unwrap();
        assert_eq!(
            o.status.code(),
            Some(0),
            "{opt}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        o.stdout
    };
    let new = validate("--message-format");
    let doc: serde_json::Value = serde_json::from_slice(&new).expect("one JSON document");
    assert_eq!(doc["ok"], true);
    assert_eq!(new, validate("--format"));

    let site = Site::new();
    let generate = |dir: &str, opts: [&str; 4]| {
        let o = Command::new(BIN)
            .args(["generate", "--subscribers", "20", "--as-of", "20261201", "--out"])
            .arg(site.p(dir))
            .args(opts)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
        files_under(&site.p(dir))
    };
    let new = generate("new", ["--output-format", "csv", "--output-encoding", "shift_jis"]);
    assert!(new.keys().all(|n| n.ends_with(".csv")), "{:?}", new.keys());
    assert_eq!(new, generate("old", ["--format", "csv", "--encoding", "shift_jis"]));

    for cmd in [&["validate"][..], &["generate"], &["age-transition", "extract"]] {
        let o = Command::new(BIN).args(cmd).arg("--help").output().unwrap();
        let help = String::from_utf8(o.stdout).unwrap();
        assert!(
            !help.contains("--format ") && !help.contains("--encoding "),
            "{cmd:?}: {help}"
        );
    }
}
