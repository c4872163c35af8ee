//! `export const options`: read as k6 documents it, checked field by field, and turned
//! into the engine's scenarios and thresholds.

use std::collections::BTreeMap;
use std::time::Duration;

use aiotest_core::duration::parse_duration;
use aiotest_core::scenario::{Executor, RateStage};
use aiotest_core::shape::{Stage, validate_users};
use serde::Deserialize;
use serde_json::Value;

/// A duration as k6 takes it: `"30s"`, `"1m30s"`, or a number of milliseconds.
fn duration(field: &str, v: &Value) -> Result<Duration, String> {
    match v {
        Value::String(s) => parse_duration(s).map_err(|e| format!("{field}: {e}")),
        Value::Number(n) => n
            .as_f64()
            .and_then(|ms| Duration::try_from_secs_f64(ms / 1e3).ok())
            .ok_or_else(|| format!("{field}: {n} is not a number of milliseconds")),
        other => Err(format!(
            "{field}: {other} is not a duration (write \"30s\", or milliseconds)"
        )),
    }
}

fn users(field: &str, n: u64) -> Result<u32, String> {
    validate_users(n).map_err(|e| format!("{field}: {e}"))
}

/// One stage (`{ duration, target }`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StageOpt {
    duration: Value,
    target: f64,
}

/// One of `options.scenarios`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ScenarioOpt {
    executor: String,
    exec: Option<String>,
    start_time: Option<Value>,
    graceful_stop: Option<Value>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    env: Option<Value>,
    vus: Option<u64>,
    iterations: Option<u64>,
    max_duration: Option<Value>,
    duration: Option<Value>,
    #[serde(rename = "startVUs")]
    start_vus: Option<u64>,
    stages: Option<Vec<StageOpt>>,
    graceful_ramp_down: Option<Value>,
    rate: Option<f64>,
    start_rate: Option<f64>,
    time_unit: Option<Value>,
    #[serde(rename = "preAllocatedVUs")]
    pre_allocated_vus: Option<u64>,
    #[serde(rename = "maxVUs")]
    max_vus: Option<u64>,
    /// aiotest's: how long an open-model iteration may wait for a free VU.
    max_delay: Option<Value>,
}

/// One threshold: `"p(95)<200"` or `{ threshold, abortOnFail, delayAbortEval }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum ThresholdOpt {
    Expr(String),
    Full(FullThreshold),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct FullThreshold {
    threshold: String,
    #[serde(default)]
    abort_on_fail: bool,
    delay_abort_eval: Option<Value>,
}

/// `options`, as a script exports it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct Options {
    pub(crate) vus: Option<u64>,
    pub(crate) duration: Option<Value>,
    pub(crate) iterations: Option<u64>,
    pub(crate) stages: Option<Vec<StageOpt>>,
    pub(crate) scenarios: Option<BTreeMap<String, ScenarioOpt>>,
    #[serde(default)]
    pub(crate) thresholds: BTreeMap<String, Vec<ThresholdOpt>>,
    #[serde(default)]
    pub(crate) tags: BTreeMap<String, String>,
    pub(crate) setup_timeout: Option<Value>,
    pub(crate) teardown_timeout: Option<Value>,
    #[serde(default)]
    pub(crate) no_cookies_reset: bool,
    pub(crate) max_redirects: Option<u32>,
    #[serde(rename = "insecureSkipTLSVerify", default)]
    pub(crate) insecure_skip_tls_verify: bool,
    pub(crate) user_agent: Option<String>,
    /// Names connected to other addresses (`{"shop.example.com": "127.0.0.1:8080"}`).
    #[serde(default)]
    pub(crate) hosts: BTreeMap<String, String>,
    /// `batch`, `batchPerHost`: how many requests of an `http.batch` are in flight at
    /// once, in all and to one host.
    pub(crate) batch: Option<u32>,
    pub(crate) batch_per_host: Option<u32>,
    /// The trend figures `handleSummary`'s data has.
    pub(crate) summary_trend_stats: Option<Vec<String>>,
}

