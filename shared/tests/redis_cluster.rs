//! A real six-node Redis Cluster (`LocalRedisCluster`): the shard tags of
//! `redis_keys` land where `key_slot` says and spread over the masters, and
//! the cluster survives a killed master and a frozen one.
//!
//! Needs `EVENTLINE_REDIS_SERVER` (`make test` sets it).

use std::time::{Duration, Instant};

use eventline_shared::redis_keys::{key_slot, shard_tags};
use eventline_shared::testkit::cluster::{LocalRedisCluster, Master, NODE_TIMEOUT};

/// How many of `tags` each master (by first slot) serves.
fn spread<T: AsRef<str>>(cluster: &LocalRedisCluster, masters: &[Master], tags: &[T]) -> Vec<u32> {
    let mut counts = vec![0; masters.len()];
    for tag in tags {
        let node = cluster
            .master_of_slot(key_slot(tag.as_ref().as_bytes()))
            .expect("a master serves every slot");
        let i = masters.iter().position(|m| m.node == node);
        counts[i.expect("the owner is one of the masters")] += 1;
    }
    counts
}

#[test]
fn shard_tags_spread_over_a_cluster_that_survives_failovers() {
    let started = Instant::now();
    let mut cluster = LocalRedisCluster::start().expect("start a six-node Redis Cluster");
    eprintln!("cluster formed in {:?}", started.elapsed());
    let masters = cluster.masters().expect("CLUSTER NODES");
    assert_eq!(masters.len(), 3, "{masters:?}");

    // CLUSTER KEYSLOT agrees with key_slot for every tag chosen.
    let mut conn = redis::Client::open(cluster.urls()[0].as_str())
        .and_then(|c| c.get_connection())
        .expect("connect to node 0");
    for shards in [1, 3, 4, 6, 16] {
        for tag in shard_tags(shards) {
            let key = format!("events:{{{tag}}}");
            let slot: u16 = redis::cmd("CLUSTER")
                .arg("KEYSLOT")
                .arg(&key)
                .query(&mut conn)
                .expect("CLUSTER KEYSLOT");
            assert_eq!(slot, key_slot(key.as_bytes()), "{key}");
        }
    }

    assert_eq!(spread(&cluster, &masters, &shard_tags(3)), [1, 1, 1]);
    assert_eq!(spread(&cluster, &masters, &shard_tags(6)), [2, 2, 2]);
    // The plain shard numbers of today's `events:{i}` do not spread.
    assert_eq!(spread(&cluster, &masters, &["0", "1", "2"]), [0, 2, 1]);

    // A master crashes: its replica takes over, and the old master comes
    // back as a replica.
    let killed = masters[0].node;
    let t = Instant::now();
    cluster.kill(killed).expect("SIGKILL");
    let promoted = cluster
        .wait_for_failover(killed)
        .expect("failover after a kill");
    eprintln!("failover after SIGKILL of node {killed}: {:?}", t.elapsed());
    assert_ne!(promoted, killed);
    assert_eq!(cluster.master_of_slot(0).expect("slot 0"), promoted);
    cluster.restart(killed).expect("restart");
    cluster.wait_healthy().expect("the restarted node rejoins");
    assert_eq!(cluster.role(killed).expect("INFO"), "slave");

    // A master freezes past the node timeout: it is failed over, and once
    // thawed it learns so and rejoins as a replica.
    let frozen = cluster.masters().expect("CLUSTER NODES")[1].node;
    let t = Instant::now();
    cluster.freeze(frozen).expect("SIGSTOP");
    let promoted = cluster
        .wait_for_failover(frozen)
        .expect("failover after a freeze");
    eprintln!("failover after SIGSTOP of node {frozen}: {:?}", t.elapsed());
    assert!(t.elapsed() > NODE_TIMEOUT);
    assert_ne!(promoted, frozen);
    let t = Instant::now();
    cluster.thaw(frozen).expect("SIGCONT");
    cluster.wait_healthy().expect("the thawed node rejoins");
    eprintln!("thawed node {frozen} rejoined in {:?}", t.elapsed());
    assert_eq!(cluster.role(frozen).expect("INFO"), "slave");
    let masters = cluster.masters().expect("CLUSTER NODES");
    assert!(masters.iter().all(|m| m.node != frozen), "{masters:?}");
    assert!(Instant::now() - started < Duration::from_secs(40));
}
