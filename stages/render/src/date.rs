//! The date `strftime_now` sees.
//!
//! transformers calls `datetime.now().strftime(fmt)`; Llama 3.x templates put
//! "Today Date: 26 Jul 2024" in every system header. Using the wall clock would
//! change the rendered text (and every cache key downstream) each day, so the
//! date is a render parameter with a fixed default, and the time is midnight.

use crate::RenderError;
use std::fmt::{self, Write};

/// The default date: the one transformers' Llama 3.1 template falls back to
/// and the reference renderings were made with.
pub const DEFAULT_DATE: &str = "2024-07-26";

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// A calendar date (proleptic Gregorian), parsed from `YYYY-MM-DD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Date {
    pub year: i32,
    pub month: u32,
    pub day: u32,
}

impl Date {
    /// Parse `YYYY-MM-DD`.
    pub fn parse(text: &str) -> Result<Date, RenderError> {
        let bad = || RenderError::BadDate {
            value: text.to_owned(),
        };
        let mut parts = text.trim().splitn(3, '-');
        let year: i32 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let month: u32 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let day: u32 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return Err(bad());
        }
        Ok(Date { year, month, day })
    }

    /// Days since 1970-01-01 (Howard Hinnant's `days_from_civil`).
    fn days_since_epoch(&self) -> i64 {
        let y = i64::from(self.year) - i64::from(self.month <= 2);
        let era = if y >= 0 { y } else { y - 399 } / 400;
        let yoe = y - era * 400;
        let m = i64::from(self.month);
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(self.day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146097 + doe - 719468
    }

    /// 0 = Monday.
    fn weekday(&self) -> usize {
        // 1970-01-01 was a Thursday (3).
        (self.days_since_epoch() + 3).rem_euclid(7) as usize
    }

    fn day_of_year(&self) -> u32 {
        (1..self.month)
            .map(|m| days_in_month(self.year, m))
            .sum::<u32>()
            + self.day
    }

    /// Python's `strftime` at midnight of this date, for the directives chat
    /// templates use (C locale). Unknown directives are an error rather than
    /// a silently different text.
    pub fn strftime(&self, format: &str) -> Result<String, String> {
        let mut out = String::new();
        let mut chars = format.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            // glibc's `%-d` (no padding), which Python on Linux passes through.
            let no_pad = chars.peek() == Some(&'-');
            if no_pad {
                chars.next();
            }
            let Some(d) = chars.next() else {
                return Err("format ends with a lone `%`".to_owned());
            };
            let num = |out: &mut String, v: u32, width: usize| {
                if no_pad {
                    write!(out, "{v}").ok();
                } else {
                    write!(out, "{v:0width$}").ok();
                }
            };
            match d {
                'd' => num(&mut out, self.day, 2),
                'e' => {
                    if no_pad {
                        write!(out, "{}", self.day).ok();
                    } else {
                        write!(out, "{:>2}", self.day).ok();
                    }
                }
                'm' => num(&mut out, self.month, 2),
                'Y' => {
                    write!(out, "{}", self.year).ok();
                }
                'y' => num(&mut out, self.year.rem_euclid(100) as u32, 2),
                'b' | 'h' => out.push_str(&MONTHS[self.month as usize - 1][..3]),
                'B' => out.push_str(MONTHS[self.month as usize - 1]),
                'a' => out.push_str(&WEEKDAYS[self.weekday()][..3]),
                'A' => out.push_str(WEEKDAYS[self.weekday()]),
                'w' => {
                    write!(out, "{}", (self.weekday() + 1) % 7).ok();
                }
                'u' => {
                    write!(out, "{}", self.weekday() + 1).ok();
                }
                'j' => num(&mut out, self.day_of_year(), 3),
                'H' | 'M' | 'S' => num(&mut out, 0, 2),
                'I' => num(&mut out, 12, 2),
                'p' => out.push_str("AM"),
                'F' => {
                    write!(out, "{}-{:02}-{:02}", self.year, self.month, self.day).ok();
                }
                'D' => {
                    write!(
                        out,
                        "{:02}/{:02}/{:02}",
                        self.month,
                        self.day,
                        self.year.rem_euclid(100)
                    )
                    .ok();
                }
                '%' => out.push('%'),
                other => return Err(format!("unsupported strftime directive `%{other}`")),
            }
        }
        Ok(out)
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_python() {
        let d = Date::parse(DEFAULT_DATE).unwrap();
        assert_eq!(d.strftime("%d %b %Y").unwrap(), "26 Jul 2024");
        assert_eq!(
            d.strftime("%A, %B %-d, %Y").unwrap(),
            "Friday, July 26, 2024"
        );
        assert_eq!(d.strftime("%Y-%m-%d %H:%M").unwrap(), "2024-07-26 00:00");
        assert_eq!(d.strftime("%j %a %y").unwrap(), "208 Fri 24");
        let leap = Date::parse("2000-02-29").unwrap();
        assert_eq!(leap.strftime("%a %d.%m").unwrap(), "Tue 29.02");
        assert!(d.strftime("%Q").is_err());
    }

    #[test]
    fn rejects_bad_dates() {
        for bad in ["2024-13-01", "2023-02-29", "26 Jul 2024", "2024-07"] {
            assert!(Date::parse(bad).is_err(), "{bad}");
        }
    }
}
