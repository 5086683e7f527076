//! One self-contained HTML page for supervisors: no scripts, no external resources.

use super::Report;
use std::fmt::Write;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn table(out: &mut String, head: &[&str], rows: impl Iterator<Item = Vec<String>>, empty: &str) {
    let rows: Vec<Vec<String>> = rows.collect();
    if rows.is_empty() {
        let _ = writeln!(out, "<p class=\"none\">{}</p>", esc(empty));
        return;
    }
    out.push_str("<table><thead><tr>");
    for h in head {
        let _ = write!(out, "<th>{}</th>", esc(h));
    }
    out.push_str("</tr></thead><tbody>\n");
    for r in rows {
        out.push_str("<tr>");
        for c in r {
            let _ = write!(out, "<td>{}</td>", esc(&c));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody></table>\n");
}

pub fn render(r: &Report) -> anyhow::Result<String> {
    let mut o = String::with_capacity(16 * 1024);
    let title = if r.dry_run {
        "nhi-linkage 実行レポート（ドライラン / dry run）"
    } else {
        "nhi-linkage 実行レポート"
    };
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"ja\"><head><meta charset=\"utf-8\"><title>{t} {id}</title>\n<style>\
body{{font-family:sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse;margin:.5em 0 1.5em}}\
th,td{{border:1px solid #bbb;padding:.25em .6em;text-align:left;font-size:.9em}}th{{background:#eee}}\
.crit{{color:#a00;font-weight:bold}}.none{{color:#666}}.box{{display:inline-block;border:1px solid #bbb;padding:.5em 1em;margin:.2em}}\
</style></head><body>\n<h1>{t}</h1>\n<p>Run <code>{id}</code> · 基準日 as-of {asof} · status <b>{st}</b></p>\n",
        t = esc(title),
        id = esc(&r.run_id),
        asof = esc(&r.as_of),
        st = esc(&r.status)
    );
    if let Some(reason) = &r.abort_reason {
        let _ = writeln!(
            o,
            "<p class=\"crit\">中止 / aborted: {} — nothing was committed or published.</p>",
            esc(reason)
        );
    }
    o.push_str("<h2>概要 Summary</h2>\n<div>");
    for (k, v) in &r.summary {
        let _ = write!(o, "<span class=\"box\">{}: <b>{v}</b></span>", esc(k));
    }
    for (k, v) in &r.worklists {
        let _ = write!(o, "<span class=\"box\">worklist {}: <b>{v}</b></span>", esc(k));
    }
    o.push_str("</div>\n");
    for n in &r.notes {
        let _ = writeln!(o, "<p class=\"note\">{}</p>", esc(n));
    }
    for c in &r.charts {
        chart(&mut o, c);
    }
    o.push_str("<h2>入力ファイル Inputs</h2>\n");
    table(
        &mut o,
        &[
            "file", "kind", "format", "encoding", "status", "records", "rejected", "note",
        ],
        r.inputs.iter().map(|i| {
            vec![
                i.name.clone(),
                i.kind.clone(),
                i.format.clone(),
                i.encoding.clone(),
                i.status.to_owned(),
                i.records.to_string(),
                i.rejected.to_string(),
                i.note.clone().unwrap_or_default(),
            ]
        }),
        "No input files.",
    );
    let critical = r.critical_rejects()?;
    let _ = writeln!(
        o,
        "<h2>エラー Rejects ({}{})</h2>",
        r.rejects.len(),
        if critical > 0 {
            format!(", <span class=\"crit\">{critical} critical</span>")
        } else {
            String::new()
        }
    );
    table(
        &mut o,
        &[
            "file",
            "RecordSequence",
            "line",
            "byte offset",
            "field",
            "code",
            "critical",
            "message",
        ],
        r.rejects.head(HEAD)?.into_iter().map(|x| {
            vec![
                x.file.clone(),
                x.record_sequence.map(|s| s.to_string()).unwrap_or_default(),
                x.line.map(|s| s.to_string()).unwrap_or_default(),
                x.byte_offset.map(|s| s.to_string()).unwrap_or_default(),
                x.field.clone().unwrap_or_default(),
                x.code.clone(),
                if x.critical { "CRITICAL".into() } else { String::new() },
                x.message.clone(),
            ]
        }),
        "No rejected records.",
    );
    more(&mut o, r.rejects.len(), "rejects.csv");
    o.push_str("<h2>フラグ引継 Age-transition carries</h2>\n");
    table(
        &mut o,
        &[
            "from insurer",
            "from key",
            "to insurer",
            "to key",
            "flags",
            "rule",
            "via",
            "QualificationDate",
            "future",
        ],
        r.carries.iter().map(|c| {
            vec![
                c.from_insurer.clone(),
                c.from_subscriber_key.clone(),
                c.to_insurer.clone(),
                c.to_subscriber_key.clone(),
                c.flags.join(" "),
                c.rule.clone(),
                c.via.clone(),
                c.qualification_date.clone(),
                if c.future_dated { "yes".into() } else { String::new() },
            ]
        }),
        "No carries in this run.",
    );
    o.push_str("<h2>フラグ変更 Flag changes</h2>\n");
    table(
        &mut o,
        &["insurer", "key", "InfoCode", "flag", "change"],
        r.flag_changes.iter().map(|f| {
            vec![
                f.insurer.clone(),
                f.subscriber_key.clone(),
                f.info_code.clone().unwrap_or_default(),
                f.flag_type.clone(),
                f.change.clone(),
            ]
        }),
        "No flag changed.",
    );
    let _ = writeln!(o, "<h2>保留フラグ Pending flags ({})</h2>", r.pending_flags.len());
    table(
        &mut o,
        &[
            "insurer",
            "key",
            "flag",
            "operation",
            "InfoCode",
            "file",
            "RecordSequence",
        ],
        r.pending_flags.head(HEAD)?.into_iter().map(|p| {
            vec![
                p.insurer.clone(),
                p.subscriber_key.clone(),
                p.flag_type.clone(),
                p.operation.clone(),
                p.info_code.clone().unwrap_or_default(),
                p.file.clone(),
                p.record_sequence.to_string(),
            ]
        }),
        "No pending flags.",
    );
    more(&mut o, r.pending_flags.len(), "report.json (pending_flags)");
    for (name, wl) in &r.worklist_rows {
        let _ = writeln!(
            o,
            "<h2>作業リスト {} — {} ({})</h2>",
            esc(name),
            esc(&wl.title),
            wl.rows.len()
        );
        table(&mut o, &wl.columns, wl.rows.iter().cloned(), "Empty.");
    }
    o.push_str("<h2>出力 Outputs</h2>\n");
    table(
        &mut o,
        &["file", "kind", "records", "bytes", "SHA-256"],
        r.outputs.iter().map(|f| {
            vec![
                f.name.clone(),
                f.kind.clone(),
                f.records.to_string(),
                f.bytes.to_string(),
                f.sha256.clone(),
            ]
        }),
        if r.dry_run {
            "Dry run: nothing published."
        } else {
            "Nothing to publish."
        },
    );
    o.push_str("</body></html>\n");
    Ok(o)
}

/// Rows of a long list shown in the page; the CSV, xlsx and report.json hold them all.
const HEAD: usize = 200;

/// Says where the rest of a list cut at [`HEAD`] rows is.
fn more(out: &mut String, total: usize, full: &str) {
    if total > HEAD {
        let _ = writeln!(
            out,
            "<p class=\"none\">先頭 {HEAD} 件を表示（全 {total} 件は {f}） / first {HEAD} of {total} shown; all in {f}</p>",
            f = esc(full)
        );
    }
}

/// An inline SVG bar chart (horizontal bars, one per value).
fn chart(out: &mut String, c: &super::Chart) {
    let _ = writeln!(out, "<h3>{}</h3>", esc(&c.title));
    let max = c.bars.iter().map(|b| b.1).max().unwrap_or(0).max(1);
    let (label_w, bar_w, row_h) = (200u64, 400u64, 22u64);
    let h = row_h * c.bars.len() as u64 + 4;
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{h}\" role=\"img\" aria-label=\"{}\">",
        label_w + bar_w + 80,
        esc(&c.title)
    );
    for (i, (label, v)) in c.bars.iter().enumerate() {
        let y = i as u64 * row_h + 2;
        let w = if *v == 0 { 0 } else { (v * bar_w / max).max(1) };
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{}\" font-size=\"12\" text-anchor=\"end\">{}</text><rect x=\"{}\" y=\"{y}\" width=\"{w}\" height=\"{}\" fill=\"#4a7ab0\"/><text x=\"{}\" y=\"{}\" font-size=\"12\">{v}</text>",
            label_w - 6,
            y + 14,
            esc(label),
            label_w,
            row_h - 6,
            label_w + w + 4,
            y + 14
        );
    }
    out.push_str("</svg>\n");
}
