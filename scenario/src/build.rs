//! Checking a file and building its plan: HTTP settings, names, tags, load, and the
//! references between setup, captures, data and tasks.

use crate::*;

/// The file's `[http]`, checked; a client certificate is read through `files`.
pub(crate) fn http_settings(
    cx: &Ctx<'_>,
    spec: Option<&Spanned<HttpSpec>>,
    field: &str,
    files: data::Files<'_>,
) -> Result<HttpSettings, ScenarioError> {
    let Some(h) = spec else {
        return Ok(HttpSettings::default());
    };
    let h = h.get_ref();
    let timeout_s = match &h.timeout {
        Some(t) => Some(
            crate::settings::parse_timeout(t.get_ref())
                .or_else(|e| cx.err(Some(t.span()), format!("{field}.timeout"), e))?
                .as_secs_f64(),
        ),
        None => None,
    };
    if let Some(n) = &h.max_retries
        && *n.get_ref() > crate::settings::MAX_RETRIES
    {
        return cx.err(
            Some(n.span()),
            format!("{field}.max_retries"),
            format!(
                "{} is more than the {} retries allowed",
                n.get_ref(),
                crate::settings::MAX_RETRIES
            ),
        );
    }
    if let Some(n) = &h.max_redirects
        && *n.get_ref() > crate::settings::MAX_REDIRECTS
    {
        return cx.err(
            Some(n.span()),
            format!("{field}.max_redirects"),
            format!(
                "{} is more than the {} redirects allowed",
                n.get_ref(),
                crate::settings::MAX_REDIRECTS
            ),
        );
    }
    let max_response_body = match &h.max_response_body {
        Some(b) => {
            let text = match b.get_ref() {
                SizeSpec::Bytes(n) => n.to_string(),
                SizeSpec::Text(t) => t.clone(),
            };
            Some(
                crate::settings::parse_body_limit(&text)
                    .or_else(|e| cx.err(Some(b.span()), format!("{field}.max_response_body"), e))?,
            )
        }
        None => None,
    };
    let client_cert = match (&h.client_cert, &h.client_key) {
        (Some(cert), Some(key)) => {
            let read = |f: &Spanned<String>, name: &str| {
                data::read_file(cx, files, f, &format!("{field}.{name}"))
            };
            let pem = (read(cert, "client_cert")?, read(key, "client_key")?);
            // Checked here, so a bad file names its field and line.
            if let Err(e) = HttpUser::builder()
                .client_cert_pem(pem.0.as_bytes(), pem.1.as_bytes())
                .build()
            {
                return cx.err(
                    Some(cert.span()),
                    format!("{field}.client_cert"),
                    e.to_string(),
                );
            }
            Some(pem)
        }
        (None, None) => None,
        (Some(c), None) => {
            return cx.err(
                Some(c.span()),
                format!("{field}.client_cert"),
                "needs client_key (the certificate's private key)",
            );
        }
        (None, Some(k)) => {
            return cx.err(
                Some(k.span()),
                format!("{field}.client_key"),
                "needs client_cert (the certificate it belongs to)",
            );
        }
    };
    Ok(HttpSettings {
        timeout_s,
        max_retries: h.max_retries.as_ref().map(|n| *n.get_ref()),
        verify_ssl: h.verify_ssl,
        max_redirects: h.max_redirects.as_ref().map(|n| *n.get_ref()),
        max_response_body,
        client_cert,
        // A file names its host; the command line's --hosts may point it elsewhere.
        hosts: Vec::new(),
        h2c: h.h2c,
    })
}