/// The load of `vus`, `duration`, `iterations` and `stages` (k6's shortcuts), which the
/// command line's `-u`, `-t`, `-i` and `--stages` override one by one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Shortcut {
    /// `vus` / `-u`.
    pub vus: Option<u32>,
    /// `duration` / `-t`.
    pub duration: Option<Duration>,
    /// `iterations` / `-i`.
    pub iterations: Option<u64>,
    /// `stages` / `--stages`.
    pub stages: Option<Vec<Stage>>,
}

/// k6's default `maxDuration` of iteration executors.
const MAX_DURATION: Duration = Duration::from_secs(600);

impl Shortcut {
    /// Whether it sets anything.
    pub fn is_set(&self) -> bool {
        *self != Shortcut::default()
    }

    /// `self` with what `over` sets replacing it.
    pub fn overridden_by(&self, over: &Shortcut) -> Shortcut {
        Shortcut {
            vus: over.vus.or(self.vus),
            duration: over.duration.or(self.duration),
            iterations: over.iterations.or(self.iterations),
            stages: over.stages.clone().or_else(|| self.stages.clone()),
        }
    }

    /// The executor k6 makes of it: stages ramp VUs (from `vus`, 1 by default);
    /// iterations are shared by `vus` within `duration` (10 minutes by default); a
    /// duration keeps `vus` running; `vus` alone runs one iteration per VU; nothing at
    /// all, one iteration of one VU.
    pub fn executor(&self) -> Result<Executor, String> {
        let vus = self.vus.unwrap_or(1);
        if let Some(stages) = &self.stages {
            if self.iterations.is_some() {
                return Err("stages and iterations cannot be combined".into());
            }
            return Ok(Executor::RampingVus {
                start_vus: vus,
                stages: stages.clone(),
            });
        }
        if let Some(iterations) = self.iterations {
            if u64::from(vus) > iterations {
                return Err(format!(
                    "{iterations} iterations are fewer than the {vus} VUs that share them"
                ));
            }
            return Ok(Executor::SharedIterations {
                vus,
                iterations,
                max_duration: self.duration.unwrap_or(MAX_DURATION),
            });
        }
        if let Some(duration) = self.duration {
            return Ok(Executor::ConstantVus { vus, duration });
        }
        Ok(Executor::PerVuIterations {
            vus,
            iterations: 1,
            max_duration: MAX_DURATION,
        })
    }
}

fn stages(field: &str, list: &[StageOpt]) -> Result<Vec<Stage>, String> {
    list.iter()
        .enumerate()
        .map(|(i, s)| {
            let f = format!("{field}[{i}]");
            let d = duration(&format!("{f}.duration"), &s.duration)?;
            if s.target < 0.0 || s.target.fract() != 0.0 {
                return Err(format!("{f}.target: {} is not a number of VUs", s.target));
            }
            Ok(Stage::new(
                d,
                users(&format!("{f}.target"), s.target as u64)?,
            ))
        })
        .collect()
}

impl Options {
    /// The shortcut load the options set.
    pub(crate) fn shortcut(&self) -> Result<Shortcut, String> {
        Ok(Shortcut {
            vus: self.vus.map(|n| users("options.vus", n)).transpose()?,
            duration: self
                .duration
                .as_ref()
                .map(|d| duration("options.duration", d))
                .transpose()?,
            iterations: self.iterations,
            stages: self
                .stages
                .as_ref()
                .map(|s| stages("options.stages", s))
                .transpose()?,
        })
    }

