//! `[[data]]`: the rows of a CSV or JSON-lines file, for `{{data.COLUMN}}` in a user's
//! requests (k6's SharedArray, Gatling's feeders). A file is read once, checked whole
//! before the run, and shared read-only by every user. Each file has a strategy:
//!
//! - `unique`: each user takes its own row for its whole life; when every row is taken,
//!   `on_exhausted = "error"` (the default) fails the requests of users without one,
//!   saying so, and `"wrap"` starts again from the first row. In a distributed run the
//!   rows are numbered through Redis, so no two users of any worker share one.
//! - `round_robin`: each iteration of a user takes the next row (one sequence for all
//!   users of the process).
//! - `random`: each iteration of a user takes a row at random.
//!
//! A distributed run's master ships the files in its plan (at most [`PLAN_LIMIT`]
//! bytes together), so workers need no files.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Deserialize;
use toml::Spanned;

use super::{Ctx, ScenarioError};

/// How a data column is referred to.
pub(super) const OPEN: &str = "{{data.";

/// The most a distributed run's plan carries of data files, together.
pub const PLAN_LIMIT: usize = 16 << 20;

/// How long a distributed run's row counter is kept in Redis.
const COUNTER_TTL: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// `[[data]]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DataSpec {
    file: Spanned<String>,
    strategy: Option<Spanned<String>>,
    on_exhausted: Option<Spanned<String>>,
}

/// Where data files are read from.
#[derive(Debug, Clone, Copy)]
pub enum Files<'a> {
    /// The disk, a relative path from the scenario file's folder.
    Disk,
    /// A distributed run's plan: each file's text by its path as written.
    Given(&'a BTreeMap<String, String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Strategy {
    Unique { wrap: bool },
    RoundRobin,
    Random,
}

/// One data file, read and checked.
pub(super) struct DataSet {
    /// The path as written.
    file: String,
    columns: Vec<String>,
    rows: Vec<Vec<String>>,
    strategy: Strategy,
    /// The next row (unique, round-robin) in this process.
    next: AtomicU64,
    /// A distributed run's counter of unique rows: Redis and its key.
    shared: OnceLock<(aiotest_coordinator::Redis, String)>,
}

/// Every data file of a scenario, and where each column is.
#[derive(Default)]
pub struct Data {
    sets: Vec<DataSet>,
    /// Column name -> (file, column).
    columns: BTreeMap<String, (usize, usize)>,
}

/// A user's row of each file it uses: `None` before it took one, `Err` when none was
/// left for it.
pub(super) type Rows = Vec<Option<Result<usize, String>>>;

impl Data {
    /// Reads and checks every `[[data]]` file.
    pub(super) fn load(
        cx: &Ctx<'_>,
        specs: &[Spanned<DataSpec>],
        files: Files<'_>,
    ) -> Result<Data, ScenarioError> {
        let mut data = Data::default();
        for (i, spec) in specs.iter().enumerate() {
            let field = format!("data[{i}]");
            let set = load_one(cx, &field, spec.get_ref(), files)?;
            for (c, name) in set.columns.iter().enumerate() {
                if let Some(&(other, _)) = data.columns.get(name) {
                    return cx.err(
                        Some(spec.get_ref().file.span()),
                        format!("{field}.file"),
                        format!(
                            "column `{name}` is in `{}` too: each column name must be in one data file",
                            data.sets[other].file
                        ),
                    );
                }
                data.columns.insert(name.clone(), (data.sets.len(), c));
            }
            data.sets.push(set);
        }
        Ok(data)
    }

    /// The column names, for checking references.
    pub(super) fn column_names(&self) -> Vec<String> {
        self.columns.keys().cloned().collect()
    }

    /// How many files.
    pub(super) fn len(&self) -> usize {
        self.sets.len()
    }

    /// The file `column` is in.
    pub(super) fn set_of(&self, column: &str) -> Option<usize> {
        self.columns.get(column).map(|&(s, _)| s)
    }

