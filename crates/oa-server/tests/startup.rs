//! Start-up refusals of the `oa-server` binary: bad settings stop it before it serves, with
//! every offending variable named. Runs the binary cargo built for these tests: an integration
//! test here is what makes `cargo test --workspace --no-run` build `oa-server` (xtask's one
//! build relies on it).

#![allow(clippy::unwrap_used)] // test code

use std::path::Path;
use std::process::ExitStatus;

/// Runs `oa-server` with only `env` set (and no `.env` file) in a fresh directory until it
/// exits; returns its status and its stdout and stderr together.
fn run_to_exit(env: &[(&str, &str)], args: &[&str]) -> (ExitStatus, String) {
    oa_e2e::run_binary_to_exit(Path::new(env!("CARGO_BIN_EXE_oa-server")), env, args).unwrap()
}

#[test]
fn invalid_mode_stops_start_up_naming_variable_and_allowed_values() {
    let (status, output) = run_to_exit(&[("ORDER_EVENT_MODE", "bogus")], &[]);
    assert!(!status.success());
    for needle in ["ORDER_EVENT_MODE", "bogus", "SOCKETIO", "KAFKA", "BOTH"] {
        assert!(output.contains(needle), "{needle} missing from:\n{output}");
    }
}

#[test]
fn kafka_mode_without_bootstrap_servers_stops_start_up() {
    let (status, output) = run_to_exit(&[("ORDER_EVENT_MODE", "KAFKA")], &[]);
    assert!(!status.success());
    assert!(output.contains("KAFKA_BOOTSTRAP_SERVERS"), "{output}");
}

#[test]
fn every_bad_variable_is_named_at_once() {
    let (status, output) = run_to_exit(
        &[
            ("FLASK_PORT", "eighty"),
            ("API_KEY_PEPPER", "too-short"),
            ("OA_EVENT_QUEUE_CAPACITY", "0"),
        ],
        &[],
    );
    assert_eq!(status.code(), Some(2), "{output}");
    for needle in ["FLASK_PORT", "API_KEY_PEPPER", "OA_EVENT_QUEUE_CAPACITY"] {
        assert!(output.contains(needle), "{needle} missing from:\n{output}");
    }
}

#[test]
fn a_taken_port_is_reported_by_setting_name() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let (status, output) = run_to_exit(&[("FLASK_PORT", &port)], &[]);
    assert!(!status.success());
    assert!(output.contains("FLASK_PORT"), "{output}");
    assert!(output.contains(&port), "{output}");
}

#[test]
fn help_lists_the_serve_command() {
    let (status, output) = run_to_exit(&[], &["--help"]);
    assert!(status.success(), "{output}");
    assert!(output.contains("serve"), "{output}");
    assert!(output.contains("ORDER_EVENT_MODE"), "{output}");
}
