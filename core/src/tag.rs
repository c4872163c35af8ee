//! What a key=value tag may hold, for every place a tag is made (a scenario's, the
//! test's, a metric sample's): one rule, checked where the tag enters.

/// Longest tag key, in bytes.
pub const MAX_KEY_LEN: usize = 128;
/// Longest tag value, in bytes.
pub const MAX_VALUE_LEN: usize = 512;

/// Whether `key` and `value` make a tag; the reason when not.
pub fn check(key: &str, value: &str) -> Result<(), &'static str> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err("a key has 1 to 128 bytes");
    }
    if key
        .chars()
        .any(|c| c.is_control() || matches!(c, '{' | '}' | ',' | ':' | '='))
    {
        return Err("a key has no control characters and none of { } , : =");
    }
    if value.len() > MAX_VALUE_LEN {
        return Err("a value has at most 512 bytes");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_and_values_are_bounded_and_keys_plain() {
        assert!(super::check("shop", "eu").is_ok());
        assert!(super::check("shop", "").is_ok());
        assert!(super::check("", "x").is_err());
        assert!(super::check(&"k".repeat(129), "x").is_err());
        assert!(super::check("a:b", "x").is_err());
        assert!(super::check("a\nb", "x").is_err());
        assert!(super::check("k", &"v".repeat(513)).is_err());
    }
}
