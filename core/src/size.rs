//! Sizes in bytes as people write them (`64MiB`, `10MB`, `512KiB`, `1000`), read the same
//! way by every front end, and written back in the largest binary unit that fits.

/// Reads a size: a whole number of bytes, optionally followed by `B`, `KB`/`MB`/`GB`
/// (powers of 1,000) or `KiB`/`MiB`/`GiB` (powers of 1,024), case-insensitive, with or
/// without a space. An error says what was wrong.
///
/// ```
/// use aiotest_core::size::parse;
/// assert_eq!(parse("64MiB"), Ok(64 << 20));
/// assert_eq!(parse("10 kb"), Ok(10_000));
/// assert_eq!(parse("512"), Ok(512));
/// assert!(parse("1.5MB").is_err());
/// ```
pub fn parse(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(format!(
            "`{text}` is not a size: write a whole number of bytes with an optional unit (B, KB, MB, GB, KiB, MiB, GiB)"
        ));
    }
    let n: u64 = t[..digits]
        .parse()
        .map_err(|_| format!("`{text}` is too large a size"))?;
    let unit = t[digits..].trim().to_ascii_lowercase();
    let factor: u64 = match unit.as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        _ => {
            return Err(format!(
                "`{text}`: unknown unit `{}` (B, KB, MB, GB, KiB, MiB, GiB)",
                &t[digits..].trim()
            ));
        }
    };
    n.checked_mul(factor)
        .ok_or_else(|| format!("`{text}` is too large a size"))
}

/// `bytes` in the largest binary unit that divides it (`64 MiB`, `1536 KiB`, `100 B`).
pub fn format(bytes: u64) -> String {
    for (shift, unit) in [(30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{} {unit}", bytes >> shift);
        }
    }
    format!("{bytes} B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_with_their_units_and_refuse_anything_else() {
        assert_eq!(parse("0"), Ok(0));
        assert_eq!(parse("1GiB"), Ok(1 << 30));
        assert_eq!(parse(" 3 MB "), Ok(3_000_000));
        assert_eq!(parse("7b"), Ok(7));
        for bad in [
            "",
            "MB",
            "-1",
            "1.5MB",
            "10 furlongs",
            "99999999999999999999",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert!(
            parse("18446744073709551615GiB")
                .unwrap_err()
                .contains("too large")
        );
    }

    #[test]
    fn sizes_are_written_in_the_largest_unit_that_divides_them() {
        assert_eq!(format(64 << 20), "64 MiB");
        assert_eq!(format(1536 << 10), "1536 KiB");
        assert_eq!(format(100), "100 B");
        assert_eq!(format(0), "0 B");
    }
}
