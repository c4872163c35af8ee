//! `DistributedCoordinator`: `publish(channel_type, message, worker_id)` and
//! `subscribe(channel_type, handler)`, as the seed names them.
//!
//! Commands and heartbeats go over pub/sub (fast, and losing one is harmless: commands
//! carry absolute targets and are repeated, heartbeats come every second). Metrics go on a
//! Redis Stream per run that the master reads and then deletes from: a message published
//! while the master is reconnecting waits in the stream instead of vanishing, and each
//! worker numbers its batches so the master can tell a gap.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use fred::prelude::*;
use tokio::task::JoinHandle;

use crate::redis::{CoordError, Redis};
use crate::wire::{
    ChannelType, Envelope, Keys, Message, NodeType, PROTOCOL_VERSION, decode, encode,
};

/// A live subscription; dropping it stops delivery and closes its connection.
pub struct Subscription {
    task: JoinHandle<()>,
    dropped: Arc<AtomicU64>,
    /// Stream subscriptions: reads that failed.
    read_errors: Arc<AtomicU64>,
    subscriber: Option<fred::clients::SubscriberClient>,
    reader: Option<fred::clients::Client>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

/// Prefix of the probe a new subscription sends itself to confirm it is live: fred's
/// `subscribe` can return before the server delivers to the new subscription.
const PROBE: &[u8] = b"aiotest-subscription-probe:";

impl Subscription {
    /// Messages dropped because they did not decode, or belonged to another protocol
    /// version or run.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Reads of the metrics stream that failed (an idle stream is not a failure).
    pub fn read_errors(&self) -> u64 {
        self.read_errors.load(Ordering::Relaxed)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.task.abort();
        // A fred client keeps its connection open until it quits.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            if let Some(sub) = self.subscriber.take() {
                rt.spawn(async move {
                    let _ = sub.quit().await;
                });
            }
            if let Some(reader) = self.reader.take() {
                rt.spawn(async move {
                    let _ = reader.quit().await;
                });
            }
        }
    }
}

/// How long a metrics stream outlives its last batch (seconds).
const STREAM_TTL_S: i64 = 3_600;

/// One node's end of the coordination channels of a run instance.
#[derive(Debug)]
pub struct DistributedCoordinator {
    redis: Redis,
    keys: Keys,
    run_id: String,
    instance: String,
    node_id: String,
    node_type: NodeType,
    seq: AtomicU64,
}

fn note_dropped(dropped: &AtomicU64, channel: &str, e: &crate::wire::DecodeError) {
    let n = dropped.fetch_add(1, Ordering::Relaxed) + 1;
    if n <= 10 || n.is_multiple_of(1000) {
        tracing::warn!(channel, dropped = n, "message dropped: {e}");
    }
}

impl DistributedCoordinator {
    /// A coordinator for node `node_id` of instance `instance` of run `run_id`.
    pub fn new(
        redis: Redis,
        run_id: &str,
        instance: &str,
        node_id: &str,
        node_type: NodeType,
    ) -> Self {
        DistributedCoordinator {
            redis,
            keys: Keys::new(run_id, instance),
            run_id: run_id.to_owned(),
            instance: instance.to_owned(),
            node_id: node_id.to_owned(),
            node_type,
            seq: AtomicU64::new(0),
        }
    }

    /// This run's key names.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The run instance this node belongs to.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The connection.
    pub fn redis(&self) -> &Redis {
        &self.redis
    }

    fn envelope(&self, message: Message) -> Envelope {
        Envelope {
            version: PROTOCOL_VERSION,
            run_id: self.run_id.clone(),
            instance: self.instance.clone(),
            sender: self.node_id.clone(),
            seq: self.seq.fetch_add(1, Ordering::Relaxed),
            message,
        }
    }

    /// Sends `message` on `channel`. Commands go to `worker_id`, or to every worker when
    /// `None`; heartbeats go to the master from a worker, and to `worker_id` from the
    /// master; metrics go on the run's stream.
    pub async fn publish(
        &self,
        channel: ChannelType,
        message: Message,
        worker_id: Option<&str>,
    ) -> Result<(), CoordError> {
        let bytes = encode(&self.envelope(message));
        let client = self.redis.client();
        match channel {
            ChannelType::Command => {
                let _: i64 = client.publish(self.keys.command(worker_id), bytes).await?;
            }
            ChannelType::Heartbeat => {
                let to = match self.node_type {
                    NodeType::Worker => None,
                    NodeType::Master => worker_id,
                };
                let _: i64 = client.publish(self.keys.heartbeat(to), bytes).await?;
            }
            ChannelType::RequestMetrics => {
                let stream = self.keys.metrics_stream();
                let _: String = client
                    .xadd(stream.as_str(), false, None, "*", vec![("m", bytes)])
                    .await?;
                // A stream made again after a Redis restart has no expiry: each batch
                // gives it one, so an orphan (its master dead) goes on its own.
                let _: i64 = client.expire(stream.as_str(), STREAM_TTL_S, None).await?;
            }
        }
        Ok(())
    }

