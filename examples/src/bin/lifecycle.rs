//! The k6 lifecycle in Rust: setup once (its data shared read-only with every user),
//! teardown with that data, a summary hook, and a load shape written as a closure.
//!
//! `cargo run -p aiotest-examples --bin lifecycle -- run --demo`

use std::sync::Arc;
use std::time::Duration;

use aiotest_core::prelude::*;
use aiotest_http_user::{HttpClient, HttpUser};
use aiotest_runner::Summary;
use serde::{Deserialize, Serialize};

/// What setup prepares: shared by every user, read-only.
#[derive(Serialize, Deserialize)]
struct Accounts {
    tokens: Vec<String>,
}

struct Customer {
    client: HttpClient,
    token: String,
}

async fn orders(user: &mut Customer) -> TaskResult {
    user.client
        .get("/orders")
        .header("authorization", &format!("Bearer {}", user.token))
        .send()
        .await;
    Ok(())
}

fn main() -> Result<(), BoxError> {
    let http = HttpUser::builder().host("http://127.0.0.1:8080").build()?;
    let customer = UserType::builder("customer", move |ctx| {
        // Each user picks an account from setup's data by its number.
        let token = ctx
            .setup::<Accounts>()
            .and_then(|a| {
                a.tokens
                    .get(ctx.user_id() as usize % a.tokens.len().max(1))
                    .cloned()
            })
            .unwrap_or_default();
        Customer {
            client: http.client_for(ctx),
            token,
        }
    })
    .wait_time(0.2)
    .task("orders", 1, orders)
    .build()?;

    let lifecycle = Lifecycle::<Accounts>::new()
        .setup(async |ctx: SetupContext| {
            // A real setup would create the accounts through the API at ctx.host().
            eprintln!(
                "setup: creating accounts on {}",
                ctx.host().unwrap_or("(no host)")
            );
            Ok(Accounts {
                tokens: (0..5).map(|i| format!("token-{i}")).collect(),
            })
        })
        .teardown(async |data: Option<Arc<Accounts>>| {
            let n = data.map_or(0, |d| d.tokens.len());
            eprintln!("teardown: deleting {n} accounts");
            Ok(())
        })
        .setup_timeout(Duration::from_secs(10));

    // Ramp to 20 users over 5 s, hold for 10 s, then end.
    let shape = |t: Duration| -> Option<(u32, f64)> {
        let s = t.as_secs_f64();
        (s < 15.0).then(|| (((s / 5.0).min(1.0) * 20.0) as u32, 10.0))
    };

    let on_summary = SummaryHook::new(|summary: &Summary| {
        // No p95 when no request had a duration (every one failed before an exchange).
        let p95 = summary
            .totals
            .p95_ms
            .map_or_else(|| "-".to_owned(), |ms| format!("{ms:.2} ms"));
        eprintln!(
            "summary hook: {} requests, p95 {p95}",
            summary.totals.requests
        );
        Ok(())
    });

    aiotest_cli::Test::new()
        .user_type(customer)
        .lifecycle(lifecycle)
        .shape(shape)
        .on_summary(on_summary)
        .main()
}
