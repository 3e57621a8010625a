//! The fallback when the official suite is missing: the project's own
//! spec-derived end-to-end suite (`oci-e2e`, see `tests/README.md`), run with
//! `cargo test` and summarised the same way. It is not the official suite,
//! and the summary says so.
//!
//! `tests/pull.rs`, `push.rs`, `discovery.rs` and `management.rs` hold the
//! four workflows; every test there runs once per backend and is named
//! `<function>::<backend>`.

use std::path::Path;
use std::time::Duration;

use super::Backend;
use super::junit::{Case, Status, Workflow};
use super::suite::run_logged;
use crate::server::{Error, cargo, workspace_root};

/// The e2e test file of each workflow.
pub fn test_file(workflow: Workflow) -> Option<&'static str> {
    match workflow {
        Workflow::Pull => Some("pull"),
        Workflow::Push => Some("push"),
        Workflow::ContentDiscovery => Some("discovery"),
        Workflow::ContentManagement => Some("management"),
        Workflow::Other => None,
    }
}

/// Parses libtest's output (`test name::backend ... ok`) into cases of
/// `workflow`, each with the backend its name ends with.
pub fn parse_libtest(output: &str, workflow: Workflow) -> Vec<(Option<Backend>, Case)> {
    output
        .lines()
        .filter_map(|line| {
            let (name, result) = line.strip_prefix("test ")?.split_once(" ... ")?;
            let status = match result.trim() {
                "ok" => Status::Passed,
                "FAILED" => Status::Failed,
                r if r.starts_with("ignored") => Status::Skipped,
                _ => return None,
            };
            let backend = name
                .rsplit_once("::")
                .and_then(|(_, b)| Backend::from_test_suffix(b));
            Some((
                backend,
                Case {
                    name: name.to_owned(),
                    workflow,
                    status,
                    message: String::new(),
                },
            ))
        })
        .collect()
}

/// Runs the four workflow files of `oci-e2e` for `backends`, writing
/// cargo's output to `<report_dir>/e2e-<file>.txt`. Returns the cases per
/// backend, in the order of `backends`.
pub async fn run(backends: &[Backend], report_dir: &Path) -> Result<Vec<Vec<Case>>, Error> {
    let mut per_backend = vec![Vec::new(); backends.len()];
    for workflow in Workflow::ALL {
        let file = test_file(workflow).expect("a workflow has a test file");
        let log = report_dir.join(format!("e2e-{file}.txt"));
        let mut cmd = cargo();
        cmd.current_dir(workspace_root())
            .args(["test", "-p", "oci-e2e", "--test", file, "--"])
            .args(backends.iter().map(|b| format!("::{}", b.name())));
        println!(
            "conformance: own suite: cargo test -p oci-e2e --test {file} (output: {})",
            log.display()
        );
        let status = run_logged(cmd, &log, Duration::from_secs(3600))
            .await?
            .ok_or_else(|| format!("cargo test --test {file} timed out"))?;
        let output = std::fs::read_to_string(&log)?;
        let cases = parse_libtest(&output, workflow);
        let failed = cases.iter().any(|(_, c)| c.status == Status::Failed);
        if !status.success() && !failed {
            let tail: Vec<&str> = output.lines().rev().take(20).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return Err(format!(
                "cargo test -p oci-e2e --test {file} failed ({status}) without a failing test:\n{}",
                tail.join("\n")
            )
            .into());
        }
        for (backend, case) in cases {
            if let Some(i) = backends.iter().position(|b| Some(*b) == backend) {
                per_backend[i].push(case);
            }
        }
    }
    Ok(per_backend)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_libtest_lines() {
        let out = "\nrunning 5 tests\n\
            test get_and_head_blob::memory ... ok\n\
            test range_header_edge_cases::s3 ... FAILED\n\
            test slow::filesystem ... ignored, needs time\n\
            test get_and_head_blob::filesystem ... ok\n\
            test not_per_backend ... ok\n\
            \nfailures:\n    range_header_edge_cases::s3\n\
            test result: FAILED. 3 passed; 1 failed; 1 ignored; 0 measured; 0 filtered out\n";
        let cases = parse_libtest(out, Workflow::Pull);
        let got: Vec<_> = cases
            .iter()
            .map(|(b, c)| (*b, c.name.as_str(), c.status, c.workflow))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    Some(Backend::Memory),
                    "get_and_head_blob::memory",
                    Status::Passed,
                    Workflow::Pull
                ),
                (
                    Some(Backend::S3),
                    "range_header_edge_cases::s3",
                    Status::Failed,
                    Workflow::Pull
                ),
                (
                    Some(Backend::Filesystem),
                    "slow::filesystem",
                    Status::Skipped,
                    Workflow::Pull
                ),
                (
                    Some(Backend::Filesystem),
                    "get_and_head_blob::filesystem",
                    Status::Passed,
                    Workflow::Pull
                ),
                (None, "not_per_backend", Status::Passed, Workflow::Pull),
            ]
        );
    }

    #[test]
    fn every_workflow_has_its_test_file() {
        let root = workspace_root().join("tests/tests");
        for w in Workflow::ALL {
            let file = test_file(w).unwrap();
            assert!(root.join(format!("{file}.rs")).is_file(), "{file}");
        }
    }
}
