//! Tests of the page: the accept command, bounded lists, escaping.

use super::*;
use crate::report::RejectEntry;

#[test]
fn accept_command_replaces_dry_run_and_earlier_acceptance() {
    let inv: Vec<String> = [
        "/opt/nhi/nhi-linkage",
        "migrate",
        "--ledger",
        "/srv/a b/ledger.sqlite",
        "--dry-run",
        "--accept-flag-losses",
        "00ff",
        "--reason=old",
        "--from",
        "x.csv",
    ]
    .map(String::from)
    .to_vec();
    assert_eq!(
        accept_command(&inv, "abc"),
        "/opt/nhi/nhi-linkage migrate --ledger '/srv/a b/ledger.sqlite' --from x.csv \
         --accept-flag-losses abc --reason '（承認の理由）'"
    );
}

#[test]
fn lists_are_bounded_and_counted_from_the_totals() {
    let mut r = Report::new("r".into(), "20261201".into(), false);
    for i in 0..(MAX_ROWS + 50) {
        r.rejects
            .push(RejectEntry {
                file: format!("f{i:04}.csv"),
                record_sequence: Some(i as u64),
                line: None,
                byte_offset: None,
                field: None,
                code: "E_DATE".into(),
                message: "bad date".into(),
                critical: false,
            })
            .unwrap();
    }
    let html = render_report(&r, &[]).unwrap();
    assert!(
        html.contains("f0199.csv") && !html.contains("f0200.csv"),
        "the first 200 only"
    );
    assert!(html.contains("250"), "the total");
    assert!(html.contains("href=\"rejects.csv\""), "a pointer to the full list");
    // a head slice with a larger total (as a spooling engine hands it over)
    let heads = Heads::of(&r).unwrap();
    let mut input = Input::from_report(&r, &heads, &[]);
    input.rejects = ListHead {
        rows: &heads.rejects[..3],
        total: 100_000,
    };
    input.reject_codes.insert(
        "E_DATE".into(),
        CodeTotals {
            total: 100_000,
            critical: 0,
        },
    );
    let html = render(&input).unwrap();
    assert!(html.contains("100000") && !html.contains("f0003.csv"));
}

#[test]
fn values_are_escaped() {
    let mut r = Report::new("r".into(), "20261201".into(), false);
    r.notes.push("<script>alert(1)</script>".into());
    let html = render_report(&r, &[]).unwrap();
    assert!(!html.contains("<script>") && html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    r.notes[0] = "\"'><b>&amp;".into();
    let html = render_report(&r, &[]).unwrap();
    assert!(html.contains("&quot;&#39;&gt;&lt;b&gt;&amp;amp;"), "{html}");
}
