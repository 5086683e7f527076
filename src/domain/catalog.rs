//! The 副本 layout catalog: which items each InfoCode carries, with type and length.

use super::dates::Date;
use super::ids::InfoCode;
use crate::error::{ErrorCode, FieldError, FieldFault};
use serde::Deserialize;
use std::collections::HashMap;

const DEFAULT: &str = include_str!("layout_catalog.toml");

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ItemType {
    Digits,
    Text,
    Date,
    Code,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemDef {
    pub code: String,
    pub name: String,
    #[serde(rename = "type")]
    pub ty: ItemType,
    #[serde(default)]
    pub max_length: Option<usize>,
    #[serde(default)]
    pub values: Vec<String>,
    #[serde(default)]
    pub required: bool,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InfoDef {
    pub code: String,
    pub name: String,
    pub items: Vec<ItemDef>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    info: Vec<InfoDef>,
}

#[derive(Clone, Debug)]
pub struct Catalog {
    infos: HashMap<InfoCode, InfoDef>,
}

impl Catalog {
    /// The catalog that ships with nhi-linkage.
    pub fn default_catalog() -> Catalog {
        Catalog::parse(DEFAULT).expect("the bundled catalog is valid")
    }

    pub fn parse(toml_text: &str) -> anyhow::Result<Catalog> {
        let file: CatalogFile = toml::from_str(toml_text)?;
        let mut infos = HashMap::new();
        for info in file.info {
            let code =
                InfoCode::parse(&info.code).map_err(|e| anyhow::anyhow!("catalog InfoCode {}: {e}", info.code))?;
            for item in &info.items {
                if item.ty == ItemType::Code && item.values.is_empty() {
                    anyhow::bail!("catalog {} item {}: type code needs values", info.code, item.code);
                }
            }
            if infos.insert(code, info).is_some() {
                anyhow::bail!("catalog lists InfoCode {code} twice");
            }
        }
        Ok(Catalog { infos })
    }

    pub fn load(path: &std::path::Path) -> anyhow::Result<Catalog> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read catalog {}: {e}", path.display()))?;
        Catalog::parse(&text)
    }

    pub fn info(&self, code: InfoCode) -> Option<&InfoDef> {
        self.infos.get(&code)
    }

    pub fn codes(&self) -> impl Iterator<Item = &InfoCode> {
        self.infos.keys()
    }

    /// Checks a 副本's items; `need_required` is false for deletions, which may carry none.
    pub fn check_items(&self, code: InfoCode, items: &[(String, String)], need_required: bool) -> Vec<FieldFault> {
        let mut faults = Vec::new();
        let mut push = |field: &str, code: ErrorCode, msg: String| {
            faults.push(FieldFault {
                field: field.to_owned(),
                error: FieldError::new(code, msg),
            })
        };
        let Some(info) = self.info(code) else {
            push(
                "InfoCode",
                ErrorCode::Code,
                "InfoCode is not in the layout catalog".into(),
            );
            return faults;
        };
        let mut seen: Vec<&str> = Vec::new();
        for (item_code, value) in items {
            let field = format!("Items/{item_code}");
            let Some(def) = info.items.iter().find(|d| &d.code == item_code) else {
                push(
                    "Items/ItemCode",
                    ErrorCode::Code,
                    format!("item code {item_code:?} is not defined for {code}"),
                );
                continue;
            };
            if seen.contains(&item_code.as_str()) {
                push(&field, ErrorCode::Schema, format!("item {item_code} appears twice"));
                continue;
            }
            seen.push(item_code);
            if value.is_empty() {
                continue; // empty = absent
            }
            let len = value.chars().count();
            if let Some(max) = def.max_length {
                if len > max {
                    push(
                        &field,
                        ErrorCode::FieldFormat,
                        format!("{} has {len} characters (at most {max})", def.name),
                    );
                    continue;
                }
            }
            match def.ty {
                ItemType::Digits if !value.bytes().all(|b| b.is_ascii_digit()) => {
                    push(&field, ErrorCode::FieldFormat, format!("{} must be digits", def.name))
                }
                ItemType::Date => {
                    if let Err(e) = Date::parse(value) {
                        push(&field, e.code, format!("{}: {}", def.name, e.message));
                    }
                }
                ItemType::Code if !def.values.iter().any(|v| v == value) => push(
                    &field,
                    ErrorCode::Code,
                    format!("{} must be one of {}", def.name, def.values.join(", ")),
                ),
                ItemType::Text if value.chars().any(char::is_control) => push(
                    &field,
                    ErrorCode::FieldFormat,
                    format!("{} contains a control character", def.name),
                ),
                _ => {}
            }
        }
        if need_required {
            for def in info.items.iter().filter(|d| d.required) {
                let present = items.iter().any(|(c, v)| c == &def.code && !v.is_empty());
                if !present {
                    push(
                        &format!("Items/{}", def.code),
                        ErrorCode::Schema,
                        format!("{} is required", def.name),
                    );
                }
            }
        }
        faults
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn default_catalog_checks_items() {
        let c = Catalog::default_catalog();
        let code = InfoCode::parse("TM00000000000001").unwrap();
        let ok = items(&[("001", "39131015"), ("002", "20261215"), ("004", "1")]);
        assert!(c.check_items(code, &ok, true).is_empty());
        let bad = items(&[("001", "3913x015"), ("002", "20260230"), ("004", "3"), ("009", "x")]);
        let codes: Vec<_> = c
            .check_items(code, &bad, true)
            .into_iter()
            .map(|f| f.error.code)
            .collect();
        assert_eq!(
            codes,
            vec![
                ErrorCode::FieldFormat,
                ErrorCode::Date,
                ErrorCode::Code,
                ErrorCode::Code
            ]
        );
        let missing = c.check_items(code, &items(&[("001", "39131015")]), true);
        assert_eq!(missing.len(), 2);
        assert!(c.check_items(code, &[], false).is_empty());
        let unknown = InfoCode::parse("TM99999999999999").unwrap();
        assert_eq!(c.check_items(unknown, &[], false)[0].error.code, ErrorCode::Code);
    }
}
