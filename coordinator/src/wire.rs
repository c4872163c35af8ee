//! The wire protocol: every message between master and workers, in one versioned
//! envelope, encoded with rmp-serde. Nothing else crosses processes.
//!
//! A message that does not decode, carries another protocol version, or belongs to
//! another run is rejected here with a typed error; transports log and drop it.

use aiotest_core::scenario::Share;
use aiotest_core::state::RunnerState;
use aiotest_metrics::Snapshot;
use serde::{Deserialize, Serialize};

/// The protocol version this build speaks. Peers with another version are refused.
/// Version 3: metrics histograms are plain HDR V2 (version 2 deflated them). Version 4:
/// the error category `body_too_large`. Version 5: snapshots carry named metrics (an
/// older master would drop them unseen).
pub const PROTOCOL_VERSION: u16 = 7;

/// The seed's channel types (`DistributedCoordinator.publish(channel_type, ...)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelType {
    /// Master to one worker or all: spawn, pause, resume, stop, quit, setup data.
    Command,
    /// Workers to master: metrics snapshots, on a Redis Stream so none are lost.
    RequestMetrics,
    /// Both ways, every second.
    Heartbeat,
}

impl ChannelType {
    /// The name used in keys.
    pub const fn as_str(self) -> &'static str {
        match self {
            ChannelType::Command => "command",
            ChannelType::RequestMetrics => "request_metrics",
            ChannelType::Heartbeat => "heartbeat",
        }
    }
}

/// Whether a node is the master or a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeType {
    /// The coordinating node.
    Master,
    /// A load-generating node.
    Worker,
}

/// Everything a master and its workers say to each other.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Message {
    /// Worker → master: a worker is here, with the user types it can run.
    Hello {
        /// Names of the worker's user types.
        user_types: Vec<String>,
        /// Names of the worker's scenarios.
        scenarios: Vec<String>,
    },
    /// Master → worker: run exactly these users per type (absolute, so repeating it is
    /// harmless), moving at `spawn_rate` users per second.
    Spawn {
        /// The scenario.
        scenario: String,
        /// Target users per user type name.
        users: Vec<(String, u32)>,
        /// Users per second.
        spawn_rate: f64,
    },
    /// Master → worker: run your part of an iteration or arrival-rate scenario (absolute,
    /// repeated every heartbeat; a new part when the workers change).
    StartScenario {
        /// The scenario.
        scenario: String,
        /// This worker's share of the arrival schedule.
        share: Share,
        /// Users: fixed (iterations) or pre-allocated (arrival rate).
        vus: u32,
        /// Most users (arrival rate).
        max_vus: u32,
        /// Iterations: this worker's (shared-iterations) or each user's (per-vu).
        budget: u64,
        /// How far into the scenario the part starts, µs.
        elapsed_us: u64,
        /// When the master measured `elapsed_us` (µs since the Unix epoch; 0: unknown).
        #[serde(default)]
        sent_us: u64,
    },
    /// Master → workers: the scenario ends; users finish their iteration within the
    /// graceful stop period.
    EndScenario {
        /// The scenario.
        scenario: String,
        /// The graceful stop period, µs.
        grace_us: u64,
    },
    /// Master → workers: setup's data (JSON), before any spawn.
    SetupData {
        /// The JSON setup returned, if setup ran.
        json: Option<Vec<u8>>,
    },
    /// Master → workers: pause users at their next task boundary.
    Pause,
    /// Master → workers: resume.
    Resume,
    /// Master → workers: stop users (graceful), flush metrics, stay connected.
    Stop,
    /// Master → workers: stop and exit.
    Quit,
    /// Master → workers: stop at once, without a graceful stop period (a second Ctrl-C
    /// on the master); requests in flight are counted as interrupted.
    Abort,
    /// Master → anyone on the run id (the run-level announce channel), every heartbeat:
    /// a master is here, running the instance named in the envelope. Workers join only
    /// an instance a live master announces, never one they find stored.
    Announce {
        /// Whether the master takes workers now (false once its run is ending).
        accepting: bool,
    },
    /// Both ways: alive, with the sender's state and user count.
    Heartbeat {
        /// The sender's runner state.
        state: RunnerState,
        /// Users running on the sender.
        users: u64,
        /// From a worker: whether it has the run's setup data (the master resends it
        /// until it has; pub/sub can lose one copy).
        has_setup: bool,
        /// From a worker: scenarios whose users here are all done.
        #[serde(default)]
        done: Vec<String>,
    },
    /// Worker → master: an interval's metrics. `batch` counts up per worker from 0, so
    /// the master can tell a gap; `last` marks the final flush after a stop.
    Metrics {
        /// Per-worker batch number.
        batch: u64,
        /// The interval's statistics.
        snapshot: Snapshot,
        /// Whether this is the worker's final flush.
        last: bool,
        /// Task outcomes since the previous batch.
        counts: TaskCounts,
    },
}

