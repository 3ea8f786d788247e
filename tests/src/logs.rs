//! Test logging: one log subscriber per test process, which keeps every line in memory so
//! tests can assert what was (and was not, e.g. secrets) logged.

/// Initialises test logging once per process: the in-memory capture of [`capture_logs`]
/// (`RUST_LOG` echoes it to stderr). The integration tests share one process, so there is one
/// subscriber for all of them, whichever test logs first; a test that does not read the logs
/// calls this.
pub fn init_logging() {
    capture_logs();
}

/// Log lines captured in memory, to check that secrets never reach the gateway's logs.
pub struct LogCapture {
    buf: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

/// One writer into the capture buffer (also echoed to the test output when `RUST_LOG` is set).
struct CaptureWriter {
    buf: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    echo: bool,
}

impl std::io::Write for CaptureWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.lock().unwrap().extend_from_slice(data);
        if self.echo {
            eprint!("{}", String::from_utf8_lossy(data));
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs (once per process) a log subscriber that keeps every line in memory, at debug level
/// for the gateway (`RUST_LOG` overrides) so that its most talkative paths are checked too,
/// and returns it. The lines are those of every test of the process: a test that looks for
/// its own lines picks them by something only it has (a name, a peer address). Panics if
/// another subscriber was installed first (the checks would be vacuous).
pub fn capture_logs() -> &'static LogCapture {
    static CAPTURE: std::sync::OnceLock<LogCapture> = std::sync::OnceLock::new();
    CAPTURE.get_or_init(|| {
        let buf = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let echo = std::env::var_os("RUST_LOG").is_some();
        let writer_buf = buf.clone();
        tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("sluice=debug,warn")),
            )
            .with_ansi(false)
            .with_writer(move || CaptureWriter {
                buf: writer_buf.clone(),
                echo,
            })
            .try_init()
            .expect("capture_logs must install the first log subscriber of the process");
        LogCapture { buf }
    })
}

impl LogCapture {
    /// Everything logged so far.
    pub fn contents(&self) -> String {
        String::from_utf8_lossy(&self.buf.lock().unwrap()).into_owned()
    }

    /// Panics if any of `secrets` appears in the logs (without printing the secret).
    pub fn assert_absent(&self, secrets: &[&str]) {
        let logs = self.contents();
        assert!(
            !logs.is_empty(),
            "nothing was logged: is the capture installed?"
        );
        for (i, secret) in secrets.iter().enumerate() {
            assert!(!secret.is_empty());
            if let Some(line) = logs.lines().find(|l| l.contains(secret)) {
                panic!(
                    "secret #{i} appears in the logs: {}",
                    line.replace(secret, "<SECRET>")
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Virtual clusters: tenants, alias topics, concentrated topics; a second (kafkajs) client.
// ---------------------------------------------------------------------------------------------
