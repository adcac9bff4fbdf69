//! `fkoeko serve` as a child process, as an operator runs it.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

pub struct ServeProcess {
    child: Child,
    pub base: String,
}

impl ServeProcess {
    /// On the given database, a free loopback port, the test sortiment, alerts off; `env` adds or overrides.
    pub fn start(db_url: &str, env: &[(&str, &str)]) -> Self {
        let port = super::free_port();
        let mut command = super::fkoeko_command(db_url);
        command
            .arg("serve")
            .env("FKOEKO_SERVER__LISTEN", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (key, value) in env {
            command.env(key, value);
        }
        let serve = ServeProcess { child: command.spawn().unwrap(), base: format!("http://127.0.0.1:{port}") };
        let deadline = Instant::now() + Duration::from_secs(60);
        while ureq::get(&format!("{}/sf1590a?wsdl", serve.base)).call().is_err() {
            assert!(Instant::now() < deadline, "fkoeko serve did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
        serve
    }

    pub fn port(&self) -> u16 {
        self.base.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// (HTTP status, body); a connection that fails counts as status 0.
    pub fn post(&self, body: &[u8]) -> (u16, String) {
        self.post_to("/sf1590a", body)
    }

    /// As `post`, to an endpoint (/sf1590b for claims).
    pub fn post_to(&self, path: &str, body: &[u8]) -> (u16, String) {
        let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(60)).build();
        match agent.post(&format!("{}{path}", self.base)).set("Content-Type", "text/xml").send_bytes(body) {
            Ok(r) => (r.status(), r.into_string().unwrap()),
            Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
            Err(_) => (0, String::new()),
        }
    }

    /// Kills the process with SIGKILL, while others may still be sending to it.
    pub fn kill_9(&self) {
        let killed = std::process::Command::new("kill").args(["-9", &self.child.id().to_string()]).status().unwrap();
        assert!(killed.success());
    }

    /// Resident memory of the process, in MB.
    pub fn rss_mb(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kb: u64 = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
        kb / 1024
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
