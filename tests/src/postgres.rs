//! A real PostgreSQL server from Debian's `postgresql` package, for tests and for
//! `cargo xtask pg up|down|status`.
//!
//! - The binaries are found in `$OA_PG_BIN_DIR`, else the newest `/usr/lib/postgresql/<N>/bin`
//!   holding `initdb`, else `pg_config --bindir`. When none is there the caller fails and says
//!   to run `cargo xtask setup` (which installs the package with apt-get).
//! - PostgreSQL refuses to run as root: when this process is root, `initdb` and `postgres`
//!   run as the `postgres` user the package creates (set in the child before exec, so the
//!   server is this process's direct child), and the run folder is handed to that user.
//! - The server listens on 127.0.0.1 only (no Unix socket), with `trust` authentication for
//!   the superuser `oa`, and has a database `oa`.
//! - [`TestDatabase`] gives a test a database of its own: on the server named by
//!   `OA_TEST_POSTGRES_URL` when set (what `cargo xtask test` does), else on a throw-away
//!   server started for the test and stopped when it ends.

use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// The superuser `initdb` creates (and the role oa connects as).
pub const SUPERUSER: &str = "oa";
/// The database created for oa.
pub const DATABASE: &str = "oa";

/// The folder holding `initdb`, `postgres`, `pg_isready` and `psql`.
pub fn bin_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("OA_PG_BIN_DIR") {
        let dir = PathBuf::from(dir);
        if !dir.join("initdb").exists() {
            bail!("OA_PG_BIN_DIR={}: no initdb there", dir.display());
        }
        return Ok(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    if let Ok(output) = Command::new("pg_config").arg("--bindir").output()
        && output.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        if dir.join("initdb").exists() {
            return Ok(dir);
        }
    }
    bail!(
        "PostgreSQL is not installed (no initdb in /usr/lib/postgresql/*/bin or pg_config --bindir): \
         run `cargo xtask setup` (installs Debian's postgresql package with apt-get) or set OA_PG_BIN_DIR"
    )
}

/// The server's major version (`postgres --version`), e.g. "postgres (PostgreSQL) 15.10".
pub fn version(bin: &Path) -> Option<String> {
    let output = Command::new(bin.join("postgres"))
        .arg("--version")
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// True when this process runs as root (PostgreSQL then runs as `postgres`).
pub fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0)
}

