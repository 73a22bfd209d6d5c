//! Redis and PostgreSQL servers of a caller's own, on free ports under a
//! directory of its own, that it may kill, freeze, stop and start again: the
//! shared servers of `make test` must never be disturbed, so the worker's
//! outage tests and the chaos runner (`make chaos`) start these.
//!
//! The binaries come from `EVENTLINE_REDIS_SERVER` and `EVENTLINE_PG_BIN`
//! (`make test` and `make chaos` set both, installing Redis when missing).
//! As root, PostgreSQL runs as the `postgres` OS user (it refuses to run as
//! root), through `runuser`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Why a server could not be started or controlled.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{0} is not set: run this through `make test` or `make chaos`")]
    NotConfigured(&'static str),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{command} failed: {output}")]
    Command { command: String, output: String },
    #[error("{0} did not answer within {1:?}")]
    Timeout(String, Duration),
}

pub(super) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServerError {
    let what = what.into();
    move |source| ServerError::Io { what, source }
}

/// A free TCP port on 127.0.0.1 (free when asked; the caller binds it soon).
pub fn free_port() -> Result<u16, ServerError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(io("binding a free port"))?;
    Ok(l.local_addr().map_err(io("reading a bound port"))?.port())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// Sends `signal` (a name such as `KILL`, `STOP`, `CONT`) to `pid`.
pub fn signal(pid: u32, signal: &str) -> Result<(), ServerError> {
    run_checked(
        Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string()),
    )
}

pub(super) fn run_checked(cmd: &mut Command) -> Result<(), ServerError> {
    let command = format!("{cmd:?}");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(io(command.clone()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(ServerError::Command {
            command,
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        })
    }
}

/// Waits until something accepts TCP connections on 127.0.0.1:`port`.
/// Starts `bin` on 127.0.0.1:`port` with its data in `dir` and its output
/// in `dir/redis.log`, in the foreground; `configure` adds the settings.
pub(super) fn redis_server(
    bin: &Path,
    port: u16,
    dir: &Path,
    configure: impl FnOnce(&mut Command),
) -> Result<Child, ServerError> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("redis.log"))
        .map_err(io("opening redis.log"))?;
    let mut cmd = Command::new(bin);
    cmd.args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .arg("--dir")
        .arg(dir)
        .args(["--daemonize", "no", "--protected-mode", "no"]);
    configure(&mut cmd);
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone().map_err(io("redis.log"))?)
        .stderr(log)
        .spawn()
        .map_err(io(format!("starting {}", bin.display())))
}

