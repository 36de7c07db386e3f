//! `pipe run --junit FILE`: the run's gates as JUnit XML (the dialect Jenkins,
//! GitLab and GitHub test reporters read), so CI shows each gate as a test.
//!
//! One `<testsuite>` per stage that has gates, one `<testcase>` per gate; a
//! stage that failed to run is a test case with an `<error>`, so a broken run
//! never reads as "no tests, all green".

use crate::cache::GateRecord;
use crate::run::RunSummary;

/// One stage's gates.
pub struct StageGates<'a> {
    pub name: &'a str,
    pub seconds: f64,
    pub gates: &'a [GateRecord],
}

/// The XML for a finished (or failed) run.
pub fn run_junit_xml(recipe_name: &str, summary: &RunSummary) -> String {
    let stages: Vec<StageGates<'_>> = summary
        .stages
        .iter()
        .map(|s| StageGates {
            name: &s.name,
            seconds: s.seconds,
            gates: &s.manifest.report.gates,
        })
        .collect();
    let error = summary
        .error
        .as_ref()
        .map(|(stage, e)| (stage.as_str(), e.to_string()));
    junit_xml(
        recipe_name,
        &stages,
        error.as_ref().map(|(s, e)| (*s, e.as_str())),
    )
}

/// The XML for stages' gates and, when the run failed, the failing stage and its error.
pub fn junit_xml(
    recipe_name: &str,
    stages: &[StageGates<'_>],
    error: Option<(&str, &str)>,
) -> String {
    let mut suites = String::new();
    let (mut tests, mut failures, mut errors) = (0, 0, 0);
    for stage in stages {
        let gates = stage.gates;
        if gates.is_empty() {
            continue;
        }
        let failed = gates.iter().filter(|g| !g.passed).count();
        suites.push_str(&format!(
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failed}\" errors=\"0\" skipped=\"0\">\n",
            escape(stage.name),
            gates.len()
        ));
        for g in gates {
            let attrs = format!(
                "name=\"{}: {}\" classname=\"pipe.gates.{}\" time=\"{:.3}\"",
                escape(&g.metric),
                escape(&g.condition),
                escape(stage.name),
                stage.seconds
            );
            let message = format!(
                "{} = {:.4}, needs {} (threshold {:.4})",
                g.metric, g.value, g.condition, g.threshold
            );
            if g.passed {
                suites.push_str(&format!(
                    "    <testcase {attrs}>\n      <system-out>{}</system-out>\n    </testcase>\n",
                    escape(&message)
                ));
            } else {
                suites.push_str(&format!(
                    "    <testcase {attrs}>\n      <failure type=\"GateFailed\" message=\"{m}\">{m}</failure>\n    </testcase>\n",
                    m = escape(&format!("{message}: failed by {:.4}", (g.value - g.threshold).abs()))
                ));
            }
        }
        suites.push_str("  </testsuite>\n");
        tests += gates.len();
        failures += failed;
    }
    if let Some((stage, error)) = error {
        suites.push_str(&format!(
            "  <testsuite name=\"{s}\" tests=\"1\" failures=\"0\" errors=\"1\" skipped=\"0\">\n    <testcase name=\"stage {s} runs\" classname=\"pipe.stages.{s}\">\n      <error type=\"StageFailed\" message=\"{m}\">{m}</error>\n    </testcase>\n  </testsuite>\n",
            s = escape(stage),
            m = escape(error)
        ));
        tests += 1;
        errors += 1;
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"{}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\">\n{suites}</testsuites>\n",
        escape(recipe_name)
    )
}

/// XML attribute/text escaping; control characters XML 1.0 forbids are dropped.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(metric: &str, value: f64, threshold: f64, passed: bool) -> GateRecord {
        GateRecord {
            metric: metric.into(),
            condition: format!(">= {threshold}"),
            value,
            threshold,
            passed,
        }
    }

    #[test]
    fn gates_become_test_cases_and_a_failed_stage_an_error() {
        let gates = [
            gate("bleu", 13.0, 12.0, true),
            gate("rougeL", 0.1, 0.3, false),
        ];
        let stages = [
            StageGates {
                name: "train",
                seconds: 1.0,
                gates: &[],
            },
            StageGates {
                name: "report<1>",
                seconds: 2.5,
                gates: &gates,
            },
        ];
        let x = junit_xml("legal", &stages, None);
        assert!(
            x.contains("<testsuites name=\"legal\" tests=\"2\" failures=\"1\" errors=\"0\">"),
            "{x}"
        );
        assert!(
            x.contains("<testsuite name=\"report&lt;1&gt;\" tests=\"2\" failures=\"1\""),
            "{x}"
        );
        assert_eq!(x.matches("<failure").count(), 1);
        assert!(x.contains("name=\"rougeL: &gt;= 0.3\""), "{x}");
        assert!(x.contains("failed by 0.2000"), "{x}");
        assert!(
            !x.contains("train"),
            "stages without gates are left out: {x}"
        );

        let x = junit_xml("legal", &stages[..1], Some(("train", "out of memory")));
        assert!(x.contains("tests=\"1\" failures=\"0\" errors=\"1\""), "{x}");
        assert!(
            x.contains("<error type=\"StageFailed\" message=\"out of memory\">"),
            "{x}"
        );
    }

    #[test]
    fn escapes_markup_and_drops_control_characters() {
        assert_eq!(escape("a<b & \"c\"\u{1}"), "a&lt;b &amp; &quot;c&quot;");
    }
}
