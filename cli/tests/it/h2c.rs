//! `--h2c` and a file's `h2c = true`: HTTP/2 without TLS, by prior knowledge, against a
//! server that serves both HTTP/1.1 and HTTP/2 on one plain port.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{TempFile, run_exported, text};

/// The test server (HTTP/1.1, or HTTP/2 to a client that starts with its preface),
/// counting the requests of each version.
fn serve_both() -> (std::net::SocketAddr, Arc<[AtomicU64; 2]>) {
    let counts: Arc<[AtomicU64; 2]> = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let seen = Arc::clone(&counts);
    let addr = super::serve(move |parts, _| {
        let h2 = parts.version == http::Version::HTTP_2;
        seen[usize::from(h2)].fetch_add(1, Ordering::Relaxed);
        hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from_static(b"ok")))
    });
    (addr, counts)
}

#[test]
fn h2c_speaks_http2_over_plain_tcp_from_the_command_line_and_a_file() {
    let (addr, counts) = serve_both();
    let url = format!("http://{addr}/x");
    let (out, json) = run_exported(
        "h2c-url",
        &["run", "--url", &url, "--h2c", "-u", "2", "-i", "20"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(json["totals"]["requests"], 20);
    assert_eq!(
        counts[1].load(Ordering::Relaxed),
        20,
        "every request in HTTP/2"
    );
    assert_eq!(counts[0].load(Ordering::Relaxed), 0);
    // A file's [http] h2c = true does the same; without it, HTTP/1.1.
    for (h2c, name) in [(true, "h2c-file"), (false, "h1-file")] {
        let f = TempFile::new(
            name,
            &format!(
                "host = \"http://{addr}\"\n[http]\nh2c = {h2c}\n[load]\nusers = 1\n\
                 [[users]]\nname = \"u\"\nwait_time = 0\n[[users.tasks]]\npath = \"/y\"\n"
            ),
        );
        let before = [0, 1].map(|i| counts[i].load(Ordering::Relaxed));
        let (out, json) = run_exported(name, &["run", f.path().to_str().unwrap(), "-i", "5"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert_eq!(json["totals"]["requests"], 5);
        let after = [0, 1].map(|i| counts[i].load(Ordering::Relaxed));
        let h2 = usize::from(h2c);
        assert_eq!(after[h2] - before[h2], 5, "{name}");
        assert_eq!(after[1 - h2], before[1 - h2], "{name}");
    }
}