/// [`parse`], with the command line's settings (`inputs`).
pub fn parse_with(
    file: &Path,
    text: &str,
    inputs: Inputs<'_>,
) -> Result<ScenarioFile, ScenarioError> {
    let overrides = inputs.http;
    let env = inputs.env;
    let cx = Ctx {
        file,
        text,
        no_setup: inputs.no_setup,
        metrics: HashMap::new(),
    };
    let mut spec: FileSpec = match toml::from_str(text) {
        Ok(s) => s,
        Err(e) => {
            let line = e.span().map(|s| cx.line_of(s.start));
            // Name the field in full (`users[1].tasks[0].path`) and its type in words.
            let field = e
                .span()
                .map(|s| syntax::field_at(text, s.start))
                .unwrap_or_default();
            let on_header = line
                .and_then(|l| text.lines().nth(l - 1))
                .is_some_and(|l| l.trim_start().starts_with('['));
            return Err(ScenarioError {
                file: file.to_owned(),
                line,
                message: syntax::plain_message(e.message().trim(), &field, on_header),
                field,
            });
        }
    };
    env::expand_file(&cx, &mut spec, env)?;
    let cx = Ctx {
        metrics: feeds::declare(&cx, &spec.metrics)?,
        ..cx
    };
    let host = match &spec.host {
        Some(h) => {
            let v = h.get_ref();
            match aiotest_core::url::parse_base_url(v) {
                Ok(u) if u.rest.contains(['?', '#']) => {
                    return cx.err(Some(h.span()), "host", format!("`{v}`: no query string"));
                }
                Ok(_) => {}
                Err(e) => return cx.err(Some(h.span()), "host", format!("`{v}`: {e}")),
            }
            Some(v.clone())
        }
        None => None,
    };
    let file_http = http_settings(&cx, spec.http.as_ref(), "http", inputs.files)?;
    let http = overrides.over(&file_http);
    let (shape, load) = match load_shape(&cx, spec.load.as_ref())? {
        Some((s, l)) => (Some(s), Some(l)),
        None => (None, None),
    };
    let (hooks, captures) = setup(&cx, &spec.setup, &spec.teardown, &http)?;
    let data = Arc::new(data::Data::load(&cx, &spec.data, inputs.files)?);
    let Some(users) = &spec.users else {
        return cx.err(None, "users", "at least one [[users]] table is needed");
    };
    if users.get_ref().is_empty() {
        return cx.err(
            Some(users.span()),
            "users",
            "at least one [[users]] table is needed",
        );
    }
    // One HTTP configuration (TLS roots included) for every user type: building one per
    // type made checking a file of many types slow and large.
    let http_user = http
        .apply(HttpUser::builder())
        .build()
        .or_else(|e| cx.err(spec.http.as_ref().map(Spanned::span), "http", e.to_string()))?;
    let mut user_types = Vec::new();
    let mut untasked = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, u) in users.get_ref().iter().enumerate() {
        if !seen.insert(u.get_ref().name.get_ref().as_str()) {
            let n = &u.get_ref().name;
            return cx.err(
                Some(n.span()),
                format!("users[{i}].name"),
                format!("`{}` is used twice", n.get_ref()),
            );
        }
        // A user type's own `http` is over the file's; the command line is over both.
        let own;
        let client = match &u.get_ref().http {
            Some(h) => {
                let field = format!("users[{i}].http");
                let own_http = http_settings(&cx, Some(h), &field, inputs.files)?;
                let settings = overrides.over(&own_http.over(&file_http));
                own = settings
                    .apply(HttpUser::builder())
                    .build()
                    .or_else(|e| cx.err(Some(h.span()), field, e.to_string()))?;
                &own
            }
            None => &http_user,
        };
        let refs = Refs {
            captures: &captures,
            data: &data,
            tags: inputs.tags,
        };
        match user_type(&cx, i, u, &refs, client)? {
            Some(t) => user_types.push(t),
            None => untasked.push(u.get_ref().name.get_ref().clone()),
        }
    }
    if user_types.is_empty() {
        return cx.err(
            None,
            "",
            format!(
                "no task is left to run: {} leave no user type a task",
                tag_flags(inputs.tags)
            ),
        );
    }
    if let (Some(load), Some(first)) = (&spec.load, spec.scenarios.first()) {
        let _ = first;
        return cx.err(
            Some(load.span()),
            "load",
            "give [load] or [[scenarios]], not both: each scenario has its own executor",
        );
    }
    let scenarios = scenarios::build(&cx, &spec.scenarios, &user_types, &untasked)?;
    let relative_path = first_relative_path(&cx, &spec);
    let mut thresholds = Vec::new();
    for (i, t) in spec.thresholds.iter().enumerate() {
        let (ThresholdSpec::Expr(expr) | ThresholdSpec::Table(ThresholdTable { expr })) =
            t.get_ref();
        match Threshold::parse(expr) {
            Ok(parsed) => thresholds.push(parsed),
            Err(e) => return cx.err(Some(t.span()), format!("thresholds[{i}]"), e.to_string()),
        }
    }
    Ok(ScenarioFile {
        user_types,
        scenarios,
        hooks,
        shape,
        load,
        request_names: request_names(&spec),
        host,
        relative_path,
        thresholds,
        data,
        tags: tag_names(&cx, &spec)?,
    })
}

