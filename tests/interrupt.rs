//! SIGTERM / Ctrl-C during a run, and a second run on a busy ledger (issue: concurrency).
//!
//! The `wait-*` failpoints hold a run at each phase boundary until a signal arrives, so every
//! check point is hit deterministically; one test also signals a large generated run after a
//! short delay, as an operator would.
#![cfg(unix)]

mod common;

use common::*;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn spawn_run(site: &Site, env: &[(&str, &str)]) -> Child {
    let mut c = Command::new(BIN);
    c.args(["run", "--inbox"]).arg(site.inbox());
    c.arg("--outbox")
        .arg(site.p("outbox"))
        .arg("--reports")
        .arg(site.p("reports"))
        .arg("--ledger")
        .arg(site.p("ledger.sqlite"))
        .args(["--as-of", "20261201"]);
    if !site.p("ledger.sqlite").exists() {
        c.arg("--init-ledger");
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig}");
}

/// Reads the child's stderr until a line contains `needle`, then keeps draining it on a thread
/// (a closed pipe would make the child's next message fail); the thread returns all of stderr.
fn wait_for_line(child: &mut Child, needle: &str) -> std::thread::JoinHandle<String> {
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if line.contains(needle) {
            return std::thread::spawn(move || {
                for l in lines {
                    seen.push_str(&l.unwrap_or_default());
                    seen.push('\n');
                }
                seen
            });
        }
    }
    panic!("stderr ended without {needle:?}: {seen}");
}

fn applied_files(ledger: &Path) -> i64 {
    let c = rusqlite::Connection::open(ledger).unwrap();
    c.query_row("SELECT count(*) FROM applied_file", [], |r| r.get(0))
        .unwrap()
}

fn published_entries(site: &Site) -> Vec<String> {
    std::fs::read_dir(site.p("outbox"))
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn sample_inbox(site: &Site) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/inbox");
    std::fs::create_dir_all(site.inbox()).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, site.inbox().join(p.file_name().unwrap())).unwrap();
    }
}

#[test]
fn a_signal_at_every_phase_commits_nothing_and_a_rerun_completes() {
    let clean = Site::new();
    sample_inbox(&clean);
    let o = clean.run(&[]);
    assert!(
        o.status.code().is_some_and(|c| c <= 1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let want = clean.outbox_files();
    assert!(!want.is_empty());
    for (phase, sig) in [
        ("wait-after-read", "-TERM"),
        ("wait-after-apply", "-INT"),
        ("wait-before-commit", "-TERM"),
    ] {
        let site = Site::new();
        sample_inbox(&site);
        let mut child = spawn_run(&site, &[("NHI_FAILPOINT", phase)]);
        let stderr = wait_for_line(&mut child, "waiting for a signal");
        signal(&child, sig);
        let status = child.wait().unwrap();
        let stderr = stderr.join().unwrap();
        assert_eq!(status.code(), Some(130), "{phase}: {stderr}");
        assert!(stderr.contains("nothing was committed or published"), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert_eq!(applied_files(&site.p("ledger.sqlite")), 0, "{phase}: nothing committed");
        assert!(published_entries(&site).is_empty(), "{phase}: outbox empty");
        let reports: Vec<_> = files_under(&site.p("reports")).into_keys().collect();
        assert!(reports.is_empty(), "{phase}: no report or staging left: {reports:?}");
        // the rerun completes, with the same outputs as an uninterrupted run
        let o = site.run(&[]);
        assert!(
            o.status.code().is_some_and(|c| c <= 1),
            "{phase}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(site.outbox_files(), want, "{phase}");
        assert!(applied_files(&site.p("ledger.sqlite")) > 0);
    }
}

#[test]
fn sigterm_during_a_large_run_stops_cleanly() {
    let site = Site::new();
    let g = Command::new(BIN)
        .args(["generate", "--subscribers", "20000", "--as-of", "20261201", "--out"])
        .arg(site.inbox())
        .output()
        .unwrap();
    assert!(g.status.success(), "{}", String::from_utf8_lossy(&g.stderr));
    let child = spawn_run(&site, &[]);
    std::thread::sleep(Duration::from_millis(400));
    signal(&child, "-TERM");
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    match out.status.code() {
        Some(130) => {
            assert!(stderr.contains("nothing was committed or published"), "{stderr}");
            assert_eq!(applied_files(&site.p("ledger.sqlite")), 0);
            assert!(published_entries(&site).is_empty());
        }
        // a machine fast enough to finish in 400 ms: then the run is simply complete
        Some(0 | 1) => eprintln!("run finished before the signal; nothing to interrupt"),
        other => panic!("unexpected status {other:?}: {stderr}"),
    }
    let o = site.run(&[]);
    assert!(
        o.status.code().is_some_and(|c| c <= 1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(applied_files(&site.p("ledger.sqlite")) > 0);
    assert_eq!(published_entries(&site).len(), 1, "one published run folder");
}

#[test]
fn a_second_run_while_one_is_running_is_refused() {
    let site = Site::new();
    sample_inbox(&site);
    let mut first = spawn_run(&site, &[("NHI_FAILPOINT", "wait-after-read")]);
    let first_err = wait_for_line(&mut first, "waiting for a signal");
    let o = site.run(&[]);
    assert_eq!(o.status.code(), Some(4), "documented status for a busy ledger");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("in use by another nhi-linkage process"), "{err}");
    signal(&first, "-TERM");
    assert_eq!(first.wait().unwrap().code(), Some(130));
    first_err.join().unwrap();
    // once the first has gone, the ledger is free again
    let o = site.run(&[]);
    assert!(
        o.status.code().is_some_and(|c| c <= 1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
