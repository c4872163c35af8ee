//! k6's tags and groups from a Rust user: a home page tagged `page=home`, then a
//! `checkout` group holding the cart and a nested `pay` group, each request tagged with
//! its page and each group timed (`group_duration`). Thresholds read k6's built-in
//! metrics through those tags (the scenario-file form is checkout.toml).
//!
//! `cargo run -p aiotest-examples --bin checkout -- run --demo -u 2 -t 5s \
//!   --threshold "http_req_duration{page:pay} p(95)<500" \
//!   --threshold "checks{group:::checkout::pay} rate==100%"`

use aiotest_core::prelude::*;
use aiotest_http_user::{HttpClient, HttpUser};

struct Shopper {
    client: HttpClient,
}

async fn shop(user: &mut Shopper) -> TaskResult {
    let c = &mut user.client;
    let home = c.get("/").tag("page", "home").send().await;
    c.check("home shown", home.is_ok());
    c.group("checkout", |c| {
        Box::pin(async move {
            let cart = c.get("/cart").tag("page", "cart").send().await;
            c.check("cart shown", cart.is_ok());
            c.group("pay", |c| {
                Box::pin(async move {
                    let paid = c.post("/pay").tag("page", "pay").send().await;
                    c.check("paid", paid.is_ok());
                })
            })
            .await
        })
    })
    .await??;
    Ok(())
}

fn main() -> Result<(), BoxError> {
    let http = HttpUser::builder().host("http://127.0.0.1:8080").build()?;
    let shopper = UserType::builder("shopper", move |ctx| Shopper {
        client: http.client_for(ctx),
    })
    .wait_time(0.05)
    .task("shop", 1, shop)
    .build()?;
    aiotest_cli::Test::new().user_type(shopper).main()
}
