//! A PostgreSQL cluster of a test's own, in a temporary folder, so that it can be stopped and started: the
//! database going away under the adapter, or the ERP's own database.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::free_port;

/// A PostgreSQL cluster of the test's own, so it can be stopped and started.
pub struct Cluster {
    dir: tempfile::TempDir,
    port: u16,
}

fn pg_bin(name: &str) -> PathBuf {
    let dir =
        std::fs::read_dir("/usr/lib/postgresql").expect("PostgreSQL is installed").filter_map(|e| e.ok()).map(|e| e.path()).max().unwrap();
    dir.join("bin").join(name)
}

fn as_postgres(program: &Path) -> Command {
    // PostgreSQL refuses to run as root; on CI (root) it runs as the postgres user.
    let root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    let mut command = if root { Command::new("runuser") } else { Command::new(program) };
    if root {
        command.args(["-u", "postgres", "--"]).arg(program);
    }
    command
}

impl Cluster {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let _ = Command::new("chown").arg("postgres").arg(dir.path()).status();
        let status = as_postgres(&pg_bin("initdb"))
            .args(["-A", "trust", "-U", "fkoeko", "-D"])
            .arg(dir.path().join("data"))
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "initdb");
        let cluster = Cluster { dir, port: free_port() };
        cluster.pg_ctl("start");
        cluster
    }

    pub fn pg_ctl(&self, action: &str) {
        let mut command = as_postgres(&pg_bin("pg_ctl"));
        command.arg("-D").arg(self.dir.path().join("data")).arg("-w").arg("-l").arg(self.dir.path().join("log"));
        if action == "start" {
            command.arg("-o").arg(format!("-p {} -k {} -c listen_addresses=127.0.0.1", self.port, self.dir.path().display()));
        } else {
            command.args(["-m", "immediate"]);
        }
        let status = command.arg(action).stdout(Stdio::null()).status().unwrap();
        assert!(status.success(), "pg_ctl {action}");
    }

    pub fn url(&self) -> String {
        format!("postgres://fkoeko@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = as_postgres(&pg_bin("pg_ctl")).arg("-D").arg(self.dir.path().join("data")).args(["-m", "immediate", "stop"]).status();
    }
}
