//! A real SFTP round trip, the way Serviceplatformen's SFTP service delivers: OpenSSH's sshd on a loopback port,
//! the `sftp` client uploads the data file and then its `.metadata` file into the inbox, the adapter's batch
//! receiver (running as in `fkoeko serve`) takes it, and the receipt file is downloaded from the outbox.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::delivery::{Bilag, Delivery};
use crate::common::masse::{platform_metadata, read_receipt_file, Batch};
use fkoeko_adapter::domain::receipt::Status;

struct Sshd {
    child: Child,
    port: u16,
    key: std::path::PathBuf,
    user: String,
}

impl Sshd {
    /// sshd with its own host key, letting in one test key, with the SFTP subsystem starting in `home`.
    fn start(dir: &Path, home: &Path) -> Sshd {
        let sshd = Path::new("/usr/sbin/sshd");
        assert!(sshd.exists(), "OpenSSH's sshd is needed (apt-get install openssh-server); .ci/run installs it");
        let keygen = |path: &Path| {
            let status = Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(path).status().unwrap();
            assert!(status.success());
        };
        let (host_key, key) = (dir.join("host_key"), dir.join("client_key"));
        keygen(&host_key);
        keygen(&key);
        std::fs::copy(dir.join("client_key.pub"), dir.join("authorized_keys")).unwrap();
        let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout).unwrap().trim().to_string();
        let port = crate::common::free_port();
        let config = dir.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nPidFile {}\nAuthorizedKeysFile {}\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
                 PermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\nAllowUsers {user}\n\
                 Subsystem sftp internal-sftp\nForceCommand internal-sftp -d {}\n",
                host_key.display(),
                dir.join("sshd.pid").display(),
                dir.join("authorized_keys").display(),
                home.display()
            ),
        )
        .unwrap();
        // sshd run by root wants its privilege separation directory.
        let _ = std::fs::create_dir_all("/run/sshd");
        let child = Command::new(sshd).arg("-D").arg("-e").arg("-f").arg(&config).stderr(Stdio::null()).spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "sshd did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Sshd { child, port, key, user }
    }

    /// Runs sftp commands in batch mode; true when all of them succeeded.
    fn sftp(&self, commands: &str) -> bool {
        let script = self.key.with_extension("batch");
        std::fs::write(&script, commands).unwrap();
        Command::new("sftp")
            .args(["-q", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-i"])
            .arg(&self.key)
            .arg("-P")
            .arg(self.port.to_string())
            .arg("-b")
            .arg(&script)
            .arg(format!("{}@127.0.0.1", self.user))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_file_uploaded_by_sftp_with_its_metadata_is_answered_with_a_receipt_file_to_download() {
    let batch = Batch::with(|c| {
        c.batch.convention = fkoeko_adapter::config::BatchConvention::Metadata;
        c.batch.poll_interval_ms = 100;
        c.batch.sftp_users = vec!["erp-sftp".into()];
    });
    let task = batch.receiver().spawn();
    let folders = batch.folders();
    let area = folders.inbox.parent().unwrap().to_path_buf();
    let sshd = Sshd::start(batch.dir.path(), &area);

    let mut unbalanced = Bilag::balanced("SFTP-2", "10.00");
    unbalanced.postings[0].amount = "11.00".into();
    let delivery = Delivery::new(vec![Bilag::balanced("SFTP-1", "99.95"), unbalanced]);
    let local = batch.dir.path().join("upload");
    std::fs::create_dir_all(&local).unwrap();
    let data = local.join("maanedskoersel.xml");
    std::fs::write(&data, delivery.masse()).unwrap();
    let size = std::fs::metadata(&data).unwrap().len();
    std::fs::write(
        local.join("maanedskoersel.xml.metadata"),
        platform_metadata("maanedskoersel.xml", size as usize, "ky-sftp", Some("KY-2026-11-0001"), "erp-sftp"),
    )
    .unwrap();

    // The data file first, then its metadata, as Serviceplatformen writes them.
    assert!(sshd.sftp(&format!("put {} inbox/maanedskoersel.xml\n", data.display())), "upload of the data file");
    assert!(sshd.sftp(&format!("put {}.metadata inbox/maanedskoersel.xml.metadata\n", data.display())), "upload of the metadata");

    let downloaded = local.join("kvittering.xml");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !sshd.sftp(&format!("get outbox/maanedskoersel.kvittering.xml {}\n", downloaded.display())) {
        assert!(Instant::now() < deadline, "no receipt file to download");
        std::thread::sleep(Duration::from_millis(200));
    }
    task.stop();

    let (_, set) = read_receipt_file(&downloaded);
    assert_eq!(set.delivery_id.to_string(), delivery.delivery_id);
    let outcome: Vec<(&str, Status)> = set.receipts.iter().map(|r| (r.reference.as_str(), r.status)).collect();
    assert_eq!(outcome, vec![("SFTP-1", Status::Accepteret), ("SFTP-2", Status::Afvist)]);
    assert_eq!(set.receipts[1].errors[0].code.as_str(), "REGEL_BALANCE");
    assert_eq!(batch.count("SELECT COUNT(*) AS n FROM batch_files WHERE file_key = 'sftp:ky-sftp:KY-2026-11-0001'"), 1);
    assert_eq!(batch.count("SELECT COUNT(*) AS n FROM erp_journal WHERE bilag_id = 'SFTP-1'"), 1);
}
