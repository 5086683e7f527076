//! The run's facts, below 今日の対応: status, as-of date, run id, the counts under Japanese
//! labels and the charts (bars drawn as SVG by the template).

use crate::report::{Chart, Report, labels};
use serde::Serialize;

#[derive(Serialize)]
pub(super) struct Fact {
    label: String,
    value: String,
}

/// A count: its Japanese label, the counter in English words (secondary), the number.
#[derive(Serialize)]
pub(super) struct Count {
    label: String,
    en: String,
    value: u64,
}

#[derive(Serialize)]
pub(super) struct ChartView {
    title: String,
    width: u64,
    height: u64,
    label_x: u64,
    bar_x: u64,
    bars: Vec<Bar>,
}

#[derive(Serialize)]
struct Bar {
    label: String,
    value: u64,
    y: u64,
    text_y: u64,
    w: u64,
    h: u64,
    value_x: u64,
}

pub(super) fn facts(r: &Report) -> Vec<Fact> {
    let mut facts = vec![
        Fact {
            label: "状態 Status".into(),
            value: format!("{} — {}", labels::status_ja(r.status), labels::status_en(r.status)),
        },
        Fact {
            label: "基準日 As-of date".into(),
            value: r.as_of.clone(),
        },
        Fact {
            label: "実行ID Run id".into(),
            value: r.run_id.clone(),
        },
    ];
    if r.dry_run {
        facts.push(Fact {
            label: "ドライラン Dry run".into(),
            value: "台帳は変更せず、何も送信していません（変更される内容を示します） / nothing committed or published"
                .into(),
        });
    }
    if let Some(w) = r.extra.get("missed_window") {
        facts.push(Fact {
            label: "引継漏れの確認範囲 Missed window".into(),
            value: missed_window(w),
        });
    }
    facts
}

pub(super) fn counts(r: &Report) -> Vec<Count> {
    r.summary
        .iter()
        .map(|(k, v)| Count {
            label: labels::summary_ja(&k.name()),
            en: k.name().replace('_', " "),
            value: v,
        })
        .collect()
}

fn missed_window(w: &serde_json::Value) -> String {
    let narrowed = w.get("narrowed").and_then(serde_json::Value::as_bool) == Some(true);
    let months = w.get("lookback_months").and_then(serde_json::Value::as_u64);
    match (narrowed, months) {
        (true, Some(n)) => format!(
            "絞り込みあり: 資格取得日が {} より後の人だけを確認しました（--missed-lookback-months {n}）。それより前は確認していません。",
            w.get("acquisition_dates_after")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("")
        ),
        (false, Some(n)) => format!("すべての資格取得日（--missed-lookback-months {n} でも全期間）"),
        _ => "基準日までのすべての資格取得日".into(),
    }
}

pub(super) fn chart(c: &Chart) -> ChartView {
    let max = c.bars.iter().map(|b| b.1).max().unwrap_or(0).max(1);
    let (label_w, bar_w, row_h) = (200u64, 400u64, 22u64);
    ChartView {
        title: c.title.clone(),
        width: label_w + bar_w + 80,
        height: row_h * c.bars.len() as u64 + 4,
        label_x: label_w - 6,
        bar_x: label_w,
        bars: c
            .bars
            .iter()
            .enumerate()
            .map(|(i, (label, v))| {
                let y = i as u64 * row_h + 2;
                let w = if *v == 0 { 0 } else { (v * bar_w / max).max(1) };
                Bar {
                    label: labels::summary_ja(&format!("migration_{label}"))
                        .strip_prefix("移行: ")
                        .map_or_else(|| label.clone(), |s| format!("{s} {label}")),
                    value: *v,
                    y,
                    text_y: y + 14,
                    w,
                    h: row_h - 6,
                    value_x: label_w + w + 4,
                }
            })
            .collect(),
    }
}