    /// Announces this (master) node's instance on the run-level announce channel.
    pub async fn announce(&self, message: Message) -> Result<(), CoordError> {
        let bytes = encode(&self.envelope(message));
        let _: i64 = self
            .redis
            .client()
            .publish(self.keys.announce(), bytes)
            .await?;
        Ok(())
    }

    /// Calls `handler` with every announcement on `run_id`'s announce channel, whatever
    /// its instance: how a worker finds the live master's instance.
    pub async fn subscribe_announcements<H>(
        redis: &Redis,
        run_id: &str,
        handler: H,
    ) -> Result<Subscription, CoordError>
    where
        H: Fn(Envelope) + Send + Sync + 'static,
    {
        let channel = Keys::new(run_id, "-").announce();
        subscribe_pubsub(redis, vec![channel], run_id.to_owned(), None, handler).await
    }

    /// Calls `handler` with every valid message arriving on `channel` for this node:
    /// commands to it or to all workers, heartbeats to it, or (on the master) every
    /// metrics entry of the stream, oldest first, each deleted once handled. Garbage, and
    /// messages of other runs or instances, are logged, counted and dropped.
    pub async fn subscribe<H>(
        &self,
        channel: ChannelType,
        handler: H,
    ) -> Result<Subscription, CoordError>
    where
        H: Fn(Envelope) + Send + Sync + 'static,
    {
        let dropped = Arc::new(AtomicU64::new(0));
        let run_id = self.run_id.clone();
        let instance = self.instance.clone();
        let task = match channel {
            ChannelType::Command | ChannelType::Heartbeat => {
                let channels = match channel {
                    ChannelType::Command => vec![
                        self.keys.command(None),
                        self.keys.command(Some(&self.node_id)),
                    ],
                    _ => match self.node_type {
                        NodeType::Master => vec![self.keys.heartbeat(None)],
                        NodeType::Worker => vec![self.keys.heartbeat(Some(&self.node_id))],
                    },
                };
                return subscribe_pubsub(&self.redis, channels, run_id, Some(instance), handler)
                    .await;
            }
            ChannelType::RequestMetrics => {
                // Its own connection: a blocking XREAD on the shared one would hold up
                // every command and heartbeat behind it for up to a second.
                let client = self.redis.dedicated().await?;
                let stream = self.keys.metrics_stream();
                let read_errors = Arc::new(AtomicU64::new(0));
                let task = tokio::spawn(read_stream(
                    client.clone(),
                    stream,
                    (run_id, instance),
                    (Arc::clone(&dropped), Arc::clone(&read_errors)),
                    handler,
                ));
                (task, client, read_errors)
            }
        };
        Ok(Subscription {
            task: task.0,
            dropped,
            read_errors: task.2,
            subscriber: None,
            reader: Some(task.1),
        })
    }
}

type StreamEntries = Vec<(String, std::collections::HashMap<String, Vec<u8>>)>;

/// One XREAD of at most 1,000 entries after `last`, blocking up to a second. An idle
/// stream is no entries, not an error: Redis answers a blocking read that timed out with
/// nil, which fred's map conversion refuses.
async fn read_once(
    client: &fred::clients::Client,
    stream: &str,
    last: &str,
) -> Result<StreamEntries, fred::error::Error> {
    let value: fred::types::Value = client.xread(Some(1_000), Some(1_000), stream, last).await?;
    if value.is_null() {
        return Ok(Vec::new());
    }
    let mut response = value.into_xread_response::<String, String, String, Vec<u8>>()?;
    Ok(response.remove(stream).unwrap_or_default())
}

