//! Instruction counts per request, client thread only, for the loops of `aiotest-bench`:
//! `bare` (hyper conn loop), `recorded` (the same plus timing and the metrics record),
//! `timed` (`recorded` under `tokio::time::timeout`) and `client` (`HttpClient`), N
//! kept-alive GETs each against an in-process server. The optional third argument is
//! where the loop runs: `idle` (default), a runtime with no other timer, or `run`, a
//! runtime holding a pending timer as every aiotest run does ([`Surroundings`]).
//!
//! ```sh
//! cargo build --release -p aiotest-bench --bin callgrind_probe
//! for s in idle run; do for m in bare recorded timed client; do for n in 1000 3000; do
//!   valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file=/tmp/cg.$s.$m.$n \
//!     target/release/callgrind_probe $m $n $s
//! done; done; done
//! # per request = (summary of /tmp/cg.$s.$m.3000-01 - of /tmp/cg.$s.$m.1000-01) / 2000
//! ```
//!
//! The difference of two run lengths cancels start-up, connection set-up and exit.
//!
//! [`Surroundings`]: aiotest_bench::Surroundings

use aiotest_bench::{
    Bare, BareLoop, Surroundings, aiotest_client, aiotest_get, client_runtime, start_server,
};
use aiotest_metrics::MetricsCollector;

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_default();
    let n: u64 = match args.next().map(|s| s.parse()) {
        None => 1000,
        Some(Ok(n)) => n,
        Some(Err(e)) => {
            eprintln!("callgrind_probe: bad request count: {e}");
            std::process::exit(2);
        }
    };
    let surroundings = match args.next().as_deref() {
        None | Some("idle") => Surroundings::Idle,
        Some("run") => Surroundings::Run,
        Some(other) => {
            eprintln!("callgrind_probe: unknown surroundings `{other}` (idle, run)");
            std::process::exit(2);
        }
    };
    let addr = start_server();
    let collector = MetricsCollector::with_defaults();
    // The loop runs as a spawned task, as a virtual user does in a runner.
    let user = async move {
        match mode.as_str() {
            "bare" | "recorded" | "timed" => {
                let bare_loop = match mode.as_str() {
                    "bare" => BareLoop::Bare,
                    "recorded" => BareLoop::Recorded,
                    _ => BareLoop::Timed,
                };
                let mut bare = Bare::connect(addr).await;
                bare_loop.run(&mut bare, &mut collector.recorder(), n).await;
            }
            "client" => {
                let mut client = aiotest_client(addr, collector.recorder());
                for _ in 0..n {
                    std::hint::black_box(aiotest_get(&mut client).await);
                }
            }
            other => {
                eprintln!(
                    "callgrind_probe: unknown mode `{other}` (bare, recorded, timed, client)"
                );
                std::process::exit(2);
            }
        }
    };
    let rt = client_runtime();
    surroundings.prepare(&rt);
    if let Err(e) = rt.block_on(rt.spawn(user)) {
        eprintln!("callgrind_probe: the loop failed: {e}");
        std::process::exit(1);
    }
}