/// `--tags X` / `--exclude-tags Y`, as the user gave them.
pub(crate) fn tag_flags(tags: &TagFilter) -> String {
    let mut parts = Vec::new();
    if !tags.include.is_empty() {
        parts.push(format!("--tags {}", tags.include.join(",")));
    }
    if !tags.exclude.is_empty() {
        parts.push(format!("--exclude-tags {}", tags.exclude.join(",")));
    }
    parts.join(" and ")
}

/// Each tag, with the names of the requests that carry it (for `{tag=...}` thresholds).
pub(crate) fn tag_names(
    cx: &Ctx<'_>,
    spec: &FileSpec,
) -> Result<BTreeMap<String, Vec<String>>, ScenarioError> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut add = |field: String, r: &Spanned<RequestSpec>| -> Result<(), ScenarioError> {
        let labels = task_tags(cx, &field, r.get_ref())?.labels;
        let r = r.get_ref();
        let Some(first) = r.tags.as_ref().filter(|_| !labels.is_empty()) else {
            return Ok(());
        };
        let name = match &r.name {
            Some(n) => n.get_ref().clone(),
            None if r.path.get_ref().contains("{{setup.") => {
                return cx.err(
                    Some(first.span()),
                    format!("{field}.tags"),
                    "a tagged request whose path takes setup's values needs a name: thresholds select it by name",
                );
            }
            None if r.path.get_ref().contains("{{") => r.path.get_ref().clone(),
            None => crate::request_name(r.path.get_ref()),
        };
        for t in &labels {
            let names = out.entry(t.clone()).or_default();
            if !names.contains(&name) {
                names.push(name.clone());
            }
        }
        Ok(())
    };
    for (i, r) in spec.setup.iter().enumerate() {
        add(format!("setup[{i}]"), r)?;
    }
    for (i, r) in spec.teardown.iter().enumerate() {
        add(format!("teardown[{i}]"), r)?;
    }
    for (i, u) in spec
        .users
        .iter()
        .flat_map(|u| u.get_ref().iter())
        .enumerate()
    {
        for (j, t) in u
            .get_ref()
            .tasks
            .iter()
            .flat_map(|t| t.get_ref().iter())
            .enumerate()
        {
            add(format!("users[{i}].tasks[{j}]"), t)?;
        }
    }
    Ok(out)
}

/// What a request's templates may refer to, and which tasks run.
pub(crate) struct Refs<'a, 'd> {
    /// Setup's captures (`{{setup.NAME}}`).
    pub(crate) captures: &'a [String],
    /// The data files (`{{data.COLUMN}}`).
    pub(crate) data: &'d Arc<data::Data>,
    pub(crate) tags: &'a TagFilter,
}

