//! The README example: a user with two weighted tasks, an `on_start` login and a custom load shape.

use std::time::Duration;

use aiotest_core::prelude::*;

/// One virtual user and its own state.
struct Shopper {
    token: Option<String>,
    items: u32,
}

async fn login(user: &mut Shopper) -> TaskResult {
    user.token = Some("secret".into());
    Ok(())
}

async fn browse(_user: &mut Shopper) -> TaskResult {
    Ok(())
}

async fn add_to_cart(user: &mut Shopper) -> TaskResult {
    user.items += 1;
    Ok(())
}

/// Ten users, fifty for ten seconds of every thirty, for two minutes.
struct Bursts;

impl LoadUserShape for Bursts {
    fn tick(&mut self, run_time: Duration) -> Option<(u32, f64)> {
        let t = run_time.as_secs();
        if t >= 120 {
            return None;
        }
        Some((if t % 30 < 20 { 10 } else { 50 }, 10.0))
    }
}

fn main() -> Result<(), BoxError> {
    let shopper = UserType::builder("shopper", |_ctx| Shopper {
        token: None,
        items: 0,
    })
    .wait_time((0.5, 1.5))
    .on_start(login)
    .task("browse", 5, browse)
    .task("add_to_cart", 1, add_to_cart)
    .build()?;

    // The runner is not built yet: print the plan it will follow.
    println!("{shopper:?}");
    let mut shape = Bursts;
    for t in (0..=120).step_by(10) {
        match shape.tick(Duration::from_secs(t)) {
            Some((users, rate)) => println!("{t:>4}s  {users:>3} users, spawn rate {rate}/s"),
            None => println!("{t:>4}s  end of test"),
        }
    }
    Ok(())
}
