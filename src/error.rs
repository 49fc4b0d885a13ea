//! One error type for the whole tool, so the exit code is decided in one place (`main.rs`):
//! bad usage or bad input is 2, a failure of knee itself (disk full, ...) is 3.
//! A failing *target* is never an error here: it is data, counted in the step results.

use std::fmt;

#[derive(Debug)]
pub enum Error {
    /// Bad command line, bad profile, bad value: the user can fix it. Exit 2.
    Input(String),
    /// knee could not do its own work (write the run folder, start the demo). Exit 3.
    Internal(anyhow::Error),
}

impl Error {
    pub fn input(msg: impl Into<String>) -> Self {
        Error::Input(msg.into())
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Input(_) => 2,
            Error::Internal(_) => 3,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Input(msg) => f.write_str(msg),
            // `{:#}` prints the whole anyhow context chain on one line.
            Error::Internal(err) => write!(f, "{err:#}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<anyhow::Error> for Error {
    fn from(err: anyhow::Error) -> Self {
        Error::Internal(err)
    }
}

impl From<std::io::Error> for Error {
    fn from(err: std::io::Error) -> Self {
        Error::Internal(err.into())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
