//! CI gates such as `rougeL: ">= 0.30"`, `f1_macro: ">= base + 0.05"` or
//! `f1_macro: ">= prompted + 0.05"`, evaluated against the adapter's metrics
//! (and another system's, when the threshold names one).

use std::collections::BTreeMap;

use crate::error::EvalError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Ge,
    Gt,
    Le,
    Lt,
    Eq,
}

impl Op {
    fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Op::Ge => value >= threshold,
            Op::Gt => value > threshold,
            Op::Le => value <= threshold,
            Op::Lt => value < threshold,
            Op::Eq => (value - threshold).abs() <= 1e-12,
        }
    }
    fn symbol(self) -> &'static str {
        match self {
            Op::Ge => ">=",
            Op::Gt => ">",
            Op::Le => "<=",
            Op::Lt => "<",
            Op::Eq => "==",
        }
    }
}

/// The right-hand side: a number, or another system's value of the same
/// metric adjusted: `base + 0.05`, `prompted - 0.02`, `base * 1.1`.
#[derive(Debug, Clone, PartialEq)]
pub enum Threshold {
    Value(f64),
    /// `<system> + x` (x may be negative: `base - 0.01`).
    Plus(String, f64),
    /// `<system> * x`.
    Times(String, f64),
}

/// One parsed gate.
#[derive(Debug, Clone, PartialEq)]
pub struct Gate {
    pub metric: String,
    /// As written.
    pub condition: String,
    pub op: Op,
    pub threshold: Threshold,
}

impl Gate {
    /// Parses `">= 0.30"`, `"> base"`, `">= base + 0.05"`, `"<= base * 1.1"`, `"< 2.5"`.
    pub fn parse(metric: &str, condition: &str) -> Result<Gate, EvalError> {
        let err = |message: &str| EvalError::Gate {
            metric: metric.to_owned(),
            condition: condition.to_owned(),
            message: message.to_owned(),
        };
        let c = condition.trim();
        let (op, rest) = [(">=", Op::Ge), ("<=", Op::Le), ("==", Op::Eq), (">", Op::Gt), ("<", Op::Lt)]
            .into_iter()
            .find_map(|(s, op)| c.strip_prefix(s).map(|r| (op, r.trim())))
            .ok_or_else(|| err("start with one of >=, >, <=, <, == (for example \">= 0.30\" or \">= base + 0.05\")"))?;
        let number = |s: &str| -> Result<f64, EvalError> {
            s.trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| err(&format!("`{}` is not a number", s.trim())))
        };
        let name_len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let threshold = if rest.starts_with(|c: char| c.is_ascii_alphabetic()) {
            let (system, r) = rest.split_at(name_len);
            let system = system.to_owned();
            let r = r.trim();
            if r.is_empty() {
                Threshold::Plus(system, 0.0)
            } else if let Some(x) = r.strip_prefix('+') {
                Threshold::Plus(system, number(x)?)
            } else if let Some(x) = r.strip_prefix('-') {
                Threshold::Plus(system, -number(x)?)
            } else if let Some(x) = r.strip_prefix('*') {
                Threshold::Times(system, number(x)?)
            } else {
                return Err(err(&format!(
                    "after `{system}` write `+ x`, `- x` or `* x`"
                )));
            }
        } else {
            Threshold::Value(number(rest)?)
        };
        Ok(Gate {
            metric: metric.to_owned(),
            condition: condition.to_owned(),
            op,
            threshold,
        })
    }

    /// The system the threshold refers to (`base`, `prompted`, a compared adapter), if any.
    pub fn reference(&self) -> Option<&str> {
        match &self.threshold {
            Threshold::Value(_) => None,
            Threshold::Plus(s, _) | Threshold::Times(s, _) => Some(s),
        }
    }

    /// Evaluate against the metrics of the system under test; `others` holds
    /// the metrics of the systems a threshold may name.
    pub fn evaluate(
        &self,
        metrics: &BTreeMap<String, f64>,
        others: &BTreeMap<String, BTreeMap<String, f64>>,
    ) -> Result<GateOutcome, EvalError> {
        let err = |message: String| EvalError::Gate {
            metric: self.metric.clone(),
            condition: self.condition.clone(),
            message,
        };
        let value = *metrics.get(&self.metric).ok_or_else(|| {
            err(format!(
                "the stage computed no metric `{}`; computed: {}",
                self.metric,
                metrics.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })?;
        let other = |system: &str| -> Result<f64, EvalError> {
            let m = others.get(system).ok_or_else(|| {
                err(format!(
                    "no system `{system}` was evaluated (`base` needs `compare_base: true`, \
                     `prompted` needs `compare_prompted`); evaluated: {}",
                    others.keys().cloned().collect::<Vec<_>>().join(", ")
                ))
            })?;
            m.get(&self.metric)
                .copied()
                .ok_or_else(|| err(format!("system `{system}` has no metric `{}`", self.metric)))
        };
        let threshold = match &self.threshold {
            Threshold::Value(v) => *v,
            Threshold::Plus(s, x) => other(s)? + x,
            Threshold::Times(s, x) => other(s)? * x,
        };
        Ok(GateOutcome {
            metric: self.metric.clone(),
            condition: self.condition.clone(),
            value,
            threshold,
            passed: self.op.holds(value, threshold),
            op: self.op.symbol().to_owned(),
        })
    }
}

/// An evaluated gate (mirrors the engine's `GateResult`, plus the operator for messages).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GateOutcome {
    pub metric: String,
    pub condition: String,
    pub value: f64,
    pub threshold: f64,
    pub passed: bool,
    pub op: String,
}

