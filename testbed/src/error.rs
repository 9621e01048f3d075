//! The testbed's error type: every variant names the object, file or command that failed.

use std::{io, path::PathBuf, time::Duration};

/// Errors from parsing a scenario, building a testbed or tearing one down.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The scenario text is not valid YAML of the scenario format. `path` is where in the
    /// document the problem is (for example `dataplane.faults[1]`).
    #[error("scenario {source_name}: {path}: {message}")]
    Parse {
        /// The file name, or `<string>`.
        source_name: String,
        /// Path inside the document (`.` when the document itself is wrong).
        path: String,
        /// What serde said.
        message: String,
    },

    /// The scenario parses but is inconsistent; `object` names the offending entry
    /// (`Pod shop/api`, `dataplane.rules[2]`, `nodes[0]` …).
    #[error("scenario {scenario}: {object}: {problem}")]
    Invalid {
        /// The scenario's `name`.
        scenario: String,
        /// The offending object or entry.
        object: String,
        /// What is wrong with it.
        problem: String,
    },

    /// Building a testbed needs root (network namespaces, cgroups, nftables).
    #[error("the testbed needs root (effective uid is {euid}): run the tests as root")]
    NotRoot {
        /// The effective uid seen.
        euid: u32,
    },

    /// A program the testbed runs is not installed.
    #[error(
        "`{program}` not found in PATH or /usr/sbin:/sbin:/usr/bin:/bin: install the Debian package `{package}`"
    )]
    MissingProgram {
        /// The program looked for.
        program: &'static str,
        /// The Debian package that provides it.
        package: &'static str,
    },

    /// Leftovers of testbed runs whose owner process is dead exist; the testbed refuses to start
    /// over them.
    #[error(
        "leftovers of dead testbed runs exist: {}; remove them with `cargo run -p testbed --bin testbed-cleanup` (or call testbed::cleanup_leftovers())",
        items.join(", ")
    )]
    Leftovers {
        /// What was found (netns names, cgroup dirs, run dirs …).
        items: Vec<String>,
    },

    /// A command exited unsuccessfully.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// Its standard error (trimmed).
        stderr: String,
    },

    /// A command or a wait did not finish in time.
    #[error("{what}: timed out after {after:?}")]
    Timeout {
        /// What was waited for.
        what: String,
        /// The bound.
        after: Duration,
    },

    /// A file-system or process operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// The operation (`create`, `write`, `remove`, `spawn` …).
        what: String,
        /// The file or program concerned.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// A process of a pod did not come up as expected (exited, wrong netns, wrong resolv.conf).
    #[error("pod {pod}: {problem}")]
    Pod {
        /// `namespace/name`.
        pod: String,
        /// What went wrong, including the process's stderr where there is one.
        problem: String,
    },

    /// Teardown left something behind.
    #[error("teardown of {prefix} left: {}", items.join(", "))]
    Teardown {
        /// The run's prefix.
        prefix: String,
        /// What could not be removed, with the reason.
        items: Vec<String>,
    },
}

/// `Result` with the testbed's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(what: &str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            what: what.to_string(),
            path: path.into(),
            source,
        }
    }

    /// A short, bounded label for the kind of failure (for metric labels and logs).
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Parse { .. } => "parse",
            Error::Invalid { .. } => "invalid",
            Error::NotRoot { .. } => "not_root",
            Error::MissingProgram { .. } => "missing_program",
            Error::Leftovers { .. } => "leftovers",
            Error::Command { .. } => "command",
            Error::Timeout { .. } => "timeout",
            Error::Io { .. } => "io",
            Error::Pod { .. } => "pod",
            Error::Teardown { .. } => "teardown",
        }
    }
}
