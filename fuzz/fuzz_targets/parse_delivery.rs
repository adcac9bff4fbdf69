//! The parsing and validation path of a delivery, on arbitrary bytes: the guarded reader, the SOAP envelope,
//! libxml2's schema validation and the wire model of both integrations. Nothing here may panic, hang or grow
//! without bound, whatever the input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    fkoeko_adapter::pipeline::read_offline(data, std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../schemas")));
});
