use std::path::PathBuf;
use std::time::Duration;

use super::*;

/// A fresh path in the temp directory, removed on drop.
struct TempPath(PathBuf);

impl TempPath {
    fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "netreach-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_file(&path);
        Self(path)
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn the_termination_log_gets_the_reason() {
    let path = TempPath::new("termination-log");
    write_termination_log(
        &path.0,
        "critical task watchers ended: the pods watch ended",
    );
    let written = std::fs::read_to_string(&path.0).expect("written");
    assert_eq!(
        written,
        "critical task watchers ended: the pods watch ended"
    );
}

#[test]
fn the_termination_log_is_truncated_on_a_char_boundary() {
    let path = TempPath::new("termination-log-long");
    let reason = "é".repeat(TERMINATION_LOG_LIMIT);
    write_termination_log(&path.0, &reason);
    let written = std::fs::read_to_string(&path.0).expect("written, valid UTF-8");
    assert!(written.len() <= TERMINATION_LOG_LIMIT);
    assert!(written.len() >= TERMINATION_LOG_LIMIT - 1);
}

#[test]
fn failing_to_write_the_termination_log_is_not_fatal() {
    write_termination_log(
        std::path::Path::new("/nonexistent-dir/netreach/termination-log"),
        "reason",
    );
}

#[tokio::test]
async fn the_first_task_to_end_is_named_with_its_reason() {
    let mut tasks = CriticalTasks::new();
    tasks.spawn("forever", std::future::pending());
    tasks.spawn("watchers", async { Err("the pods watch ended".into()) });
    let exit = tasks.next_exit().await;
    assert_eq!(
        exit,
        TaskExit {
            task: "watchers",
            reason: "the pods watch ended".into()
        }
    );
    assert_eq!(tasks.len(), 1);
}

#[tokio::test]
async fn a_panicking_task_is_reported_with_its_message() {
    let mut tasks = CriticalTasks::new();
    tasks.spawn("scheduler", async { panic!("index out of bounds") });
    let exit = tasks.next_exit().await;
    assert_eq!(exit.task, "scheduler");
    assert_eq!(exit.reason, "it panicked: index out of bounds");
}

#[tokio::test]
async fn stop_aborts_plain_tasks_and_waits_for_graceful_ones() {
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let mut tasks = CriticalTasks::new();
    tasks.spawn("watchers", std::future::pending());
    tasks.spawn_graceful("scheduler", async move {
        crate::runtime::stop_requested(&mut stop_rx).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let _ = done_tx.send(());
        Ok(())
    });
    stop_tx.send_replace(true);
    tokio::time::timeout(Duration::from_secs(5), tasks.stop(Duration::from_secs(2)))
        .await
        .expect("stop returns");
    done_rx.await.expect("the graceful task finished its work");
}

#[tokio::test]
async fn stop_aborts_graceful_tasks_that_overrun_the_grace_period() {
    let mut tasks = CriticalTasks::new();
    tasks.spawn_graceful("stuck", std::future::pending());
    tokio::time::timeout(
        Duration::from_secs(5),
        tasks.stop(Duration::from_millis(50)),
    )
    .await
    .expect("stop returns after the grace period");
}
