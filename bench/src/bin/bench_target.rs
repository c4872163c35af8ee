//! The end-to-end benchmark's target when nginx is not installed: HTTP/1.1 on one
//! thread (pin it with `taskset`), keep-alive without limit, `ok` (2 bytes) to every
//! request. `bench_target 127.0.0.1:PORT`; runs until killed.

fn main() {
    let Some(addr) = std::env::args().nth(1) else {
        eprintln!("usage: bench_target 127.0.0.1:PORT");
        std::process::exit(2);
    };
    let addr: std::net::SocketAddr = match addr.parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bench_target: `{addr}`: {e}");
            std::process::exit(2);
        }
    };
    if !addr.ip().is_loopback() {
        eprintln!("bench_target: {addr}: only loopback addresses");
        std::process::exit(2);
    }
    aiotest_bench::client_runtime().block_on(async move {
        let listener = match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("bench_target: bind {addr}: {e}");
                std::process::exit(1);
            }
        };
        aiotest_bench::serve(listener, b"ok").await;
    });
}
