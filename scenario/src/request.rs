//! A task's request, checked and built from the file: its plan, tags and checks.

use crate::*;

/// A request checked and with its templates unresolved.
#[derive(Clone)]
pub(crate) struct RequestPlan {
    pub(crate) name: Option<String>,
    pub(crate) method: http::Method,
    pub(crate) path: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Option<String>,
    pub(crate) json: Option<serde_json::Value>,
    pub(crate) expect_status: Option<u16>,
    pub(crate) body_contains: Option<String>,
    /// What a task captures into its user's variables.
    pub(crate) captures: Arc<[(String, Capture)]>,
    /// Its named checks.
    pub(crate) checks: Arc<[NamedCheck]>,
    /// The named metrics it feeds.
    pub(crate) feeds: Arc<[feeds::Feed]>,
    /// Some template of it reads the user's variables (`{{vars.NAME}}`).
    pub(crate) uses_vars: bool,
    /// Its key=value tags.
    pub(crate) tags: Arc<[(String, String)]>,
    /// The groups it is made in, outermost first.
    pub(crate) group: Arc<[String]>,
}

/// A task's `tags`: labels, or key=value pairs.
#[derive(Default)]
pub(crate) struct TaskTags {
    /// Locust's labels, which `--tags` and `--exclude-tags` select.
    pub(crate) labels: Vec<String>,
    /// k6's tags, carried by the request's samples.
    pub(crate) pairs: Vec<(String, String)>,
}

impl TaskTags {
    /// What `--tags` and `--exclude-tags` match: each label, and each pair as `key=value`.
    pub(crate) fn selectable(&self) -> Vec<String> {
        let pairs = self.pairs.iter().map(|(k, v)| format!("{k}={v}"));
        self.labels.iter().cloned().chain(pairs).collect()
    }
}

/// A TOML value as the file wrote it, for a message.
pub(crate) fn show(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => format!("{s:?}"),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        other => format!("a {}", other.type_str()),
    }
}

/// A task's `tags`, checked: a list of labels (letters, digits, `_`, `-` and `.`) or a
/// table of key = "value" tags (the tag rule).
pub(crate) fn task_tags(
    cx: &Ctx<'_>,
    field: &str,
    spec: &RequestSpec,
) -> Result<TaskTags, ScenarioError> {
    let Some(t) = &spec.tags else {
        return Ok(TaskTags::default());
    };
    let mut out = TaskTags::default();
    match t.get_ref() {
        toml::Value::Array(items) => {
            for (k, item) in items.iter().enumerate() {
                let ok = item.as_str().filter(|tag| {
                    !tag.is_empty()
                        && tag.bytes().all(|b| {
                            b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.'
                        })
                });
                match ok {
                    Some(tag) => out.labels.push(tag.to_owned()),
                    None => {
                        return cx.err(
                            Some(t.span()),
                            format!("{field}.tags[{k}]"),
                            format!("{}: a tag is letters, digits, _, - and .", show(item)),
                        );
                    }
                }
            }
        }
        toml::Value::Table(pairs) => {
            for (k, v) in pairs {
                let Some(v) = v.as_str() else {
                    return cx.err(
                        Some(t.span()),
                        format!("{field}.tags.{k}"),
                        format!("{}: a tag's value is a string", show(v)),
                    );
                };
                if let Err(why) = aiotest_core::tag::check(k, v) {
                    return cx.err(Some(t.span()), format!("{field}.tags.{k}"), why);
                }
                if matches!(
                    k.as_str(),
                    "group" | "scenario" | "name" | "method" | "status"
                ) {
                    return cx.err(
                        Some(t.span()),
                        format!("{field}.tags.{k}"),
                        format!("`{k}` is a system tag, set by aiotest"),
                    );
                }
                out.pairs.push((k.clone(), v.to_owned()));
            }
        }
        other => {
            return cx.err(
                Some(t.span()),
                format!("{field}.tags"),
                format!(
                    "{}: tags are a list of labels ([\"slow\"], for --tags) or a table of \
                     key = \"value\" tags ({{ team = \"web\" }})",
                    show(other)
                ),
            );
        }
    }
    Ok(out)
}

