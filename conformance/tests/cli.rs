//! The `herald-conformance` binary's edges: a broker it cannot set up is exit code 2 with a
//! message naming what failed, and an unknown adapter is refused by name. (Runs against
//! Herald on every channel are in broker/tests/conformance.rs.)

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_herald-conformance");

#[test]
fn an_unreachable_broker_is_exit_code_2_naming_the_setup_step() {
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = Command::new(BIN)
        .args([
            "--broker",
            &format!("http://127.0.0.1:{port}/ns/b"),
            "--adapter",
            "herald",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("setting up the broker"), "{stderr}");
    assert!(stderr.contains("brokers/b"), "{stderr}");
}

#[test]
fn a_broker_url_the_herald_adapter_cannot_read_is_refused() {
    let out = Command::new(BIN)
        .args(["--broker", "http://127.0.0.1:1/only-one-segment"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("NAMESPACE/NAME"), "{stderr}");
}

#[test]
fn an_unknown_adapter_is_refused_by_name() {
    let out = Command::new(BIN)
        .args(["--broker", "http://127.0.0.1:1/ns/b", "--adapter", "nope"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("nope") && stderr.contains("herald"),
        "{stderr}"
    );
}
