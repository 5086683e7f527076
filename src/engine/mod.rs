//! The engine: orders events per subscriber (R1), applies them in parallel, carries flags across
//! the 国保→後期 transfer (R3), keeps pending flags (R7), and checks the safety invariant (R4).
//!
//! A run's data, in the order it flows: [`inbox`] (files read into the [`spool`], R10, R1) →
//! [`run_id`] → [`transaction`] (one ledger transaction: [`batch`] applies through [`apply`], [`carry`] and [`late`] carry
//! flags (R3), [`confirm`] lists R5 cases,
//! [`inquiry`] R13) → [`outbox`] (linkage re-read from the ledger by [`group`], each group
//! checked by [`invariant`], R4; [`hold`] withholds) → [`run_report`] → [`staging`] (commit,
//! publish, recover). [`run`] strings them together; `migrate` prepares its own batch and shares
//! the rest through [`Session`], [`Prepared`] and [`execute`].

pub mod apply;
pub mod batch;
mod carry;
mod confirm;
mod failpoint;
mod group;
pub mod hold;
mod inbox;
pub mod inquiry;
pub mod interrupt;
pub mod invariant;
mod late;
pub mod options;
mod outbox;
mod progress;
pub mod run;
pub mod run_id;
mod run_report;
pub mod spill;
pub mod spool;
pub mod staging;
pub mod transaction;

pub use options::{RunOptions, create_private_dir};
pub use run_id::chain_run_hash;
pub use run_report::{RunResult, RunStatus};
pub use staging::PublishFailed;
pub use transaction::{LedgerConn, OutputFailed, Prepared, Session, execute};

#[cfg(test)]
mod tests;
