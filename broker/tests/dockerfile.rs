//! What can be checked of `deploy/Dockerfile` without a Docker daemon or registry (the image
//! itself is not built here): its build stage builds this workspace's `herald` binary with
//! features the crate has and the build dependencies `scripts/build-deps.sh` installs, the
//! final stage copies the binary the build stage produced to where ENTRYPOINT runs it, as the
//! user the manifests expect, its CMD is accepted by `herald`, and the build context leaves
//! `target/` out. Built with the `kubernetes` feature (the image's `herald` is).

#![cfg(feature = "kubernetes")]

use std::path::Path;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// One stage: its `FROM` line's image and name, and its instructions with continuation
/// lines joined.
struct Stage {
    image: String,
    name: Option<String>,
    instructions: Vec<String>,
}

impl Stage {
    fn all(&self, keyword: &str) -> Vec<&str> {
        self.instructions
            .iter()
            .filter_map(|i| i.strip_prefix(keyword)?.strip_prefix(' '))
            .collect()
    }
}

fn stages(dockerfile: &str) -> Vec<Stage> {
    let mut joined = Vec::new();
    let mut current = String::new();
    for line in dockerfile.lines() {
        let line = line.trim();
        if current.is_empty() && (line.is_empty() || line.starts_with('#')) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => current.push_str(part),
            None => {
                current.push_str(line);
                joined.push(std::mem::take(&mut current));
            }
        }
    }
    let mut stages: Vec<Stage> = Vec::new();
    for i in joined {
        if let Some(from) = i.strip_prefix("FROM ") {
            let words: Vec<_> = from.split_whitespace().collect();
            stages.push(Stage {
                image: words[0].to_string(),
                name: (words.get(1).map(|w| w.to_ascii_uppercase()) == Some("AS".into()))
                    .then(|| words[2].to_string()),
                instructions: Vec::new(),
            });
        } else {
            stages
                .last_mut()
                .expect("an instruction before FROM")
                .instructions
                .push(i);
        }
    }
    stages
}

/// The JSON-array form of an instruction (`["a", "b"]`).
fn exec_form(args: &str) -> Vec<String> {
    serde_json::from_str(args).unwrap_or_else(|e| panic!("not an exec form {args:?}: {e}"))
}

#[test]
fn the_dockerfile_builds_the_workspace_binary_and_runs_it() {
    let stages = stages(&read("deploy/Dockerfile"));
    assert!(stages.len() >= 2, "a multi-stage build");
    let (build, last) = (&stages[0], stages.last().unwrap());
    let build_name = build.name.clone().expect("the build stage is named");

    // The toolchain is the one this workspace builds with (or newer).
    let tag = build.image.strip_prefix("rust:").expect("a rust image");
    let wanted: Vec<u32> = tag
        .split(['-', '.'])
        .take(2)
        .map(|p| p.parse().unwrap())
        .collect();
    let rustc = std::process::Command::new("rustc")
        .arg("--version")
        .output()
        .unwrap();
    let version = String::from_utf8(rustc.stdout).unwrap();
    let here: Vec<u32> = version
        .split_whitespace()
        .nth(1)
        .unwrap()
        .split('.')
        .take(2)
        .map(|p| p.parse().unwrap())
        .collect();
    assert!(wanted >= here, "{} is older than {version}", build.image);

    // Build dependencies: what scripts/build-deps.sh installs for librdkafka.
    let deps = read("scripts/build-deps.sh");
    let runs = build.all("RUN").join("\n");
    for package in ["cmake", "libcurl4-openssl-dev"] {
        assert!(
            deps.contains(package) && runs.contains(package),
            "{package}"
        );
    }

    // `cargo build` of herald-broker's `herald` binary, with features the crate has.
    let cargo = runs
        .split("&&")
        .find(|c| c.contains("cargo build"))
        .expect("a cargo build");
    let words: Vec<_> = cargo.split_whitespace().collect();
    let after = |flag: &str| {
        words
            .iter()
            .position(|w| *w == flag)
            .map(|i| words[i + 1].to_string())
    };
    assert_eq!(after("-p").as_deref(), Some("herald-broker"), "{cargo}");
    // The profile images ship (whole-program optimised), built from the lock file.
    assert_eq!(after("--profile").as_deref(), Some("dist"), "{cargo}");
    assert!(words.contains(&"--locked"), "{cargo}");
    assert!(
        read("Cargo.toml").contains("[profile.dist]"),
        "Cargo.toml defines the dist profile"
    );
    let manifest: toml_like::Manifest = toml_like::read(&read("broker/Cargo.toml"));
    assert_eq!(manifest.package, "herald-broker");
    assert!(manifest.bins.contains(&"herald".to_string()));
    for feature in after("--features").unwrap_or_default().split(',') {
        if !feature.is_empty() {
            assert!(
                manifest.features.contains(&feature.to_string()),
                "{feature}"
            );
        }
    }
    // The image must serve Kubernetes: `herald serve --kubernetes` needs that feature.
    assert_eq!(
        after("--features").as_deref(),
        Some("kubernetes"),
        "{cargo}"
    );

    // What the build stage copies out is that profile's binary...
    let copied = runs
        .split("&&")
        .find_map(|c| c.trim().strip_prefix("cp target/dist/herald "))
        .expect("the binary copied out of the cache-mounted target dir")
        .trim()
        .to_string();
    // ... and what the final stage copies from it, to what ENTRYPOINT runs.
    let copy = last
        .all("COPY")
        .into_iter()
        .find(|c| c.starts_with(&format!("--from={build_name} ")))
        .expect("the final stage copies from the build stage");
    let parts: Vec<_> = copy.split_whitespace().collect();
    assert_eq!(parts[1], copied, "{copy}");
    let entrypoint = exec_form(last.all("ENTRYPOINT")[0]);
    assert_eq!(entrypoint, [parts[2].to_string()]);

    // The user the manifests run as.
    assert_eq!(last.all("USER"), ["65532:65532"]);
    assert!(read("deploy/base/data-plane.yaml").contains("runAsUser: 65532"));

    // CMD is a command line `herald` accepts (clap rejects unknown flags before --help).
    let mut cmd = exec_form(last.all("CMD")[0]);
    cmd.push("--help".into());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(&cmd)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "herald {cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // `COPY . .` sends the context: build output stays out of it.
    let ignore = read(".dockerignore");
    assert!(ignore.lines().any(|l| l.trim() == "target/"), "{ignore}");
}

/// The few facts of a Cargo.toml the test needs, read line by line (no TOML dependency).
mod toml_like {
    pub struct Manifest {
        pub package: String,
        pub bins: Vec<String>,
        pub features: Vec<String>,
    }

    pub fn read(text: &str) -> Manifest {
        let (mut section, mut package, mut bins, mut features) =
            (String::new(), String::new(), Vec::new(), Vec::new());
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') {
                section = line.to_string();
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let (key, value) = (key.trim(), value.trim().trim_matches('"').to_string());
            match (section.as_str(), key) {
                ("[package]", "name") => package = value,
                ("[[bin]]", "name") => bins.push(value),
                ("[features]", k) if !k.starts_with('#') => features.push(k.to_string()),
                _ => {}
            }
        }
        Manifest {
            package,
            bins,
            features,
        }
    }
}