/// The names the file's requests are recorded under: explicit, or the path's.
pub(crate) fn request_names(spec: &FileSpec) -> Option<Vec<String>> {
    let tasks = spec
        .users
        .iter()
        .flat_map(|u| u.get_ref().iter())
        .flat_map(|u| u.get_ref().tasks.iter().flat_map(|t| t.get_ref().iter()));
    let mut names = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for r in spec.setup.iter().chain(&spec.teardown).chain(tasks) {
        let r = r.get_ref();
        let name = match &r.name {
            Some(n) => n.get_ref().clone(),
            // A path with a user's values is named by its template.
            None if r.path.get_ref().contains("{{vars.")
                || r.path.get_ref().contains(BUILTIN)
                || r.path.get_ref().contains(data::OPEN) =>
            {
                r.path.get_ref().clone()
            }
            // A path templated by setup's values is named only once setup has run.
            None if r.path.get_ref().contains("{{") => return None,
            None => crate::request_name(r.path.get_ref()),
        };
        if seen.insert(name.clone()) {
            names.push(name);
        }
    }
    Some(names)
}

/// `FILE:LINE: FIELD` of the first request whose path is relative.
pub(crate) fn first_relative_path(cx: &Ctx<'_>, spec: &FileSpec) -> Option<String> {
    let located = |field: String, r: &Spanned<RequestSpec>| {
        let p = &r.get_ref().path;
        p.get_ref().starts_with('/').then(|| {
            format!(
                "{}:{}: {field}.path",
                cx.file.display(),
                cx.line_of(p.span().start)
            )
        })
    };
    let setup = spec
        .setup
        .iter()
        .enumerate()
        .find_map(|(i, r)| located(format!("setup[{i}]"), r))
        .or_else(|| {
            spec.teardown
                .iter()
                .enumerate()
                .find_map(|(i, r)| located(format!("teardown[{i}]"), r))
        });
    setup.or_else(|| {
        spec.users
            .as_ref()?
            .get_ref()
            .iter()
            .enumerate()
            .find_map(|(i, u)| {
                u.get_ref()
                    .tasks
                    .as_ref()?
                    .get_ref()
                    .iter()
                    .enumerate()
                    .find_map(|(j, t)| located(format!("users[{i}].tasks[{j}]"), t))
            })
    })
}

pub(crate) fn load_shape(
    cx: &Ctx<'_>,
    load: Option<&Spanned<LoadSpec>>,
) -> Result<Option<(BoxedShape, FileLoad)>, ScenarioError> {
    let Some(load) = load else {
        return Ok(None);
    };
    let l = load.get_ref();
    if let Some(stages) = &l.stages {
        if l.users.is_some() || l.run_time.is_some() {
            return cx.err(
                Some(load.span()),
                "load",
                "give either stages or users/run_time, not both",
            );
        }
        let mut out = Vec::new();
        for (i, st) in stages.get_ref().iter().enumerate() {
            let d = &st.get_ref().duration;
            let duration = parse_duration(d.get_ref())
                .or_else(|e| cx.err(Some(d.span()), format!("load.stages[{i}].duration"), e))?;
            let t = &st.get_ref().target;
            let target = validate_users(*t.get_ref()).or_else(|e| {
                cx.err(
                    Some(t.span()),
                    format!("load.stages[{i}].target"),
                    e.to_string(),
                )
            })?;
            out.push(Stage::new(duration, target));
        }
        let shape = StagesShape::new(out)
            .or_else(|e| cx.err(Some(stages.span()), "load.stages", e.to_string()))?;
        return Ok(Some((Box::new(shape), FileLoad::Stages)));
    }
    let users = match &l.users {
        Some(u) => validate_users(*u.get_ref())
            .or_else(|e| cx.err(Some(u.span()), "load.users", e.to_string()))?,
        None => 1,
    };
    let given_rate = match &l.spawn_rate {
        Some(r) if r.get_ref().is_nan() || *r.get_ref() <= 0.0 => {
            return cx.err(Some(r.span()), "load.spawn_rate", "must be above 0");
        }
        Some(r) => Some(*r.get_ref()),
        None => None,
    };
    let rate = given_rate.unwrap_or(f64::from(users.max(1)));
    let run_time = match &l.run_time {
        Some(t) => Some(
            parse_duration(t.get_ref()).or_else(|e| cx.err(Some(t.span()), "load.run_time", e))?,
        ),
        None => None,
    };
    let shape = ConstantShape::new(users, rate, run_time)
        .or_else(|e| cx.err(Some(load.span()), "load", e.to_string()))?;
    let written = FileLoad::Constant {
        users,
        spawn_rate: given_rate,
        run_time,
    };
    Ok(Some((Box::new(shape), written)))
}

