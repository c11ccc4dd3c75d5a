//! The one build behind every test step: `cargo test --workspace --no-run` compiles the test
//! executables, `oa-server` (for its own integration tests) and every example with one
//! feature set.
//!
//! Why one build: cargo resolves dependency features per command-line selection, so
//! `cargo test -p oa-api`, `cargo test -p oa-e2e` and `cargo build -p oa-server` each compile
//! tokio, hyper, rustls and some 80 other units again with other features. On a fresh
//! two-core machine every extra selection costs minutes. The steps that need one package's
//! tests (the PostgreSQL pass, the cluster tests, the end-to-end passes) therefore run the
//! executables this build made, the way `cargo test` runs them.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::Context;

use crate::util;

/// One test executable of the workspace build.
#[derive(Debug, Clone)]
pub struct TestExecutable {
    /// The package's name (`oa-api`).
    pub package: String,
    /// The target's name (`rest`, or the library's `oa_api`).
    pub target: String,
    /// The executable on disk.
    pub path: PathBuf,
    /// The package's directory: cargo runs a package's tests from there.
    pub package_dir: PathBuf,
}

/// What `cargo test --workspace --no-run` built.
#[derive(Debug)]
pub struct TestBuild {
    executables: Vec<TestExecutable>,
}

impl TestBuild {
    /// Builds every test executable, `oa-server` and the examples; fails when the build
    /// fails or leaves no `oa-server` binary.
    pub fn build() -> anyhow::Result<Self> {
        // Diagnostics go to stderr as usual; stdout carries one JSON message per artifact.
        let output = util::cargo_command()
            .args([
                "test",
                "--workspace",
                "--no-run",
                "--message-format=json-render-diagnostics",
            ])
            .stderr(Stdio::inherit())
            .output()
            .context("running cargo test --workspace --no-run")?;
        anyhow::ensure!(
            output.status.success(),
            "cargo test --workspace --no-run failed ({})",
            output.status
        );
        let executables = parse_artifacts(&String::from_utf8_lossy(&output.stdout))?;
        let server = util::debug_binary("oa-server");
        anyhow::ensure!(
            server.is_file(),
            "{} is missing after cargo test --workspace --no-run (cargo builds it for \
             crates/oa-server/tests)",
            server.display()
        );
        println!(
            "built {} test executables, {} and the examples",
            executables.len(),
            server.display()
        );
        Ok(Self { executables })
    }

    /// The test executables of `package` (its library's unit tests and each integration
    /// test), in build order.
    pub fn of_package<'a>(
        &'a self,
        package: &'a str,
    ) -> impl Iterator<Item = &'a TestExecutable> + 'a {
        self.executables
            .iter()
            .filter(move |executable| executable.package == package)
    }

    /// The integration test `target` of `package`.
    pub fn test(&self, package: &str, target: &str) -> anyhow::Result<&TestExecutable> {
        self.executables
            .iter()
            .find(|executable| executable.package == package && executable.target == target)
            .with_context(|| format!("{package} has no test target {target:?}"))
    }
}

/// Reads cargo's JSON messages: every artifact built with the test harness that has an
/// executable.
fn parse_artifacts(messages: &str) -> anyhow::Result<Vec<TestExecutable>> {
    let mut executables = Vec::new();
    for line in messages.lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if message["reason"] != "compiler-artifact" || message["profile"]["test"] != true {
            continue;
        }
        let Some(path) = message["executable"].as_str() else {
            continue;
        };
        let manifest = message["manifest_path"]
            .as_str()
            .context("cargo artifact without manifest_path")?;
        let package_dir = Path::new(manifest)
            .parent()
            .context("manifest_path without a directory")?
            .to_path_buf();
        let package = package_name(&message)
            .with_context(|| format!("cargo artifact {path} without a package name"))?;
        executables.push(TestExecutable {
            package,
            target: message["target"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            path: PathBuf::from(path),
            package_dir,
        });
    }
    Ok(executables)
}

/// The package name in a cargo message's `package_id`
/// (`path+file:///work/crates/oa-api#0.1.0`, or `...#oa-e2e@0.1.0` when the directory name
/// differs from the package's).
fn package_name(message: &serde_json::Value) -> Option<String> {
    let id = message["package_id"].as_str()?;
    let (location, fragment) = id.rsplit_once('#')?;
    match fragment.split_once('@') {
        Some((name, _version)) => Some(name.to_string()),
        None => location.rsplit('/').next().map(str::to_string),
    }
}

/// Runs each executable as `cargo test` would (from its package's directory, with `args`
/// after it and `env` set), every one even after a failure; fails naming those that failed.
pub fn run_all<'a>(
    executables: impl IntoIterator<Item = &'a TestExecutable>,
    args: &[&str],
    env: &[(&str, &str)],
) -> anyhow::Result<()> {
    let mut failed = Vec::new();
    let mut ran = 0;
    for executable in executables {
        ran += 1;
        println!(
            "     Running {} ({})",
            executable.target,
            executable.path.display()
        );
        let status = Command::new(&executable.path)
            .args(args)
            .envs(env.iter().copied())
            .env("CARGO_MANIFEST_DIR", &executable.package_dir)
            .env("CARGO_PKG_NAME", &executable.package)
            .current_dir(&executable.package_dir)
            .status()
            .with_context(|| format!("starting {}", executable.path.display()))?;
        if !status.success() {
            failed.push(format!(
                "{} {} ({status})",
                executable.package, executable.target
            ));
        }
    }
    anyhow::ensure!(ran > 0, "no test executable to run");
    anyhow::ensure!(failed.is_empty(), "failed: {}", failed.join(", "));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_names_come_from_either_form_of_package_id() {
        let plain = serde_json::json!({"package_id": "path+file:///w/crates/oa-api#0.1.0"});
        let renamed = serde_json::json!({"package_id": "path+file:///w/tests#oa-e2e@0.1.0"});
        assert_eq!(package_name(&plain).as_deref(), Some("oa-api"));
        assert_eq!(package_name(&renamed).as_deref(), Some("oa-e2e"));
    }

    #[test]
    fn only_test_harness_executables_are_kept() {
        let messages = [
            r#"{"reason":"compiler-artifact","package_id":"path+file:///w/crates/oa-api#0.1.0","manifest_path":"/w/crates/oa-api/Cargo.toml","target":{"name":"rest"},"profile":{"test":true},"executable":"/w/target/debug/deps/rest-1"}"#,
            r#"{"reason":"compiler-artifact","package_id":"path+file:///w/crates/oa-api#0.1.0","manifest_path":"/w/crates/oa-api/Cargo.toml","target":{"name":"oa_api"},"profile":{"test":false},"executable":null}"#,
            r#"{"reason":"compiler-artifact","package_id":"path+file:///w/crates/x#0.1.0","manifest_path":"/w/crates/x/Cargo.toml","target":{"name":"demo"},"profile":{"test":false},"executable":"/w/target/debug/examples/demo"}"#,
            r#"{"reason":"build-finished","success":true}"#,
            "not json",
        ]
        .join("\n");
        let executables = parse_artifacts(&messages).unwrap();
        assert_eq!(executables.len(), 1);
        assert_eq!(executables[0].package, "oa-api");
        assert_eq!(executables[0].target, "rest");
        assert_eq!(
            executables[0].package_dir,
            PathBuf::from("/w/crates/oa-api")
        );
    }
}
