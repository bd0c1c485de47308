//! Payload templates render in worker processes held to a memory budget.
//!
//! minijinja's fuel bounds the instructions a template runs, not the bytes it
//! builds: `{% set s = s ~ s %}` forty times asks for terabytes in forty
//! instructions, and minijinja has no hook that could refuse an allocation
//! (an allocator cannot fail one without aborting its process). So a
//! template renders in a small child process (`herald render-worker`) whose
//! data memory the kernel limits (`RLIMIT_DATA`, set before the worker's
//! program image starts, so its allocator's arenas count): a render past the budget
//! makes the worker's allocation fail, the worker dies, the attempt fails
//! saying so, and the server and every other delivery go on.
//!
//! Workers are kept and reused (one request at a time each, at most one per
//! core), so a render costs a round trip over a pipe, not a process start.
//! Raw and Slack bodies, and every endpoint without a template, never come here.

use std::borrow::Cow;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::Semaphore;

use crate::config::Config;
use crate::domain::format::{EventInfo, PayloadFormat};

/// The argument that makes the herald executable a render worker.
pub const WORKER_COMMAND: &str = "render-worker";
/// A render that takes longer is stopped (fuel normally ends it far sooner).
const RENDER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a worker that stopped answering has to report how it ended.
const EXIT_WAIT: Duration = Duration::from_secs(2);

/// Renders an endpoint's body: in process for `raw` and `slack`, in a
/// bounded worker for templates (unless the budget is turned off).
#[derive(Clone)]
pub struct Renderer {
    pool: Option<Arc<Pool>>,
}

impl std::fmt::Debug for Renderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.pool {
            Some(pool) => write!(f, "Renderer(workers, {} bytes)", pool.limit),
            None => f.write_str("Renderer(in process)"),
        }
    }
}

struct Pool {
    program: Option<PathBuf>,
    limit: u64,
    /// One render per worker, at most one worker per core.
    slots: Semaphore,
    idle: Mutex<Vec<Worker>>,
}

struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

#[derive(Serialize, Deserialize)]
struct Request<'a> {
    #[serde(borrow)]
    template: Cow<'a, str>,
    #[serde(borrow)]
    event_type: Cow<'a, str>,
    #[serde(borrow)]
    msg_id: Cow<'a, str>,
    #[serde(borrow)]
    event_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    created_at: Cow<'a, str>,
    #[serde(borrow)]
    payload: Cow<'a, str>,
}

#[derive(Serialize, Deserialize)]
enum Response {
    Body(String),
    Failed(String),
}

impl Renderer {
    pub fn new(config: &Config) -> Self {
        let pool = config.template_memory_limit.map(|limit| {
            let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
            Arc::new(Pool {
                program: config.template_worker.clone(),
                limit,
                slots: Semaphore::new(cores.max(2)),
                idle: Mutex::new(Vec::new()),
            })
        });
        Self { pool }
    }

    /// The body `format` makes of `payload`; a failure is the attempt's reason.
    pub async fn render<'p>(
        &self,
        format: &PayloadFormat,
        event: &EventInfo<'_>,
        payload: &'p str,
    ) -> Result<Cow<'p, str>, String> {
        match (&self.pool, format) {
            (Some(pool), PayloadFormat::Template(text)) => pool.render(text, event, payload).await.map(Cow::Owned),
            _ => format.render(event, payload).map_err(|e| e.to_string()),
        }
    }
}

impl Pool {
    async fn render(&self, template: &str, event: &EventInfo<'_>, payload: &str) -> Result<String, String> {
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| "the template renderer is stopping".to_owned())?;
        let mut request = serde_json::to_vec(&Request {
            template: template.into(),
            event_type: event.event_type.into(),
            msg_id: event.msg_id.into(),
            event_id: event.event_id.map(Cow::Borrowed),
            created_at: event.created_at.as_str().into(),
            payload: payload.into(),
        })
        .map_err(|e| format!("the template render request could not be written: {e}"))?;
        request.push(b'\n');
        let idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let mut worker = match idle {
            Some(worker) => worker,
            None => self.spawn()?,
        };
        match tokio::time::timeout(RENDER_TIMEOUT, worker.exchange(&request)).await {
            Ok(Ok(response)) => {
                self.idle.lock().unwrap_or_else(PoisonError::into_inner).push(worker);
                match response {
                    Response::Body(body) => Ok(body),
                    Response::Failed(reason) => Err(reason),
                }
            }
            Ok(Err(_)) => Err(self.death(worker.end().await)),
            Err(_) => {
                worker.end().await;
                Err(format!(
                    "the template failed: it took longer than {}s to render and was stopped",
                    RENDER_TIMEOUT.as_secs()
                ))
            }
        }
    }

    fn spawn(&self) -> Result<Worker, String> {
        let program = match &self.program {
            Some(program) => program.clone(),
            None => std::env::current_exe().map_err(|e| format!("cannot find Herald's own executable: {e}"))?,
        };
        let mut child = Command::new(&program)
            .arg(WORKER_COMMAND)
            .arg(self.limit.to_string())
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            // Its last words on dying of its budget ("memory allocation of …
            // failed") are the attempt's reason, said better.
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot start the template render worker {} (HERALD_TEMPLATE_WORKER): {e}",
                    program.display()
                )
            })?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err("the template render worker has no pipes".to_owned());
        };
        Ok(Worker {
            child,
            stdin,
            stdout: BufReader::new(stdout),
        })
    }

    /// Why a worker stopped answering, as the attempt tells it.
    fn death(&self, status: Option<ExitStatus>) -> String {
        #[cfg(unix)]
        {
            use std::os::unix::process::ExitStatusExt;
            // A failed allocation aborts: the budget was spent.
            if status.and_then(|s| s.signal()) == Some(nix::libc::SIGABRT) {
                return format!(
                    "the template failed: it used more than its memory budget of {} MiB \
                     (HERALD_TEMPLATE_MEMORY_LIMIT) and its render was stopped",
                    self.limit / (1024 * 1024)
                );
            }
        }
        match status {
            Some(status) => format!("the template failed: its render worker stopped ({status})"),
            None => "the template failed: its render worker stopped answering".to_owned(),
        }
    }
}

