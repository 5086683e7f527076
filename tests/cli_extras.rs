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
