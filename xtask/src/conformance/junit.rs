//! Results of a suite run: the junit report the official suite writes, and
//! the per-workflow counts printed in the summary.
//!
//! The official suite (ginkgo) writes one `<testcase>` per spec, named by
//! the whole spec path: `OCI Distribution Conformance Tests <Workflow>
//! <container> <description>`, where `<Workflow>` is `Pull`, `Push`,
//! `Content Discovery` or `Content Management`. Each has a `status`
//! attribute (`passed`, `skipped`, `pending`, `failed`, `panicked`,
//! `interrupted`, `aborted`, `timedout`) and a `<failure>`, `<error>` or
//! `<skipped>` child with the message. Suite-level nodes (`html custom
//! reporter`) belong to no workflow; they count only if they fail.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

/// The four workflows of distribution-spec conformance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Workflow {
    /// `01_pull_test.go`, e2e `tests/pull.rs`.
    Pull,
    /// `02_push_test.go`, e2e `tests/push.rs`.
    Push,
    /// `03_discovery_test.go`, e2e `tests/discovery.rs`.
    ContentDiscovery,
    /// `04_management_test.go`, e2e `tests/management.rs`.
    ContentManagement,
    /// Suite-level steps outside the four workflows (reported only when
    /// they fail).
    Other,
}

impl Workflow {
    /// The four workflows, in the suite's order.
    pub const ALL: [Workflow; 4] = [
        Workflow::Pull,
        Workflow::Push,
        Workflow::ContentDiscovery,
        Workflow::ContentManagement,
    ];

    /// The name printed in the summary.
    pub fn label(self) -> &'static str {
        match self {
            Workflow::Pull => "pull",
            Workflow::Push => "push",
            Workflow::ContentDiscovery => "content discovery",
            Workflow::ContentManagement => "content management",
            Workflow::Other => "other",
        }
    }

    /// The workflow of an official suite's testcase, from its name.
    pub fn of_testcase(name: &str) -> Workflow {
        let rest = name
            .strip_prefix("OCI Distribution Conformance Tests ")
            .unwrap_or(name);
        [
            ("Pull ", Workflow::Pull),
            ("Push ", Workflow::Push),
            ("Content Discovery ", Workflow::ContentDiscovery),
            ("Content Management ", Workflow::ContentManagement),
        ]
        .into_iter()
        .find(|(prefix, _)| rest.starts_with(prefix))
        .map_or(Workflow::Other, |(_, w)| w)
    }
}

impl fmt::Display for Workflow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// The outcome of one test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// It ran and passed.
    Passed,
    /// It ran and failed (or errored, panicked, timed out).
    Failed,
    /// Skipped or pending.
    Skipped,
}

/// One test of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    /// Its full name.
    pub name: String,
    /// The workflow it belongs to.
    pub workflow: Workflow,
    /// What happened.
    pub status: Status,
    /// The failure message, for failed tests.
    pub message: String,
}

/// Passed, failed and skipped counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Tests that passed.
    pub passed: usize,
    /// Tests that failed.
    pub failed: usize,
    /// Tests that were skipped.
    pub skipped: usize,
}

impl Counts {
    fn add(&mut self, status: Status) {
        match status {
            Status::Passed => self.passed += 1,
            Status::Failed => self.failed += 1,
            Status::Skipped => self.skipped += 1,
        }
    }
}

/// Counts per workflow of `cases`: always the four workflows (zeros
/// included, so a workflow that did not run shows), plus `Other` when
/// anything outside them failed.
pub fn counts(cases: &[Case]) -> BTreeMap<Workflow, Counts> {
    let mut out: BTreeMap<Workflow, Counts> = Workflow::ALL
        .iter()
        .map(|&w| (w, Counts::default()))
        .collect();
    for case in cases {
        if case.workflow == Workflow::Other && case.status != Status::Failed {
            continue;
        }
        out.entry(case.workflow).or_default().add(case.status);
    }
    out
}

/// One summary line: `memory      pull               23 passed  0 failed  1 skipped`.
pub fn summary_line(backend: &str, workflow: Workflow, c: Counts) -> String {
    format!(
        "{backend:<11} {:<19}{:>2} passed {:>2} failed {:>2} skipped",
        workflow.label(),
        c.passed,
        c.failed,
        c.skipped
    )
}

