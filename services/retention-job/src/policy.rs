//! The retention policy: how long each service's events are kept, and what
//! that means for each daily partition. No I/O here, so every rule is
//! unit-tested.
//!
//! Invariants (see docs/adr/0020-retention-job.md):
//!
//! - Cutoffs are UTC midnights. With a retention of `R` days, an event is
//!   expired when `ts < (today − R) 00:00 UTC`. So nothing younger than `R`
//!   days is ever deleted, and nothing older than `R + 1` days survives a
//!   run. A whole day expires at once, which is what lets a partition go.
//! - A partition is dropped only when its whole day is expired for *every*
//!   retention class, i.e. it lies before the cutoff of the longest
//!   retention in force. Shorter classes are expired by row deletes inside
//!   the partitions that are kept.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Days, NaiveDate, Utc};

/// Longest retention accepted, in days (100 years; the same bound as the
/// gateway's `RETENTION_DAYS`).
pub const MAX_RETENTION_DAYS: u32 = 36_500;

/// Per-service retention overrides, `RETENTION_OVERRIDES=audit-service=365,debug=3`.
/// Can only be built by parsing, which checks every name and number.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionOverrides(BTreeMap<String, u32>);

impl RetentionOverrides {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `(service, days)`, by service name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u32)> {
        self.0.iter().map(|(s, d)| (s.as_str(), *d))
    }
}

impl FromStr for RetentionOverrides {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut map = BTreeMap::new();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let Some((service, days)) = item.split_once('=') else {
                return Err(format!("expected service=days, got {item:?}"));
            };
            let service = service.trim();
            if !is_service_name(service) {
                return Err(format!(
                    "{service:?} is not a service name (1-100 chars of A-Z a-z 0-9 . _ : -)"
                ));
            }
            let days: u32 = match days.trim().parse() {
                Ok(d) if (1..=MAX_RETENTION_DAYS).contains(&d) => d,
                _ => {
                    return Err(format!(
                        "retention of {service:?} must be 1-{MAX_RETENTION_DAYS} days, got {:?}",
                        days.trim()
                    ));
                }
            };
            if map.insert(service.to_owned(), days).is_some() {
                return Err(format!("{service:?} appears twice"));
            }
        }
        Ok(RetentionOverrides(map))
    }
}

impl fmt::Display for RetentionOverrides {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (service, days) in self.iter() {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            write!(f, "{service}={days}")?;
        }
        Ok(())
    }
}

/// The contract's service-name rule (`[A-Za-z0-9._:-]{1,100}`).
fn is_service_name(s: &str) -> bool {
    eventline_shared::validate::is_service_name(s, 100)
}

/// Which services a retention class covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Services {
    /// One service with an override.
    Only(String),
    /// Every service without an override (the default retention).
    AllBut(Vec<String>),
}

/// Services sharing one retention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionClass {
    pub services: Services,
    pub days: u32,
}

impl RetentionClass {
    /// The first day that is kept: rows before its midnight are expired.
    pub fn first_kept_day(&self, today: NaiveDate) -> NaiveDate {
        first_kept_day(today, self.days)
    }

    /// `ts` before this instant is expired.
    pub fn cutoff(&self, today: NaiveDate) -> DateTime<Utc> {
        midnight_utc(self.first_kept_day(today))
    }

