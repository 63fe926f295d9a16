//! Fuzz target: the YAML loader (`herald_core::load_str`) on arbitrary text. It must answer
//! every input with resources or a LoadError, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = herald_core::load_str(std::path::Path::new("fuzz.yaml"), text);
        let _ = herald_core::load_resource("fuzz", text);
    }
});
