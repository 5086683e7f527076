//! The engine: orders events per subscriber (R1), applies them in parallel, carries flags across
//! the 国保→後期 transfer (R3), keeps pending flags (R7), and checks the safety invariant (R4).

pub mod apply;
pub mod batch;
pub mod hold;
pub mod inquiry;
pub mod interrupt;
pub mod run;
pub mod spill;
pub mod spool;

#[cfg(test)]
mod tests;
