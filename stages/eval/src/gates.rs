//! CI gates such as `rougeL: ">= 0.30"` or `f1_macro: ">= base + 0.05"`,
//! evaluated against the adapter's metrics (and the base model's, for `base`),
//! and their JUnit XML form for CI systems.

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

/// The right-hand side: a number, or the base model's value of the same metric adjusted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    Value(f64),
    /// `base + x` (x may be negative: `base - 0.01`).
    BasePlus(f64),
    /// `base * x`.
    BaseTimes(f64),
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
        let threshold = if let Some(r) = rest.strip_prefix("base") {
            let r = r.trim();
            if r.is_empty() {
                Threshold::BasePlus(0.0)
            } else if let Some(x) = r.strip_prefix('+') {
                Threshold::BasePlus(number(x)?)
            } else if let Some(x) = r.strip_prefix('-') {
                Threshold::BasePlus(-number(x)?)
            } else if let Some(x) = r.strip_prefix('*') {
                Threshold::BaseTimes(number(x)?)
            } else {
                return Err(err("after `base` write `+ x`, `- x` or `* x`"));
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

    pub fn needs_base(&self) -> bool {
        !matches!(self.threshold, Threshold::Value(_))
    }

    /// Evaluate against the adapter's metrics and, for `base` gates, the base model's.
    pub fn evaluate(
        &self,
        metrics: &BTreeMap<String, f64>,
        base: Option<&BTreeMap<String, f64>>,
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
        let base_value = || -> Result<f64, EvalError> {
            base.and_then(|b| b.get(&self.metric).copied())
                .ok_or_else(|| {
                    err(
                        "`base` needs `compare_base: true` so that the base model is scored too"
                            .to_owned(),
                    )
                })
        };
        let threshold = match self.threshold {
            Threshold::Value(v) => v,
            Threshold::BasePlus(x) => base_value()? + x,
            Threshold::BaseTimes(x) => base_value()? * x,
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

    #[test]
    fn parse_and_evaluate() {
        let g = Gate::parse("rougeL", ">= 0.30").unwrap();
        assert_eq!(g.threshold, Threshold::Value(0.30));
        let out = g.evaluate(&m(&[("rougeL", 0.28)]), None).unwrap();
        assert!(!out.passed);
        assert!(
            out.describe().contains("FAILED by 0.0200"),
            "{}",
            out.describe()
        );

        let g = Gate::parse("f1_macro", ">= base + 0.05").unwrap();
        assert_eq!(g.threshold, Threshold::BasePlus(0.05));
        let out = g
            .evaluate(&m(&[("f1_macro", 0.61)]), Some(&m(&[("f1_macro", 0.55)])))
            .unwrap();
        assert!(out.passed && (out.threshold - 0.60).abs() < 1e-12);
        assert!(g.evaluate(&m(&[("f1_macro", 0.61)]), None).is_err());

        assert_eq!(
            Gate::parse("loss", "< base - 0.1").unwrap().threshold,
            Threshold::BasePlus(-0.1)
        );
        assert_eq!(
            Gate::parse("bleu", "> base * 1.5").unwrap().threshold,
            Threshold::BaseTimes(1.5)
        );
        assert!(Gate::parse("bleu", "about 12").is_err());
        assert!(Gate::parse("bleu", ">= twelve").is_err());
        assert!(Gate::parse("bleu", ">= base ^ 2").is_err());
        let e = Gate::parse("bleu", ">= 12")
            .unwrap()
            .evaluate(&m(&[("rougeL", 1.0)]), None)
            .unwrap_err();
        assert!(e.to_string().contains("computed: rougeL"), "{e}");
    }
}
