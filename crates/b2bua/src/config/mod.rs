//! The configuration model, parsed from TOML text.
//!
//! This module does no file IO: the server reads the file and hands the text and the file name to
//! [`Config::from_toml`]. Parsing walks the span-preserving `toml_edit` document by hand instead of
//! going through `serde`, because serde stops at the first problem while an operator fixing a
//! config wants to see *every* problem at once, each with file, line, column, the dotted key
//! (`users[2].extension`), what was found and what was expected.
//!
//! The embedded lab configuration ([`LAB_CONFIG`], [`Config::lab`]) is the file
//! `config/bibridge.toml`, which also serves as the commented configuration reference.
//!
//! Files: `model` the types; `policy` the queries the engine asks (users, routes, who may
//! monitor whom); `parse` the span-aware TOML reader's machinery (spans, errors, value
//! conversions); `sections` [`Config::from_toml`] and the readers of each `[section]`; this one
//! the embedded lab config.

mod model;
mod parse;
mod policy;
mod sections;

pub use model::*;

/// The lab configuration of docs/design.md §2, embedded at build time; identical to
/// `config/bibridge.toml`.
pub const LAB_CONFIG: &str = include_str!("../../../../config/bibridge.toml");

/// File name reported in errors about [`LAB_CONFIG`].
const LAB_FILE: &str = "<embedded lab config>";

impl Config {
    /// The embedded lab configuration ([`LAB_CONFIG`]).
    ///
    /// # Panics
    /// Never in a released build: a test parses [`LAB_CONFIG`] and fails if it is invalid.
    pub fn lab() -> Config {
        match Config::from_toml(LAB_CONFIG, LAB_FILE) {
            Ok(c) => c,
            Err(e) => panic!("the embedded lab configuration is invalid:\n{e}"),
        }
    }
}