    /// Numbers unique rows through Redis at `key` (one key per run instance), so users of
    /// every worker of a distributed run take distinct rows.
    pub fn share_unique_rows(&self, redis: &aiotest_coordinator::Redis, key: &str) {
        for (i, set) in self.sets.iter().enumerate() {
            if matches!(set.strategy, Strategy::Unique { .. }) {
                let _ = set.shared.set((redis.clone(), format!("{key}:{i}")));
            }
        }
    }

    /// Whether file `set` gives a new row each iteration (else one per user).
    pub(super) fn per_iteration(&self, set: usize) -> bool {
        self.sets
            .get(set)
            .is_some_and(|s| !matches!(s.strategy, Strategy::Unique { .. }))
    }

    /// A row of file `set` by its strategy: a user's own (unique), the next one
    /// (round-robin) or any (random). `Err((why, again))`: none, and whether asking
    /// again may give one (Redis did not answer).
    pub(super) async fn take(&self, set: usize) -> Result<usize, (String, bool)> {
        let Some(s) = self.sets.get(set) else {
            return Err(("no such data file".into(), false));
        };
        let len = s.rows.len() as u64;
        let n = match s.strategy {
            Strategy::Random => return Ok(aiotest_core::fastrand::usize(..s.rows.len())),
            Strategy::RoundRobin => s.next.fetch_add(1, Ordering::Relaxed) % len,
            Strategy::Unique { wrap } => {
                let n = match s.shared.get() {
                    Some((redis, key)) => {
                        redis
                            .incr(key, COUNTER_TTL)
                            .await
                            .map_err(|e| {
                                let why = format!(
                                    "data file `{}`: cannot take a row through Redis: {e}",
                                    s.file
                                );
                                (why, true)
                            })?
                            // INCR counts from 1; a counter set below 1 by someone else gives the first row.
                            .saturating_sub(1)
                    }
                    None => s.next.fetch_add(1, Ordering::Relaxed),
                };
                match (n < len, wrap) {
                    (true, _) => n,
                    (false, true) => n % len,
                    (false, false) => {
                        let why = format!(
                            "data file `{}`: all {len} rows are taken, one per user (strategy unique); \
                             add rows, run fewer users, or set on_exhausted = \"wrap\"",
                            s.file
                        );
                        return Err((why, false));
                    }
                }
            }
        };
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// The value of `column` in a user's `rows`, or why there is none.
    pub(super) fn value<'a>(&'a self, column: &str, rows: &Rows) -> Result<&'a str, String> {
        let Some(&(set, c)) = self.columns.get(column) else {
            return Err(format!("`{OPEN}{column}}}}}` is not a data column"));
        };
        match rows.get(set) {
            Some(Some(Ok(r))) => Ok(self.sets[set].rows[*r][c].as_str()),
            Some(Some(Err(why))) => Err(why.clone()),
            _ => Err(format!("data file `{}`: no row taken", self.sets[set].file)),
        }
    }
}

/// A file the scenario names at `f` (field `field`): from the disk, relative to the
/// scenario file's folder, or from a distributed run's plan.
pub(super) fn read_file(
    cx: &Ctx<'_>,
    files: Files<'_>,
    f: &Spanned<String>,
    field: &str,
) -> Result<String, ScenarioError> {
    let path = f.get_ref();
    match files {
        Files::Disk => {
            let full = cx
                .file
                .parent()
                .map_or_else(|| Path::new(path).to_owned(), |dir| dir.join(path));
            std::fs::read_to_string(&full).or_else(|e| {
                cx.err(
                    Some(f.span()),
                    field,
                    format!("cannot read `{}`: {e}", full.display()),
                )
            })
        }
        Files::Given(given) => match given.get(path) {
            Some(t) => Ok(t.clone()),
            None => cx.err(
                Some(f.span()),
                field,
                format!("`{path}` is not in the master's plan"),
            ),
        },
    }
}