pub(super) fn wait_listening(port: u16, what: &str, timeout: Duration) -> Result<(), ServerError> {
    let deadline = Instant::now() + timeout;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() >= deadline {
            return Err(ServerError::Timeout(what.into(), timeout));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// A PostgreSQL cluster of its own.
pub struct LocalPostgres {
    dir: PathBuf,
    pub port: u16,
    bin: PathBuf,
    keep: bool,
}

impl LocalPostgres {
    /// `initdb` in a new directory under the system temp dir, then start.
    pub fn start() -> Result<Self, ServerError> {
        let dir = std::env::temp_dir().join(super::unique_name("eventline-pg"));
        Self::start_in(dir)
    }

    /// `initdb` in `dir` (created; must not hold a cluster), then start.
    pub fn start_in(dir: PathBuf) -> Result<Self, ServerError> {
        let bin = PathBuf::from(
            std::env::var("EVENTLINE_PG_BIN")
                .map_err(|_| ServerError::NotConfigured("EVENTLINE_PG_BIN"))?,
        );
        std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        let pg = LocalPostgres {
            dir,
            port: free_port()?,
            bin,
            keep: false,
        };
        if is_root() {
            run_checked(Command::new("chown").arg("postgres:").arg(&pg.dir))?;
        }
        pg.pg_tool(
            "initdb",
            &[
                "-N",
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "-D",
            ],
        )?;
        pg.up()?;
        Ok(pg)
    }

    /// Leave the data directory behind on drop (the server is still stopped).
    pub fn keep_data(&mut self) {
        self.keep = true;
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    fn command(&self, tool: &str, args: &[&str]) -> Command {
        let tool = self.bin.join(tool).display().to_string();
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", &tool]);
            c
        } else {
            Command::new(tool)
        };
        cmd.args(args).arg(self.data()).current_dir("/");
        cmd
    }

    /// Runs `tool args… <data dir>`.
    fn pg_tool(&self, tool: &str, args: &[&str]) -> Result<(), ServerError> {
        run_checked(&mut self.command(tool, args))
    }

    /// Starts (or restarts) the server and waits until it accepts connections.
    ///
    /// `fsync=off` is safe here (the OS keeps its page cache through a
    /// PostgreSQL crash), but `synchronous_commit` must stay on: with it off a
    /// commit is acknowledged before its WAL is written, and an immediate stop
    /// loses it, which the worker (rightly) cannot tell from a stored event.
    pub fn up(&self) -> Result<(), ServerError> {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c max_connections=200",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("postgres.log").display().to_string();
        self.pg_tool(
            "pg_ctl",
            &["start", "-w", "-t", "60", "-l", &log, "-o", &opts, "-D"],
        )
    }

    /// Stops the server at once, as a crash or a pulled plug would.
    pub fn down(&self) -> Result<(), ServerError> {
        self.pg_tool("pg_ctl", &["stop", "-m", "immediate", "-w", "-D"])
    }

    /// The superuser's URL for database `db`.
    pub fn url_for(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    pub fn url(&self) -> String {
        self.url_for("postgres")
    }
}

impl Drop for LocalPostgres {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl", &["stop", "-m", "immediate", "-D"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A Redis server of its own, as a child process, persisting to an
/// append-only file (`appendfsync` as asked) so that it can be killed and
/// restarted with its data.
pub struct LocalRedis {
    dir: PathBuf,
    pub port: u16,
    bin: PathBuf,
    appendfsync: String,
    child: Option<Child>,
    keep: bool,
}

impl LocalRedis {
    /// In a new directory under the system temp dir (removed on drop).
    pub fn start(appendfsync: &str) -> Result<Self, ServerError> {
        let dir = std::env::temp_dir().join(super::unique_name("eventline-redis"));
        Self::start_in(dir, appendfsync)
    }

    /// `appendfsync`: `everysec`, `always` or `no`.
    pub fn start_in(dir: PathBuf, appendfsync: &str) -> Result<Self, ServerError> {
        let bin = PathBuf::from(
            std::env::var("EVENTLINE_REDIS_SERVER")
                .map_err(|_| ServerError::NotConfigured("EVENTLINE_REDIS_SERVER"))?,
        );
        std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        let mut redis = LocalRedis {
            dir,
            port: free_port()?,
            bin,
            appendfsync: appendfsync.into(),
            child: None,
            keep: false,
        };
        redis.up()?;
        Ok(redis)
    }

    pub fn keep_data(&mut self) {
        self.keep = true;
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts the server (loading its append-only file, if any) and waits
    /// until it accepts connections. It may still answer `LOADING` for a
    /// while after that; clients retry.
    pub fn up(&mut self) -> Result<(), ServerError> {
        let child = redis_server(&self.bin, self.port, &self.dir, |cmd| {
            cmd.args(["--save", "", "--appendonly", "yes"])
                .args(["--appendfsync", &self.appendfsync]);
        })?;
        self.child = Some(child);
        wait_listening(self.port, "redis-server", Duration::from_secs(30))
    }

    /// SIGKILL and reap: a process crash (the OS and its page cache survive).
    pub fn kill(&mut self) -> Result<(), ServerError> {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), "KILL")?;
            child.wait().map_err(io("reaping redis-server"))?;
        }
        Ok(())
    }

    /// SIGSTOP: the server holds its connections but answers nothing.
    pub fn freeze(&self) -> Result<(), ServerError> {
        self.pid().map_or(Ok(()), |pid| signal(pid, "STOP"))
    }

    /// SIGCONT after [`LocalRedis::freeze`].
    pub fn thaw(&self) -> Result<(), ServerError> {
        self.pid().map_or(Ok(()), |pid| signal(pid, "CONT"))
    }
}

impl Drop for LocalRedis {
    fn drop(&mut self) {
        let _ = self.thaw();
        let _ = self.kill();
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