impl Worker {
    async fn exchange(&mut self, request: &[u8]) -> std::io::Result<Response> {
        self.stdin.write_all(request).await?;
        self.stdin.flush().await?;
        let mut line = String::new();
        if self.stdout.read_line(&mut line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        serde_json::from_str(&line).map_err(std::io::Error::other)
    }

    /// Waits briefly for the worker to end on its own, then ends it.
    async fn end(mut self) -> Option<ExitStatus> {
        drop(self.stdin);
        if let Ok(Ok(status)) = tokio::time::timeout(EXIT_WAIT, self.child.wait()).await {
            return Some(status);
        }
        let _ = self.child.start_kill();
        self.child.wait().await.ok()
    }
}

/// `herald render-worker BYTES`: limits this process's data memory to
/// `limit` bytes, then renders requests from stdin, one JSON line each,
/// answering each on stdout, until stdin closes.
pub fn serve_worker(limit: u64) -> std::io::Result<()> {
    if !limited_to(limit)? {
        // The allocator reserved its first arena before main ran, and what
        // it reserved does not count against a limit set later: limit, then
        // start this program again, so every byte of the new image counts.
        return Err(restart_limited(limit));
    }
    let mut input = std::io::stdin().lock();
    let mut output = std::io::stdout().lock();
    let mut line = String::new();
    loop {
        line.clear();
        if input.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let response = match serde_json::from_str::<Request<'_>>(&line) {
            Ok(request) => render_request(request),
            Err(e) => Response::Failed(format!("the template render request is unreadable: {e}")),
        };
        serde_json::to_writer(&mut output, &response).map_err(std::io::Error::other)?;
        output.write_all(b"\n")?;
        output.flush()?;
    }
}

fn render_request(request: Request<'_>) -> Response {
    let event = EventInfo {
        event_type: &request.event_type,
        msg_id: &request.msg_id,
        event_id: request.event_id.as_deref(),
        created_at: request.created_at.clone().into_owned(),
    };
    let format = PayloadFormat::Template(request.template.into_owned());
    match format.render(&event, &request.payload) {
        Ok(body) => Response::Body(body.into_owned()),
        Err(e) => Response::Failed(e.to_string()),
    }
}

/// Whether this process's data memory is already limited to `limit` or less.
#[cfg(unix)]
fn limited_to(limit: u64) -> std::io::Result<bool> {
    use nix::sys::resource::{Resource, getrlimit};
    let (soft, _) = getrlimit(Resource::RLIMIT_DATA).map_err(std::io::Error::from)?;
    Ok(soft <= limit)
}

/// Sets the limit and replaces this process with a fresh image of the same
/// program (same pipes); answers only if that fails.
#[cfg(unix)]
fn restart_limited(limit: u64) -> std::io::Error {
    use nix::sys::resource::{Resource, setrlimit};
    use std::os::unix::process::CommandExt;
    if let Err(e) = setrlimit(Resource::RLIMIT_DATA, limit, limit) {
        return e.into();
    }
    match std::env::current_exe() {
        Ok(program) => std::process::Command::new(program)
            .arg(WORKER_COMMAND)
            .arg(limit.to_string())
            .exec(),
        Err(e) => e,
    }
}

#[cfg(not(unix))]
fn limited_to(_limit: u64) -> std::io::Result<bool> {
    Err(std::io::Error::other(
        "memory limits need a Unix system; set HERALD_TEMPLATE_MEMORY_LIMIT=0",
    ))
}

#[cfg(not(unix))]
fn restart_limited(_limit: u64) -> std::io::Error {
    std::io::Error::other("memory limits need a Unix system; set HERALD_TEMPLATE_MEMORY_LIMIT=0")
}
