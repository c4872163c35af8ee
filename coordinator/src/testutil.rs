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
    /// With TLS: the directory holding the certificate files (removed on drop).
    tls_dir: Option<std::path::PathBuf>,
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
        let server = RedisServer {
            child: spawn_plain(port, password.as_deref())?,
            port,
            password,
            tls_dir: None,
        };
        server.wait_ready()?;
        Ok(server)
    }

    /// Stops the server (as a crash would: no persistence, everything lost) and starts a
    /// fresh one on the same port, like a Redis restart.
    pub fn restart(&mut self) -> Result<(), RedisServerError> {
        if self.tls_dir.is_some() {
            return Err(RedisServerError::NotReady(
                "restart is for plain servers".into(),
            ));
        }
        self.kill();
        self.child = spawn_plain(self.port, self.password.as_deref())?;
        self.wait_ready()
    }

    /// Kills the server for good (until [`restart`](Self::restart)): what a Redis that
    /// died looks like to its clients.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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

    /// Starts a server speaking only TLS, with a certificate for 127.0.0.1 and localhost
    /// signed by a fresh CA. Returns the server and the CA's PEM, which clients must trust
    /// (`Redis::connect_with_root_ca`); its URL is `rediss://`.
    pub fn start_tls() -> Result<(Self, String), RedisServerError> {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let tls = |e: rcgen::Error| RedisServerError::NotReady(format!("test certificate: {e}"));
        let ca_key = KeyPair::generate().map_err(tls)?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(tls)?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).map_err(tls)?;
        let key = KeyPair::generate().map_err(tls)?;
        let params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .map_err(tls)?;
        let cert = params
            .signed_by(&key, &Issuer::from_params(&ca_params, &ca_key))
            .map_err(tls)?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| RedisServerError::NotReady(format!("no free port: {e}")))?
            .port();
        let dir =
            std::env::temp_dir().join(format!("aiotest-redis-tls-{}-{port}", std::process::id()));
        let io =
            |e: std::io::Error| RedisServerError::NotReady(format!("writing certificates: {e}"));
        std::fs::create_dir_all(&dir).map_err(io)?;
        let (cert_file, key_file, ca_file) = (
            dir.join("cert.pem"),
            dir.join("key.pem"),
            dir.join("ca.pem"),
        );
        std::fs::write(&cert_file, cert.pem()).map_err(io)?;
        std::fs::write(&key_file, key.serialize_pem()).map_err(io)?;
        std::fs::write(&ca_file, ca.pem()).map_err(io)?;
        let path = |p: &std::path::Path| p.to_string_lossy().into_owned();
        let child = Command::new("redis-server")
            .args([
                "--port",
                "0",
                "--tls-port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .args([
                "--tls-cert-file",
                &path(&cert_file),
                "--tls-key-file",
                &path(&key_file),
            ])
            .args([
                "--tls-ca-cert-file",
                &path(&ca_file),
                "--tls-auth-clients",
                "no",
            ])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(RedisServerError::Spawn)?;
        let server = RedisServer {
            child,
            port,
            password: None,
            tls_dir: Some(dir),
        };
        server.wait_ready()?;
        Ok((server, ca.pem()))
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A `redis://` URL for this server (with the password, if any).
    pub fn url(&self) -> String {
        let scheme = if self.tls_dir.is_some() {
            "rediss"
        } else {
            "redis"
        };
        match &self.password {
            Some(p) => format!("{scheme}://:{p}@127.0.0.1:{}", self.port),
            None => format!("{scheme}://127.0.0.1:{}", self.port),
        }
    }
}

/// A plain redis-server on `port`, without persistence.
fn spawn_plain(port: u16, password: Option<&str>) -> Result<Child, RedisServerError> {
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
    if let Some(p) = password {
        cmd.args(["--requirepass", p]);
    }
    cmd.spawn().map_err(RedisServerError::Spawn)
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(dir) = &self.tls_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