/// What users' tasks did, beyond their requests: sent by workers as deltas with each
/// metrics batch, summed by the master.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskCounts {
    /// Tasks run to completion (successful or not).
    pub tasks: u64,
    /// Tasks (and hooks) that returned an error.
    pub task_errors: u64,
    /// Tasks, hooks or factories that panicked (each replaced its user).
    pub panics: u64,
    /// Users cancelled because they outlived the graceful stop period.
    pub cancelled_users: u64,
}

impl TaskCounts {
    /// The counts of `self` not yet in `earlier`.
    pub fn since(&self, earlier: &TaskCounts) -> TaskCounts {
        TaskCounts {
            tasks: self.tasks.saturating_sub(earlier.tasks),
            task_errors: self.task_errors.saturating_sub(earlier.task_errors),
            panics: self.panics.saturating_sub(earlier.panics),
            cancelled_users: self.cancelled_users.saturating_sub(earlier.cancelled_users),
        }
    }

    /// Adds `other` in.
    pub fn add(&mut self, other: &TaskCounts) {
        self.tasks += other.tasks;
        self.task_errors += other.task_errors;
        self.panics += other.panics;
        self.cancelled_users += other.cancelled_users;
    }
}

/// The envelope around every message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// [`PROTOCOL_VERSION`] of the sender.
    pub version: u16,
    /// The run the message belongs to.
    pub run_id: String,
    /// The run's instance: a master's start creates one, so two starts on one run id
    /// (one after the other, or a new master after one died) never mix.
    pub instance: String,
    /// The sender's node id.
    pub sender: String,
    /// The sender's message counter (per channel type).
    pub seq: u64,
    /// The message.
    pub message: Message,
}

/// A message that was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The bytes are not an envelope.
    #[error("undecodable message ({len} bytes): {reason}")]
    Malformed {
        /// How many bytes arrived.
        len: usize,
        /// What rmp-serde said.
        reason: String,
    },
    /// Another protocol version.
    #[error("message from {sender} speaks protocol {got}, this node speaks {want}")]
    Version {
        /// The sender.
        sender: String,
        /// Its version.
        got: u16,
        /// Ours.
        want: u16,
    },
    /// Another run.
    #[error("message from {sender} belongs to run `{got}`, not `{want}`")]
    RunId {
        /// The sender.
        sender: String,
        /// Its run id.
        got: String,
        /// Ours.
        want: String,
    },
    /// Another instance of this run (an earlier master's, say).
    #[error("message from {sender} belongs to instance `{got}` of this run, not `{want}`")]
    Instance {
        /// The sender.
        sender: String,
        /// Its instance.
        got: String,
        /// Ours.
        want: String,
    },
}

/// Encodes an envelope.
pub fn encode(envelope: &Envelope) -> Vec<u8> {
    // Plain structs of numbers, strings and byte arrays always encode.
    rmp_serde::to_vec_named(envelope).unwrap_or_default()
}

/// The envelope header alone, decoded first so a message of another version is refused
/// with a clear error even if its body changed shape.
#[derive(Deserialize)]
struct Header {
    version: u16,
    run_id: String,
    instance: String,
    sender: String,
}

/// Decodes `bytes` and checks they belong to `run_id` (and `instance`, when given) and
/// this protocol version.
pub fn decode(bytes: &[u8], run_id: &str, instance: Option<&str>) -> Result<Envelope, DecodeError> {
    let malformed = |e: rmp_serde::decode::Error| DecodeError::Malformed {
        len: bytes.len(),
        reason: e.to_string(),
    };
    let header: Header = rmp_serde::from_slice(bytes).map_err(malformed)?;
    if header.version != PROTOCOL_VERSION {
        return Err(DecodeError::Version {
            sender: header.sender,
            got: header.version,
            want: PROTOCOL_VERSION,
        });
    }
    if header.run_id != run_id {
        return Err(DecodeError::RunId {
            sender: header.sender,
            got: header.run_id,
            want: run_id.to_owned(),
        });
    }
    if let Some(want) = instance
        && header.instance != want
    {
        return Err(DecodeError::Instance {
            sender: header.sender,
            got: header.instance,
            want: want.to_owned(),
        });
    }
    rmp_serde::from_slice(bytes).map_err(malformed)
}

