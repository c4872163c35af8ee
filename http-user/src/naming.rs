//! Request names from paths: ids replaced, query dropped, so names cannot explode.
//!
//! `/users/42/orders/7?x=1` is named `/users/{id}/orders/{id}`. A segment is an id when it
//! is all digits, a UUID, or a long hexadecimal string (16 or more hex digits with at
//! least one digit, e.g. a hash or an object id). The name is written into a buffer the
//! client reuses, so naming allocates nothing once the buffer is large enough.

/// The placeholder written for an id segment.
pub const ID: &str = "{id}";

/// Writes the name of `path` (a path, possibly with `?query` or `#fragment`) into `out`,
/// replacing its previous contents.
///
/// ```
/// let mut name = String::new();
/// aiotest_http_user::naming::name_for_path("/users/42?page=2", &mut name);
/// assert_eq!(name, "/users/{id}");
/// ```
pub fn name_for_path(path: &str, out: &mut String) {
    out.clear();
    let path = path.split(['?', '#']).next().unwrap_or("");
    if path.is_empty() {
        out.push('/');
        return;
    }
    for (i, segment) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        if is_id(segment) {
            out.push_str(ID);
        } else {
            out.push_str(segment);
        }
    }
}

fn is_id(s: &str) -> bool {
    if s.is_empty() {
        return false;
    }
    let b = s.as_bytes();
    if b.iter().all(u8::is_ascii_digit) {
        return true;
    }
    if is_uuid(b) {
        return true;
    }
    b.len() >= 16 && b.iter().all(u8::is_ascii_hexdigit) && b.iter().any(u8::is_ascii_digit)
}

fn is_uuid(b: &[u8]) -> bool {
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_replaced_and_queries_dropped() {
        let cases = [
            ("/users/42", "/users/{id}"),
            ("/users/42/orders/7?x=1&y=2", "/users/{id}/orders/{id}"),
            ("/items/550e8400-e29b-41d4-a716-446655440000", "/items/{id}"),
            (
                "/items/550E8400-E29B-41D4-A716-446655440000/x",
                "/items/{id}/x",
            ),
            ("/blobs/9f86d081884c7d659a2feaa0c55ad015", "/blobs/{id}"),
            ("/objects/507f1f77bcf86cd799439011", "/objects/{id}"),
            ("/v2/users", "/v2/users"),
            ("/deadbeefdeadbeef", "/deadbeefdeadbeef"), // hex words, no digit: a name
            ("/abc123", "/abc123"),                     // short mixed: a name
            ("/", "/"),
            ("", "/"),
            ("?q=1", "/"),
            ("/a/#frag", "/a/"),
            ("/users/42/", "/users/{id}/"),
        ];
        let mut out = String::new();
        for (path, want) in cases {
            name_for_path(path, &mut out);
            assert_eq!(out, want, "{path}");
        }
    }

    #[test]
    fn the_buffer_is_reused() {
        let mut out = String::with_capacity(64);
        let ptr = out.as_ptr();
        for i in 0..100 {
            name_for_path(&format!("/users/{i}/cart"), &mut out);
        }
        assert_eq!(out, "/users/{id}/cart");
        assert_eq!(out.as_ptr(), ptr, "no reallocation");
    }
}