    /// A label for logs and the run record: the service, or `default`.
    pub fn label(&self) -> &str {
        match &self.services {
            Services::Only(service) => service,
            Services::AllBut(_) => "default",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionPolicy {
    pub default_days: u32,
    pub overrides: RetentionOverrides,
}

impl RetentionPolicy {
    /// The default class first, then one class per override.
    pub fn classes(&self) -> Vec<RetentionClass> {
        let overridden: Vec<String> = self.overrides.iter().map(|(s, _)| s.to_owned()).collect();
        let mut classes = vec![RetentionClass {
            services: Services::AllBut(overridden),
            days: self.default_days,
        }];
        classes.extend(self.overrides.iter().map(|(service, days)| RetentionClass {
            services: Services::Only(service.to_owned()),
            days,
        }));
        classes
    }

    /// The longest retention in force: it alone decides which partitions go.
    pub fn longest_days(&self) -> u32 {
        self.overrides
            .iter()
            .map(|(_, d)| d)
            .fold(self.default_days, u32::max)
    }

    /// The oldest day whose partition is kept; every partition of an
    /// earlier day is wholly expired for every class.
    pub fn first_kept_partition_day(&self, today: NaiveDate) -> NaiveDate {
        first_kept_day(today, self.longest_days())
    }
}

/// `today − days`, saturating at the calendar's start.
pub fn first_kept_day(today: NaiveDate, days: u32) -> NaiveDate {
    today
        .checked_sub_days(Days::new(u64::from(days)))
        .unwrap_or(NaiveDate::MIN)
}

/// 00:00 UTC of `day`.
pub fn midnight_utc(day: NaiveDate) -> DateTime<Utc> {
    day.and_time(chrono::NaiveTime::MIN).and_utc()
}

/// The daily partitions that exist, split by fate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionFates {
    /// Wholly older than the longest retention: detached and dropped.
    pub drop: Vec<(String, NaiveDate)>,
    /// Everything else.
    pub keep: Vec<(String, NaiveDate)>,
}

pub fn partition_fates(
    existing: &[(String, NaiveDate)],
    policy: &RetentionPolicy,
    today: NaiveDate,
) -> PartitionFates {
    let first_kept = policy.first_kept_partition_day(today);
    let (drop, keep) = existing
        .iter()
        .cloned()
        .partition(|(_, day)| *day < first_kept);
    PartitionFates { drop, keep }
}

/// The kept partitions holding only days `class` has expired entirely: its
/// rows in them are deleted (the default partition is visited separately,
/// as it may hold any day).
pub fn partitions_expired_for<'a>(
    kept: &'a [(String, NaiveDate)],
    class: &RetentionClass,
    today: NaiveDate,
) -> impl Iterator<Item = &'a str> {
    let first_kept = class.first_kept_day(today);
    kept.iter()
        .filter(move |(_, day)| *day < first_kept)
        .map(|(name, _)| name.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn policy(default_days: u32, overrides: &str) -> RetentionPolicy {
        RetentionPolicy {
            default_days,
            overrides: overrides.parse().unwrap(),
        }
    }

    #[test]
    fn parses_overrides_and_rejects_bad_ones() {
        let o: RetentionOverrides = " audit-service=365, debug=3 ,".parse().unwrap();
        assert_eq!(o.to_string(), "audit-service=365,debug=3");
        assert!("".parse::<RetentionOverrides>().unwrap().is_empty());
        for bad in [
            "debug",
            "debug=0",
            "debug=x",
            "debug=36501",
            "a b=3",
            "=3",
            "debug=3,debug=4",
        ] {
            assert!(bad.parse::<RetentionOverrides>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_day_expires_at_once_and_nothing_younger_than_the_retention_goes() {
        let class = &policy(30, "").classes()[0];
        let today = day("2026-11-23");
        assert_eq!(class.first_kept_day(today), day("2026-10-24"));
        let cutoff = class.cutoff(today);
        assert_eq!(cutoff.to_rfc3339(), "2026-10-24T00:00:00+00:00");
        // Any time of day: the cutoff is at least 30 days back, at most 31.
        let now = midnight_utc(today) + chrono::TimeDelta::hours(23);
        assert!(now - cutoff >= chrono::TimeDelta::days(30));
        assert!(now - cutoff < chrono::TimeDelta::days(31));
    }

    #[test]
    fn partitions_go_only_past_the_longest_retention() {
        let today = day("2026-11-23");
        let existing: Vec<_> = (0..40)
            .map(|back| {
                let d = today - Days::new(back);
                (eventline_shared::schema::partition_name(d), d)
            })
            .collect();
        let fates = partition_fates(&existing, &policy(30, ""), today);
        assert_eq!(fates.drop.len(), 9, "days 31..39 back");
        assert!(fates.drop.iter().all(|(_, d)| *d < day("2026-10-24")));

        let p = policy(30, "audit=35,debug=3");
        assert_eq!(p.longest_days(), 35);
        let fates = partition_fates(&existing, &p, today);
        assert_eq!(fates.drop.len(), 4, "days 36..39 back");

        let classes = p.classes();
        assert_eq!(
            classes[0].services,
            Services::AllBut(vec!["audit".into(), "debug".into()])
        );
        // The default class expires days 31..35 back inside kept partitions,
        // debug days 4..35 back, audit none.
        let count = |c: &RetentionClass| partitions_expired_for(&fates.keep, c, today).count();
        assert_eq!(count(&classes[0]), 5);
        assert_eq!(classes[1].label(), "audit");
        assert_eq!(count(&classes[1]), 0);
        assert_eq!(count(&classes[2]), 32);
    }

    #[test]
    fn a_longer_default_wins_over_shorter_overrides() {
        assert_eq!(policy(30, "debug=3").longest_days(), 30);
        assert_eq!(policy(30, "").longest_days(), 30);
    }
}
