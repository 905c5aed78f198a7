//! The library's one error type. Every variant says where the problem is (a path, a config
//! key, a column, a stage) and what the user can do about it.

use std::path::PathBuf;

/// What went wrong, and where.
#[derive(thiserror::Error, Debug)]
pub enum Error {
    /// A file or folder could not be read or written.
    // Not marked as the error's source: the message already says it, and callers that print
    // the chain of causes would say it twice.
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The job file is not valid: `key` names the setting, `message` says what is expected.
    #[error("job file {path}: `{key}`: {message}")]
    Config {
        path: PathBuf,
        key: String,
        message: String,
    },
    /// A mapped column is missing or has a type that cannot be read as text.
    #[error("{path}: column `{column}` {message}")]
    Schema {
        path: PathBuf,
        column: String,
        message: String,
    },
    /// A source file could not be decoded.
    #[error("reading {path}: {message}")]
    Read { path: PathBuf, message: String },
    /// An output could not be written.
    #[error("writing {path}: {message}")]
    Write { path: PathBuf, message: String },
    /// The data made a stage impossible (for example a saved model that does not fit the job).
    #[error("stage {stage}: {message}")]
    Data {
        stage: &'static str,
        message: String,
    },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, error: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            error,
        }
    }

    pub(crate) fn write(path: impl Into<PathBuf>, message: impl ToString) -> Self {
        Error::Write {
            path: path.into(),
            message: message.to_string(),
        }
    }
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
