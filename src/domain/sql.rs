//! How identifiers, dates and code enums are stored in the ledger: rusqlite's
//! [`ToSql`]/[`FromSql`], as the text the spec writes them in (the same text the ledger has
//! always held: `as_str`, `YYYYMMDD`, `YYYYMMDDhhmmss`, the code). Reading checks the value as
//! the file readers do (check digits, code tables), so a corrupted ledger value is an error
//! naming its type, never a silently wrong value.
//!
//! A My Number ([`super::IndividualNumber`]) and an address are deliberately left out: the
//! ledger code writes them with `expose()` / `as_str()`, where a reader sees it.

use super::codes::{
    ChangeType, DisclosureClassification, FlagOperation, FlagScope, FlagSource, FlagType, FukuhonOperation,
    PersonalFamilyClassification, ProcessingCode, ReasonOfLoss, ReasonOfQualification, SelfInfoReason, Sex1,
};
use super::dates::{Date, Timestamp};
use super::ids::{
    InfoCode, InsuredBranchNumber, InsurerNumber, MunicipalityCode, PostNumber, ResidentCode, SubscriberKey,
};
use super::person::Status;
use crate::error::{ErrorCode, FieldError};
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use std::fmt;

/// A ledger value that does not read back as its type.
#[derive(Debug)]
pub struct StoredValueError {
    /// The type (`InsurerNumber`, `Date`, `FlagType` …).
    pub what: &'static str,
    pub error: FieldError,
}

impl fmt::Display for StoredValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ledger holds an invalid {}: {}", self.what, self.error)
    }
}

impl std::error::Error for StoredValueError {}

/// A column typed by hand (a My Number, a flag column): its parse error as rusqlite's, like
/// [`FromSql`]'s.
pub fn stored<T>(idx: usize, what: &'static str, r: Result<T, FieldError>) -> rusqlite::Result<T> {
    r.map_err(|error| {
        rusqlite::Error::FromSqlConversionFailure(
            idx,
            rusqlite::types::Type::Text,
            Box::new(StoredValueError { what, error }),
        )
    })
}

fn read<T>(v: ValueRef<'_>, what: &'static str, parse: impl FnOnce(&str) -> Result<T, FieldError>) -> FromSqlResult<T> {
    parse(v.as_str()?).map_err(|error| FromSqlError::Other(Box::new(StoredValueError { what, error })))
}

/// An optional value in a column that holds `''` (or NULL) for "absent": written as `''`, read
/// back as `None` from either.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrEmpty<T>(pub Option<T>);

impl<T: ToSql> ToSql for OrEmpty<T> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        match &self.0 {
            Some(v) => v.to_sql(),
            None => Ok(ToSqlOutput::from("")),
        }
    }
}

impl<T: FromSql> FromSql for OrEmpty<T> {
    fn column_result(v: ValueRef<'_>) -> FromSqlResult<Self> {
        match v {
            ValueRef::Null => Ok(OrEmpty(None)),
            ValueRef::Text(b"") => Ok(OrEmpty(None)),
            v => T::column_result(v).map(|t| OrEmpty(Some(t))),
        }
    }
}

/// Types stored as their `as_str()` text.
macro_rules! sql_as_str {
    ($($t:ident),+ $(,)?) => {$(
        impl ToSql for $t {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.as_str()))
            }
        }
        impl FromSql for $t {
            fn column_result(v: ValueRef<'_>) -> FromSqlResult<Self> {
                read(v, stringify!($t), $t::parse)
            }
        }
    )+};
}

/// Types stored as their `Display` text.
macro_rules! sql_display {
    ($($t:ident),+ $(,)?) => {$(
        impl ToSql for $t {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.to_string()))
            }
        }
        impl FromSql for $t {
            fn column_result(v: ValueRef<'_>) -> FromSqlResult<Self> {
                read(v, stringify!($t), $t::parse)
            }
        }
    )+};
}

/// Code enums, stored as their code.
macro_rules! sql_code {
    ($($t:ident),+ $(,)?) => {$(
        impl ToSql for $t {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.code()))
            }
        }
        impl FromSql for $t {
            fn column_result(v: ValueRef<'_>) -> FromSqlResult<Self> {
                read(v, stringify!($t), $t::parse)
            }
        }
    )+};
}

sql_as_str!(
    InsurerNumber,
    SubscriberKey,
    InsuredBranchNumber,
    MunicipalityCode,
    InfoCode,
    ResidentCode,
    PostNumber,
);
sql_display!(Date, Timestamp);

/// An enrollment's status, stored as `active` / `lost` / `cancelled`.
impl ToSql for Status {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for Status {
    fn column_result(v: ValueRef<'_>) -> FromSqlResult<Self> {
        read(v, "Status", |s| {
            Status::parse(s).ok_or_else(|| FieldError::new(ErrorCode::Code, "not an enrollment status"))
        })
    }
}
sql_code!(
    ChangeType,
    DisclosureClassification,
    FlagOperation,
    FlagScope,
    FlagSource,
    FlagType,
    FukuhonOperation,
    PersonalFamilyClassification,
    ProcessingCode,
    ReasonOfLoss,
    ReasonOfQualification,
    SelfInfoReason,
    Sex1,
);

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::{Connection, params};

    #[test]
    fn values_are_stored_as_the_spec_text_and_read_back_checked() {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch("CREATE TABLE t (a, b, c, d, e)").unwrap();
        let ins = InsurerNumber::parse("39130018").unwrap();
        let key = SubscriberKey::parse("0000000000000001").unwrap();
        let date = Date::parse("20261201").unwrap();
        let time = Timestamp::parse("20261120090000").unwrap();
        c.execute(
            "INSERT INTO t VALUES (?1, ?2, ?3, ?4, ?5)",
            params![ins, key, date, time, FlagType::NonDisclosure],
        )
        .unwrap();
        let text: (String, String, String, String, String) = c
            .query_row("SELECT a, b, c, d, e FROM t", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .unwrap();
        assert_eq!(
            text,
            (
                "39130018".into(),
                "0000000000000001".into(),
                "20261201".into(),
                "20261120090000".into(),
                FlagType::NonDisclosure.code().into()
            )
        );
        let typed: (InsurerNumber, SubscriberKey, Date, Timestamp, FlagType) = c
            .query_row("SELECT a, b, c, d, e FROM t", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .unwrap();
        assert_eq!(typed, (ins, key, date, time, FlagType::NonDisclosure));
        // a wrong check digit in the ledger is an error naming the type, not a value
        c.execute("UPDATE t SET a = '39130019', e = '9'", []).unwrap();
        let e = c
            .query_row("SELECT a FROM t", [], |r| r.get::<_, InsurerNumber>(0))
            .unwrap_err()
            .to_string();
        assert!(e.contains("ledger holds an invalid InsurerNumber"), "{e}");
        assert!(!e.contains("39130019"), "{e}");
        let e = c
            .query_row("SELECT e FROM t", [], |r| r.get::<_, FlagType>(0))
            .unwrap_err();
        assert!(e.to_string().contains("invalid FlagType"), "{e}");
        // '' and NULL are "absent" for OrEmpty; written as ''
        c.execute("UPDATE t SET a = '', b = NULL", []).unwrap();
        let (a, b): (OrEmpty<InsurerNumber>, OrEmpty<SubscriberKey>) = c
            .query_row("SELECT a, b FROM t", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap();
        assert_eq!((a.0, b.0), (None, None));
        c.execute("UPDATE t SET b = ?1", [OrEmpty::<SubscriberKey>(None)])
            .unwrap();
        let b: String = c.query_row("SELECT b FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(b, "");
    }
}
