//! Request targets and names, built once per path and client.
//!
//! A virtual user asks for the same few paths again and again. Turning a path into a
//! request target (base prefix joined, parsed into an [`http::uri::PathAndQuery`]) and
//! into a statistics name (ids replaced) costs a few allocations and a scan; the client
//! does that once per distinct path and keeps the result here. Later requests to the path
//! clone the parsed target (a reference count) and borrow the name.
//!
//! The table is small and never evicts: paths that change every request (ids in them)
//! would only churn it. Once full, new paths are built per request, exactly as without
//! the table, so a user with thousands of distinct paths pays a short scan and nothing
//! more.

use std::borrow::Cow;

use aiotest_metrics::Endpoint;
use bytes::Bytes;
use http::Method;
use http::uri::PathAndQuery;

use crate::client::Base;
use crate::naming::name_for_path;

/// Distinct paths kept per client.
pub(crate) const CAPACITY: usize = 32;

/// One remembered path.
struct Entry {
    /// The path as the task wrote it (relative to the base). A `&'static str` is kept
    /// as it is, so the same literal is found again by its address.
    path: Cow<'static, str>,
    /// The request target: base prefix and path, parsed.
    target: PathAndQuery,
    /// The statistics name.
    name: Box<str>,
    /// The metrics endpoint of the last method used with this path.
    endpoint: Option<(Method, Endpoint)>,
}

/// Targets and names of the paths a client has used.
#[derive(Default)]
pub(crate) struct Targets {
    entries: Vec<Entry>,
    /// Absolute URLs (`http://host/path`, as scripts write them) with their origin and
    /// target, parsed once; as bounded as `entries`.
    absolute: Vec<(Box<str>, Base, PathAndQuery)>,
}

impl Targets {
    /// The origin and target of the absolute URL `url`, if kept.
    pub(crate) fn absolute(&self, url: &str) -> Option<(&Base, &PathAndQuery)> {
        self.absolute
            .iter()
            .find(|(u, _, _)| **u == *url)
            .map(|(_, b, t)| (b, t))
    }

    /// Keeps the origin and target of `url`, while there is room.
    pub(crate) fn remember_absolute(&mut self, url: &str, base: &Base, target: &PathAndQuery) {
        if self.absolute.len() < CAPACITY {
            self.absolute
                .push((url.into(), base.clone(), target.clone()));
        }
    }

    /// The index of `path`'s entry, creating it when there is room. `None` when the path
    /// is not (and cannot be) kept; the caller then builds the target itself.
    #[inline]
    #[allow(clippy::ptr_arg)] // a `&'static str` is kept, not copied, so the `Cow` matters
    pub(crate) fn index(&mut self, prefix: &str, path: &Cow<'static, str>) -> Option<usize> {
        // Tasks mostly pass string literals: the same address and length is the same
        // text (an entry's own string is alive, so no other string shares its address).
        let same_str = |e: &Entry| e.path.as_ptr() == path.as_ptr() && e.path.len() == path.len();
        match self.entries.iter().position(same_str) {
            Some(i) => Some(i),
            None => self.find_or_add(prefix, path),
        }
    }

    /// [`index`](Self::index) for a path not found by address.
    #[cold]
    #[allow(clippy::ptr_arg)] // as in `index`
    fn find_or_add(&mut self, prefix: &str, path: &Cow<'static, str>) -> Option<usize> {
        if let Some(i) = self.entries.iter().position(|e| e.path == *path) {
            return Some(i);
        }
        if self.entries.len() >= CAPACITY {
            return None;
        }
        let target = match path {
            // A literal that is already the whole target is referenced, not copied:
            // cloning it later touches no reference count.
            Cow::Borrowed(p) if prefix.is_empty() && p.starts_with('/') => {
                PathAndQuery::from_maybe_shared(Bytes::from_static(p.as_bytes())).ok()?
            }
            _ => join(prefix, path, None).ok()?,
        };
        let mut name = String::new();
        name_for_path(path, &mut name);
        self.entries.push(Entry {
            path: path.clone(),
            target,
            name: name.into_boxed_str(),
            endpoint: None,
        });
        Some(self.entries.len() - 1)
    }