    /// The thresholds as the runner's expressions (`metric{filter} p(95)<200[:abort]`).
    pub(crate) fn threshold_exprs(&self) -> Result<Vec<String>, String> {
        let mut out = Vec::new();
        for (metric, list) in &self.thresholds {
            for (i, t) in list.iter().enumerate() {
                let field = format!("options.thresholds[\"{metric}\"][{i}]");
                let (expr, abort) = match t {
                    ThresholdOpt::Expr(e) => (e.as_str(), false),
                    ThresholdOpt::Full(f) => {
                        if f.delay_abort_eval.is_some() {
                            return Err(format!(
                                "{field}.delayAbortEval is not supported by aiotest yet"
                            ));
                        }
                        (f.threshold.as_str(), f.abort_on_fail)
                    }
                };
                out.push(format!(
                    "{metric} {expr}{}",
                    if abort { ":abort" } else { "" }
                ));
            }
        }
        Ok(out)
    }
}

/// A scenario of `options.scenarios`, as the engine runs it.
pub(crate) struct ScenarioPlan {
    pub(crate) name: String,
    /// The exported function its VUs call.
    pub(crate) exec: String,
    pub(crate) executor: Executor,
    pub(crate) start_time: Option<Duration>,
    pub(crate) graceful_stop: Option<Duration>,
    pub(crate) tags: Vec<(String, String)>,
}

/// The fields each executor takes (besides executor, exec, startTime, gracefulStop,
/// tags).
const FIELDS: &[(&str, &[&str])] = &[
    ("shared-iterations", &["vus", "iterations", "maxDuration"]),
    ("per-vu-iterations", &["vus", "iterations", "maxDuration"]),
    ("constant-vus", &["vus", "duration"]),
    ("ramping-vus", &["startVUs", "stages", "gracefulRampDown"]),
    (
        "constant-arrival-rate",
        &[
            "rate",
            "timeUnit",
            "duration",
            "preAllocatedVUs",
            "maxVUs",
            "maxDelay",
        ],
    ),
    (
        "ramping-arrival-rate",
        &[
            "startRate",
            "timeUnit",
            "stages",
            "preAllocatedVUs",
            "maxVUs",
            "maxDelay",
        ],
    ),
    ("externally-controlled", &["vus", "maxVUs", "duration"]),
];