pub(crate) fn request(
    cx: &Ctx<'_>,
    field: &str,
    r: &Spanned<RequestSpec>,
    scope: Scope<'_>,
) -> Result<RequestPlan, ScenarioError> {
    let spec = r.get_ref();
    let tags = task_tags(cx, field, spec)?.pairs;
    let group = match &spec.group {
        None => Vec::new(),
        Some(g) => {
            let parts: Vec<String> = g.get_ref().split("::").map(str::to_owned).collect();
            let path = format!("::{}", g.get_ref());
            if parts.iter().any(String::is_empty)
                || aiotest_core::tag::check("group", &path).is_err()
            {
                return cx.err(
                    Some(g.span()),
                    format!("{field}.group"),
                    format!(
                        "`{}`: a group is a name, or names joined by :: for nested groups \
                         (`checkout::pay`), at most 512 bytes",
                        g.get_ref()
                    ),
                );
            }
            parts
        }
    };
    let method = match &spec.method {
        Some(m) => {
            let upper = m.get_ref().to_ascii_uppercase();
            if upper.is_empty() || !upper.bytes().all(|b| b.is_ascii_alphabetic()) {
                return cx.err(
                    Some(m.span()),
                    format!("{field}.method"),
                    format!("`{}` is not an HTTP method", m.get_ref()),
                );
            }
            http::Method::from_bytes(upper.as_bytes()).or_else(|_| {
                cx.err(
                    Some(m.span()),
                    format!("{field}.method"),
                    format!("`{}` is not an HTTP method", m.get_ref()),
                )
            })?
        }
        None => http::Method::GET,
    };
    let p = spec.path.get_ref();
    if !(p.starts_with('/') || p.starts_with("http://") || p.starts_with("https://")) {
        return cx.err(
            Some(spec.path.span()),
            format!("{field}.path"),
            format!("`{p}` must start with / or be an http(s) URL"),
        );
    }
    if let Err(e) = aiotest_core::url::check_path_or_url(p) {
        return cx.err(
            Some(spec.path.span()),
            format!("{field}.path"),
            format!("`{p}`: {e}"),
        );
    }
    check_refs(cx, &spec.path, &format!("{field}.path"), scope)?;
    check_builtins(cx, &spec.path, &format!("{field}.path"))?;
    let mut headers = Vec::new();
    for (k, v) in &spec.headers {
        let hf = format!("{field}.headers.{k}");
        if http::header::HeaderName::from_bytes(k.as_bytes()).is_err() {
            return cx.err(Some(v.span()), hf, "not a valid header name");
        }
        if http::header::HeaderValue::from_str(v.get_ref()).is_err() {
            return cx.err(Some(v.span()), hf, "not a valid header value");
        }
        check_refs(cx, v, &hf, scope)?;
        check_builtins(cx, v, &hf)?;
        headers.push((k.clone(), v.get_ref().clone()));
    }
    if let (Some(_), Some(j)) = (&spec.body, &spec.json) {
        return cx.err(
            Some(j.span()),
            format!("{field}.json"),
            "give body or json, not both",
        );
    }
    if let Some(b) = &spec.body {
        check_refs(cx, b, &format!("{field}.body"), scope)?;
        check_builtins(cx, b, &format!("{field}.body"))?;
    }
    let json = match &spec.json {
        Some(j) => Some(
            serde_json::to_value(j.get_ref())
                .or_else(|e| cx.err(Some(j.span()), format!("{field}.json"), e.to_string()))?,
        ),
        None => None,
    };
    if let (Some(j), Some(value)) = (&spec.json, &json) {
        // Its strings take the same references as a body.
        let mut strings = Vec::new();
        json_strings(value, &mut strings);
        for text in strings {
            let spanned = Spanned::new(j.span(), text.to_owned());
            check_refs(cx, &spanned, &format!("{field}.json"), scope)?;
            check_builtins(cx, &spanned, &format!("{field}.json"))?;
        }
    }
    if let Some(s) = &spec.expect_status
        && !(100..=599).contains(s.get_ref())
    {
        return cx.err(
            Some(s.span()),
            format!("{field}.expect_status"),
            format!("{} is not an HTTP status (100 to 599)", s.get_ref()),
        );
    }
    let dynamic = |t: &str| t.contains("{{vars.") || t.contains(BUILTIN) || t.contains(data::OPEN);
    let checks = named_checks(cx, field, &spec.checks, scope)?;
    let uses_vars = dynamic(p)
        || checks.iter().any(|c| c.template().is_some_and(dynamic))
        || headers.iter().any(|(_, v)| dynamic(v))
        || spec.body.as_ref().is_some_and(|b| dynamic(b.get_ref()))
        || json.as_ref().is_some_and(|j| dynamic(&j.to_string()));
    // A path that takes a user's values is named by its template: the values must not
    // make a name per user.
    let name = spec
        .name
        .as_ref()
        .map(|n| n.get_ref().clone())
        .or_else(|| dynamic(p).then(|| p.clone()));
    Ok(RequestPlan {
        name,
        checks,
        tags: tags.into(),
        group: group.into(),
        feeds: feeds::feeds(cx, field, &spec.metrics, scope)?,
        captures: Arc::new([]),
        uses_vars,
        method,
        path: p.clone(),
        headers,
        body: spec.body.as_ref().map(|b| b.get_ref().clone()),
        json,
        expect_status: spec.expect_status.as_ref().map(|s| *s.get_ref()),
        body_contains: spec.body_contains.as_ref().map(|s| s.get_ref().clone()),
    })
}

