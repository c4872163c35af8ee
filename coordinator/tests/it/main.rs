//! Coordinator tests against a real redis-server on a free port of 127.0.0.1.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aiotest_coordinator::testutil::RedisServer;
use aiotest_coordinator::wire::{ChannelType, Envelope, Keys, Message, NodeType, TaskCounts};
use aiotest_coordinator::{DistributedCoordinator, LockError, Redis, RedisLock};
use aiotest_core::state::RunnerState;
use aiotest_metrics::{RequestRecord, Snapshot};

type Inbox = Arc<Mutex<Vec<Envelope>>>;

fn inbox() -> (Inbox, impl Fn(Envelope) + Send + Sync + 'static) {
    let inbox: Inbox = Arc::default();
    let i = Arc::clone(&inbox);
    (inbox, move |e| i.lock().unwrap().push(e))
}

/// Waits (up to 5 s) until `inbox` holds `n` messages.
async fn wait_for(inbox: &Inbox, n: usize) -> Vec<Envelope> {
    for _ in 0..500 {
        if inbox.lock().unwrap().len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    inbox.lock().unwrap().clone()
}

async fn node(redis: &RedisServer, run: &str, id: &str, kind: NodeType) -> DistributedCoordinator {
    DistributedCoordinator::new(
        Redis::connect(&redis.url()).await.unwrap(),
        run,
        "i1",
        id,
        kind,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_reach_all_workers_or_one() {
    let srv = RedisServer::start().unwrap();
    let master = node(&srv, "r", "master", NodeType::Master).await;
    let w1 = node(&srv, "r", "w1", NodeType::Worker).await;
    let w2 = node(&srv, "r", "w2", NodeType::Worker).await;
    let (in1, h1) = inbox();
    let (in2, h2) = inbox();
    let _s1 = w1.subscribe(ChannelType::Command, h1).await.unwrap();
    let _s2 = w2.subscribe(ChannelType::Command, h2).await.unwrap();
    master
        .publish(ChannelType::Command, Message::Pause, None)
        .await
        .unwrap();
    let spawn = Message::Spawn {
        scenario: "default".into(),
        users: vec![("shopper".into(), 4)],
        spawn_rate: 2.0,
    };
    master
        .publish(ChannelType::Command, spawn.clone(), Some("w2"))
        .await
        .unwrap();
    let got1 = wait_for(&in1, 1).await;
    let got2 = wait_for(&in2, 2).await;
    assert_eq!(
        got1.iter().map(|e| &e.message).collect::<Vec<_>>(),
        [&Message::Pause]
    );
    assert_eq!(
        got2.iter().map(|e| &e.message).collect::<Vec<_>>(),
        [&Message::Pause, &spawn]
    );
    assert_eq!(got2[0].sender, "master");
    assert_eq!((got2[0].seq, got2[1].seq), (0, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_go_to_the_master_and_back() {
    let srv = RedisServer::start().unwrap();
    let master = node(&srv, "r", "master", NodeType::Master).await;
    let w1 = node(&srv, "r", "w1", NodeType::Worker).await;
    let (at_master, hm) = inbox();
    let (at_worker, hw) = inbox();
    let _sm = master.subscribe(ChannelType::Heartbeat, hm).await.unwrap();
    let _sw = w1.subscribe(ChannelType::Heartbeat, hw).await.unwrap();
    let beat = Message::Heartbeat {
        state: RunnerState::Running,
        users: 5,
        has_setup: false,
        done: Vec::new(),
    };
    w1.publish(ChannelType::Heartbeat, beat.clone(), None)
        .await
        .unwrap();
    master
        .publish(ChannelType::Heartbeat, beat.clone(), Some("w1"))
        .await
        .unwrap();
    assert_eq!(wait_for(&at_master, 1).await[0].sender, "w1");
    assert_eq!(wait_for(&at_worker, 1).await[0].sender, "master");
}

fn snapshot(n: u64) -> Snapshot {
    let mut s = Snapshot::new();
    for i in 0..n {
        s.record(&RequestRecord::ok("/a", "GET", 200, 100 + i));
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_travel_through_the_stream_in_order_and_are_trimmed() {
    let srv = RedisServer::start().unwrap();
    let master = node(&srv, "r", "master", NodeType::Master).await;
    let w1 = node(&srv, "r", "w1", NodeType::Worker).await;
    // Sent before the master listens: the stream keeps them.
    for batch in 0..3 {
        let m = Message::Metrics {
            batch,
            snapshot: snapshot(batch + 1),
            last: batch == 2,
            counts: TaskCounts::default(),
        };
        w1.publish(ChannelType::RequestMetrics, m, None)
            .await
            .unwrap();
    }
    // The stream expires on its own, even one made anew after a Redis restart (its
    // master then gone): every batch gives it an expiry.
    let ttl = std::process::Command::new("redis-cli")
        .args(["-p", &srv.port().to_string(), "ttl"])
        .arg(Keys::new("r", "i1").metrics_stream())
        .output()
        .unwrap();
    let ttl: i64 = String::from_utf8_lossy(&ttl.stdout).trim().parse().unwrap();
    assert!((3_500..=3_600).contains(&ttl), "ttl {ttl}");
    let (got, h) = inbox();
    let sub = master
        .subscribe(ChannelType::RequestMetrics, h)
        .await
        .unwrap();
    let got = wait_for(&got, 3).await;
    let batches: Vec<u64> = got
        .iter()
        .map(|e| match &e.message {
            Message::Metrics {
                batch, snapshot, ..
            } => {
                assert_eq!(snapshot.total().requests, batch + 1);
                *batch
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(batches, [0, 1, 2]);
    assert_eq!(sub.dropped(), 0);
    // An idle stream (blocking reads that time out with nil) is no error.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(sub.read_errors(), 0);
    // Handled entries are deleted from the stream.
    let redis = Redis::connect(&srv.url()).await.unwrap();
    let stream = Keys::new("r", "i1").metrics_stream();
    for _ in 0..100 {
        let len = redis.stream_len(&stream).await.unwrap();
        if len == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the stream was not trimmed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_every_channel_is_dropped_and_delivery_goes_on() {
    let srv = RedisServer::start().unwrap();
    let master = node(&srv, "r", "master", NodeType::Master).await;
    let w1 = node(&srv, "r", "w1", NodeType::Worker).await;
    let (cmds, hc) = inbox();
    let (beats, hb) = inbox();
    let (metrics, hmx) = inbox();
    let sc = w1.subscribe(ChannelType::Command, hc).await.unwrap();
    let sb = master.subscribe(ChannelType::Heartbeat, hb).await.unwrap();
    let sm = master
        .subscribe(ChannelType::RequestMetrics, hmx)
        .await
        .unwrap();
    let raw = Redis::connect(&srv.url()).await.unwrap();
    let keys = Keys::new("r", "i1");
    let garbage: [&[u8]; 4] = [b"", b"not msgpack", &[0xc1, 0xc1, 0xc1], &[0x85; 300]];
    for g in garbage {
        raw.publish_raw(&keys.command(None), g).await.unwrap();
        raw.publish_raw(&keys.command(Some("w1")), g).await.unwrap();
        raw.publish_raw(&keys.heartbeat(None), g).await.unwrap();
        raw.xadd_raw(&keys.metrics_stream(), g).await.unwrap();
    }
    // A message of another run on our channel is dropped too.
    // So is one of an earlier instance of this run (a dead master's leftovers).
    for (run, instance) in [("other-run", "i1"), ("r", "i0")] {
        let foreign = aiotest_coordinator::wire::encode(&Envelope {
            version: aiotest_coordinator::wire::PROTOCOL_VERSION,
            run_id: run.into(),
            instance: instance.into(),
            sender: "x".into(),
            seq: 0,
            message: Message::Quit,
        });
        raw.publish_raw(&keys.command(None), &foreign)
            .await
            .unwrap();
        raw.xadd_raw(&keys.metrics_stream(), &foreign)
            .await
            .unwrap();
    }
    // Then valid messages: they must still arrive.
    master
        .publish(ChannelType::Command, Message::Resume, None)
        .await
        .unwrap();
    w1.publish(
        ChannelType::Heartbeat,
        Message::Heartbeat {
            state: RunnerState::Ready,
            users: 0,
            has_setup: false,
            done: Vec::new(),
        },
        None,
    )
    .await
    .unwrap();
    w1.publish(
        ChannelType::RequestMetrics,
        Message::Metrics {
            batch: 0,
            snapshot: Snapshot::new(),
            last: false,
            counts: TaskCounts::default(),
        },
        None,
    )
    .await
    .unwrap();
    assert_eq!(wait_for(&cmds, 1).await.len(), 1);
    assert_eq!(wait_for(&beats, 1).await.len(), 1);
    assert_eq!(wait_for(&metrics, 1).await.len(), 1);
    assert_eq!(cmds.lock().unwrap()[0].message, Message::Resume);
    assert_eq!(
        sc.dropped(),
        4 * 2 + 2,
        "garbage on both command channels, the foreign run and the old instance"
    );
    assert_eq!(sb.dropped(), 4);
    assert_eq!(sm.dropped(), 4 + 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_on_one_redis_do_not_see_each_other() {
    let srv = RedisServer::start().unwrap();
    let master_a = node(&srv, "a", "master", NodeType::Master).await;
    let master_b = node(&srv, "b", "master", NodeType::Master).await;
    let worker_a = node(&srv, "a", "w1", NodeType::Worker).await;
    let worker_b = node(&srv, "b", "w1", NodeType::Worker).await;
    let (in_a, ha) = inbox();
    let (in_b, hb) = inbox();
    let _sa = worker_a.subscribe(ChannelType::Command, ha).await.unwrap();
    let _sb = worker_b.subscribe(ChannelType::Command, hb).await.unwrap();
    master_a
        .publish(ChannelType::Command, Message::Pause, None)
        .await
        .unwrap();
    master_b
        .publish(ChannelType::Command, Message::Stop, None)
        .await
        .unwrap();
    assert_eq!(
        wait_for(&in_a, 1)
            .await
            .iter()
            .map(|e| e.message.clone())
            .collect::<Vec<_>>(),
        [Message::Pause]
    );
    assert_eq!(
        wait_for(&in_b, 1)
            .await
            .iter()
            .map(|e| e.message.clone())
            .collect::<Vec<_>>(),
        [Message::Stop]
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(in_a.lock().unwrap().len(), 1);
    assert_eq!(in_b.lock().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_one_contender_gets_the_lock_and_release_frees_it() {
    let srv = RedisServer::start().unwrap();
    let redis = Redis::connect(&srv.url()).await.unwrap();
    let keys = Keys::new("r", "i1");
    let attempts: Vec<_> = (0..8)
        .map(|_| {
            let redis = redis.clone();
            let keys = keys.clone();
            tokio::spawn(async move {
                RedisLock::with_lock(&redis, &keys, "master", Duration::from_secs(10)).await
            })
        })
        .collect();
    let mut held = Vec::new();
    let mut refused = 0;
    for a in attempts {
        match a.await.unwrap() {
            Ok(lock) => held.push(lock),
            Err(LockError::Held { name, remaining }) => {
                assert_eq!(name, "master");
                // The holder's time left is reported, never more than the timeout.
                let left = remaining.expect("PTTL of a held lock");
                assert!(left <= Duration::from_secs(10), "{left:?}");
                refused += 1;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!((held.len(), refused), (1, 7));
    let err = RedisLock::with_lock(&redis, &keys, "master", Duration::from_secs(10))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "lock `master` is held by another process");
    held.pop().unwrap().release().await.unwrap();
    let again = RedisLock::with_lock(&redis, &keys, "master", Duration::from_secs(10))
        .await
        .unwrap();
    assert!(again.is_held());
    // Another run's lock of the same name is independent.
    RedisLock::with_lock(
        &redis,
        &Keys::new("other", "i1"),
        "master",
        Duration::from_secs(10),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_lock_is_renewed_and_a_dead_holders_lock_expires() {
    let srv = RedisServer::start().unwrap();
    let redis = Redis::connect(&srv.url()).await.unwrap();
    let keys = Keys::new("r", "i1");
    let ttl = Duration::from_millis(300);
    let alive = RedisLock::with_lock(&redis, &keys, "alive", ttl)
        .await
        .unwrap();
    // Three timeouts later a live holder still has it: renewal works.
    tokio::time::sleep(ttl * 3).await;
    assert!(alive.is_held());
    assert!(
        RedisLock::with_lock(&redis, &keys, "alive", ttl)
            .await
            .is_err()
    );
    // A holder that dies (dropped without release: renewal stops) loses it after the ttl.
    let dead = RedisLock::with_lock(&redis, &keys, "dead", ttl)
        .await
        .unwrap();
    drop(dead);
    let mut taken = None;
    for _ in 0..50 {
        if let Ok(l) = RedisLock::with_lock(&redis, &keys, "dead", ttl).await {
            taken = Some(l);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        taken.is_some(),
        "the dead holder's lock expired and was taken"
    );
    assert!(matches!(
        RedisLock::with_lock(&redis, &keys, "x", Duration::ZERO).await,
        Err(LockError::ZeroTimeout { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_redis_restart_the_holder_takes_its_lock_back_and_others_are_refused() {
    let mut srv = RedisServer::start().unwrap();
    let redis = Redis::connect(&srv.url()).await.unwrap();
    let keys = Keys::new("r", "i1");
    let ttl = Duration::from_secs(10);
    let held = RedisLock::with_lock(&redis, &keys, "master", ttl)
        .await
        .unwrap();
    // A restart without persistence forgets the lock.
    srv.restart().unwrap();
    let probe = Redis::connect(&srv.url()).await.unwrap();
    // The holder takes it back as soon as it reconnects, long before its renewal period
    // (a third of 10 s) comes round.
    let mut back = false;
    for _ in 0..100 {
        if probe
            .get_bytes(&keys.lock("master"))
            .await
            .unwrap()
            .is_some()
        {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(back, "the lock was not taken back after the restart");
    assert!(held.is_held());
    let second = RedisLock::with_lock(&probe, &keys, "master", ttl).await;
    assert!(matches!(second, Err(LockError::Held { .. })), "{second:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_that_finds_another_token_has_lost_the_lock() {
    let srv = RedisServer::start().unwrap();
    let redis = Redis::connect(&srv.url()).await.unwrap();
    let keys = Keys::new("r", "i1");
    let ttl = Duration::from_millis(300);
    let held = RedisLock::with_lock(&redis, &keys, "master", ttl)
        .await
        .unwrap();
    redis
        .set_bytes(
            &keys.lock("master"),
            b"someone-else",
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    for _ in 0..50 {
        if !held.is_held() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the holder still believes it holds the lock");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_comes_from_the_url_and_bad_urls_are_named() {
    let srv = RedisServer::start_with_password("s3cret").unwrap();
    let redis = Redis::connect(&srv.url()).await.unwrap();
    RedisLock::with_lock(&redis, &Keys::new("r", "i1"), "p", Duration::from_secs(1))
        .await
        .unwrap();
    let wrong = format!("redis://:nope@127.0.0.1:{}", srv.port());
    assert!(
        Redis::connect(&wrong).await.is_err(),
        "a wrong password is refused"
    );
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = Redis::connect(&format!("redis://127.0.0.1:{closed}"))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Redis: cannot reach the server: connection refused"
    );
    let err = Redis::connect("http://127.0.0.1:1").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "Redis URL `http://127.0.0.1:1`: the scheme must be redis:// or rediss:// (TLS)"
    );
    let err = Redis::connect("redis://:pw@127.0.0.1:notaport")
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("Redis URL `redis://:***@127.0.0.1:notaport`"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_works_with_a_trusted_ca_and_fails_without() {
    let (srv, ca) = RedisServer::start_tls().unwrap();
    assert!(srv.url().starts_with("rediss://127.0.0.1:"));
    let redis = Redis::connect_with_root_ca(&srv.url(), ca.as_bytes())
        .await
        .unwrap();
    let lock = RedisLock::with_lock(&redis, &Keys::new("tls", "i1"), "m", Duration::from_secs(5))
        .await
        .unwrap();
    lock.release().await.unwrap();
    // The same coordination works over TLS.
    let master =
        DistributedCoordinator::new(redis.clone(), "tls", "i1", "master", NodeType::Master);
    let worker = DistributedCoordinator::new(
        Redis::connect_with_root_ca(&srv.url(), ca.as_bytes())
            .await
            .unwrap(),
        "tls",
        "i1",
        "w1",
        NodeType::Worker,
    );
    let (got, h) = inbox();
    let _s = worker.subscribe(ChannelType::Command, h).await.unwrap();
    master
        .publish(ChannelType::Command, Message::Pause, None)
        .await
        .unwrap();
    assert_eq!(wait_for(&got, 1).await.len(), 1);
    // Without the CA the certificate is not trusted.
    let untrusted = tokio::time::timeout(Duration::from_secs(5), Redis::connect(&srv.url())).await;
    assert!(
        !matches!(untrusted, Ok(Ok(_))),
        "an untrusted certificate must not connect"
    );
}
