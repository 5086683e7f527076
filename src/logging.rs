//! Logs and console output fit for schedulers (cron, systemd timers, JP1/AJS).
//!
//! - Nothing this process prints can kill it: a closed stdout or stderr (`… 2>&1 | head -1`, a
//!   collector that went away) makes the writes fail quietly, the batch goes on and ends with
//!   its own exit status. Rust ignores SIGPIPE; every write here ignores `EPIPE` (and any other
//!   write error) instead of panicking as `println!` does.
//! - `-q`: nothing on stdout at all; stderr only for what is not a success.
//! - `--log-format json`: one JSON object per line on stderr with `timestamp` (Japan time,
//!   `+09:00`), `level`, `target`, `message`, the event's and its spans' fields, `invocation`
//!   (one id per process) and `run_id` (see [`set_run_id`]).
//! - `NHI_LOG`, a tracing filter, overrides the level; an invalid one is a usage error.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};
use tracing::Subscriber;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// How log lines are written (`--log-format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One line of text per event, for people.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

static QUIET: AtomicBool = AtomicBool::new(false);
static RUN_ID: RwLock<Option<String>> = RwLock::new(None);
static INVOCATION: RwLock<Option<String>> = RwLock::new(None);

/// The run this process works on from now on: every later JSON log line carries it as
/// `run_id`. Called when a run's report is begun ([`crate::report::Report::new`]), that is as
/// soon as the run id is known (it is derived from the inputs, so lines about reading them come
/// first and carry `invocation` only).
pub fn set_run_id(id: &str) {
    *RUN_ID.write().unwrap_or_else(|e| e.into_inner()) = Some(id.to_owned());
}

fn run_id() -> Option<String> {
    RUN_ID.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// `-q` was given: [`say!`] prints nothing.
pub fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// Writes a line on stdout unless `-q`; a failed write is ignored.
pub fn say_fmt(args: std::fmt::Arguments) {
    if quiet() {
        return;
    }
    let mut out = std::io::stdout().lock();
    let _ = out.write_fmt(args);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

/// Writes a line on stderr (also with `-q`: what is said there is not a success); a failed
/// write is ignored.
pub fn complain_fmt(args: std::fmt::Arguments) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_fmt(args);
    let _ = err.write_all(b"\n");
}

/// `println!` that is silent with `-q` and never panics on a closed stdout.
#[macro_export]
macro_rules! say {
    ($($t:tt)*) => { $crate::logging::say_fmt(format_args!($($t)*)) };
}

/// `eprintln!` that never panics on a closed stderr.
#[macro_export]
macro_rules! complain {
    ($($t:tt)*) => { $crate::logging::complain_fmt(format_args!($($t)*)) };
}

/// stdout as a writer that never fails: for output written piecewise (`validate`). A closed
/// pipe swallows the rest.
pub struct Stdout;

impl std::io::Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stdout().lock().write_all(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stdout().lock().flush();
        Ok(())
    }
}

/// An invalid `NHI_LOG` filter.
#[derive(Debug, thiserror::Error)]
#[error("NHI_LOG={value:?} is not a valid log filter ({reason}); e.g. NHI_LOG=info or NHI_LOG=nhi_linkage=debug")]
pub struct BadLogFilter {
    pub value: String,
    pub reason: String,
}

