//! `herald crds` prints exactly the CRDs committed under deploy/crds/.

#[test]
fn herald_crds_prints_the_committed_definitions() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .arg("crds")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/crds/crds.yaml"
    ))
    .unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), committed);
}
