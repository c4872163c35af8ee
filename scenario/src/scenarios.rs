//! `[[scenarios]]` in a scenario file: k6's scenarios, with its field names in snake
//! case. Each names the `[[users]]` types it runs (all of them by default) and an
//! executor with that executor's fields; a field another executor takes is an error
//! here, so a typo or a misplaced field never goes unnoticed.

use std::collections::BTreeMap;
use std::time::Duration;

use aiotest_core::scenario::{Executor, RateStage, Scenario, ScenarioError};
use aiotest_core::shape::{Stage, validate_users};
use aiotest_core::user::UserType;
use serde::Deserialize;
use toml::Spanned;

use super::{Ctx, ScenarioError as FileError};
use aiotest_core::duration::parse_duration;

/// One `[[scenarios]]` table as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ScenarioSpec {
    name: Spanned<String>,
    executor: Spanned<String>,
    users: Option<Spanned<Vec<Spanned<String>>>>,
    start_time: Option<Spanned<String>>,
    graceful_stop: Option<Spanned<String>>,
    #[serde(default)]
    tags: BTreeMap<String, Spanned<String>>,
    vus: Option<Spanned<u64>>,
    iterations: Option<Spanned<u64>>,
    max_duration: Option<Spanned<String>>,
    duration: Option<Spanned<String>>,
    start_vus: Option<Spanned<u64>>,
    stages: Option<Spanned<Vec<Spanned<StageSpec>>>>,
    rate: Option<Spanned<f64>>,
    start_rate: Option<Spanned<f64>>,
    time_unit: Option<Spanned<String>>,
    pre_allocated_vus: Option<Spanned<u64>>,
    max_vus: Option<Spanned<u64>>,
    max_delay: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StageSpec {
    duration: Spanned<String>,
    target: Spanned<f64>,
}

/// The fields each executor takes (besides name, executor, users, start_time,
/// graceful_stop and tags).
const FIELDS: &[(&str, &[&str])] = &[
    ("shared-iterations", &["vus", "iterations", "max_duration"]),
    ("per-vu-iterations", &["vus", "iterations", "max_duration"]),
    ("constant-vus", &["vus", "duration"]),
    ("ramping-vus", &["start_vus", "stages"]),
    (
        "constant-arrival-rate",
        &[
            "rate",
            "time_unit",
            "duration",
            "pre_allocated_vus",
            "max_vus",
            "max_delay",
        ],
    ),
    (
        "ramping-arrival-rate",
        &[
            "start_rate",
            "time_unit",
            "stages",
            "pre_allocated_vus",
            "max_vus",
            "max_delay",
        ],
    ),
    ("externally-controlled", &["vus", "max_vus", "duration"]),
];

impl ScenarioSpec {
    /// The fields set, with their spans.
    fn set_fields(&self) -> Vec<(&'static str, std::ops::Range<usize>)> {
        let mut out = Vec::new();
        let mut add = |name: &'static str, span: Option<std::ops::Range<usize>>| {
            if let Some(s) = span {
                out.push((name, s));
            }
        };
        add("vus", self.vus.as_ref().map(Spanned::span));
        add("iterations", self.iterations.as_ref().map(Spanned::span));
        add(
            "max_duration",
            self.max_duration.as_ref().map(Spanned::span),
        );
        add("duration", self.duration.as_ref().map(Spanned::span));
        add("start_vus", self.start_vus.as_ref().map(Spanned::span));
        add("stages", self.stages.as_ref().map(Spanned::span));
        add("rate", self.rate.as_ref().map(Spanned::span));
        add("start_rate", self.start_rate.as_ref().map(Spanned::span));
        add("time_unit", self.time_unit.as_ref().map(Spanned::span));
        add(
            "pre_allocated_vus",
            self.pre_allocated_vus.as_ref().map(Spanned::span),
        );
        add("max_vus", self.max_vus.as_ref().map(Spanned::span));
        add("max_delay", self.max_delay.as_ref().map(Spanned::span));
        out
    }

    /// The span of field `name`, for errors about it.
    fn span_of(&self, name: &str) -> Option<std::ops::Range<usize>> {
        self.set_fields()
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, s)| s)
    }
}