impl ScenarioOpt {
    fn set_fields(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        let mut add = |name: &'static str, set: bool| {
            if set {
                out.push(name);
            }
        };
        add("vus", self.vus.is_some());
        add("iterations", self.iterations.is_some());
        add("maxDuration", self.max_duration.is_some());
        add("duration", self.duration.is_some());
        add("startVUs", self.start_vus.is_some());
        add("stages", self.stages.is_some());
        add("gracefulRampDown", self.graceful_ramp_down.is_some());
        add("rate", self.rate.is_some());
        add("startRate", self.start_rate.is_some());
        add("timeUnit", self.time_unit.is_some());
        add("preAllocatedVUs", self.pre_allocated_vus.is_some());
        add("maxVUs", self.max_vus.is_some());
        add("maxDelay", self.max_delay.is_some());
        out
    }

    /// The engine's form of scenario `name`.
    pub(crate) fn plan(&self, name: &str) -> Result<ScenarioPlan, String> {
        let field = format!("options.scenarios.{name}");
        let f = |n: &str| format!("{field}.{n}");
        let kind = self.executor.as_str();
        let Some((_, allowed)) = FIELDS.iter().find(|(k, _)| *k == kind) else {
            let kinds: Vec<&str> = FIELDS.iter().map(|(k, _)| *k).collect();
            return Err(format!(
                "{}: `{kind}` is not an executor: use {}",
                f("executor"),
                kinds.join(", ")
            ));
        };
        for set in self.set_fields() {
            if !allowed.contains(&set) {
                return Err(format!(
                    "{}: `{kind}` takes no {set} (it takes {})",
                    f(set),
                    allowed.join(", ")
                ));
            }
        }
        if self.env.is_some() {
            return Err(format!(
                "{}: per-scenario env is not supported by aiotest yet",
                f("env")
            ));
        }
        if self.graceful_ramp_down.is_some() {
            return Err(format!(
                "{}: not supported by aiotest yet (VUs ramped down stop at their iteration's end)",
                f("gracefulRampDown")
            ));
        }
        let need = |v: Option<&Value>, n: &str| -> Result<Duration, String> {
            match v {
                Some(v) => duration(&f(n), v),
                None => Err(format!("{}: `{kind}` needs {n}", f(n))),
            }
        };
        let vus = |n: Option<u64>, name: &str| -> Result<u32, String> {
            n.map_or(Ok(1), |n| users(&f(name), n))
        };
        let time_unit = match &self.time_unit {
            Some(t) => duration(&f("timeUnit"), t)?,
            None => Duration::from_secs(1),
        };
        let max_duration = match &self.max_duration {
            Some(d) => duration(&f("maxDuration"), d)?,
            None => MAX_DURATION,
        };
        let executor = match kind {
            "shared-iterations" => Executor::SharedIterations {
                vus: vus(self.vus, "vus")?,
                iterations: self.iterations.unwrap_or(1),
                max_duration,
            },
            "per-vu-iterations" => Executor::PerVuIterations {
                vus: vus(self.vus, "vus")?,
                iterations: self.iterations.unwrap_or(1),
                max_duration,
            },
            "constant-vus" => Executor::ConstantVus {
                vus: vus(self.vus, "vus")?,
                duration: need(self.duration.as_ref(), "duration")?,
            },
            "ramping-vus" => Executor::RampingVus {
                start_vus: vus(self.start_vus, "startVUs")?,
                stages: stages(
                    &f("stages"),
                    self.stages
                        .as_deref()
                        .ok_or_else(|| format!("{}: `{kind}` needs stages", f("stages")))?,
                )?,
            },
            "constant-arrival-rate" | "ramping-arrival-rate" => {
                let pre = users(
                    &f("preAllocatedVUs"),
                    self.pre_allocated_vus.ok_or_else(|| {
                        format!("{}: `{kind}` needs preAllocatedVUs", f("preAllocatedVUs"))
                    })?,
                )?;
                let max_vus = self.max_vus.map_or(Ok(pre), |n| users(&f("maxVUs"), n))?;
                let max_delay = match &self.max_delay {
                    Some(d) => duration(&f("maxDelay"), d)?,
                    None => Duration::ZERO,
                };
                if kind == "constant-arrival-rate" {
                    Executor::ConstantArrivalRate {
                        rate: self
                            .rate
                            .ok_or_else(|| format!("{}: `{kind}` needs rate", f("rate")))?,
                        time_unit,
                        duration: need(self.duration.as_ref(), "duration")?,
                        pre_allocated_vus: pre,
                        max_vus,
                        max_delay,
                    }
                } else {
                    let list = self
                        .stages
                        .as_deref()
                        .ok_or_else(|| format!("{}: `{kind}` needs stages", f("stages")))?;
                    let mut out = Vec::new();
                    for (i, s) in list.iter().enumerate() {
                        let d = duration(&format!("{}[{i}].duration", f("stages")), &s.duration)?;
                        out.push(RateStage::new(d, s.target));
                    }
                    Executor::RampingArrivalRate {
                        start_rate: self.start_rate.unwrap_or(0.0),
                        time_unit,
                        stages: out,
                        pre_allocated_vus: pre,
                        max_vus,
                        max_delay,
                    }
                }
            }
            _ => {
                let v = vus(self.vus, "vus")?;
                Executor::ExternallyControlled {
                    vus: v,
                    max_vus: self.max_vus.map_or(Ok(v), |n| users(&f("maxVUs"), n))?,
                    duration: self
                        .duration
                        .as_ref()
                        .map(|d| duration(&f("duration"), d))
                        .transpose()?,
                }
            }
        };
        Ok(ScenarioPlan {
            name: name.to_owned(),
            exec: self.exec.clone().unwrap_or_else(|| "default".into()),
            executor,
            start_time: self
                .start_time
                .as_ref()
                .map(|d| duration(&f("startTime"), d))
                .transpose()?,
            graceful_stop: self
                .graceful_stop
                .as_ref()
                .map(|d| duration(&f("gracefulStop"), d))
                .transpose()?,
            tags: self
                .tags
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(json: &str) -> Result<Options, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn shortcuts_become_k6s_executors() {
        let o = options(r#"{"vus": 5, "duration": "30s"}"#).expect("valid");
        let s = o.shortcut().expect("valid");
        assert!(matches!(
            s.executor(),
            Ok(Executor::ConstantVus { vus: 5, duration }) if duration == Duration::from_secs(30)
        ));
        // The command line overrides one field at a time.
        let over = Shortcut {
            vus: Some(2),
            ..Shortcut::default()
        };
        assert!(matches!(
            s.overridden_by(&over).executor(),
            Ok(Executor::ConstantVus { vus: 2, duration }) if duration == Duration::from_secs(30)
        ));
        let o = options(r#"{"iterations": 10, "vus": 2}"#).expect("valid");
        assert!(matches!(
            o.shortcut().and_then(|s| s.executor()),
            Ok(Executor::SharedIterations {
                vus: 2,
                iterations: 10,
                ..
            })
        ));
        let o = options(
            r#"{"stages": [{"duration": "10s", "target": 20}, {"duration": 5000, "target": 0}]}"#,
        )
        .expect("valid");
        let Ok(Executor::RampingVus { start_vus, stages }) =
            o.shortcut().and_then(|s| s.executor())
        else {
            panic!("ramping-vus expected");
        };
        assert_eq!(start_vus, 1);
        assert_eq!(stages[1].duration, Duration::from_secs(5));
        assert!(matches!(
            Shortcut::default().executor(),
            Ok(Executor::PerVuIterations { vus: 1, iterations: 1, max_duration }) if max_duration == MAX_DURATION
        ));
    }

    #[test]
    fn a_wrong_option_is_named() {
        let e = options(r#"{"vus": 1, "duraton": "1s"}"#).expect_err("a typo");
        assert!(e.contains("unknown field `duraton`"), "{e}");
        let o = options(r#"{"duration": "1x"}"#).expect("parses");
        let e = o.shortcut().expect_err("a bad duration");
        assert!(
            e.starts_with("options.duration: invalid duration `1x`"),
            "{e}"
        );
        let o = options(
            r#"{"scenarios": {"api": {"executor": "constant-vus", "vus": 2, "rate": 3, "duration": "1s"}}}"#,
        )
        .expect("parses");
        let e = o.scenarios.as_ref().expect("set")["api"]
            .plan("api")
            .err()
            .expect("rate is not constant-vus'");
        assert!(
            e.starts_with("options.scenarios.api.rate: `constant-vus` takes no rate"),
            "{e}"
        );
        let o = options(r#"{"scenarios": {"a": {"executor": "constant-arrival-rate", "rate": 3, "duration": "1s"}}}"#)
            .expect("parses");
        let e = o.scenarios.as_ref().expect("set")["a"]
            .plan("a")
            .err()
            .expect("needs VUs");
        assert!(e.contains("needs preAllocatedVUs"), "{e}");
    }

    #[test]
    fn thresholds_read_as_the_runner_writes_them() {
        let o = options(
            r#"{"thresholds": {"http_req_duration{name:home}": ["p(95)<200", {"threshold": "avg<100", "abortOnFail": true}]}}"#,
        )
        .expect("valid");
        assert_eq!(
            o.threshold_exprs().expect("valid"),
            vec![
                "http_req_duration{name:home} p(95)<200".to_owned(),
                "http_req_duration{name:home} avg<100:abort".to_owned()
            ]
        );
    }
}
