//! The file's user types: a user's clients, tasks and variables at run time.

use crate::*;

/// A user type's tasks rendered with the setup values they were rendered with.
pub(crate) type Rendered =
    Arc<std::sync::Mutex<Option<(Option<Arc<serde_json::Value>>, Arc<Vec<RequestPlan>>)>>>;

/// Whether two setup values are the same one (the same run's).
pub(crate) fn same_values(
    a: &Option<Arc<serde_json::Value>>,
    b: &Option<Arc<serde_json::Value>>,
) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        _ => false,
    }
}

/// A scenario user: its clients (one per concurrent slot) and its tasks, rendered with
/// setup's values when the user starts.
pub(crate) struct ScenarioUser {
    pub(crate) clients: Vec<tokio::sync::Mutex<HttpClient>>,
    pub(crate) tasks: Arc<Vec<RequestPlan>>,
    /// What this user's tasks captured (`{{vars.NAME}}`), its own for its whole life.
    pub(crate) vars: Vars,
    /// The user's number (`{{builtin.vu}}`).
    pub(crate) vu: u64,
    /// Tasks run so far, and how many make one iteration (`{{builtin.iteration}}`).
    pub(crate) runs: AtomicU64,
    pub(crate) per_iteration: u64,
    /// The data files, the ones this user type's tasks use, and this user's rows of them
    /// with the iteration each was taken in.
    pub(crate) data: Arc<data::Data>,
    pub(crate) used: Arc<[usize]>,
    pub(crate) rows: tokio::sync::Mutex<UserRows>,
}

/// A user's rows of the data files it uses.
pub(crate) struct UserRows {
    pub(crate) rows: data::Rows,
    /// The iteration each row was taken in.
    pub(crate) taken_in: Vec<u64>,
    /// Whether to ask again for a row that could not be had (Redis did not answer).
    pub(crate) again: Vec<bool>,
}

impl UserRows {
    pub(crate) fn new(files: usize) -> Self {
        UserRows {
            rows: vec![None; files],
            taken_in: vec![0; files],
            again: vec![false; files],
        }
    }
}

/// A user's captured values, shared by its concurrent slots.
pub(crate) type Vars = Arc<std::sync::Mutex<HashMap<String, String>>>;

impl ScenarioUser {
    pub(crate) async fn run(&self, i: usize) -> TaskResult {
        let Some(plan) = self.tasks.get(i) else {
            return Ok(());
        };
        let iteration = self.runs.fetch_add(1, AtomicOrdering::Relaxed) / self.per_iteration;
        let filled;
        let mut unsendable = None;
        let plan = if plan.uses_vars {
            let rows = if self.used.is_empty() {
                None
            } else {
                Some(self.rows(iteration).await)
            };
            // Filled under the locks, which are let go before the request is sent.
            let vars = self.vars.lock().unwrap_or_else(|e| e.into_inner());
            let values = Values {
                vars: &vars,
                vu: self.vu,
                iteration,
                data: rows.as_ref().map(|r| (&*self.data, &r.rows)),
            };
            let result = plan.with_vars(&values);
            drop(vars);
            drop(rows);
            match result {
                Ok(p) => filled = p,
                Err(why) => {
                    unsendable = Some(why);
                    filled = plan.clone();
                }
            }
            &filled
        } else {
            plan
        };
        let unsendable = unsendable.as_deref();
        // A concurrent user has one client per slot; a free one always exists.
        for c in &self.clients {
            if let Ok(mut client) = c.try_lock() {
                plan.send(&mut client, Some(&self.vars), unsendable).await;
                return Ok(());
            }
        }
        if let Some(c) = self.clients.first() {
            plan.send(&mut *c.lock().await, Some(&self.vars), unsendable)
                .await;
        }
        Ok(())
    }