/// A new instance id: milliseconds since the epoch and 32 random bits, in hex, so ids
/// sort by start and never repeat in practice.
pub fn new_instance_id() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("{ms:x}-{:08x}", aiotest_core::fastrand::u32(..))
}

/// Longest run id: ids go into every key and channel name.
pub const MAX_RUN_ID_LEN: usize = 64;

/// A run id that cannot name a run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RunIdError {
    /// The empty string.
    #[error("the run id is empty")]
    Empty,
    /// Over [`MAX_RUN_ID_LEN`] bytes.
    #[error("the run id is over {MAX_RUN_ID_LEN} characters")]
    TooLong,
    /// A character outside `A-Z a-z 0-9 . _ -`.
    #[error("the run id `{0}` may hold only letters, digits, `.`, `_` and `-`")]
    BadChar(String),
}

/// Checks a run id: 1 to [`MAX_RUN_ID_LEN`] of `A-Z a-z 0-9 . _ -`, so it can neither be
/// empty nor reach into another run's keys (`a:b` would, with `:` as the separator).
pub fn check_run_id(run_id: &str) -> Result<(), RunIdError> {
    if run_id.is_empty() {
        return Err(RunIdError::Empty);
    }
    if run_id.len() > MAX_RUN_ID_LEN {
        return Err(RunIdError::TooLong);
    }
    if !run_id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(RunIdError::BadChar(run_id.to_owned()));
    }
    Ok(())
}

/// Redis names for one run instance: every key and channel starts with
/// `aiotest:{run_id}:{instance}:`, so two tests can share a Redis without seeing each
/// other, and a run id used again never meets what an earlier instance left. The run's
/// lock and its announce channel are per run id (`aiotest:{run_id}:`), shared by all
/// its instances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    run_prefix: String,
    prefix: String,
}

impl Keys {
    /// The names for instance `instance` of `run_id`.
    pub fn new(run_id: &str, instance: &str) -> Self {
        Keys {
            run_prefix: format!("aiotest:{run_id}:"),
            prefix: format!("aiotest:{run_id}:{instance}:"),
        }
    }

    /// The run-level pub/sub channel on which a live master announces its instance.
    pub fn announce(&self) -> String {
        format!("{}announce", self.run_prefix)
    }

    /// The pub/sub channel of commands to `worker`, or to all workers.
    pub fn command(&self, worker: Option<&str>) -> String {
        match worker {
            Some(w) => format!("{}command:{w}", self.prefix),
            None => format!("{}command:all", self.prefix),
        }
    }

    /// The pub/sub channel of heartbeats to the master (`None`) or to a worker.
    pub fn heartbeat(&self, to: Option<&str>) -> String {
        match to {
            Some(w) => format!("{}heartbeat:{w}", self.prefix),
            None => format!("{}heartbeat:master", self.prefix),
        }
    }

    /// The stream of metrics snapshots (and hellos) from workers to the master.
    pub fn metrics_stream(&self) -> String {
        format!("{}request_metrics", self.prefix)
    }

    /// The key holding the run's plan (what workers run), set by the master.
    pub fn plan(&self) -> String {
        format!("{}plan", self.prefix)
    }

    /// The counter that numbers the workers of the instance as they join (users of
    /// worker `n` are numbered from its own block, so a user's number is unique in the
    /// test).
    pub fn worker_ordinals(&self) -> String {
        format!("{}workers", self.prefix)
    }