/// Builds the file's scenarios over its user types.
pub(super) fn build(
    cx: &Ctx<'_>,
    specs: &[Spanned<ScenarioSpec>],
    types: &[UserType],
    untasked: &[String],
) -> Result<Vec<Scenario>, FileError> {
    let mut out: Vec<Scenario> = Vec::new();
    for (i, spanned) in specs.iter().enumerate() {
        let field = format!("scenarios[{i}]");
        let spec = spanned.get_ref();
        let name = spec.name.get_ref();
        if out.iter().any(|s| s.name() == name) {
            return cx.err(
                Some(spec.name.span()),
                format!("{field}.name"),
                format!("`{name}` is used twice"),
            );
        }
        let executor = executor(cx, &field, spanned)?;
        let chosen = match &spec.users {
            None => types.to_vec(),
            Some(list) => {
                let mut chosen = Vec::new();
                for u in list.get_ref() {
                    match types.iter().find(|t| t.name() == u.get_ref()) {
                        Some(t) => chosen.push(t.clone()),
                        // Its tasks were all left out by --tags/--exclude-tags.
                        None if untasked.contains(u.get_ref()) => {}
                        None => {
                            let known: Vec<&str> = types.iter().map(UserType::name).collect();
                            return cx.err(
                                Some(u.span()),
                                format!("{field}.users"),
                                format!(
                                    "no [[users]] type is named `{}`; the types are: {}",
                                    u.get_ref(),
                                    known.join(", ")
                                ),
                            );
                        }
                    }
                }
                chosen
            }
        };
        if chosen.is_empty() && !untasked.is_empty() {
            return cx.err(
                Some(spanned.span()),
                field,
                format!(
                    "scenario `{name}`: the tags given leave none of its user types a task ({} have none)",
                    untasked.join(", ")
                ),
            );
        }
        let built = Scenario::new(name.clone(), chosen, executor).or_else(|e| {
            let (f, span) = match &e {
                ScenarioError::Executor { field: f, .. } => (
                    format!("{field}.{f}"),
                    spec.span_of(f).or(Some(spanned.span())),
                ),
                ScenarioError::BadName(_) => (format!("{field}.name"), Some(spec.name.span())),
                _ => (field.clone(), Some(spanned.span())),
            };
            let why = match e {
                ScenarioError::Executor { why, .. } => why,
                other => other.to_string(),
            };
            cx.err(span, f, why)
        })?;
        let mut sc = built;
        if let Some(t) = &spec.start_time {
            let d = duration(cx, &format!("{field}.start_time"), t)?;
            sc = sc.start_time(d);
        }
        if let Some(t) = &spec.graceful_stop {
            let d = duration(cx, &format!("{field}.graceful_stop"), t)?;
            sc = sc.graceful_stop(d);
        }
        for (k, v) in &spec.tags {
            sc = sc.tag(k.clone(), v.get_ref().clone());
        }
        out.push(sc);
    }
    Ok(out)
}

fn duration(cx: &Ctx<'_>, field: &str, s: &Spanned<String>) -> Result<Duration, FileError> {
    parse_duration(s.get_ref()).or_else(|e| cx.err(Some(s.span()), field, e))
}

fn users(cx: &Ctx<'_>, field: &str, n: &Spanned<u64>) -> Result<u32, FileError> {
    validate_users(*n.get_ref()).or_else(|e| cx.err(Some(n.span()), field, e.to_string()))
}