    /// This user's rows for `iteration`: its own row of a unique file, taken once; a new
    /// row of the others each iteration.
    pub(crate) async fn rows(&self, iteration: u64) -> tokio::sync::MutexGuard<'_, UserRows> {
        let mut guard = self.rows.lock().await;
        let u = &mut *guard;
        for &set in self.used.iter() {
            let fresh = match u.rows.get(set) {
                Some(None) => true,
                Some(Some(_)) => {
                    u.again[set] || (self.data.per_iteration(set) && u.taken_in[set] != iteration)
                }
                None => false,
            };
            if fresh {
                let taken = self.data.take(set).await;
                u.again[set] = matches!(taken, Err((_, true)));
                u.rows[set] = Some(taken.map_err(|(why, _)| why));
                u.taken_in[set] = iteration;
            }
        }
        guard
    }
}

pub(crate) fn user_type(
    cx: &Ctx<'_>,
    i: usize,
    u: &Spanned<UserSpec>,
    refs: &Refs<'_, '_>,
    http: &HttpUser,
) -> Result<Option<UserType>, ScenarioError> {
    let captures = refs.captures;
    let field = format!("users[{i}]");
    let spec = u.get_ref();
    let name = spec.name.get_ref().clone();
    if name.trim().is_empty() {
        return cx.err(
            Some(spec.name.span()),
            format!("{field}.name"),
            "must not be empty",
        );
    }
    let weight = match &spec.weight {
        Some(w) if *w.get_ref() == 0 => {
            return cx.err(
                Some(w.span()),
                format!("{field}.weight"),
                "must be at least 1",
            );
        }
        Some(w) => *w.get_ref(),
        None => 1,
    };
    let wait = match &spec.wait_time {
        None => WaitTime::fixed(1.0),
        Some(w) => {
            let wt = match *w.get_ref() {
                WaitSpec::Fixed(s) => WaitTime::fixed(s),
                WaitSpec::Range([a, b]) => WaitTime::between(a, b),
                WaitSpec::Paced(PacedWait {
                    pacing: Some(s),
                    throughput: None,
                }) => WaitTime::constant_pacing(s),
                WaitSpec::Paced(PacedWait {
                    pacing: None,
                    throughput: Some(t),
                }) => WaitTime::constant_throughput(t),
                WaitSpec::Paced(_) => {
                    return cx.err(
                        Some(w.span()),
                        format!("{field}.wait_time"),
                        "give one of pacing = SECONDS or throughput = TASKS_PER_SECOND",
                    );
                }
            };
            if let Err(e) = wt.validate() {
                return cx.err(Some(w.span()), format!("{field}.wait_time"), e.to_string());
            }
            wt
        }
    };
    let mode = match spec
        .execution_mode
        .as_ref()
        .map(|m| (m, m.get_ref().as_str()))
    {
        None | Some((_, "sequential")) => ExecutionMode::Sequential,
        Some((_, "concurrent")) => ExecutionMode::Concurrent,
        Some((m, other)) => {
            return cx.err(
                Some(m.span()),
                format!("{field}.execution_mode"),
                format!("`{other}`: use sequential or concurrent"),
            );
        }
    };
    let slots = match (&spec.max_concurrent_tasks, mode) {
        (Some(m), ExecutionMode::Sequential) => {
            return cx.err(
                Some(m.span()),
                format!("{field}.max_concurrent_tasks"),
                "applies to execution_mode = \"concurrent\" only",
            );
        }
        (Some(m), _) if *m.get_ref() == 0 => {
            return cx.err(
                Some(m.span()),
                format!("{field}.max_concurrent_tasks"),
                "must be at least 1",
            );
        }
        (Some(m), _) => *m.get_ref(),
        (None, ExecutionMode::Concurrent) => {
            spec.tasks.as_ref().map_or(1, |t| t.get_ref().len().max(1))
        }
        (None, ExecutionMode::Sequential) => 1,
    };
    let Some(tasks) = &spec.tasks else {
        return cx.err(
            Some(u.span()),
            format!("{field}.tasks"),
            "at least one [[users.tasks]] table is needed",
        );
    };
    if tasks.get_ref().is_empty() {
        return cx.err(
            Some(tasks.span()),
            format!("{field}.tasks"),
            "at least one [[users.tasks]] table is needed",
        );
    }
    // The names this type's tasks capture: any of its requests may use them.
    let mut vars: Vec<String> = Vec::new();
    for t in tasks.get_ref() {
        for name in t.get_ref().capture.keys() {
            if !vars.contains(name) {
                vars.push(name.clone());
            }
        }
    }
    let columns = refs.data.column_names();
    let scope = Scope {
        captures,
        vars: &vars,
        columns: Some(&columns),
        in_setup: false,
    };
    // The data files its tasks (and its headers) use.
    let mut used: Vec<usize> = Vec::new();
    let mut note_data = |text: &str| {
        for column in template::refs(text, data::OPEN).flatten() {
            if let Some(set) = refs.data.set_of(column)
                && !used.contains(&set)
            {
                used.push(set);
            }
        }
    };
    for v in spec.headers.values() {
        note_data(v.get_ref());
    }
    let mut user_headers = Vec::new();
    for (k, v) in &spec.headers {
        let hf = format!("{field}.headers.{k}");
        if http::header::HeaderName::from_bytes(k.as_bytes()).is_err()
            || http::header::HeaderValue::from_str(v.get_ref()).is_err()
        {
            return cx.err(Some(v.span()), hf, "not a valid header");
        }
        check_refs(cx, v, &hf, scope)?;
        user_headers.push((k.clone(), v.get_ref().clone()));
    }
    let mut plans = Vec::new();
    let mut names_weights = Vec::new();
    let mut selected = Vec::new();
    for (j, t) in tasks.get_ref().iter().enumerate() {
        let tf = format!("{field}.tasks[{j}]");
        let mut plan = request(cx, &tf, t, scope)?;
        let ts = t.get_ref();
        note_data(ts.path.get_ref());
        for v in ts.headers.values() {
            note_data(v.get_ref());
        }
        if let Some(b) = &ts.body {
            note_data(b.get_ref());
        }
        if let Some(j) = &plan.json {
            note_data(&j.to_string());
        }
        let mut captured = Vec::new();
        for (cname, c) in &t.get_ref().capture {
            let cf = format!("{tf}.capture.{cname}");
            captured.push((
                cname.clone(),
                match c.get_ref() {
                    CaptureSpec::Pointer(p) if p.is_empty() || p.starts_with('/') => {
                        Capture::Json(JsonPointer::new(p))
                    }
                    CaptureSpec::Pointer(p) => {
                        return cx.err(
                            Some(c.span()),
                            cf,
                            format!("`{p}` is not a JSON pointer (like /data/token)"),
                        );
                    }
                    CaptureSpec::Regex(r) => Capture::Regex(regex(cx, &r.regex, c.span(), &cf)?),
                    CaptureSpec::Header(h) => {
                        match http::header::HeaderName::from_bytes(h.header.as_bytes()) {
                            Ok(n) => Capture::Header(n),
                            Err(_) => {
                                return cx.err(
                                    Some(c.span()),
                                    cf,
                                    format!("`{}` is not a header name", h.header),
                                );
                            }
                        }
                    }
                },
            ));
        }
        plan.captures = captured.into();
        // User-level headers first; a task's own header of the same name wins.
        let mut headers: Vec<(String, String)> = user_headers
            .iter()
            .filter(|(k, _)| {
                !plan
                    .headers
                    .iter()
                    .any(|(tk, _)| tk.eq_ignore_ascii_case(k))
            })
            .cloned()
            .collect();
        headers.append(&mut plan.headers);
        plan.headers = headers;
        plan.uses_vars |= plan
            .headers
            .iter()
            .any(|(_, v)| v.contains("{{vars.") || v.contains(BUILTIN) || v.contains(data::OPEN));
        let w = match &t.get_ref().weight {
            Some(w) if *w.get_ref() == 0 => {
                return cx.err(Some(w.span()), format!("{tf}.weight"), "must be at least 1");
            }
            Some(w) => *w.get_ref(),
            None => 1,
        };
        let tname = plan
            .name
            .clone()
            .unwrap_or_else(|| format!("{} {}", plan.method, plan.path));
        if names_weights
            .iter()
            .any(|(n, _): &(String, u32)| *n == tname)
        {
            return cx.err(
                Some(t.span()),
                format!("{tf}.name"),
                format!("`{tname}` is used twice; give the tasks distinct names"),
            );
        }
        names_weights.push((tname, w));
        let tags = task_tags(cx, &tf, ts)?.selectable();
        selected.push(refs.tags.selects(&tags));
        plans.push(plan);
    }
    // Every task is checked; only those the tags select run.
    let mut keep = selected.iter();
    plans.retain(|_| keep.next().copied().unwrap_or(false));
    let mut keep = selected.iter();
    names_weights.retain(|_| keep.next().copied().unwrap_or(false));
    if plans.is_empty() {
        return Ok(None);
    }
    let slots = match (&spec.max_concurrent_tasks, mode) {
        (None, ExecutionMode::Concurrent) => plans.len(),
        _ => slots,
    };
    // A sequential user's iteration is one pass of its tasks, a task of weight n n times.
    let per_iteration = match mode {
        ExecutionMode::Sequential => names_weights
            .iter()
            .map(|(_, w)| u64::from(*w))
            .sum::<u64>()
            .max(1),
        ExecutionMode::Concurrent => 1,
    };
    let used: Arc<[usize]> = used.into();
    let data = Arc::clone(refs.data);
    let http = http.clone();
    let plans = Arc::new(plans);
    // Setup runs once a run: its values are the same for every user, and so are the
    // tasks rendered with them. Rendered once and shared, not once per user (a copy of
    // every task per user was most of the memory of a file of many tasks).
    let rendered: Rendered = Arc::default();
    let mut b = UserType::builder(name, move |ctx| {
        let values = ctx.setup::<serde_json::Value>();
        let tasks = {
            let mut cache = rendered.lock().unwrap_or_else(|e| e.into_inner());
            match &*cache {
                Some((v, tasks)) if same_values(v, &values) => Arc::clone(tasks),
                _ => {
                    let tasks: Arc<Vec<RequestPlan>> = Arc::new(
                        plans
                            .iter()
                            .map(|p| p.rendered(values.as_deref()))
                            .collect(),
                    );
                    *cache = Some((values.clone(), Arc::clone(&tasks)));
                    tasks
                }
            }
        };
        // One client per concurrent slot, each with its own recorder on the run's
        // collector.
        let clients = (0..slots)
            .map(|_| tokio::sync::Mutex::new(http.client_for(ctx)))
            .collect();
        ScenarioUser {
            clients,
            tasks,
            vars: Vars::default(),
            vu: ctx.user_id(),
            runs: AtomicU64::new(0),
            per_iteration,
            rows: tokio::sync::Mutex::new(UserRows::new(data.len())),
            data: Arc::clone(&data),
            used: Arc::clone(&used),
        }
    })
    .weight(weight)
    .wait_time(wait)
    .execution_mode(mode);
    if mode == ExecutionMode::Concurrent {
        b = b.max_concurrent_tasks(slots);
    }
    for (j, (tname, w)) in names_weights.into_iter().enumerate() {
        b = b.shared_task_fn(tname, w, move |user: &ScenarioUser| Box::pin(user.run(j)));
    }
    b.build()
        .map(Some)
        .or_else(|e| cx.err(Some(u.span()), field, e.to_string()))
}