    /// The parsed target of entry `i`.
    pub(crate) fn target(&self, i: usize) -> &PathAndQuery {
        &self.entries[i].target
    }

    /// The statistics name of entry `i`.
    pub(crate) fn name(&self, i: usize) -> &str {
        &self.entries[i].name
    }

    /// The metrics endpoint of entry `i` requested with `method`: remembered for the
    /// path's last method, else resolved by `resolve` from the entry's name.
    #[inline]
    pub(crate) fn endpoint(
        &mut self,
        i: usize,
        method: &Method,
        resolve: impl FnOnce(&str) -> Endpoint,
    ) -> Endpoint {
        match &self.entries[i].endpoint {
            Some((m, endpoint)) if m == method => *endpoint,
            _ => self.resolve_endpoint(i, method, resolve),
        }
    }

    #[cold]
    fn resolve_endpoint(
        &mut self,
        i: usize,
        method: &Method,
        resolve: impl FnOnce(&str) -> Endpoint,
    ) -> Endpoint {
        let entry = &mut self.entries[i];
        let endpoint = resolve(&entry.name);
        entry.endpoint = Some((method.clone(), endpoint));
        endpoint
    }

    /// How many paths are kept.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

/// The request target for `path` under the base URL's path `prefix`, with `query` (already
/// encoded) appended.
pub(crate) fn join(
    prefix: &str,
    path: &str,
    query: Option<&str>,
) -> Result<PathAndQuery, http::uri::InvalidUri> {
    let extra = query.map_or(0, |q| q.len() + 1);
    let mut t = String::with_capacity(prefix.len() + path.len() + 1 + extra);
    t.push_str(prefix);
    if !path.starts_with('/') {
        t.push('/');
    }
    t.push_str(path);
    if let Some(q) = query {
        t.push(if t.contains('?') { '&' } else { '?' });
        t.push_str(q);
    }
    PathAndQuery::try_from(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_is_built_once_and_found_again() {
        let mut t = Targets::default();
        let a = t.index("/api", &"/users/42".into()).unwrap();
        assert_eq!(t.target(a).as_str(), "/api/users/42");
        assert_eq!(t.name(a), "/users/{id}");
        let b = t.index("/api", &"items".into()).unwrap();
        assert_eq!(t.target(b).as_str(), "/api/items");
        assert_eq!(t.index("/api", &"/users/42".into()), Some(a));
        // The same text from another string finds the same entry.
        assert_eq!(t.index("/api", &String::from("/users/42").into()), Some(a));
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn a_literal_and_an_owned_copy_of_it_share_an_entry() {
        let mut t = Targets::default();
        let a = t.index("", &"/items".into()).unwrap();
        assert_eq!(t.target(a).as_str(), "/items");
        assert_eq!(t.index("", &String::from("/items").into()), Some(a));
        let b = t.index("", &String::from("/owned").into()).unwrap();
        assert_eq!(t.index("", &"/owned".into()), Some(b));
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn a_full_table_keeps_what_it_has_and_takes_nothing_new() {
        let mut t = Targets::default();
        for i in 0..CAPACITY {
            assert_eq!(t.index("", &format!("/p/{i}").into()), Some(i));
        }
        assert_eq!(t.index("", &"/new".into()), None);
        assert_eq!(t.index("", &"/p/3".into()), Some(3));
        assert_eq!(t.len(), CAPACITY);
    }

    #[test]
    fn an_unparsable_path_is_not_kept() {
        let mut t = Targets::default();
        assert_eq!(t.index("", &"/a b".into()), None);
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn join_appends_the_query_after_an_existing_one() {
        assert_eq!(
            join("", "/a?x=1", Some("y=2")).unwrap().as_str(),
            "/a?x=1&y=2"
        );
        assert_eq!(join("/p", "a", Some("y=2")).unwrap().as_str(), "/p/a?y=2");
    }
}
