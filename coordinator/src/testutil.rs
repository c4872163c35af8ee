//! A private `redis-server` for tests (feature `test-util`): started on a free port of
//! 127.0.0.1 with no persistence, stopped when dropped.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running private redis-server.
#[derive(Debug)]
pub struct RedisServer {
    child: Child,
    port: u16,
    password: Option<String>,
}

/// Why the server did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisServerError {
    /// The binary is missing or could not be started.
    #[error("cannot start redis-server ({0}); install it: apt-get install -y redis-server")]
    Spawn(std::io::Error),
    /// No free port, or the server never answered.
    #[error("redis-server did not come up: {0}")]
    NotReady(String),
}

impl RedisServer {
    /// Starts a server without authentication.
    pub fn start() -> Result<Self, RedisServerError> {
        Self::start_with(None)
    }

    /// Starts a server requiring `password` (`requirepass`).
    pub fn start_with_password(password: &str) -> Result<Self, RedisServerError> {
        Self::start_with(Some(password.to_owned()))
    }

    fn start_with(password: Option<String>) -> Result<Self, RedisServerError> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| RedisServerError::NotReady(format!("no free port: {e}")))?
            .port();
        let mut cmd = Command::new("redis-server");
        cmd.args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        if let Some(p) = &password {
            cmd.args(["--requirepass", p]);
        }
        let child = cmd.spawn().map_err(RedisServerError::Spawn)?;
        let server = RedisServer {
            child,
            port,
            password,
        };
        server.wait_ready()?;
        Ok(server)
    }

    fn wait_ready(&self) -> Result<(), RedisServerError> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(RedisServerError::NotReady(format!(
            "nothing listens on port {} after 10 s",
            self.port
        )))
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A `redis://` URL for this server (with the password, if any).
    pub fn url(&self) -> String {
        match &self.password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
