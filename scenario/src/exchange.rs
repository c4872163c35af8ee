//! A planned request at run time: filled in with setup's values and the user's
//! variables, sent, judged and captured from.

use crate::*;

impl RequestPlan {
    /// The same request with `{{setup.NAME}}` filled in.
    pub(crate) fn rendered(&self, values: Option<&serde_json::Value>) -> RequestPlan {
        let mut r = self.clone();
        r.path = render(&self.path, values);
        r.headers = self
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), render(v, values)))
            .collect();
        r.body = self.body.as_deref().map(|b| render(b, values));
        r.json = self.json.as_ref().map(|j| render_json(j, values));
        if self.checks.iter().any(|c| c.template().is_some()) {
            let fill = |t: &str| Ok::<_, String>(render(t, values));
            r.checks = self
                .checks
                .iter()
                .map(|c| c.filled(fill))
                .collect::<Result<Vec<_>, _>>()
                .unwrap_or_else(|_| self.checks.to_vec())
                .into();
        }
        r
    }

    /// The same request with a user's values filled in; `Err` says which one it does not
    /// have.
    pub(crate) fn with_vars(&self, values: &Values<'_>) -> Result<RequestPlan, String> {
        let fill = |s: &str| fill_vars(s, values);
        let checks = if self.checks.iter().any(|c| c.template().is_some()) {
            self.checks
                .iter()
                .map(|c| c.filled(fill))
                .collect::<Result<Vec<_>, _>>()?
                .into()
        } else {
            Arc::clone(&self.checks)
        };
        Ok(RequestPlan {
            name: self.name.clone(),
            method: self.method.clone(),
            path: fill(&self.path)?,
            headers: self
                .headers
                .iter()
                .map(|(k, v)| Ok((k.clone(), fill(v)?)))
                .collect::<Result<_, String>>()?,
            body: self.body.as_deref().map(fill).transpose()?,
            json: self
                .json
                .as_ref()
                .map(|j| fill_json(j, values))
                .transpose()?,
            expect_status: self.expect_status,
            body_contains: self.body_contains.clone(),
            captures: Arc::clone(&self.captures),
            checks,
            feeds: Arc::clone(&self.feeds),
            uses_vars: self.uses_vars,
            tags: Arc::clone(&self.tags),
            group: Arc::clone(&self.group),
        })
    }

    /// A setup or teardown request with its built-ins filled in (`{{builtin.vu}}` and
    /// `{{builtin.iteration}}` are 0: no user sends it). It can use no variables nor data:
    /// the file was checked for that.
    pub(crate) fn once(self) -> RequestPlan {
        if self.uses_vars {
            let none = HashMap::new();
            let values = Values {
                vars: &none,
                vu: 0,
                iteration: 0,
                data: None,
            };
            self.with_vars(&values).unwrap_or(self)
        } else {
            self
        }
    }

    /// Sends the request. `vars`: where its captures go; `unsendable`: why a value it
    /// needs is missing, which fails it unsent.
    pub(crate) async fn send(
        &self,
        client: &mut HttpClient,
        vars: Option<&Vars>,
        unsendable: Option<&str>,
    ) -> aiotest_http_user::Response {
        // Checked with the file: entering cannot fail.
        let mut entered = 0;
        for g in self.group.iter() {
            entered += usize::from(client.enter_group(g).is_ok());
        }
        let r = self.send_in_group(client, vars, unsendable).await;
        for _ in 0..entered {
            client.exit_group();
        }
        r
    }

    pub(crate) async fn send_in_group(
        &self,
        client: &mut HttpClient,
        vars: Option<&Vars>,
        unsendable: Option<&str>,
    ) -> aiotest_http_user::Response {
        let mut req = client.request(self.method.clone(), self.path.clone());
        if let Some(why) = unsendable {
            req = req.fail_unsent(why);
        }
        for (k, v) in self.tags.iter() {
            req = req.tag(k, v);
        }
        if let Some(n) = &self.name {
            req = req.name(n.clone());
        }
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        if let Some(b) = &self.body {
            req = req.body(b.clone());
        }
        if let Some(j) = &self.json {
            req = req.json(j);
        }
        if let Some(s) = self.expect_status {
            req = req.expect_status(s);
        }
        let captures = match vars {
            Some(v) if !self.captures.is_empty() => {
                Some((Arc::clone(&self.captures), Arc::clone(v)))
            }
            _ => None,
        };
        let failing = self.checks.iter().any(|c| c.fail_request);
        if self.body_contains.is_some() || captures.is_some() || failing {
            let needle = self.body_contains.clone();
            let checks = failing.then(|| Arc::clone(&self.checks));
            req = req.check(move |r| {
                if let Some(needle) = &needle
                    && !r.text().contains(needle.as_str())
                {
                    return Err(format!("body does not contain {needle:?}"));
                }
                let mut body = None;
                for c in checks.iter().flat_map(|c| c.iter()) {
                    if c.fail_request && !c.judge(r, &mut body) {
                        return Err(format!("check `{}` failed", c.name));
                    }
                }
                if let Some((captures, vars)) = captures {
                    capture(r, &captures, &vars)?;
                }
                Ok(())
            });
        }
        let r = req.send().await;
        // Named checks count whatever became of the request (no response fails them all).
        let mut body = None;
        for c in self.checks.iter() {
            let passed = c.judge(&r, &mut body);
            client.check(&c.name, passed);
        }
        if !self.feeds.is_empty() {
            feeds::record(&self.feeds, &r, client, vars);
        }
        r
    }
}

/// Takes a task's captures from its response into the user's variables; `Err` names the
/// first that found nothing (the request then fails, `check_failed`).
pub(crate) fn capture(
    r: &aiotest_http_user::Response,
    captures: &[(String, Capture)],
    vars: &Vars,
) -> Result<(), String> {
    let mut body: Option<serde_json::Value> = None;
    let mut got = Vec::with_capacity(captures.len());
    for (name, c) in captures {
        let value = match c {
            Capture::Json(pointer) => {
                if body.is_none() {
                    body =
                        Some(r.json().map_err(|e| {
                            format!("capture `{name}`: the response is not JSON: {e}")
                        })?);
                }
                match body.as_ref().and_then(|b| pointer.find(b)) {
                    Some(serde_json::Value::String(s)) => s.clone(),
                    Some(v) => v.to_string(),
                    None => {
                        return Err(format!(
                            "capture `{name}`: nothing at {pointer} in the response"
                        ));
                    }
                }
            }
            Capture::Header(h) => match r.headers().get(h).map(|v| v.to_str()) {
                Some(Ok(v)) => v.to_owned(),
                _ => return Err(format!("capture `{name}`: no {h} header in the response")),
            },
            Capture::Regex(re) => {
                let text = r.text();
                match re
                    .captures(&text)
                    .and_then(|c| c.get(1).or_else(|| c.get(0)))
                {
                    Some(m) => m.as_str().to_owned(),
                    None => {
                        return Err(format!(
                            "capture `{name}`: /{}/ matches nothing in the response",
                            re.as_str()
                        ));
                    }
                }
            }
        };
        got.push((name.clone(), value));
    }
    if let Ok(mut vars) = vars.lock() {
        vars.extend(got);
    }
    Ok(())
}
