//! Child processes that cannot outlive the test run.
//!
//! Every child is forked by one keeper thread that lives as long as the test process, with
//! `PR_SET_PDEATHSIG(SIGKILL)`: when the test binary exits — normally, on a panic, or killed —
//! the kernel kills the children. (The signal fires when the forking *thread* exits, which is
//! why test threads, which end with each test, must not fork them.)
//!
//! ```text
//!  test thread ──Command──▶ keeper thread ──fork/exec (PDEATHSIG)──▶ child
//!              ◀──Child───
//! ```

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

type SpawnRequest = (Command, mpsc::Sender<std::io::Result<Child>>);

fn keeper() -> &'static Mutex<mpsc::Sender<SpawnRequest>> {
    static KEEPER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    KEEPER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("portico-process-keeper".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
                // The senders live in a static, so this loop never ends; park just in case.
                loop {
                    std::thread::park();
                }
            })
            .expect("spawn the process keeper thread");
        Mutex::new(tx)
    })
}

/// Makes the child receive SIGKILL when the thread that forked it exits.
#[allow(unsafe_code)]
fn die_with_parent(cmd: &mut Command) {
    // SAFETY: prctl and getppid are async-signal-safe and touch no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Put the child in its own process group so a signal to it reaches its children.
            libc::setpgid(0, 0);
            Ok(())
        });
    }
}

/// Where test processes write their output: `target/test-logs/<test binary>-<pid>/`.
pub fn log_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().ok();
        let name = exe
            .as_deref()
            .and_then(|p| p.file_stem())
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "test".into());
        let dir = crate::target_dir()
            .join("test-logs")
            .join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        dir
    })
}

/// A child process; killed (with its process group) when dropped.
#[derive(Debug)]
pub struct Process {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Process {
    /// Starts `cmd` with output to `<log_dir>/<name>.log`.
    pub fn spawn(name: &str, mut cmd: Command) -> Result<Process> {
        let log = log_dir().join(format!("{name}.log"));
        let out = File::create(&log).with_context(|| format!("create {}", log.display()))?;
        cmd.stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        die_with_parent(&mut cmd);
        let program = format!("{:?}", cmd.get_program());
        let (tx, rx) = mpsc::channel();
        keeper()
            .lock()
            .map_err(|_| anyhow::anyhow!("process keeper poisoned"))?
            .send((cmd, tx))
            .map_err(|_| anyhow::anyhow!("process keeper gone"))?;
        let child = rx
            .recv()
            .context("process keeper did not answer")?
            .with_context(|| format!("start {name} ({program})"))?;
        Ok(Process {
            name: name.to_string(),
            child: Some(child),
            log,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn id(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last `lines` lines of the process's output, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// `Some(status)` once the process has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Fails with the process's output when it has exited.
    pub fn check_running(&mut self) -> Result<()> {
        if let Some(status) = self.try_wait() {
            bail!(
                "{} exited ({status}); its output:\n{}",
                self.name,
                self.log_tail(40)
            );
        }
        Ok(())
    }

    pub fn signal(&self, signal: i32) {
        if let Some(child) = &self.child {
            // SAFETY-free: libc::kill is a plain syscall wrapper.
            #[allow(unsafe_code)]
            unsafe {
                libc::kill(child.id() as i32, signal);
            }
        }
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        self.signal(libc::SIGTERM);
    }

    /// Waits up to `timeout` for the process to exit.
    pub async fn wait_timeout(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait() {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not exit within {timeout:?}; output:\n{}",
                    self.name,
                    self.log_tail(30)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kills the process and its group, and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            #[allow(unsafe_code)]
            unsafe {
                // The child leads its own process group (setpgid above).
                libc::kill(-(child.id() as i32), libc::SIGKILL);
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}
