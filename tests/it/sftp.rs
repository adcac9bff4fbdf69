//! A real SFTP round trip, the way Serviceplatformen's SFTP service delivers: OpenSSH's sshd on a loopback port,
//! the `sftp` client uploads the data file and then its `.metadata` file into the inbox, the adapter's batch
//! receiver (running as in `fkoeko serve`) takes it, and the receipt file is downloaded from the outbox.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::delivery::{Bilag, Delivery};
use crate::common::masse::{platform_metadata, read_receipt_file, Batch};
use crate::common::repo;
use fkoeko_adapter::batch::metadata;
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

/// Polls until `done` holds, or fails after a minute with `what`.
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Serviceplatformen's whole dance, the test playing the platform: it drops the data file and its metadata into
/// IN (the inbox); the adapter answers with the receipt file and its `.trigger` in OUT (the outbox), addressed
/// to the sender's SFTP user; the platform takes both, answers once with an error and the adapter sends the
/// receipt file again; then it answers SUCCESS, and the receipt file is delivered.
#[test]
fn a_file_uploaded_by_sftp_is_answered_with_a_receipt_file_sent_back_through_the_platform() {
    let batch = Batch::from_platform(|c| {
        c.batch.poll_interval_ms = 100;
        c.batch.receipt_backoff_initial_secs = 0;
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

    // The platform takes the receipt file and its trigger out of OUT, the trigger last.
    let receipt_name = "maanedskoersel.kvittering.xml";
    let (downloaded, trigger) = (local.join("kvittering.xml"), local.join("kvittering.xml.trigger"));
    let take = |attempt: &str| {
        wait_for(&format!("{attempt}: no trigger to download"), || {
            sshd.sftp(&format!("get outbox/{receipt_name}.trigger {}\n", trigger.display()))
        });
        assert!(
            sshd.sftp(&format!(
                "get outbox/{receipt_name} {}\nrm outbox/{receipt_name}\nrm outbox/{receipt_name}.trigger\n",
                downloaded.display()
            )),
            "{attempt}: the receipt file is there before its trigger"
        );
        std::fs::read_to_string(&trigger).unwrap()
    };
    let first_trigger = take("first try");

    // The trigger is what the contract allows, addressed to the sender's SFTP user, for the file beside it.
    let xsd = Command::new("xmllint").arg("--noout").arg("--schema").arg(repo("schemas/sftp-metadata.xsd")).arg(&trigger).output().unwrap();
    assert!(xsd.status.success(), "{}", String::from_utf8_lossy(&xsd.stderr));
    let described = metadata::parse(first_trigger.as_bytes()).unwrap();
    assert_eq!(described.file_transfer_uuid, None, "a Trigger, as a sender writes it");
    assert_eq!((described.sender.as_str(), described.recipients.clone()), ("erp-sftp", vec!["ky-sftp".to_string()]));
    assert_eq!(described.file_name, receipt_name);
    assert_eq!(described.size_in_bytes, std::fs::metadata(&downloaded).unwrap().len());
    let senders_file_id = described.senders_file_id.clone().expect("the receipt file's own id");

    let (_, set) = read_receipt_file(&downloaded);
    assert_eq!(set.delivery_id.to_string(), delivery.delivery_id);
    let outcome: Vec<(&str, Status)> = set.receipts.iter().map(|r| (r.reference.as_str(), r.status)).collect();
    assert_eq!(outcome, vec![("SFTP-1", Status::Accepteret), ("SFTP-2", Status::Afvist)]);
    assert_eq!(set.receipts[1].errors[0].code.as_str(), "REGEL_BALANCE");
    let first_receipt = std::fs::read(&downloaded).unwrap();

    // The platform could not deliver it: the adapter sends it again, the same file under the same id.
    let answer = |body: &str| {
        let path = local.join("answer.sftpreceipt");
        std::fs::write(
            &path,
            format!(
                "<?xml version=\"1.0\"?><sftp:TechnicalReceipt xmlns:sftp=\"{}\"><FileTransferUUID>{}</FileTransferUUID>\
                 <SendersFileId>{senders_file_id}</SendersFileId>{body}</sftp:TechnicalReceipt>",
                metadata::NAMESPACE,
                uuid::Uuid::new_v4()
            ),
        )
        .unwrap();
        let xsd =
            Command::new("xmllint").arg("--noout").arg("--schema").arg(repo("schemas/sftp-metadata.xsd")).arg(&path).output().unwrap();
        assert!(xsd.status.success(), "{}", String::from_utf8_lossy(&xsd.stderr));
        assert!(sshd.sftp(&format!("put {} inbox/{receipt_name}.sftpreceipt\n", path.display())), "upload of the answer");
    };
    answer("<ErrorMessage><ErrorCode>17</ErrorCode><ErrorCodeDescription>RECIPIENT_UNAVAILABLE</ErrorCodeDescription><ErrorDescription>try again</ErrorDescription></ErrorMessage>");
    let second_trigger = take("second try");
    assert_eq!(metadata::parse(second_trigger.as_bytes()).unwrap().senders_file_id.as_deref(), Some(senders_file_id.as_str()));
    assert!(std::fs::read(&downloaded).unwrap() == first_receipt, "the same receipt file, sent again");

    answer("<Receipt><Message>SUCCESS</Message></Receipt>");
    wait_for("the receipt file is not marked delivered", || {
        batch.count("SELECT COUNT(*) AS n FROM receipt_transfers WHERE state = 'delivered' AND attempts = 2") == 1
    });
    task.stop();
    assert!(batch.string("SELECT last_error AS s FROM receipt_transfers").contains("RECIPIENT_UNAVAILABLE"), "the error is kept");
    assert_eq!(Batch::names_in(&folders.inbox), Vec::<String>::new(), "the answers are archived");
    assert_eq!(batch.count("SELECT COUNT(*) AS n FROM batch_files WHERE file_key = 'sftp:ky-sftp:KY-2026-11-0001'"), 1);
    assert_eq!(batch.count("SELECT COUNT(*) AS n FROM erp_journal WHERE bilag_id = 'SFTP-1'"), 1);
}