/// Sets up logging on stderr. `NHI_LOG` (a tracing filter) overrides the level of `-v`/`-q`.
/// On a terminal, long phases show progress bars (text format, not with `-q`).
pub fn init(verbose: u8, quiet: bool, format: LogFormat) -> Result<(), BadLogFilter> {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    QUIET.store(quiet, Ordering::Relaxed);
    *INVOCATION.write().unwrap_or_else(|e| e.into_inner()) = Some(format!(
        "{}-{}",
        chrono::Utc::now().with_timezone(&tokyo()).format("%Y%m%dT%H%M%S"),
        std::process::id()
    ));
    let level = if quiet {
        "error"
    } else {
        match verbose {
            0 => "warn",
            1 => "info",
            _ => "debug",
        }
    };
    let filter = match std::env::var("NHI_LOG") {
        Ok(v) if !v.trim().is_empty() => EnvFilter::try_new(&v).map_err(|e| BadLogFilter {
            value: v.clone(),
            reason: e.to_string(),
        })?,
        _ => EnvFilter::new(level),
    };
    let _ = match format {
        LogFormat::Json => tracing_subscriber::registry()
            .with(JsonLayer.with_filter(filter))
            .try_init(),
        LogFormat::Text if std::io::stderr().is_terminal() && !quiet => {
            let bars = tracing_indicatif::IndicatifLayer::new();
            let fmt = tracing_subscriber::fmt::layer()
                .with_writer(bars.get_stderr_writer())
                .with_target(false)
                .with_timer(JapanTime)
                .log_internal_errors(false)
                .with_filter(filter);
            tracing_subscriber::registry().with(fmt).with(bars).try_init()
        }
        LogFormat::Text => {
            let fmt = tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal())
                .with_target(false)
                .with_timer(JapanTime)
                .log_internal_errors(false)
                .with_filter(filter);
            tracing_subscriber::registry().with(fmt).try_init()
        }
    };
    Ok(())
}

fn tokyo() -> chrono::FixedOffset {
    chrono::FixedOffset::east_opt(9 * 3600).expect("+09:00")
}

/// Japan time with offset and milliseconds: `2026-12-01T02:00:05.123+09:00`.
fn now_jst() -> String {
    chrono::Utc::now()
        .with_timezone(&tokyo())
        .format("%Y-%m-%dT%H:%M:%S%.3f%:z")
        .to_string()
}

/// Text log timestamps in Japan time.
struct JapanTime;

impl tracing_subscriber::fmt::time::FormatTime for JapanTime {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        write!(w, "{}", now_jst())
    }
}

/// Fields of an event or span, as JSON values.
struct Fields<'a>(&'a mut serde_json::Map<String, serde_json::Value>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let mut s = String::new();
        let _ = write!(s, "{value:?}");
        self.0.insert(field.name().to_owned(), s.into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), value.into());
    }
}

/// A span's recorded fields, kept in its extensions.
struct SpanFields(serde_json::Map<String, serde_json::Value>);

/// `--log-format json`: one flat JSON object per event and line (keys sorted): `timestamp`,
/// `level`, `invocation`, `run_id` (when known), `target`, the fields of the enclosing spans
/// (outermost first, an inner one wins), the event's fields (`message` for its text).
struct JsonLayer;

impl<S: Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for JsonLayer {
    fn on_new_span(&self, attrs: &tracing::span::Attributes<'_>, id: &tracing::span::Id, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            let mut m = serde_json::Map::new();
            attrs.record(&mut Fields(&mut m));
            span.extensions_mut().insert(SpanFields(m));
        }
    }

    fn on_record(&self, id: &tracing::span::Id, values: &tracing::span::Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            if let Some(f) = span.extensions_mut().get_mut::<SpanFields>() {
                values.record(&mut Fields(&mut f.0));
            }
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        let mut line = serde_json::Map::new();
        line.insert("timestamp".into(), now_jst().into());
        line.insert("level".into(), event.metadata().level().as_str().into());
        if let Some(i) = INVOCATION.read().unwrap_or_else(|e| e.into_inner()).clone() {
            line.insert("invocation".into(), i.into());
        }
        if let Some(r) = run_id() {
            line.insert("run_id".into(), r.into());
        }
        line.insert("target".into(), event.metadata().target().into());
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(f) = span.extensions().get::<SpanFields>() {
                    for (k, v) in &f.0 {
                        line.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        event.record(&mut Fields(&mut line));
        let mut bytes = serde_json::to_vec(&serde_json::Value::Object(line)).unwrap_or_default();
        bytes.push(b'\n');
        // one write per line, so that lines of concurrent threads never interleave; errors
        // (a closed pipe) are ignored
        let _ = std::io::stderr().lock().write_all(&bytes);
    }
}
