//! Python scripts run from a virtualenv `make test` builds (the tools
//! virtualenv with the OpenTelemetry SDK, the browser one with Selenium):
//! the script drives a real client against services the test started and
//! prints a JSON summary on stdout for the test to check.

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::process::Command;

/// One run of a script, set up but not started.
pub struct Script {
    python: String,
    name: String,
    cmd: Command,
}

impl Script {
    /// `script` run by the Python whose path the environment variable
    /// `variable` holds. When it is unset, panics saying that `make test`
    /// `builds` it and sets it, and how to run only this test (`rerun`).
    pub fn new(variable: &str, builds: &str, rerun: &str, script: &str) -> Self {
        let python = std::env::var(variable).unwrap_or_else(|_| {
            panic!(
                "{variable} is not set: run the tests with `make test`, which builds {builds} \
                 and sets it (or {rerun})"
            )
        });
        let name = script.rsplit('/').next().unwrap_or(script).to_owned();
        let mut cmd = Command::new(&python);
        cmd.arg(script)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        Script { python, name, cmd }
    }

    /// The command, for the script's arguments and environment.
    pub fn command(&mut self) -> &mut Command {
        &mut self.cmd
    }

    /// Runs the script to its end; panics when it cannot start or takes
    /// longer than `timeout`.
    pub async fn run(mut self, timeout: Duration) -> ScriptRun {
        let out = tokio::time::timeout(timeout, self.cmd.output())
            .await
            .unwrap_or_else(|_| panic!("{} finishes within {timeout:?}", self.name))
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.python));
        ScriptRun {
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// What a script printed, and how it ended.
pub struct ScriptRun {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl ScriptRun {
    /// stdout as JSON (the script's summary); panics, showing both outputs,
    /// when it is not.
    pub fn summary(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "summary is not JSON ({e}):\n{}\n--- stderr\n{}",
                self.stdout, self.stderr
            )
        })
    }
}
