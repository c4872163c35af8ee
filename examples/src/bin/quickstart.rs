//! The README example: a user with two weighted tasks, an `on_start` login and a custom load shape.

use std::time::Duration;

use aiotest_core::prelude::*;
use aiotest_http_user::{HttpClient, HttpUser};

/// One virtual user: its own HTTP client (connections, cookies) and state.
struct Shopper {
    client: HttpClient,
    logged_in: bool,
}

async fn login(user: &mut Shopper) -> TaskResult {
    let r = user
        .client
        .post("/login")
        .form(&[("user", "demo")])
        .send()
        .await;
    user.logged_in = r.is_ok();
    Ok(())
}

async fn browse(user: &mut Shopper) -> TaskResult {
    user.client.get("/items?page=1").send().await;
    Ok(())
}

async fn add_to_cart(user: &mut Shopper) -> TaskResult {
    user.client
        .post("/cart")
        .json(&serde_json::json!({"item": 42}))
        .send()
        .await;
    Ok(())
}

/// Ten users, fifty for five seconds of every fifteen, for one minute.
struct Bursts;

impl LoadUserShape for Bursts {
    fn tick(&mut self, run_time: Duration) -> Option<(u32, f64)> {
        let t = run_time.as_secs();
        if t >= 60 {
            return None;
        }
        Some((if t % 15 < 10 { 10 } else { 50 }, 20.0))
    }
}

fn main() -> Result<(), BoxError> {
    let http = HttpUser::builder().host("http://127.0.0.1:8080").build()?;
    let shopper = UserType::builder("shopper", move |ctx| Shopper {
        client: http.client_for(ctx),
        logged_in: false,
    })
    .wait_time((0.5, 1.5))
    .on_start(login)
    .task("browse", 5, browse)
    .task("add_to_cart", 1, add_to_cart)
    .build()?;

    // The whole `aiotest run` command line: `quickstart run --demo`, `-H URL`, `-t 30s`, ...
    aiotest_cli::Test::new()
        .user_type(shopper)
        .shape(Bursts)
        .main()
}
