//! The harness's own promise (scripts/test): every integration test has a
//! deadline, and a test that hangs is stopped at it and named, so the run
//! fails in minutes instead of holding CI until its limit.

use std::time::{Duration, Instant};

/// Run only as the child process of the test below (ignored otherwise): it
/// sleeps far past its 1 s deadline.
#[test_deadline::test(secs = 1)]
#[ignore = "a probe, run by a_hung_test_is_stopped_at_its_deadline_and_named"]
async fn hung_probe() {
    actix_web::rt::time::sleep(Duration::from_secs(120)).await;
}

#[test_deadline::test]
async fn a_hung_test_is_stopped_at_its_deadline_and_named() {
    let exe = std::env::current_exe().expect("the test binary");
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(exe)
            .args(["--ignored", "--exact", "harness::hung_probe"])
            .output()
    })
    .await
    .unwrap()
    .expect("run the probe");
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(124),
        "the binary ends with 124; stderr: {stderr}"
    );
    assert!(
        stderr.contains("test tests::harness::hung_probe ran past its deadline of 1 s"),
        "the hung test is named: {stderr}"
    );
    // Stopped at the deadline: not before it, and long before the probe's
    // own 120 s sleep would have ended.
    assert!(
        took >= Duration::from_secs(1),
        "stopped after {took:?}, before its deadline"
    );
    assert!(
        took < Duration::from_secs(60),
        "stopped after {took:?}, not at its deadline"
    );
}
