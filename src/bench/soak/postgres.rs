//! The soak's own PostgreSQL: a cluster made with initdb in a temporary
//! directory, on a free port, so restarting it never disturbs another
//! server of the machine. initdb refuses to run as root; as root, every
//! PostgreSQL command runs as the `postgres` user (through runuser).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::SoakError;

pub struct Postgres {
    bindir: PathBuf,
    dir: PathBuf,
    pub port: u16,
    /// As root: the user PostgreSQL runs as.
    run_as: Option<String>,
}

/// The directory of initdb and pg_ctl: `pg_config --bindir`, else the
/// newest /usr/lib/postgresql/*/bin.
pub fn find_bindir() -> Option<PathBuf> {
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").exists() {
            return Some(dir);
        }
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|d| d.join("initdb").exists())
        .collect();
    dirs.sort_by_key(|d| {
        d.parent()
            .and_then(|p| p.file_name())
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap_or(0)
    });
    dirs.pop()
}

pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl Postgres {
    /// initdb in a fresh directory under `parent`, then start it on `port`.
    pub fn create(parent: &Path, port: u16) -> Result<Self, SoakError> {
        let bindir = find_bindir().ok_or_else(|| {
            SoakError::Setup(
                "PostgreSQL's initdb was not found (pg_config --bindir, /usr/lib/postgresql/*/bin); \
                 install PostgreSQL's server package"
                    .to_owned(),
            )
        })?;
        let dir = parent.join("pg");
        std::fs::create_dir_all(&dir)?;
        let run_as = if is_root() { Some("postgres".to_owned()) } else { None };
        if let Some(user) = &run_as {
            // The server's user must reach its directory through ours.
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755))?;
            }
            // The data and socket directory must belong to the server's user.
            let status = Command::new("chown")
                .arg("-R")
                .arg(format!("{user}:"))
                .arg(&dir)
                .status()?;
            if !status.success() {
                return Err(SoakError::Setup(format!(
                    "cannot give {} to the {user} user (initdb refuses to run as root)",
                    dir.display()
                )));
            }
        }
        let pg = Self {
            bindir,
            dir,
            port,
            run_as,
        };
        let data = pg.data();
        pg.run(
            "initdb",
            &["-D", &data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"],
        )?;
        pg.start()?;
        Ok(pg)
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Runs one of PostgreSQL's programs, as its user when we are root.
    fn run(&self, program: &str, args: &[&str]) -> Result<(), SoakError> {
        let exe = self.bindir.join(program);
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        cmd.args(args).current_dir(&self.dir).stdin(Stdio::null());
        let out = cmd.output()?;
        if out.status.success() {
            Ok(())
        } else {
            Err(SoakError::Setup(format!(
                "{program} {} failed: {}{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )))
        }
    }

    pub fn start(&self) -> Result<(), SoakError> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("postgres.log").display().to_string();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-o",
                &options,
                "-l",
                &log,
                "-w",
                "-t",
                "60",
                "start",
            ],
        )
    }

    /// `fast` (clients cut, a clean checkpoint) or `immediate` (like a crash:
    /// recovery from the WAL at the next start).
    pub fn stop(&self, mode: &str) -> Result<(), SoakError> {
        self.run("pg_ctl", &["-D", &self.data(), "-m", mode, "-w", "-t", "60", "stop"])
    }

    /// The server's log, for the report when something went wrong.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.stop("immediate");
        std::thread::sleep(Duration::from_millis(100));
    }
}