/// The uid and gid of the `postgres` user.
fn postgres_ids() -> anyhow::Result<(u32, u32)> {
    let id = |flag: &str| -> anyhow::Result<u32> {
        let output = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .context("running id")?;
        if !output.status.success() {
            bail!(
                "running as root, PostgreSQL needs the unprivileged user `postgres` (created by Debian's \
                 postgresql package), but `id {flag} postgres` failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .context("reading the output of id")
    };
    Ok((id("-u")?, id("-g")?))
}

/// A command running `program` from `bin` as the server's user (`postgres` when root).
fn server_command(bin: &Path, program: &str) -> anyhow::Result<Command> {
    let mut command = Command::new(bin.join(program));
    if running_as_root() {
        let (uid, gid) = postgres_ids()?;
        command.uid(uid).gid(gid);
    }
    command.env("LC_ALL", "C").env_remove("PGDATA");
    Ok(command)
}

/// Creates `dir` and, when root, gives it to `postgres`; checks that `postgres` can reach it.
pub fn prepare_run_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    if !running_as_root() {
        return Ok(());
    }
    let (uid, gid) = postgres_ids()?;
    std::os::unix::fs::chown(dir, Some(uid), Some(gid))
        .with_context(|| format!("handing {} to the postgres user", dir.display()))?;
    for ancestor in dir.ancestors().skip(1) {
        let Ok(meta) = std::fs::metadata(ancestor) else {
            continue;
        };
        if meta.mode() & 0o001 == 0 && meta.uid() != uid {
            bail!(
                "the postgres user cannot reach {} ({} is not searchable by others): use a run folder elsewhere",
                dir.display(),
                ancestor.display()
            );
        }
    }
    Ok(())
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// How much a server trades durability for speed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// PostgreSQL's defaults: every commit is on disk (development servers).
    Durable,
    /// `fsync=off`, `synchronous_commit=off`: throw-away test servers.
    ThrowAway,
}

/// `initdb` into `data` (which must not exist yet; its parent must be prepared with
/// [`prepare_run_dir`]): superuser [`SUPERUSER`], `trust` authentication, UTF-8, C locale.
pub fn init_data_dir(bin: &Path, data: &Path, durability: Durability) -> anyhow::Result<()> {
    let mut command = server_command(bin, "initdb")?;
    command
        .arg("-D")
        .arg(data)
        .args(["-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--locale=C"]);
    if durability == Durability::ThrowAway {
        command.arg("--no-sync");
    }
    let output = command.output().context("running initdb")?;
    if !output.status.success() {
        bail!(
            "initdb -D {} failed ({}):\n{}{}",
            data.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// Starts `postgres` on the data folder `data`, listening on 127.0.0.1:`port` only, its
/// output appended to `log`. In its own process group (a Ctrl-C in the terminal does not
/// reach it). Returns at once; see [`wait_ready`].
pub fn spawn_server(
    bin: &Path,
    data: &Path,
    port: u16,
    log: &Path,
    durability: Durability,
) -> anyhow::Result<Child> {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let mut command = server_command(bin, "postgres")?;
    command
        .arg("-D")
        .arg(data)
        .args(["-p", &port.to_string()])
        .args(["-c", "listen_addresses=127.0.0.1"])
        .args(["-c", "unix_socket_directories="])
        .args(["-c", "max_connections=200"]);
    if durability == Durability::ThrowAway {
        command
            .args(["-c", "fsync=off"])
            .args(["-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off"]);
    }
    command
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .process_group(0);
    command.spawn().context("starting postgres")
}

/// True when the server on 127.0.0.1:`port` accepts connections (`pg_isready`).
pub fn is_ready(bin: &Path, port: u16) -> bool {
    Command::new(bin.join("pg_isready"))
        .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-U", SUPERUSER, "-d", "postgres"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Waits (up to 30 s) until the server accepts connections; fails with its log when it
/// exits first.
pub fn wait_ready(bin: &Path, child: &mut Child, port: u16, log: &Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if is_ready(bin, port) {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            bail!(
                "postgres exited at start-up ({status}); its log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        if Instant::now() > deadline {
            bail!(
                "postgres did not accept connections on 127.0.0.1:{port} within 30 s; see {}",
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs one SQL statement with `psql` against `url`.
pub fn psql(bin: &Path, url: &str, sql: &str) -> anyhow::Result<String> {
    let output = Command::new(bin.join("psql"))
        .args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            url,
            "-c",
            sql,
        ])
        .output()
        .context("running psql")?;
    if !output.status.success() {
        bail!(
            "psql {sql:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// The URL of `database` on the local server at `port`.
pub fn url(port: u16, database: &str) -> String {
    format!("postgres://{SUPERUSER}@127.0.0.1:{port}/{database}")
}

/// Asks the server to stop (SIGINT: fast shutdown, open sessions are ended) and waits up to
/// 10 s, then kills it.
pub fn stop_child(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A throw-away PostgreSQL server owned by one test: its own port and data folder, stopped
/// and deleted when dropped.
#[derive(Debug)]
pub struct Postgres {
    bin: PathBuf,
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Postgres {
    /// `initdb` into a temporary folder and start the server on a free port (no fsync).
    pub fn start() -> anyhow::Result<Postgres> {
        Postgres::start_with(Durability::ThrowAway)
    }

    /// [`Postgres::start`] with the given durability (benchmarks compare a durable server).
    pub fn start_with(durability: Durability) -> anyhow::Result<Postgres> {
        let bin = bin_dir()?;
        let dir = tempfile::Builder::new()
            .prefix("oa-pg-test-")
            .tempdir()
            .context("creating a temporary folder")?;
        prepare_run_dir(dir.path())?;
        let data = dir.path().join("data");
        init_data_dir(&bin, &data, durability)?;
        let port = free_port()?;
        let log = dir.path().join("postgres.log");
        let mut child = spawn_server(&bin, &data, port, &log, durability)?;
        if let Err(error) = wait_ready(&bin, &mut child, port, &log) {
            stop_child(&mut child);
            return Err(error);
        }
        let server = Postgres {
            bin,
            child,
            port,
            dir,
        };
        server.create_database(DATABASE)?;
        Ok(server)
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of the `oa` database.
    pub fn url(&self) -> String {
        url(self.port, DATABASE)
    }

    /// The URL of the `postgres` database (for creating and dropping others).
    pub fn admin_url(&self) -> String {
        url(self.port, "postgres")
    }

    /// Creates another database; returns its URL.
    pub fn create_database(&self, name: &str) -> anyhow::Result<String> {
        psql(
            &self.bin,
            &url(self.port, "postgres"),
            &format!("CREATE DATABASE \"{name}\""),
        )?;
        Ok(url(self.port, name))
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        stop_child(&mut self.child);
    }
}

/// Which store the parameterised suites use: `OA_TEST_DATABASE` = `sqlite` (default) or
/// `postgres`.
pub fn test_backend_is_postgres() -> bool {
    std::env::var("OA_TEST_DATABASE").is_ok_and(|value| value.eq_ignore_ascii_case("postgres"))
}

/// A database of one test's own, dropped when the test ends.
#[derive(Debug)]
pub struct TestDatabase {
    url: String,
    admin: Option<(PathBuf, String, String)>,
    _server: Option<Postgres>,
}

impl TestDatabase {
    /// On the server of `OA_TEST_POSTGRES_URL` (a URL an administrator can create databases
    /// with) when set: a new uniquely named database there. Otherwise a throw-away server
    /// for this test alone.
    pub fn create() -> anyhow::Result<TestDatabase> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        match std::env::var("OA_TEST_POSTGRES_URL") {
            Ok(admin_url) if !admin_url.is_empty() => {
                let bin = bin_dir()?;
                let name = format!(
                    "oa_test_{}_{}_{}",
                    std::process::id(),
                    NEXT.fetch_add(1, Ordering::Relaxed),
                    free_port()?
                );
                psql(&bin, &admin_url, &format!("CREATE DATABASE \"{name}\""))
                    .with_context(|| format!("OA_TEST_POSTGRES_URL={admin_url}"))?;
                let url = replace_database(&admin_url, &name);
                Ok(TestDatabase {
                    url,
                    admin: Some((bin, admin_url, name)),
                    _server: None,
                })
            }
            _ => {
                let server = Postgres::start()?;
                Ok(TestDatabase {
                    url: server.url(),
                    admin: None,
                    _server: Some(server),
                })
            }
        }
    }

    /// Its `postgres://` URL.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Some((bin, admin_url, name)) = &self.admin {
            let _ = psql(
                bin,
                admin_url,
                &format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
            );
        }
    }
}

/// `url` with its database (the path) replaced by `database`; query parameters are kept.
fn replace_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let authority_start = base.find("://").map_or(0, |index| index + 3);
    let prefix = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    format!("{prefix}/{database}{query}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_of_a_url_is_replaced() {
        assert_eq!(
            replace_database("postgres://oa@127.0.0.1:5432/postgres", "x"),
            "postgres://oa@127.0.0.1:5432/x"
        );
        assert_eq!(
            replace_database("postgres://oa@h:1", "x"),
            "postgres://oa@h:1/x"
        );
        assert_eq!(
            replace_database("postgres://oa@h:1/db?sslmode=disable", "x"),
            "postgres://oa@h:1/x?sslmode=disable"
        );
    }

    #[test]
    fn a_throw_away_server_starts_takes_sql_and_stops() {
        let server = Postgres::start().unwrap();
        let bin = bin_dir().unwrap();
        let answer = psql(&bin, &server.url(), "SELECT 40 + 2").unwrap();
        assert_eq!(answer, "42", "{}", server.log());
        let port = server.port();
        drop(server);
        assert!(!is_ready(&bin, port));
    }
}
