//! Build metadata for `--version` and report.json: the git commit and the build date.
//!
//! Reproducible: the date is `SOURCE_DATE_EPOCH` when set, else the commit's own date, never the
//! clock; without git (a source tarball) both are "unknown" and the build goes on.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!s.is_empty()).then_some(s)
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let commit = git(&["rev-parse", "--short=12", "HEAD"]);
    let date = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .and_then(chrono_free_date)
        .or_else(|| {
            commit
                .as_ref()
                .and_then(|_| git(&["log", "-1", "--format=%cd", "--date=short"]))
        });
    // rebuild when HEAD moves (a commit, a checkout); only paths that exist, or cargo would
    // rebuild every time
    let mut watch: Vec<String> = vec!["HEAD".into(), "packed-refs".into()];
    watch.extend(git(&["symbolic-ref", "-q", "HEAD"]));
    for p in watch.iter().filter_map(|w| git(&["rev-parse", "--git-path", w])) {
        if std::path::Path::new(&p).exists() {
            println!("cargo:rerun-if-changed={p}");
        }
    }
    println!(
        "cargo:rustc-env=NHI_GIT_COMMIT={}",
        commit.as_deref().unwrap_or("unknown")
    );
    println!(
        "cargo:rustc-env=NHI_BUILD_DATE={}",
        date.as_deref().unwrap_or("unknown")
    );
}

/// A Unix time as YYYY-MM-DD (UTC), without a dependency.
fn chrono_free_date(t: i64) -> Option<String> {
    let days = t.div_euclid(86_400);
    // civil_from_days (H. Hinnant)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    Some(format!("{y:04}-{m:02}-{d:02}"))
}
