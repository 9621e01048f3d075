//! The agent's process lifecycle: its critical tasks, the signals that stop it, and the
//! termination log.
//!
//! ```text
//! CriticalTasks::spawn(name, fut) ──> JoinSet ──next_exit()──> TaskExit { task, reason }   (fatal)
//! SIGTERM / Ctrl-C ──shutdown_signal()──> graceful stop: shutdown watch = true,
//!                                         wait_graceful(deadline), abort the rest
//! fatal error ──write_termination_log(path, reason)──> /dev/termination-log (kubectl describe)
//! ```
//!
//! A critical task never ends while the agent runs: the watchers retry forever, the scheduler
//! and the servers loop. So any end (a returned reason, or a panic) is fatal, as in the
//! policy-controller's final `select!`.

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::time::Duration;

use tokio::task::{AbortHandle, Id, JoinSet};
use tracing::{debug, warn};

/// Kubernetes reads at most this much of the termination log.
pub const TERMINATION_LOG_LIMIT: usize = 4096;

/// Why a critical task ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskExit {
    pub task: &'static str,
    pub reason: String,
}

/// What a critical task returns when it ends: why.
pub type TaskResult = Result<(), String>;

/// The critical tasks of the agent, each named for the termination log.
#[derive(Debug, Default)]
pub struct CriticalTasks {
    tasks: JoinSet<TaskResult>,
    names: HashMap<Id, &'static str>,
    /// Tasks that do not watch the shutdown signal: aborted when it comes.
    abort_at_shutdown: Vec<AbortHandle>,
}

impl CriticalTasks {
    pub fn new() -> Self {
        Self::default()
    }

    /// Spawns a task that is aborted at shutdown (it does not watch the signal).
    pub fn spawn(
        &mut self,
        name: &'static str,
        task: impl Future<Output = TaskResult> + Send + 'static,
    ) {
        let handle = self.tasks.spawn(task);
        self.names.insert(handle.id(), name);
        self.abort_at_shutdown.push(handle);
    }

    /// Spawns a task that finishes by itself once the shutdown signal turns true.
    pub fn spawn_graceful(
        &mut self,
        name: &'static str,
        task: impl Future<Output = TaskResult> + Send + 'static,
    ) {
        let handle = self.tasks.spawn(task);
        self.names.insert(handle.id(), name);
    }

    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// The first task to end, and why; pending forever while every task runs (and when there
    /// are none).
    pub async fn next_exit(&mut self) -> TaskExit {
        let Some(joined) = self.tasks.join_next_with_id().await else {
            return std::future::pending().await;
        };
        let (id, reason) = match joined {
            Ok((id, Ok(()))) => (id, "it stopped".to_string()),
            Ok((id, Err(reason))) => (id, reason),
            Err(error) if error.is_panic() => {
                let id = error.id();
                (id, format!("it panicked: {}", panic_message(error)))
            }
            Err(error) => (error.id(), "it was cancelled".to_string()),
        };
        TaskExit {
            task: self.names.remove(&id).unwrap_or("unknown"),
            reason,
        }
    }

    /// At shutdown (after the signal was sent): aborts the tasks that do not watch it, gives
    /// the others `grace` to finish, then aborts what is left.
    pub async fn stop(mut self, grace: Duration) {
        for handle in &self.abort_at_shutdown {
            handle.abort();
        }
        let names = &mut self.names;
        let tasks = &mut self.tasks;
        let drained = tokio::time::timeout(grace, async {
            while let Some(joined) = tasks.join_next_with_id().await {
                let id = match &joined {
                    Ok((id, _)) => *id,
                    Err(error) => error.id(),
                };
                let task = names.remove(&id).unwrap_or("unknown");
                debug!(task, "task finished");
            }
        })
        .await;
        if drained.is_err() {
            let left: Vec<&str> = self.names.values().copied().collect();
            warn!(
                left = self.tasks.len(),
                ?left,
                "shutdown grace period over; aborting the remaining tasks"
            );
            self.tasks.shutdown().await;
        }
    }
}

fn panic_message(error: tokio::task::JoinError) -> String {
    let payload = error.into_panic();
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string panic".into())
}

/// Resolves on SIGTERM (the kubelet stopping the pod) or Ctrl-C, naming the signal.
pub async fn shutdown_signal(mut terminate: Option<tokio::signal::unix::Signal>) -> &'static str {
    let sigterm = async {
        match terminate.as_mut() {
            Some(signal) => {
                signal.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = sigterm => "SIGTERM",
        _ = tokio::signal::ctrl_c() => "SIGINT",
    }
}

/// Writes `reason` to the termination log (truncated to what Kubernetes reads); a failure to
/// write is logged, never fatal.
pub fn write_termination_log(path: &Path, reason: &str) {
    let mut end = reason.len().min(TERMINATION_LOG_LIMIT);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    if let Err(error) = std::fs::write(path, &reason[..end]) {
        warn!(path = %path.display(), %error, "cannot write the termination log");
    }
}

#[cfg(test)]
mod tests;