#[derive(Debug, Deserialize)]
struct XmlSuites {
    #[serde(rename = "testsuite", default)]
    suites: Vec<XmlSuite>,
}

#[derive(Debug, Deserialize)]
struct XmlSuite {
    #[serde(rename = "testcase", default)]
    cases: Vec<XmlCase>,
}

#[derive(Debug, Deserialize)]
struct XmlCase {
    #[serde(rename = "@name")]
    name: String,
    #[serde(rename = "@status", default)]
    status: Option<String>,
    #[serde(default)]
    failure: Option<XmlMessage>,
    #[serde(default)]
    error: Option<XmlMessage>,
    #[serde(default)]
    skipped: Option<XmlMessage>,
}

#[derive(Debug, Deserialize)]
struct XmlMessage {
    #[serde(rename = "@message", default)]
    message: Option<String>,
    #[serde(rename = "$text", default)]
    text: Option<String>,
}

impl XmlMessage {
    fn describe(&self) -> String {
        let text = self.text.as_deref().unwrap_or("").trim();
        if !text.is_empty() {
            return text.to_owned();
        }
        self.message.as_deref().unwrap_or("").trim().to_owned()
    }
}

/// Parses a junit report (`<testsuites>` or a single `<testsuite>` root).
pub fn parse(xml: &str) -> Result<Vec<Case>, quick_xml::DeError> {
    let mut suites = quick_xml::de::from_str::<XmlSuites>(xml)?.suites;
    if suites.is_empty() {
        suites.push(quick_xml::de::from_str::<XmlSuite>(xml)?);
    }
    Ok(suites
        .into_iter()
        .flat_map(|s| s.cases)
        .map(|c| {
            let status = match c.status.as_deref() {
                Some("passed") => Status::Passed,
                Some("skipped" | "pending") => Status::Skipped,
                Some(_) => Status::Failed,
                // Plain junit: the children say it.
                None if c.failure.is_some() || c.error.is_some() => Status::Failed,
                None if c.skipped.is_some() => Status::Skipped,
                None => Status::Passed,
            };
            let message = match status {
                Status::Failed => c
                    .failure
                    .as_ref()
                    .or(c.error.as_ref())
                    .map(XmlMessage::describe)
                    .unwrap_or_default(),
                _ => String::new(),
            };
            Case {
                workflow: Workflow::of_testcase(&c.name),
                name: c.name,
                status,
                message,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shaped like the v1.1.1 suite's report (ginkgo, `OmitLeafNodeType`),
    /// trimmed, with one failure and one error added by hand.
    const SAMPLE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
  <testsuites tests="9" disabled="2" errors="1" failures="1" time="0.4">
      <testsuite name="conformance tests" package="/r" tests="9" disabled="0" skipped="2" errors="1" failures="1" time="0.4" timestamp="2026-11-22T15:38:39">
          <properties>
              <property name="SuiteSucceeded" value="false"></property>
          </properties>
          <testcase name="OCI Distribution Conformance Tests Pull Setup Populate registry with test blob" classname="conformance tests" status="passed" time="0.01">
              <system-err>&gt; Enter [It] Populate registry with test blob&#xA;</system-err>
          </testcase>
          <testcase name="OCI Distribution Conformance Tests Pull Setup Get tag name from environment" classname="conformance tests" status="skipped" time="0.0">
              <skipped message="skipped - you have skipped this test."></skipped>
          </testcase>
          <testcase name="OCI Distribution Conformance Tests Pull Pull blobs HEAD request to existing blob should yield 200" classname="conformance tests" status="passed" time="0.0">
          </testcase>
          <testcase name="OCI Distribution Conformance Tests Push Blob Upload Chunked Retry previous blob chunk should return 416" classname="conformance tests" status="failed" time="0.0">
              <failure message="Expected&#xA;    &lt;int&gt;: 202&#xA;to equal&#xA;    &lt;int&gt;: 416" type="failed">[FAILED] Expected&#xA;    &lt;int&gt;: 202&#xA;to equal&#xA;    &lt;int&gt;: 416&#xA;In [It] at: 02_push_test.go:190</failure>
              <system-err>&gt; Enter [It] Retry previous blob chunk&#xA;</system-err>
          </testcase>
          <testcase name="OCI Distribution Conformance Tests Push Cross-Repository Blob Mount Cross-mounting without from, and automatic content discovery disabled should return a 202" classname="conformance tests" status="skipped" time="0.0">
              <skipped message="skipped - you have skipped this test."></skipped>
          </testcase>
          <testcase name="OCI Distribution Conformance Tests Content Discovery Teardown Delete created manifest &amp; associated tags" classname="conformance tests" status="passed" time="0.0">
          </testcase>
          <testcase name="OCI Distribution Conformance Tests Content Management Blob delete DELETE request to blob URL should yield 202 response" classname="conformance tests" status="panicked" time="0.0">
              <error message="runtime error: index out of range" type="panicked">[PANICKED] runtime error: index out of range</error>
          </testcase>
          <testcase name="OCI Distribution Conformance Tests Content Management Blob delete GET request to deleted blob URL should yield 404 response" classname="conformance tests" status="passed" time="0.0">
          </testcase>
          <testcase name="html custom reporter" classname="conformance tests" status="passed" time="0.0">
          </testcase>
      </testsuite>
  </testsuites>"#;

    fn c(passed: usize, failed: usize, skipped: usize) -> Counts {
        Counts {
            passed,
            failed,
            skipped,
        }
    }

    #[test]
    fn parses_statuses_workflows_and_messages() {
        let cases = parse(SAMPLE).unwrap();
        assert_eq!(cases.len(), 9);
        let failed: Vec<_> = cases
            .iter()
            .filter(|c| c.status == Status::Failed)
            .collect();
        assert_eq!(failed.len(), 2);
        assert_eq!(failed[0].workflow, Workflow::Push);
        assert!(
            failed[0]
                .name
                .ends_with("Retry previous blob chunk should return 416")
        );
        assert!(
            failed[0].message.contains("<int>: 202\nto equal"),
            "{failed:?}"
        );
        assert_eq!(failed[1].workflow, Workflow::ContentManagement);
        assert_eq!(
            failed[1].message,
            "[PANICKED] runtime error: index out of range"
        );
        assert_eq!(
            cases[5].name.split(" Teardown ").nth(1),
            Some("Delete created manifest & associated tags")
        );
        assert_eq!(cases[8].workflow, Workflow::Other);
    }

    #[test]
    fn counts_per_workflow() {
        let counts = counts(&parse(SAMPLE).unwrap());
        let got: Vec<_> = counts.into_iter().collect();
        assert_eq!(
            got,
            vec![
                (Workflow::Pull, c(2, 0, 1)),
                (Workflow::Push, c(0, 1, 1)),
                (Workflow::ContentDiscovery, c(1, 0, 0)),
                (Workflow::ContentManagement, c(1, 1, 0)),
            ]
        );
    }

    #[test]
    fn failing_suite_level_node_counts_as_other() {
        let cases = vec![Case {
            name: "[BeforeSuite]".into(),
            workflow: Workflow::of_testcase("[BeforeSuite]"),
            status: Status::Failed,
            message: "boom".into(),
        }];
        assert_eq!(counts(&cases)[&Workflow::Other], c(0, 1, 0));
    }

    #[test]
    fn plain_junit_without_status_and_single_suite_root() {
        let xml = r#"<testsuite name="x">
            <testcase name="OCI Distribution Conformance Tests Pull a"/>
            <testcase name="OCI Distribution Conformance Tests Pull b"><failure message="m"/></testcase>
            <testcase name="OCI Distribution Conformance Tests Push c"><skipped/></testcase>
        </testsuite>"#;
        let cases = parse(xml).unwrap();
        let statuses: Vec<_> = cases.iter().map(|c| c.status).collect();
        assert_eq!(
            statuses,
            vec![Status::Passed, Status::Failed, Status::Skipped]
        );
        assert_eq!(cases[1].message, "m");
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(parse("<testsuites><testsuite><testcase></testsuites>").is_err());
    }

    #[test]
    fn summary_line_layout() {
        assert_eq!(
            summary_line("memory", Workflow::Pull, c(23, 0, 1)),
            "memory      pull               23 passed  0 failed  1 skipped"
        );
        assert_eq!(
            summary_line("filesystem", Workflow::ContentManagement, c(8, 12, 0)),
            "filesystem  content management  8 passed 12 failed  0 skipped"
        );
    }
}
