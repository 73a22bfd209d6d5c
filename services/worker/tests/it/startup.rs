//! The worker binary refuses a Redis that is not what its configuration
//! says: exit 64 (`EX_USAGE`) and one line on stderr naming the problem,
//! before it touches PostgreSQL. The other refusals (cluster nodes that are
//! a plain Redis, a cluster serving no slot) are `Redis::connect`'s, checked
//! in `load-tests/tests/redis_modes.rs`.

use std::process::Stdio;
use std::time::Duration;

use eventline_shared::testkit;

/// Runs the worker binary with `vars` (and a `DATABASE_URL` nothing listens
/// on: a worker that got past Redis would fail there with exit 1); its exit
/// status and stderr.
async fn run_worker(vars: &[(&str, &str)]) -> (Option<i32>, String) {
    let pg_port = testkit::servers::free_port().unwrap();
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_worker"));
    for var in [
        "REDIS_URL",
        "REDIS_CLUSTER_NODES",
        "REDIS_KEY_PREFIX",
        "DATABASE_URL",
        worker::failpoint::ENV,
    ] {
        cmd.env_remove(var);
    }
    cmd.env(
        "DATABASE_URL",
        format!("postgres://postgres@127.0.0.1:{pg_port}/eventline"),
    )
    .env("LISTEN_ADDR", "127.0.0.1:0")
    .env("REDIS_TIMEOUT_MS", "1000")
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let child = cmd.spawn().expect("worker binary starts");
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("the worker exits in time")
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// One line, naming every one of `words`.
fn assert_one_line(stderr: &str, words: &[&str]) {
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stderr:\n{stderr}");
    for word in words {
        assert!(lines[0].contains(word), "{word:?} not in: {stderr}");
    }
}

#[tokio::test]
async fn cluster_nodes_that_refuse_connections_exit_64() {
    let port = testkit::servers::free_port().unwrap();
    let node = format!("redis://127.0.0.1:{port}");
    let (code, stderr) = run_worker(&[("REDIS_CLUSTER_NODES", &node)]).await;
    assert_eq!(code, Some(64), "{stderr}");
    assert_one_line(&stderr, &["Redis Cluster", &node, "does not answer"]);
}

#[tokio::test]
async fn a_redis_url_at_a_cluster_node_exits_64() {
    let cluster = testkit::cluster_redis_args();
    let node = cluster
        .cluster_nodes()
        .and_then(|nodes| nodes.urls().next())
        .expect("a cluster node")
        .to_owned();
    let (code, stderr) = run_worker(&[("REDIS_URL", &node)]).await;
    assert_eq!(code, Some(64), "{stderr}");
    assert_one_line(
        &stderr,
        &[
            "REDIS_URL",
            &node,
            "Redis Cluster node",
            "REDIS_CLUSTER_NODES",
        ],
    );
}