/// Reads the metrics stream for good, handing each entry to `handler`.
async fn read_stream<H>(
    client: fred::clients::Client,
    stream: String,
    (run_id, instance): (String, String),
    (dropped, read_errors): (Arc<AtomicU64>, Arc<AtomicU64>),
    handler: H,
) where
    H: Fn(Envelope) + Send + Sync + 'static,
{
    // Entries are read after the last one handled, so an entry is handled once even if
    // deleting it fails; deleting only keeps the stream short.
    let mut last = String::from("0");
    let mut failing = false;
    loop {
        let entries = match read_once(&client, &stream, &last).await {
            Ok(e) => {
                if failing {
                    tracing::info!("reading metrics from Redis again");
                    failing = false;
                }
                e
            }
            Err(e) => {
                read_errors.fetch_add(1, Ordering::Relaxed);
                // Said once per outage, not every retry.
                if !failing {
                    tracing::warn!(
                        "cannot read metrics from Redis: {}; retrying",
                        crate::redis::plain(&e)
                    );
                    failing = true;
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                continue;
            }
        };
        if entries.is_empty() {
            continue;
        }
        let mut ids = Vec::with_capacity(entries.len());
        for (id, fields) in entries {
            match fields.get("m").map(|b| decode(b, &run_id, Some(&instance))) {
                Some(Ok(env)) => handler(env),
                Some(Err(e)) => note_dropped(&dropped, &stream, &e),
                None => note_dropped(
                    &dropped,
                    &stream,
                    &crate::wire::DecodeError::Malformed {
                        len: 0,
                        reason: "stream entry without field m".into(),
                    },
                ),
            }
            last.clone_from(&id);
            ids.push(id);
        }
        if let Err(e) = client.xdel::<i64, _, _>(stream.as_str(), ids).await {
            tracing::warn!("trimming metrics stream: {}", crate::redis::plain(&e));
        }
    }
}

/// Subscribes to pub/sub `channels` on a connection of its own, handing each valid
/// message (of `run_id`, and of `instance` when given) to `handler`. Returns once the
/// subscription is confirmed live by a probe it sends itself.
async fn subscribe_pubsub<H>(
    redis: &Redis,
    channels: Vec<String>,
    run_id: String,
    instance: Option<String>,
    handler: H,
) -> Result<Subscription, CoordError>
where
    H: Fn(Envelope) + Send + Sync + 'static,
{
    let dropped = Arc::new(AtomicU64::new(0));
    let sub = redis.subscriber().await?;
    let mut rx = sub.message_rx();
    let probe_channel = channels[0].clone();
    sub.subscribe(channels).await?;
    let nonce = format!(
        "{}{}",
        String::from_utf8_lossy(PROBE),
        aiotest_core::fastrand::u64(..)
    );
    let (live_tx, mut live_rx) = tokio::sync::watch::channel(false);
    let counter = Arc::clone(&dropped);
    let probe = nonce.clone();
    let task = tokio::spawn(async move {
        let dropped = counter;
        loop {
            let msg = match rx.recv().await {
                Ok(m) => m,
                // Lagging behind only loses pub/sub messages, which are repeated
                // (absolute commands, periodic heartbeats and announcements).
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(skipped = n, "subscriber lagged");
                    continue;
                }
                Err(_) => return,
            };
            let bytes: Vec<u8> = msg.value.as_bytes().map(<[u8]>::to_vec).unwrap_or_default();
            if bytes.starts_with(PROBE) {
                // Our own probe: the subscription is live. Others' probes (another
                // subscription of the same channel) are ignored.
                if bytes == probe.as_bytes() {
                    let _ = live_tx.send(true);
                }
                continue;
            }
            match decode(&bytes, &run_id, instance.as_deref()) {
                Ok(env) => handler(env),
                Err(e) => note_dropped(&dropped, &msg.channel, &e),
            }
        }
    });
    // Send the probe until it comes back (it can only once the subscription is live),
    // for at most 5 s.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let _: i64 = redis
            .client()
            .publish(probe_channel.as_str(), nonce.as_bytes().to_vec())
            .await?;
        // A bool at once: the watch borrow must not live across an await.
        let live = matches!(
            tokio::time::timeout(
                std::time::Duration::from_millis(50),
                live_rx.wait_for(|l| *l),
            )
            .await,
            Ok(Ok(_))
        );
        if live {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            task.abort();
            let _ = sub.quit().await;
            return Err(CoordError::NotSubscribed(probe_channel));
        }
    }
    Ok(Subscription {
        task,
        dropped,
        read_errors: Arc::default(),
        subscriber: Some(sub),
        reader: None,
    })
}