/// The executor of one `[[scenarios]]` table: its kind, then its fields, each checked.
fn executor(
    cx: &Ctx<'_>,
    field: &str,
    spanned: &Spanned<ScenarioSpec>,
) -> Result<Executor, FileError> {
    let spec = spanned.get_ref();
    let kind = spec.executor.get_ref().as_str();
    let Some((_, allowed)) = FIELDS.iter().find(|(k, _)| *k == kind) else {
        let kinds: Vec<&str> = FIELDS.iter().map(|(k, _)| *k).collect();
        return cx.err(
            Some(spec.executor.span()),
            format!("{field}.executor"),
            format!("`{kind}` is not an executor: use {}", kinds.join(", ")),
        );
    };
    for (name, span) in spec.set_fields() {
        if !allowed.contains(&name) {
            return cx.err(
                Some(span),
                format!("{field}.{name}"),
                format!("`{kind}` takes no {name} (it takes {})", allowed.join(", ")),
            );
        }
    }
    let f = |name: &str| format!("{field}.{name}");
    let time_unit = match &spec.time_unit {
        Some(t) => duration(cx, &f("time_unit"), t)?,
        None => Duration::from_secs(1),
    };
    macro_rules! required {
        ($opt:expr, $name:literal) => {
            match &$opt {
                Some(v) => v,
                None => {
                    return cx.err(
                        Some(spanned.span()),
                        f($name),
                        format!("`{kind}` needs {}", $name),
                    );
                }
            }
        };
    }
    Ok(match kind {
        "shared-iterations" | "per-vu-iterations" => {
            let vus = spec
                .vus
                .as_ref()
                .map_or(Ok(1), |v| users(cx, &f("vus"), v))?;
            let iterations = spec.iterations.as_ref().map_or(1, |n| *n.get_ref());
            let max_duration = match &spec.max_duration {
                Some(d) => duration(cx, &f("max_duration"), d)?,
                None => Duration::from_secs(600),
            };
            if kind == "shared-iterations" {
                Executor::SharedIterations {
                    vus,
                    iterations,
                    max_duration,
                }
            } else {
                Executor::PerVuIterations {
                    vus,
                    iterations,
                    max_duration,
                }
            }
        }
        "constant-vus" => Executor::ConstantVus {
            vus: spec
                .vus
                .as_ref()
                .map_or(Ok(1), |v| users(cx, &f("vus"), v))?,
            duration: duration(cx, &f("duration"), required!(spec.duration, "duration"))?,
        },
        "ramping-vus" => {
            let stages = required!(spec.stages, "stages");
            let mut out = Vec::new();
            for (j, st) in stages.get_ref().iter().enumerate() {
                let sf = format!("{field}.stages[{j}]");
                let s = st.get_ref();
                let d = duration(cx, &format!("{sf}.duration"), &s.duration)?;
                let t = *s.target.get_ref();
                if t.fract() != 0.0 || t < 0.0 {
                    return cx.err(
                        Some(s.target.span()),
                        format!("{sf}.target"),
                        format!("{t} is not a number of users"),
                    );
                }
                let target = validate_users(t as u64).or_else(|e| {
                    cx.err(Some(s.target.span()), format!("{sf}.target"), e.to_string())
                })?;
                out.push(Stage::new(d, target));
            }
            Executor::RampingVus {
                start_vus: spec
                    .start_vus
                    .as_ref()
                    .map_or(Ok(1), |v| users(cx, &f("start_vus"), v))?,
                stages: out,
            }
        }
        "constant-arrival-rate" | "ramping-arrival-rate" => {
            // As in k6: pre_allocated_vus is required, max_vus defaults to it.
            let pre_allocated_vus = users(
                cx,
                &f("pre_allocated_vus"),
                required!(spec.pre_allocated_vus, "pre_allocated_vus"),
            )?;
            let max_vus = spec
                .max_vus
                .as_ref()
                .map_or(Ok(pre_allocated_vus), |v| users(cx, &f("max_vus"), v))?;
            let max_delay = match &spec.max_delay {
                Some(d) => duration(cx, &f("max_delay"), d)?,
                None => Duration::ZERO,
            };
            if kind == "constant-arrival-rate" {
                Executor::ConstantArrivalRate {
                    rate: *required!(spec.rate, "rate").get_ref(),
                    time_unit,
                    duration: duration(cx, &f("duration"), required!(spec.duration, "duration"))?,
                    pre_allocated_vus,
                    max_vus,
                    max_delay,
                }
            } else {
                let stages = required!(spec.stages, "stages");
                let mut out = Vec::new();
                for (j, st) in stages.get_ref().iter().enumerate() {
                    let s = st.get_ref();
                    let d = duration(cx, &format!("{field}.stages[{j}].duration"), &s.duration)?;
                    out.push(RateStage::new(d, *s.target.get_ref()));
                }
                Executor::RampingArrivalRate {
                    start_rate: spec.start_rate.as_ref().map_or(0.0, |r| *r.get_ref()),
                    time_unit,
                    stages: out,
                    pre_allocated_vus,
                    max_vus,
                    max_delay,
                }
            }
        }
        _ => {
            // externally-controlled
            let vus = spec
                .vus
                .as_ref()
                .map_or(Ok(1), |v| users(cx, &f("vus"), v))?;
            Executor::ExternallyControlled {
                vus,
                max_vus: spec
                    .max_vus
                    .as_ref()
                    .map_or(Ok(vus), |v| users(cx, &f("max_vus"), v))?,
                duration: match &spec.duration {
                    Some(d) => Some(duration(cx, &f("duration"), d)?),
                    None => None,
                },
            }
        }
    })
}
