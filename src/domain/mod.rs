//! The domain: identifiers with check digits, dates and 和暦, code tables, text rules,
//! and the typed records of the four input kinds.

pub mod catalog;
pub mod codes;
pub mod dates;
pub mod ids;
pub mod records;
pub mod text;

pub use catalog::Catalog;
pub use codes::*;
pub use dates::{Date, Timestamp};
pub use ids::*;
pub use records::*;
pub use text::Address;