impl GateOutcome {
    /// `rougeL 0.2812 >= 0.3000: FAILED by 0.0188`.
    pub fn describe(&self) -> String {
        let verdict = if self.passed {
            "passed".to_owned()
        } else {
            format!("FAILED by {:.4}", (self.value - self.threshold).abs())
        };
        format!(
            "{} {:.4} {} {:.4} ({}): {verdict}",
            self.metric, self.value, self.op, self.threshold, self.condition
        )
    }
}

/// Parses a `gates:` map (metric -> condition), sorted by metric.
pub fn parse_gates(gates: &BTreeMap<String, String>) -> Result<Vec<Gate>, EvalError> {
    gates.iter().map(|(m, c)| Gate::parse(m, c)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    fn none() -> BTreeMap<String, BTreeMap<String, f64>> {
        BTreeMap::new()
    }

    fn sys(name: &str, pairs: &[(&str, f64)]) -> BTreeMap<String, BTreeMap<String, f64>> {
        BTreeMap::from([(name.to_string(), m(pairs))])
    }

    #[test]
    fn parse_and_evaluate() {
        let g = Gate::parse("rougeL", ">= 0.30").unwrap();
        assert_eq!(g.threshold, Threshold::Value(0.30));
        let out = g.evaluate(&m(&[("rougeL", 0.28)]), &none()).unwrap();
        assert!(!out.passed);
        assert!(
            out.describe().contains("FAILED by 0.0200"),
            "{}",
            out.describe()
        );

        let g = Gate::parse("f1_macro", ">= base + 0.05").unwrap();
        assert_eq!(g.threshold, Threshold::Plus("base".into(), 0.05));
        let out = g
            .evaluate(
                &m(&[("f1_macro", 0.61)]),
                &sys("base", &[("f1_macro", 0.55)]),
            )
            .unwrap();
        assert!(out.passed && (out.threshold - 0.60).abs() < 1e-12);
        assert!(g.evaluate(&m(&[("f1_macro", 0.61)]), &none()).is_err());

        assert_eq!(
            Gate::parse("loss", "< base - 0.1").unwrap().threshold,
            Threshold::Plus("base".into(), -0.1)
        );
        assert_eq!(
            Gate::parse("bleu", "> base * 1.5").unwrap().threshold,
            Threshold::Times("base".into(), 1.5)
        );
        assert!(Gate::parse("bleu", "about 12").is_err());
        // A word is a system name; the stage's validation rejects unknown ones.
        assert_eq!(
            Gate::parse("bleu", ">= twelve").unwrap().reference(),
            Some("twelve")
        );
        assert!(Gate::parse("bleu", ">= 12x").is_err());
        assert!(Gate::parse("bleu", ">= base ^ 2").is_err());
        let e = Gate::parse("bleu", ">= 12")
            .unwrap()
            .evaluate(&m(&[("rougeL", 1.0)]), &none())
            .unwrap_err();
        assert!(e.to_string().contains("computed: rougeL"), "{e}");

        // The prompt-only baseline and per-task metrics (#9, #6).
        let g = Gate::parse("f1_macro/hearsay", ">= prompted + 0.05").unwrap();
        assert_eq!(g.reference(), Some("prompted"));
        let out = g
            .evaluate(
                &m(&[("f1_macro/hearsay", 0.70)]),
                &sys("prompted", &[("f1_macro/hearsay", 0.66)]),
            )
            .unwrap();
        assert!(!out.passed && (out.threshold - 0.71).abs() < 1e-12);
        let e = g
            .evaluate(&m(&[("f1_macro/hearsay", 0.7)]), &sys("base", &[]))
            .unwrap_err();
        assert!(e.to_string().contains("compare_prompted"), "{e}");
        assert!(Gate::parse("acc", ">= base-0.02").is_ok());
    }
}
