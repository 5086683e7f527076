//! nhi-linkage: reads insurers' bulk files strictly, applies them per person against a SQLite
//! ledger, keeps DV-protection flags across the 国保→後期 transfer and writes linkage files for
//! the medical insurers' intermediate server (医療保険者等向け中間サーバー).

pub mod domain;
pub mod error;

pub use error::{Diagnostic, ErrorCode};
pub mod commands;
pub mod formats;
pub mod synth;
