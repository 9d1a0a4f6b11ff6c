//! The error type of configuration loading.

use thiserror::Error;

/// What went wrong while reading or validating a configuration.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read the configuration: {source}")]
    Read {
        /// The file that was asked for.
        file: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The text is not valid TOML or does not match the schema (unknown key, wrong type).
    #[error("{file}: {message}")]
    Parse {
        /// The file (or other origin) of the text.
        file: String,
        /// The parser's message, which names the key and the line.
        message: String,
    },
    /// A value breaks a rule.
    #[error("{file}{key} = {value} {rule}")]
    Invalid {
        /// The origin, followed by ": ", or empty when validated in memory.
        file: String,
        /// The dotted key, e.g. `scheduler.execution_horizon`.
        key: String,
        /// The offending value as written.
        value: String,
        /// The rule it breaks, in words.
        rule: String,
    },
}

impl ConfigError {
    /// A rule violation for `key`, whose value is `value`.
    pub fn invalid(key: &str, value: impl std::fmt::Display, rule: impl Into<String>) -> Self {
        ConfigError::Invalid {
            file: String::new(),
            key: key.to_string(),
            value: value.to_string(),
            rule: rule.into(),
        }
    }

    /// Attaches the origin file to a rule violation.
    pub(crate) fn in_file(self, origin: &str) -> Self {
        match self {
            ConfigError::Invalid {
                key, value, rule, ..
            } => ConfigError::Invalid {
                file: format!("{origin}: "),
                key,
                value,
                rule,
            },
            other => other,
        }
    }
}
