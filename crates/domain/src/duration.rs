//! Token lifetimes as admins write them: `30m`, `12h`, `3d`, `1w` (PROTOCOL.md section 2).

use crate::ValidationError;

/// Parses `<number><unit>` with unit s, m, h, d or w into seconds. Bounded to one year so
/// that a typo cannot mint a practically eternal token.
pub fn parse_lifetime(field: &'static str, s: &str) -> Result<i64, ValidationError> {
    let t = s.trim();
    let err = || {
        ValidationError::new(
            field,
            format!("invalid duration {t:?}: use a number followed by s, m, h, d or w, e.g. 12h, 3d, 1w"),
        )
    };
    let split = t.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
    let (num, unit) = t.split_at(split);
    let n: i64 = num.parse().map_err(|_| err())?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return Err(err()),
    };
    let secs = n.checked_mul(mult).ok_or_else(err)?;
    if secs <= 0 {
        return Err(ValidationError::new(field, "duration must be positive"));
    }
    if secs > 366 * 86_400 {
        return Err(ValidationError::new(field, "duration must be at most one year"));
    }
    Ok(secs)
}

/// Human form of a number of seconds for e-mails ("24 hours", "10 minutes").
pub fn humanize(secs: i64) -> String {
    let plural = |n: i64, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    if secs % 604_800 == 0 && secs >= 604_800 {
        plural(secs / 604_800, "week")
    } else if secs % 86_400 == 0 && secs >= 86_400 && secs != 86_400 {
        plural(secs / 86_400, "day")
    } else if secs % 3600 == 0 && secs >= 3600 {
        plural(secs / 3600, "hour")
    } else if secs % 60 == 0 && secs >= 60 {
        plural(secs / 60, "minute")
    } else {
        plural(secs, "second")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn examples() {
        assert_eq!(parse_lifetime("t", "3d").unwrap(), 3 * 86_400);
        assert_eq!(parse_lifetime("t", "12h").unwrap(), 12 * 3600);
        assert_eq!(parse_lifetime("t", "1w").unwrap(), 604_800);
        for bad in ["", "d", "3", "3x", "-3d", "0h", "3 d", "999999999999999999999w", "400d"] {
            assert!(parse_lifetime("t", bad).is_err(), "{bad}");
        }
        assert_eq!(humanize(86_400), "24 hours");
        assert_eq!(humanize(600), "10 minutes");
        assert_eq!(humanize(3 * 86_400), "3 days");
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,20}") { let _ = parse_lifetime("t", &s); }

        #[test]
        fn hours_roundtrip(n in 1i64..8000) {
            prop_assert_eq!(parse_lifetime("t", &format!("{n}h")).unwrap(), n * 3600);
        }

        /// Every unit: accepted exactly when positive and at most a year, then the seconds
        /// are the number times the unit; blanks around are allowed.
        #[test]
        fn every_unit_round_trips(n in 0i64..2_000_000, unit in 0usize..5, pad in "[ \t]{0,2}") {
            let (u, mult) = [("s", 1), ("m", 60), ("h", 3600), ("d", 86_400), ("w", 604_800)][unit];
            let r = parse_lifetime("t", &format!("{pad}{n}{u}{pad}"));
            let secs = n * mult;
            if secs > 0 && secs <= 366 * 86_400 {
                prop_assert_eq!(r.unwrap(), secs);
                // Its human form names a whole number of one unit.
                let h = humanize(secs);
                let (num, _) = h.split_once(' ').unwrap();
                prop_assert!(num.parse::<i64>().unwrap() > 0, "{}", h);
            } else {
                prop_assert!(r.is_err());
            }
        }
    }
}
