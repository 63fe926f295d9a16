//! README's `herald-bench` line works as written (a small run): it measures the baseline and
//! Herald on the memory channel and prints the table with ratios.

use std::process::Command;

#[test]
fn herald_bench_prints_the_baseline_and_a_ratio_per_case() {
    let out = Command::new(env!("CARGO_BIN_EXE_herald-bench"))
        .args([
            "--events",
            "300",
            "--senders",
            "4",
            "--channels",
            "memory",
            "--no-half-load",
            "--no-fan-out",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("memory"), "{stdout}");
    assert!(stdout.contains('%'), "no ratio in:\n{stdout}");
}