fn load_one(
    cx: &Ctx<'_>,
    field: &str,
    spec: &DataSpec,
    files: Files<'_>,
) -> Result<DataSet, ScenarioError> {
    let f = &spec.file;
    let ff = format!("{field}.file");
    let path = f.get_ref();
    let text = read_file(cx, files, f, &ff)?;
    let strategy = match spec.strategy.as_ref().map(|s| (s, s.get_ref().as_str())) {
        None | Some((_, "unique")) => Strategy::Unique { wrap: false },
        Some((_, "round_robin")) => Strategy::RoundRobin,
        Some((_, "random")) => Strategy::Random,
        Some((s, other)) => {
            return cx.err(
                Some(s.span()),
                format!("{field}.strategy"),
                format!("`{other}`: use unique, round_robin or random"),
            );
        }
    };
    let strategy = match (&spec.on_exhausted, strategy) {
        (None, s) => s,
        (Some(o), Strategy::Unique { .. }) => match o.get_ref().as_str() {
            "error" => Strategy::Unique { wrap: false },
            "wrap" => Strategy::Unique { wrap: true },
            other => {
                return cx.err(
                    Some(o.span()),
                    format!("{field}.on_exhausted"),
                    format!("`{other}`: use error or wrap"),
                );
            }
        },
        (Some(o), _) => {
            return cx.err(
                Some(o.span()),
                format!("{field}.on_exhausted"),
                "applies to strategy = \"unique\" only: the others never run out",
            );
        }
    };
    // A spreadsheet's export may start with a byte order mark: it is not part of a name.
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let parsed = if path.ends_with(".csv") {
        csv_rows(text)
    } else if path.ends_with(".jsonl") || path.ends_with(".ndjson") {
        json_lines(text)
    } else {
        Err("a data file is .csv (with a header line) or .jsonl (a JSON object per line)".into())
    };
    let (columns, rows) =
        parsed.or_else(|why| cx.err(Some(f.span()), &ff, format!("`{path}`: {why}")))?;
    if rows.is_empty() {
        return cx.err(Some(f.span()), &ff, format!("`{path}` has no rows"));
    }
    for c in &columns {
        let ok = !c.is_empty()
            && c.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
        if !ok {
            return cx.err(
                Some(f.span()),
                &ff,
                format!("`{path}`: column `{c}`: a column name is letters, digits, _, - and ."),
            );
        }
    }
    Ok(DataSet {
        file: path.clone(),
        columns,
        rows,
        strategy,
        next: AtomicU64::new(0),
        shared: OnceLock::new(),
    })
}

type Table = (Vec<String>, Vec<Vec<String>>);

fn csv_rows(text: &str) -> Result<Table, String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(text.as_bytes());
    let columns: Vec<String> = reader
        .headers()
        .map_err(|e| e.to_string())?
        .iter()
        .map(str::to_owned)
        .collect();
    let mut seen = std::collections::HashSet::new();
    if let Some(c) = columns.iter().find(|c| !seen.insert(c.as_str())) {
        return Err(format!("the header names `{c}` twice"));
    }
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| match e.kind() {
            csv::ErrorKind::UnequalLengths {
                pos: Some(pos),
                expected_len,
                len,
            } => format!(
                "line {}: {len} fields, but the header has {expected_len}",
                pos.line()
            ),
            _ => e.to_string(),
        })?;
        rows.push(record.iter().map(str::to_owned).collect());
    }
    Ok((columns, rows))
}

fn json_lines(text: &str) -> Result<Table, String> {
    let mut columns: Option<Vec<String>> = None;
    let mut rows = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line_no = n + 1;
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("line {line_no}: not JSON: {e}"))?;
        let serde_json::Value::Object(object) = value else {
            return Err(format!("line {line_no}: not a JSON object"));
        };
        let cols = columns.get_or_insert_with(|| object.keys().cloned().collect());
        let mut row = Vec::with_capacity(cols.len());
        for c in cols.iter() {
            match object.get(c) {
                Some(serde_json::Value::String(s)) => row.push(s.clone()),
                Some(other) => row.push(other.to_string()),
                None => return Err(format!("line {line_no}: no `{c}` (the first line has it)")),
            }
        }
        if let Some(extra) = object.keys().find(|k| !cols.contains(k)) {
            return Err(format!(
                "line {line_no}: `{extra}` is not in the first line"
            ));
        }
        rows.push(row);
    }
    Ok((columns.unwrap_or_default(), rows))
}

