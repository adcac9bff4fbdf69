//! Batch files in drop folders, for the masse tests: a configuration with folders of its own, and the receiver
//! run in the test's process.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use fkoeko_adapter::batch::{Folders, Handled, Receiver};
use fkoeko_adapter::config::{BatchConvention, Config};
use fkoeko_adapter::domain::receipt::ReceiptSet;
use fkoeko_adapter::domain::sortiment::Integration;
use fkoeko_adapter::startup::App;

pub struct Batch {
    pub dir: tempfile::TempDir,
    pub db_url: String,
    pub config: Config,
    pub app: Arc<App>,
}

impl Batch {
    /// Plain drop folders (complete when unchanged for 0 s), on a fresh database.
    pub fn plain() -> Self {
        Self::with(|c| c.batch.convention = BatchConvention::Plain)
    }

    /// Serviceplatformen's convention: complete when the .metadata has arrived.
    pub fn metadata() -> Self {
        Self::with(|c| c.batch.convention = BatchConvention::Metadata)
    }

    /// Folders fed by Serviceplatformen: its metadata convention, and this installation as the SFTP user
    /// `erp-sftp`.
    pub fn from_platform(adjust: impl FnOnce(&mut Config)) -> Self {
        Self::with(|c| {
            c.batch.convention = BatchConvention::Metadata;
            c.batch.sftp_users = vec!["erp-sftp".into()];
            adjust(c);
        })
    }

    pub fn with(adjust: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db_url = super::new_database_url(dir.path());
        let mut config = super::test_config(&db_url);
        config.batch.dir = dir.path().join("batch");
        config.batch.quiet_secs = 0;
        config.batch.workers = 2;
        adjust(&mut config);
        let app = App::build(&config).unwrap();
        Batch { dir, db_url, config, app }
    }

    /// A second receiver on the same database and folders, as a second adapter process would have.
    pub fn receiver(&self) -> Receiver {
        Receiver::new(self.app.clone()).unwrap()
    }

    /// The SF1590_A folders.
    pub fn folders(&self) -> Folders {
        self.folders_of(Integration::Sf1590A)
    }

    pub fn folders_of(&self, integration: Integration) -> Folders {
        Folders::of(&self.config.batch.dir, integration)
    }

    /// Puts a file in the SF1590_A inbox as an uploader would: under a temporary name, then renamed.
    pub fn drop_file(&self, name: &str, content: &[u8]) -> PathBuf {
        self.drop_file_for(Integration::Sf1590A, name, content)
    }

    pub fn drop_file_for(&self, integration: Integration, name: &str, content: &[u8]) -> PathBuf {
        let folders = self.folders_of(integration);
        std::fs::create_dir_all(&folders.inbox).unwrap();
        let temporary = folders.inbox.join(format!("{name}.part"));
        std::fs::write(&temporary, content).unwrap();
        let path = folders.inbox.join(name);
        std::fs::rename(&temporary, &path).unwrap();
        path
    }

    /// One round of a fresh receiver; every file it took must have been handled.
    pub fn run_once(&self) -> Vec<Handled> {
        let round = self.receiver().run_once(&|_, _| {}).unwrap();
        assert!(round.failed.is_empty(), "{:?}", round.failed);
        round.handled
    }

    /// The receipt file of the SF1590_A file `name`, checked against kvittering.xsd, and read.
    pub fn receipt(&self, name: &str) -> (String, ReceiptSet) {
        self.receipt_for(Integration::Sf1590A, name)
    }

    pub fn receipt_for(&self, integration: Integration, name: &str) -> (String, ReceiptSet) {
        let path = self.folders_of(integration).outbox.join(fkoeko_adapter::batch::receipt_name(name));
        read_receipt_file(&path)
    }

    pub fn count(&self, sql: &str) -> i64 {
        super::count_in(&self.db_url, sql)
    }

    /// One text, selected `AS s`.
    pub fn string(&self, sql: &str) -> String {
        #[derive(diesel::QueryableByName)]
        struct Text {
            #[diesel(sql_type = diesel::sql_types::Text)]
            s: String,
        }
        diesel::RunQueryDsl::get_result::<Text>(diesel::sql_query(sql), &mut super::connect(&self.db_url)).unwrap().s
    }

    pub fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        names
    }
}

/// The `.metadata` Serviceplatformen writes beside a file from the SFTP user `sender` to the SFTP user `to`.
pub fn platform_metadata(name: &str, size: usize, sender: &str, senders_file_id: Option<&str>, to: &str) -> String {
    let transfer = uuid::Uuid::new_v4().to_string();
    fkoeko_adapter::batch::metadata::render(&fkoeko_adapter::batch::metadata::Describe {
        file_transfer_uuid: Some(&transfer),
        file_name: name,
        size: size as u64,
        sender,
        senders_file_id,
        to: &fkoeko_adapter::batch::metadata::SendTo::User(to.into()),
        from_it_system: None,
        from_authority: super::OUR_CVR,
    })
}

pub fn read_receipt_file(path: &Path) -> (String, ReceiptSet) {
    let xml = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    super::assert_valid_receipt(&xml);
    let set: ReceiptSet = quick_xml::de::from_str(&xml).unwrap();
    (xml, set)
}
