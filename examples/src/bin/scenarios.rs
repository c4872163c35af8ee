//! Scenarios in Rust: a closed-model browse and an open-model checkout in one test.
//!
//! `cargo run -p aiotest-examples --bin scenarios -- run --demo`

use std::time::Duration;

use aiotest_core::prelude::*;
use aiotest_http_user::{HttpClient, HttpUser};

struct Visitor {
    client: HttpClient,
}

async fn browse(user: &mut Visitor) -> TaskResult {
    user.client.get("/items").send().await;
    Ok(())
}

async fn checkout(user: &mut Visitor) -> TaskResult {
    user.client.post("/checkout").send().await;
    Ok(())
}

fn main() -> Result<(), BoxError> {
    let http = HttpUser::builder().host("http://127.0.0.1:8080").build()?;
    let h = http.clone();
    let browser = UserType::builder("browser", move |ctx| Visitor {
        client: h.client_for(ctx),
    })
    .wait_time((0.5, 1.0))
    .task("browse", 1, browse)
    .build()?;
    let buyer = UserType::builder("buyer", move |ctx| Visitor {
        client: http.client_for(ctx),
    })
    .task("checkout", 1, checkout)
    .build()?;

    // 10 users browse for 20 s (closed model: each waits for its answers).
    let browse = Scenario::new(
        "browse",
        vec![browser],
        Executor::ConstantVus {
            vus: 10,
            duration: Duration::from_secs(20),
        },
    )?;
    // From 5 s in, 20 checkouts per second for 10 s, whatever they take (open model):
    // latency counts from when each was due.
    let checkout = Scenario::new(
        "checkout",
        vec![buyer],
        Executor::ConstantArrivalRate {
            rate: 20.0,
            time_unit: Duration::from_secs(1),
            duration: Duration::from_secs(10),
            pre_allocated_vus: 5,
            max_vus: 50,
            max_delay: Duration::ZERO,
        },
    )?
    .start_time(Duration::from_secs(5));

    aiotest_cli::Test::new()
        .scenario(browse)
        .scenario(checkout)
        .main()
}
