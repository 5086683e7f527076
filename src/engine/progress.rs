//! Progress bars of the long phases (reading, applying, writing), drawn on a terminal only.

use tracing_indicatif::span_ext::IndicatifSpanExt;

/// A span that shows as a progress bar on a terminal (a spinner when `len` is unknown).
pub(crate) fn progress_span(what: &'static str, len: Option<u64>) -> tracing::Span {
    use tracing_indicatif::style::ProgressStyle;
    let span = tracing::info_span!("phase", phase = what);
    let template = match len {
        Some(_) => "{spinner} {span_fields} {pos}/{len} {wide_bar} {elapsed}",
        None => "{spinner} {span_fields} {elapsed}",
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        span.pb_set_style(&style);
    }
    if let Some(n) = len {
        span.pb_set_length(n);
    }
    span
}
