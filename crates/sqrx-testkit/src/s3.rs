//! An S3-compatible server for tests: moto in server mode on a free loopback port, started by
//! the test that needs it and killed when dropped (`scripts/s3-tools.sh` installs it).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The access key the tests sign with (moto without auth takes any).
pub const ACCESS_KEY: &str = "sqrx-test";
/// Its secret.
pub const SECRET_KEY: &str = "sqrx-test-secret";

/// A moto server on a free loopback port; killed when dropped.
pub struct S3Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The moto server program: `$SQRX_TEST_MOTO_SERVER`, else `moto_server` on the PATH.
fn moto_program() -> Option<String> {
    if let Ok(p) = std::env::var("SQRX_TEST_MOTO_SERVER") {
        return Some(p);
    }
    let found = Command::new("sh")
        .args(["-c", "command -v moto_server"])
        .output()
        .ok()?;
    found
        .status
        .success()
        .then(|| String::from_utf8_lossy(&found.stdout).trim().to_string())
}

impl S3Server {
    /// The environment a process (a server, the CLI) needs to use `bucket` here with the
    /// tests' key, and never an instance role.
    pub fn env(&self, bucket: &str) -> Vec<(&'static str, String)> {
        vec![
            ("SQRX_S3_BUCKET", bucket.to_string()),
            ("SQRX_S3_ENDPOINT", self.endpoint.clone()),
            ("SQRX_S3_PART_MB", "5".into()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ]
    }

    /// Create `bucket` (unsigned, as moto without auth allows).
    pub fn create_bucket(&self, bucket: &str) {
        let (status, answer) = self.raw_answer("PUT", &format!("/{bucket}"), b"");
        assert_eq!(status, 200, "create bucket {bucket}: {answer}");
    }

    /// Start one (`auth`: moto checks credentials, and knows none). `None` when moto is not
    /// installed and the run does not require it.
    pub fn start(auth: bool) -> Option<S3Server> {
        let Some(program) = moto_program() else {
            assert!(
                std::env::var("SQRX_REQUIRE_PRIVILEGED").as_deref() != Ok("1"),
                "moto_server is missing (scripts/s3-tools.sh installs it and sets \
                 SQRX_TEST_MOTO_SERVER)"
            );
            eprintln!("skipping: moto_server is not installed");
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let mut cmd = Command::new(&program);
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if auth {
            cmd.env("INITIAL_NO_AUTH_ACTION_COUNT", "0");
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("start {program}: {e}"));
        let server = S3Server {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(server)
    }

    /// A raw, unsigned request (moto without auth takes them): the status.
    pub fn raw(&self, method: &str, path: &str, body: &[u8]) -> u16 {
        let (status, answer) = self.raw_answer(method, path, body);
        if status >= 300 {
            eprintln!("{method} {path}: {answer}");
        }
        status
    }

    /// A raw request: the status and the whole answer.
    pub fn raw_answer(&self, method: &str, path: &str, body: &[u8]) -> (u16, String) {
        let addr = self.endpoint.trim_start_matches("http://");
        let mut tcp = TcpStream::connect(addr).expect("connect");
        write!(
            tcp,
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .expect("head");
        tcp.write_all(body).expect("body");
        let mut answer = String::new();
        let _ = tcp.read_to_string(&mut answer);
        let status = answer
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (status, answer)
    }

    /// Replace object `key` of `bucket` with `bytes`, signed as the tests' key (moto refuses
    /// an unsigned overwrite of an object a signed request made), with the `aws` CLI.
    pub fn overwrite(&self, bucket: &str, key: &str, bytes: &[u8]) {
        let cli = std::env::var("SQRX_AWS_CLI").unwrap_or_else(|_| "aws".into());
        let file = tempfile::NamedTempFile::new().expect("temp");
        std::fs::write(file.path(), bytes).expect("write");
        let out = Command::new(&cli)
            .args(["--endpoint-url", &self.endpoint, "s3", "cp"])
            .arg(file.path())
            .arg(format!("s3://{bucket}/{key}"))
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .output()
            .unwrap_or_else(|e| panic!("{cli} (scripts/s3-tools.sh sets SQRX_AWS_CLI): {e}"));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
