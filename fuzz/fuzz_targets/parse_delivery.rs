//! Any bytes as a delivery, through the production pipeline in a dry run (`pipeline::dry_run`, what `fkoeko
//! validate` runs): the streaming scan, the SOAP envelope, libxml2's schema check of each item, the wire model,
//! the rules, sortiment and mapping of both integrations. Nothing here may panic, hang or grow without bound,
//! whatever the input.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use fkoeko_adapter::config::Config;
use fkoeko_adapter::pipeline::{self, Pipeline};
use libfuzzer_sys::fuzz_target;

/// The example installation (sortiment, mappings, schemas of the repository), offline: no database, no folder.
fn pipeline() -> &'static Pipeline {
    static PIPELINE: OnceLock<Pipeline> = OnceLock::new();
    PIPELINE.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut config = Config::default();
        config.paths.schemas = root.join("schemas");
        config.paths.mapping_examples = root.join("mappings");
        config.paths.mappings = root.join("mappings");
        config.paths.sortiment = root.join("sortiment/example.toml");
        fkoeko_adapter::startup::offline_pipeline(&config).expect("the example installation reads")
    })
}

fuzz_target!(|data: &[u8]| {
    // A technical failure (a file it could not read) is not what is fuzzed; a panic or a hang is.
    let _ = pipeline::dry_run(pipeline(), data);
});