/// Exactly one of `given` (a field's name, and whether it is there) must be there.
pub(crate) fn one_of(
    cx: &Ctx<'_>,
    span: std::ops::Range<usize>,
    field: &str,
    given: &[(&str, bool)],
) -> Result<(), ScenarioError> {
    let found: Vec<&str> = given.iter().filter(|(_, g)| *g).map(|(n, _)| *n).collect();
    if found.len() == 1 {
        return Ok(());
    }
    let names: Vec<&str> = given.iter().map(|(n, _)| *n).collect();
    let (last, rest) = names.split_last().unwrap_or((&"", &[]));
    cx.err(
        Some(span),
        field,
        format!(
            "give one of {} or {last} (found {})",
            rest.join(", "),
            if found.is_empty() {
                "none".to_owned()
            } else {
                found.join(", ")
            }
        ),
    )
}

/// A request's `checks`, checked.
pub(crate) fn named_checks(
    cx: &Ctx<'_>,
    field: &str,
    specs: &[Spanned<CheckSpec>],
    scope: Scope<'_>,
) -> Result<Arc<[NamedCheck]>, ScenarioError> {
    let mut out = Vec::new();
    for (k, c) in specs.iter().enumerate() {
        let cf = format!("{field}.checks[{k}]");
        let spec = c.get_ref();
        let name = spec.name.get_ref().trim();
        if name.is_empty() {
            return cx.err(
                Some(spec.name.span()),
                format!("{cf}.name"),
                "must not be empty",
            );
        }
        one_of(
            cx,
            c.span(),
            &cf,
            &[
                ("status", spec.status.is_some()),
                ("header", spec.header.is_some()),
                ("json", spec.json.is_some()),
                ("body_contains", spec.body_contains.is_some()),
                ("regex", spec.regex.is_some()),
            ],
        )?;
        // A string to compare with may take the request's references.
        if let Some(e) = &spec.equals
            && let toml::Value::String(text) = e.get_ref()
        {
            let spanned = Spanned::new(e.span(), text.clone());
            check_refs(cx, &spanned, &format!("{cf}.equals"), scope)?;
            check_builtins(cx, &spanned, &format!("{cf}.equals"))?;
        }
        if let (Some(e), None, None) = (&spec.equals, &spec.header, &spec.json) {
            return cx.err(
                Some(e.span()),
                format!("{cf}.equals"),
                "equals compares a header's or a JSON value's value: give header or json",
            );
        }
        let what = if let Some(st) = &spec.status {
            if !(100..=599).contains(st.get_ref()) {
                return cx.err(
                    Some(st.span()),
                    format!("{cf}.status"),
                    format!("{} is not an HTTP status (100 to 599)", st.get_ref()),
                );
            }
            CheckKind::Status(*st.get_ref())
        } else if let Some(h) = &spec.header {
            let Ok(n) = http::header::HeaderName::from_bytes(h.get_ref().as_bytes()) else {
                return cx.err(
                    Some(h.span()),
                    format!("{cf}.header"),
                    format!("`{}` is not a header name", h.get_ref()),
                );
            };
            let equals = match &spec.equals {
                Some(e) => match e.get_ref() {
                    toml::Value::String(v) => Some(v.clone()),
                    _ => {
                        return cx.err(
                            Some(e.span()),
                            format!("{cf}.equals"),
                            "a header's value is text: give a string",
                        );
                    }
                },
                None => None,
            };
            CheckKind::Header(n, equals)
        } else if let Some(j) = &spec.json {
            let p = j.get_ref();
            if !(p.is_empty() || p.starts_with('/')) {
                return cx.err(
                    Some(j.span()),
                    format!("{cf}.json"),
                    format!("`{p}` is not a JSON pointer (like /data/token)"),
                );
            }
            let equals = match &spec.equals {
                Some(e) => Some(serde_json::to_value(e.get_ref()).or_else(|err| {
                    cx.err(Some(e.span()), format!("{cf}.equals"), err.to_string())
                })?),
                None => None,
            };
            CheckKind::Json(JsonPointer::new(p), equals)
        } else if let Some(b) = &spec.body_contains {
            CheckKind::BodyContains(b.get_ref().clone())
        } else if let Some(r) = &spec.regex {
            CheckKind::Regex(regex(cx, r.get_ref(), r.span(), &format!("{cf}.regex"))?)
        } else {
            // Checked above: one of them is given.
            return cx.err(
                Some(c.span()),
                cf,
                "give one of status, header, json, body_contains or regex",
            );
        };
        out.push(NamedCheck {
            name: name.to_owned(),
            what,
            fail_request: spec.fail_request,
        });
    }
    Ok(out.into())
}