/// Substitutes `{{setup.NAME}}` from `values`; names were checked against the captures.
pub(crate) fn render(template: &str, values: Option<&serde_json::Value>) -> String {
    let filled = template::replace::<std::convert::Infallible>(template, "{{setup.", |name| {
        Ok(Some(match values.and_then(|v| v.get(name)) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            // Setup did not run (`--no-setup`): the value is empty.
            None => String::new(),
        }))
    });
    match filled {
        Ok(s) => s,
        Err(never) => match never {},
    }
}

/// Every string in `v`.
pub(crate) fn json_strings<'v>(v: &'v serde_json::Value, out: &mut Vec<&'v str>) {
    match v {
        serde_json::Value::String(s) => out.push(s),
        serde_json::Value::Array(a) => a.iter().for_each(|x| json_strings(x, out)),
        serde_json::Value::Object(o) => o.values().for_each(|x| json_strings(x, out)),
        _ => {}
    }
}

/// What a request's templates may name.
#[derive(Clone, Copy)]
pub(crate) struct Scope<'a> {
    /// Setup's captures.
    pub(crate) captures: &'a [String],
    /// The captures of the user type's tasks (none for setup and teardown).
    pub(crate) vars: &'a [String],
    /// The data columns; `None` for setup and teardown, which run for no user.
    pub(crate) columns: Option<&'a [String]>,
    /// A setup request's: it runs only when setup does.
    pub(crate) in_setup: bool,
}

/// Every `{{setup.NAME}}` in `s` must name a setup capture, every `{{vars.NAME}}` a
/// capture of the user type's tasks, every `{{data.COLUMN}}` a data file's column.
pub(crate) fn check_refs(
    cx: &Ctx<'_>,
    s: &Spanned<String>,
    field: &str,
    scope: Scope<'_>,
) -> Result<(), ScenarioError> {
    for found in template::refs(s.get_ref(), data::OPEN) {
        let Ok(name) = found else {
            return cx.err(Some(s.span()), field, format!("unclosed `{}`", data::OPEN));
        };
        match scope.columns {
            None => {
                return cx.err(
                    Some(s.span()),
                    field,
                    format!(
                        "`{{{{data.{name}}}}}`: setup and teardown run once, for no user; data rows belong to users' tasks"
                    ),
                );
            }
            Some(cols) if !cols.iter().any(|c| c == name) => {
                return cx.err(
                    Some(s.span()),
                    field,
                    format!(
                        "`{{{{data.{name}}}}}` is not a column of any [[data]] file{}",
                        if cols.is_empty() {
                            String::new()
                        } else {
                            format!("; the columns are: {}", cols.join(", "))
                        }
                    ),
                );
            }
            Some(_) => {}
        }
    }
    for (open, known, whose) in [
        ("{{setup.", scope.captures, "any [[setup]] request"),
        ("{{vars.", scope.vars, "any task of this user type"),
    ] {
        for found in template::refs(s.get_ref(), open) {
            let Ok(name) = found else {
                return cx.err(Some(s.span()), field, format!("unclosed `{open}`"));
            };
            if !known.iter().any(|c| c == name) {
                return cx.err(
                    Some(s.span()),
                    field,
                    format!("`{open}{name}}}}}` is not captured by {whose}"),
                );
            }
            if open == "{{setup." && cx.no_setup && !scope.in_setup {
                return cx.err(
                    Some(s.span()),
                    field,
                    format!(
                        "`{{{{setup.{name}}}}}`: --no-setup skips the setup that captures it, so it would be empty; run setup, or leave the value out"
                    ),
                );
            }
        }
    }
    Ok(())
}