/// The files a scenario file's text names (data files, client certificates and keys),
/// read from the disk (relative to `scenario`'s folder), for a distributed run's plan;
/// an error past [`PLAN_LIMIT`].
pub fn referenced(scenario: &Path, text: &str) -> Result<BTreeMap<String, String>, String> {
    #[derive(Deserialize)]
    struct Only {
        #[serde(default)]
        data: Vec<OnlyFile>,
        http: Option<OnlyHttp>,
        #[serde(default)]
        users: Vec<OnlyUser>,
    }
    #[derive(Deserialize)]
    struct OnlyFile {
        file: String,
    }
    #[derive(Deserialize)]
    struct OnlyHttp {
        client_cert: Option<String>,
        client_key: Option<String>,
    }
    #[derive(Deserialize)]
    struct OnlyUser {
        http: Option<OnlyHttp>,
    }
    // A file that does not parse is reported in full when it is checked.
    let Ok(only) = toml::from_str::<Only>(text) else {
        return Ok(BTreeMap::new());
    };
    let certs = only
        .http
        .iter()
        .chain(only.users.iter().filter_map(|u| u.http.as_ref()))
        .flat_map(|h| [h.client_cert.clone(), h.client_key.clone()])
        .flatten();
    let mut out = BTreeMap::new();
    let mut total = 0usize;
    for file in only.data.into_iter().map(|d| d.file).chain(certs) {
        let full = scenario
            .parent()
            .map_or_else(|| Path::new(&file).to_owned(), |dir| dir.join(&file));
        let text = std::fs::read_to_string(&full)
            .map_err(|e| format!("cannot read `{}`: {e}", full.display()))?;
        total += text.len();
        if total > PLAN_LIMIT {
            return Err(format!(
                "file `{file}`: the files the scenario reads add up to more than {} MiB, the \
                 most a distributed run ships to its workers; split the test or use fewer rows",
                PLAN_LIMIT >> 20
            ));
        }
        out.insert(file, text);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aiotest_coordinator::testutil::RedisServer;

    /// Unique rows numbered through Redis: distinct across two files' users of the same
    /// key (as on two workers), an outage is an error worth asking again, and when the
    /// server is back the numbering goes on.
    #[test]
    fn unique_rows_through_redis_are_distinct_and_an_outage_can_be_retried() {
        let csv =
            std::env::temp_dir().join(format!("aiotest-unit-{}-redis.csv", std::process::id()));
        std::fs::write(&csv, "key\na\nb\nc\n").unwrap();
        let text = format!(
            "[[data]]\nfile = \"{}\"\n[[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/{{{{data.key}}}}\"\n",
            csv.display()
        );
        let one = super::super::parse(Path::new("s.toml"), &text)
            .unwrap()
            .data;
        let two = super::super::parse(Path::new("s.toml"), &text)
            .unwrap()
            .data;
        let mut redis_server = RedisServer::start().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let redis = aiotest_coordinator::Redis::connect(&redis_server.url())
                .await
                .unwrap();
            one.share_unique_rows(&redis, "aiotest:t:data:1");
            two.share_unique_rows(&redis, "aiotest:t:data:1");
            let rows = [one.take(0).await, two.take(0).await, one.take(0).await];
            assert_eq!(rows, [Ok(0), Ok(1), Ok(2)]);
            let (why, again) = two.take(0).await.unwrap_err();
            assert!(!again, "out of rows for good: {why}");
            assert!(why.contains("all 3 rows are taken"), "{why}");
            redis_server.kill();
            let (why, again) = one.take(0).await.unwrap_err();
            assert!(again, "Redis gone: worth asking again: {why}");
            assert!(why.contains("cannot take a row through Redis"), "{why}");
        });
        let _ = std::fs::remove_file(csv);
    }
}