/// `r` compiled as a regular expression.
pub(crate) fn regex(
    cx: &Ctx<'_>,
    r: &str,
    span: std::ops::Range<usize>,
    field: &str,
) -> Result<regex_lite::Regex, ScenarioError> {
    regex_lite::Regex::new(r).or_else(|e| {
        let why = e.to_string();
        // The engine's message spans lines; its last line says what is wrong.
        let why = why.lines().last().unwrap_or(&why).trim().to_owned();
        cx.err(
            Some(span),
            field,
            format!("`{r}` is not a regular expression: {why}"),
        )
    })
}

impl NamedCheck {
    /// The text it compares with, when that text has references to fill in.
    pub(crate) fn template(&self) -> Option<&str> {
        match &self.what {
            CheckKind::Header(_, Some(t))
            | CheckKind::Json(_, Some(serde_json::Value::String(t)))
                if t.contains("{{") =>
            {
                Some(t)
            }
            _ => None,
        }
    }

    /// The same check, comparing with `fill(its text)`.
    pub(crate) fn filled(
        &self,
        fill: impl Fn(&str) -> Result<String, String>,
    ) -> Result<NamedCheck, String> {
        let mut c = self.clone();
        match &mut c.what {
            CheckKind::Header(_, Some(t))
            | CheckKind::Json(_, Some(serde_json::Value::String(t))) => {
                *t = fill(t)?;
            }
            _ => {}
        }
        Ok(c)
    }

    /// Whether `r` passes; `body` is the response's JSON, parsed once for all checks.
    pub(crate) fn judge(
        &self,
        r: &aiotest_http_user::Response,
        body: &mut Option<Option<serde_json::Value>>,
    ) -> bool {
        if r.status().is_none() {
            // No response (refused, timed out, or never sent): nothing passes.
            return false;
        }
        match &self.what {
            CheckKind::Status(s) => r.status_code() == *s,
            CheckKind::Header(h, equals) => match (r.headers().get(h), equals) {
                (Some(v), Some(want)) => v.as_bytes() == want.as_bytes(),
                (Some(_), None) => true,
                (None, _) => false,
            },
            CheckKind::Json(pointer, equals) => {
                let body = body.get_or_insert_with(|| r.json().ok());
                match (body.as_ref().and_then(|b| pointer.find(b)), equals) {
                    (Some(v), Some(want)) => v == want,
                    (Some(_), None) => true,
                    (None, _) => false,
                }
            }
            CheckKind::BodyContains(needle) => r.text().contains(needle.as_str()),
            CheckKind::Regex(re) => re.is_match(&r.text()),
        }
    }
}