    /// The key of the run-level lock `name` (one master per run id).
    pub fn lock(&self, name: &str) -> String {
        format!("{}lock:{name}", self.run_prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aiotest_metrics::RequestRecord;

    #[test]
    fn run_ids_are_checked() {
        for ok in ["default", "shop-2026.11_a", "x"] {
            assert_eq!(check_run_id(ok), Ok(()), "{ok}");
        }
        assert_eq!(check_run_id(""), Err(RunIdError::Empty));
        assert_eq!(check_run_id(&"a".repeat(65)), Err(RunIdError::TooLong));
        for bad in ["a:b", "a b", "a*", "caf\u{e9}"] {
            assert!(check_run_id(bad).is_err(), "{bad}");
        }
    }

    fn envelope(run: &str, message: Message) -> Envelope {
        Envelope {
            version: PROTOCOL_VERSION,
            run_id: run.into(),
            instance: "i1".into(),
            sender: "w1".into(),
            seq: 7,
            message,
        }
    }

    #[test]
    fn every_message_round_trips() {
        let mut snap = Snapshot::new();
        snap.record(&RequestRecord::ok("/a", "GET", 200, 1_500));
        let messages = vec![
            Message::Hello {
                user_types: vec!["shopper".into()],
                scenarios: vec!["default".into()],
            },
            Message::Spawn {
                scenario: "default".into(),
                users: vec![("shopper".into(), 3)],
                spawn_rate: f64::INFINITY,
            },
            Message::StartScenario {
                scenario: "rate".into(),
                share: Share {
                    index: 1,
                    of: 3,
                    from: 40,
                },
                vus: 2,
                max_vus: 10,
                budget: 0,
                elapsed_us: 1_500_000,
                sent_us: 1_765_000_000_000_000,
            },
            Message::EndScenario {
                scenario: "rate".into(),
                grace_us: 30_000_000,
            },
            Message::SetupData {
                json: Some(b"{\"t\":1}".to_vec()),
            },
            Message::Pause,
            Message::Resume,
            Message::Stop,
            Message::Quit,
            Message::Abort,
            Message::Heartbeat {
                state: RunnerState::Running,
                users: 12,
                has_setup: true,
                done: vec!["warmup".into()],
            },
            Message::Metrics {
                batch: 3,
                snapshot: snap,
                last: true,
                counts: TaskCounts {
                    tasks: 9,
                    task_errors: 1,
                    panics: 2,
                    cancelled_users: 3,
                },
            },
            Message::Announce { accepting: true },
        ];
        for m in messages {
            let e = envelope("run-1", m);
            assert_eq!(decode(&encode(&e), "run-1", Some("i1")).unwrap(), e);
            assert_eq!(decode(&encode(&e), "run-1", None).unwrap(), e);
        }
    }

    #[test]
    fn other_runs_versions_and_garbage_are_refused() {
        let e = envelope("run-2", Message::Pause);
        assert!(matches!(
            decode(&encode(&e), "run-1", None),
            Err(DecodeError::RunId { .. })
        ));
        let e = envelope("run-1", Message::Pause);
        assert_eq!(
            decode(&encode(&e), "run-1", Some("i2"))
                .unwrap_err()
                .to_string(),
            "message from w1 belongs to instance `i1` of this run, not `i2`"
        );
        let mut old = envelope("run-1", Message::Pause);
        old.version = 0;
        let err = decode(&encode(&old), "run-1", None).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("message from w1 speaks protocol 0, this node speaks {PROTOCOL_VERSION}")
        );
        for garbage in [&b""[..], b"hello", &[0xc1; 64], &[0x92, 0x01]] {
            assert!(
                matches!(
                    decode(garbage, "run-1", None),
                    Err(DecodeError::Malformed { .. })
                ),
                "{garbage:?}"
            );
        }
    }

    #[test]
    fn keys_are_namespaced_by_run_and_instance() {
        let k = Keys::new("nightly", "i7");
        assert_eq!(k.command(None), "aiotest:nightly:i7:command:all");
        assert_eq!(k.command(Some("w1")), "aiotest:nightly:i7:command:w1");
        assert_eq!(k.heartbeat(None), "aiotest:nightly:i7:heartbeat:master");
        assert_eq!(k.metrics_stream(), "aiotest:nightly:i7:request_metrics");
        assert_eq!(k.plan(), "aiotest:nightly:i7:plan");
        // One master per run id, whatever its instance; one announce channel per run id.
        assert_eq!(k.lock("master"), "aiotest:nightly:lock:master");
        assert_eq!(k.announce(), "aiotest:nightly:announce");
        assert_eq!(Keys::new("nightly", "i8").lock("master"), k.lock("master"));
        assert_ne!(
            Keys::new("a", "i").command(None),
            Keys::new("b", "i").command(None)
        );
        assert_ne!(
            Keys::new("a", "i1").metrics_stream(),
            Keys::new("a", "i2").metrics_stream()
        );
        let id = new_instance_id();
        assert!(check_run_id(&id).is_ok(), "{id}");
        assert_ne!(id, new_instance_id());
    }
}
