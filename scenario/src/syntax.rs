//! Errors found while reading a file's TOML into its structure, said in the file's terms:
//! the full field path (`users[1].tasks[0].path`, not `path`), and types as a user
//! writes them (`a whole number from 0 to 4294967295`, not `u32`).

use std::collections::HashMap;

/// The field at byte `offset` of `text`: the table the line belongs to, with array
/// indices, and the key of the line (`users[1].weight`), or the table itself when the
/// offset is on its header (`users[1].tasks[0]`).
pub(super) fn field_at(text: &str, offset: usize) -> String {
    let mut current = String::new();
    // The latest resolved path of each raw dotted header name (`users.tasks` ->
    // `users[1].tasks[0]`), and the next index of each array of tables by resolved path.
    let mut resolved: HashMap<String, String> = HashMap::new();
    let mut counts: HashMap<String, usize> = HashMap::new();
    let mut start = 0;
    for line in text.split_inclusive('\n') {
        let end = start + line.len();
        let on_it = offset < end || end == text.len();
        let trimmed = line.trim();
        if let Some((raw, array)) = header(trimmed) {
            let segments: Vec<&str> = raw.split('.').map(str::trim).collect();
            let mut path = String::new();
            for (i, seg) in segments.iter().enumerate() {
                let raw_prefix = segments[..=i].join(".");
                let last = i + 1 == segments.len();
                if last && array {
                    let key = join(&path, seg);
                    let n = counts.entry(key.clone()).or_insert(0);
                    path = format!("{key}[{n}]");
                    *n += 1;
                    // A new element: whatever was under the previous one is not under it.
                    let children = format!("{raw_prefix}.");
                    resolved.retain(|k, _| !k.starts_with(&children));
                } else {
                    path = match resolved.get(&raw_prefix) {
                        Some(p) if !last => p.clone(),
                        _ => join(&path, seg),
                    };
                }
                resolved.insert(raw_prefix, path.clone());
            }
            current = path;
            if on_it {
                return current;
            }
        } else if on_it {
            return match trimmed.split_once('=') {
                Some((key, _)) if !trimmed.starts_with('#') => {
                    join(&current, key.trim().trim_matches('"'))
                }
                _ => current,
            };
        }
        start = end;
    }
    current
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// `[name]` or `[[name]]` (a trailing comment allowed): the name and whether it is an
/// array of tables.
fn header(line: &str) -> Option<(&str, bool)> {
    let line = match line.find('#') {
        Some(i) if !line[..i].contains('"') => line[..i].trim_end(),
        _ => line,
    };
    if let Some(inner) = line.strip_prefix("[[").and_then(|l| l.strip_suffix("]]")) {
        return Some((inner.trim(), true));
    }
    line.strip_prefix('[')
        .and_then(|l| l.strip_suffix(']'))
        .map(|inner| (inner.trim(), false))
}

/// The TOML reader's message for `field`, with Rust's type names put in a user's words.
pub(super) fn plain_message(message: &str, field: &str, on_header: bool) -> String {
    if message.starts_with("invalid type: map, expected a sequence") {
        let last = field.rsplit('.').next().unwrap_or(field);
        let last = last.split('[').next().unwrap_or(last);
        return if on_header {
            format!(
                "`[{field}]` is one table, but `{last}` is a list: write `[[{field}]]` for each entry"
            )
        } else {
            format!("`{last}` is a list: write `[...]` or `[[{field}]]` tables")
        };
    }
    let words = [
        ("expected u8", "expected a whole number from 0 to 255"),
        ("expected u16", "expected a whole number from 0 to 65535"),
        (
            "expected u32",
            "expected a whole number from 0 to 4294967295",
        ),
        ("expected u64", "expected a whole number, 0 or more"),
        ("expected usize", "expected a whole number, 0 or more"),
        ("expected i64", "expected a whole number"),
        ("expected f64", "expected a number"),
        ("expected a sequence", "expected a list `[...]`"),
        ("expected a map", "expected a table"),
        ("floating point", "decimal number"),
    ];
    let mut out = message.to_owned();
    for (rust, plain) in words {
        if let Some(i) = out.find(rust) {
            // Only the whole word: `expected u32` is not the start of `expected u320`.
            let after = out[i + rust.len()..].chars().next();
            if !after.is_some_and(|c| c.is_ascii_alphanumeric()) {
                out.replace_range(i..i + rust.len(), plain);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_named_with_their_tables_and_indices() {
        let text = "host = \"h\"\n[load]\nusers = 2\n[[users]]\nname = \"a\"\n\
                    [[users.tasks]]\npath = \"/\"\n[[users]]\nname = \"b\"\n\
                    [[users.tasks]]\npath = \"/x\"\n[[users.tasks]]  # second\nweight = 2\n";
        let at = |needle: &str| field_at(text, text.find(needle).unwrap());
        assert_eq!(at("host"), "host");
        assert_eq!(at("users = 2"), "load.users");
        assert_eq!(at("name = \"a\""), "users[0].name");
        assert_eq!(at("name = \"b\""), "users[1].name");
        assert_eq!(at("path = \"/x\""), "users[1].tasks[0].path");
        assert_eq!(at("weight = 2"), "users[1].tasks[1].weight");
        assert_eq!(at("[[users.tasks]]  #"), "users[1].tasks[1]");
    }

    #[test]
    fn rust_type_names_become_words() {
        assert_eq!(
            plain_message("invalid type: string \"x\", expected u32", "w", false),
            "invalid type: string \"x\", expected a whole number from 0 to 4294967295"
        );
        assert_eq!(
            plain_message(
                "invalid type: floating point `1.5`, expected u64",
                "u",
                false
            ),
            "invalid type: decimal number `1.5`, expected a whole number, 0 or more"
        );
        assert_eq!(
            plain_message("invalid type: map, expected a sequence", "users", true),
            "`[users]` is one table, but `users` is a list: write `[[users]]` for each entry"
        );
    }
}
