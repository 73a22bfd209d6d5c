//! One retention pass, in order: take the lock; create the coming days'
//! partitions; give past days stuck in the default partition a partition of
//! their own; detach and drop the partitions past the longest retention;
//! delete, in chunks, the rows each retention class has expired (default
//! partition, and kept partitions for shorter classes); expire the rollup;
//! record and log what was done.
//!
//! Invariants: the pass runs at the clock it is given (`now`), never reading
//! the time itself, so tests can replay forty days in a second; a dry run
//! issues only reads (besides its own `maintenance_runs` row); the report
//! and the run record show exactly what committed, even when a step fails.

use std::time::Instant;

use chrono::{DateTime, Days, NaiveDate, Utc};
use eventline_shared::schema;
use sqlx::postgres::PgConnectOptions;
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

use crate::config::RetentionArgs;
use crate::expire::{self, ExpireError, Expiry};
use crate::job_lock::JobLock;
use crate::metrics::Metrics;
use crate::partitions::{self, DdlError, DdlSettings};
use crate::policy::{self, PartitionFates, RetentionClass, RetentionPolicy};
use crate::report::{MovedDay, Outcome, RunReport, TableExpiry};
use crate::run_record;

#[derive(Debug, thiserror::Error)]
pub enum PassError {
    #[error("cannot open the maintenance connection to PostgreSQL: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("cannot record the pass in maintenance_runs: {0}")]
    Record(#[source] sqlx::Error),
    #[error("cannot list the partitions of events: {0}")]
    List(#[source] sqlx::Error),
    #[error(transparent)]
    Ddl(#[from] DdlError),
    #[error(transparent)]
    Expire(#[from] ExpireError),
}

/// Everything a pass needs, built once at start-up.
pub struct Job {
    pool: PgPool,
    /// For the dedicated connection that holds the lock and does the work.
    connect: PgConnectOptions,
    args: RetentionArgs,
    policy: RetentionPolicy,
    metrics: Metrics,
}

impl Job {
    pub fn new(
        pool: PgPool,
        connect: PgConnectOptions,
        args: RetentionArgs,
        metrics: Metrics,
    ) -> Self {
        let policy = args.policy();
        Job {
            pool,
            connect,
            args,
            policy,
            metrics,
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Sets the last-success gauge from `maintenance_runs`, so a scheduler
    /// that just started reports the last pass before it rather than 0 (which
    /// would read as "never" and fire the alert).
    pub async fn restore_last_success(&self) -> Result<(), sqlx::Error> {
        if let Some(at) = eventline_shared::schema::last_retention_success(&self.pool).await? {
            self.metrics.last_success.set(at.timestamp());
        }
        Ok(())
    }

    /// The configured clock: `--now` when set, else the system's.
    pub fn now(&self) -> DateTime<Utc> {
        self.args.now()
    }

    fn ddl(&self) -> DdlSettings {
        DdlSettings {
            lock_timeout: self.args.ddl_lock_timeout,
            retries: self.args.ddl_lock_retries,
        }
    }

    /// One pass at `now`. `Ok` with outcome `Skipped` when another pass holds
    /// the lock; `Err` when a step failed (recorded as `failed`).
    pub async fn run_pass(
        &self,
        now: DateTime<Utc>,
        shutdown: &CancellationToken,
    ) -> Result<RunReport, PassError> {
        let started = Instant::now();
        let mut report = RunReport::new(
            now,
            self.args.dry_run,
            self.args.retention_days,
            self.args.retention_overrides.to_string(),
        );
        let lock = JobLock::try_acquire(&self.connect)
            .await
            .map_err(PassError::Connect)?;
        let Some(mut lock) = lock else {
            report.outcome = Outcome::Skipped;
            report.duration = started.elapsed();
            let id =
                run_record::skipped(&self.pool, &report, "another retention pass holds the lock")
                    .await
                    .map_err(PassError::Record)?;
            report.run_id = Some(id);
            self.observe(&report, true);
            report.log_summary(None);
            return Ok(report);
        };
        let id = match run_record::start(&self.pool, &report).await {
            Ok(id) => id,
            Err(e) => {
                lock.release().await;
                return Err(PassError::Record(e));
            }
        };
        report.run_id = Some(id);

        let result = self.steps(lock.conn(), &mut report, shutdown).await;
        lock.release().await;
        report.duration = started.elapsed();

        let error = result.as_ref().err().map(ToString::to_string);
        let recorded = run_record::finish(&self.pool, id, &report, error.as_deref()).await;
        self.observe(&report, result.is_ok() && recorded.is_ok());
        report.log_summary(error.as_deref());
        result?;
        recorded.map_err(PassError::Record)?;
        Ok(report)
    }

    /// Metrics: changes that committed, whatever the outcome; dry runs move
    /// only the run counter and the duration.
    fn observe(&self, report: &RunReport, ok: bool) {
        let m = &self.metrics;
        let outcome = match (ok, report.outcome) {
            (false, _) => "failed",
            (true, Outcome::Skipped) => "skipped",
            (true, Outcome::Success) => "success",
        };
        m.runs.with_label_values(&[outcome]).inc();
        m.run_duration.observe(report.duration.as_secs_f64());
        if report.dry_run {
            return;
        }
        m.partitions_created
            .inc_by(report.partitions_created.len() as u64);
        m.partitions_dropped
            .inc_by(report.partitions_dropped.len() as u64);
        m.rows_deleted.inc_by(report.rows_deleted);
        if ok && report.outcome == Outcome::Success {
            m.last_success.set(Utc::now().timestamp());
        }
    }

    /// Steps 1–3 of a pass, in order; a dry run reports what each would do
    /// and changes nothing.
    async fn steps(
        &self,
        conn: &mut PgConnection,
        report: &mut RunReport,
        shutdown: &CancellationToken,
    ) -> Result<(), PassError> {
        let today = report.now.date_naive();
        let (existing, default) = self.create_partitions(conn, report, shutdown).await?;
        let fates = self
            .drop_partitions(conn, report, shutdown, existing)
            .await?;
        for class in self.policy.classes() {
            let tables = default
                .iter()
                .map(String::as_str)
                .chain(policy::partitions_expired_for(&fates.keep, &class, today));
            self.expire_rows(conn, report, shutdown, &class, tables)
                .await?;
        }
        Ok(())
    }

    /// Step 1: the coming days' partitions, and past days inside the window
    /// whose rows sit in the default partition (found first, so the rows the
    /// first creation moves are counted too). Returns the partitions that
    /// existed before, and the default partition if there is one.
    async fn create_partitions(
        &self,
        conn: &mut PgConnection,
        report: &mut RunReport,
        shutdown: &CancellationToken,
    ) -> Result<(Vec<(String, NaiveDate)>, Option<String>), PassError> {
        let dry = self.args.dry_run;
        let ddl = self.ddl();
        let today = report.now.date_naive();
        let horizon = today + Days::new(u64::from(self.args.precreate_days));
        let first_kept = self.policy.first_kept_partition_day(today);
        let existing = schema::list_partitions(&self.pool)
            .await
            .map_err(PassError::List)?;
        let default = partitions::default_partition(conn).await?;
        let stuck = match &default {
            Some(default) => {
                partitions::days_in_default(conn, default, first_kept, horizon).await?
            }
            None => Vec::new(),
        };
        if dry {
            report.partitions_created = days(today, horizon)
                .filter(|d| !existing.iter().any(|(_, e)| e == d))
                .map(schema::partition_name)
                .collect();
        } else {
            report.partitions_created =
                partitions::create(conn, today, horizon, &ddl, shutdown).await?;
        }
        for (day, rows) in stuck {
            if day < today {
                if dry {
                    report.partitions_created.push(schema::partition_name(day));
                } else {
                    let created = partitions::create(conn, day, day, &ddl, shutdown).await?;
                    report.partitions_created.extend(created);
                }
            }
            report.moved.push(MovedDay {
                day,
                rows: rows.max(0) as u64,
            });
        }
        Ok((existing, default))
    }

    /// Step 2: partitions past the longest retention, and any a dead pass
    /// detached without dropping. (A dry run sees only the partitions that
    /// `existing` holds: the ones it would create hold nothing to expire.)
    /// Returns the attached partitions by fate.
    async fn drop_partitions(
        &self,
        conn: &mut PgConnection,
        report: &mut RunReport,
        shutdown: &CancellationToken,
        existing: Vec<(String, NaiveDate)>,
    ) -> Result<PartitionFates, PassError> {
        let dry = self.args.dry_run;
        let ddl = self.ddl();
        let today = report.now.date_naive();
        let first_kept = self.policy.first_kept_partition_day(today);
        let attached = if dry {
            existing
        } else {
            schema::list_partitions(&self.pool)
                .await
                .map_err(PassError::List)?
        };
        let fates = policy::partition_fates(&attached, &self.policy, today);
        let leftovers = partitions::detached_leftovers(conn).await?;
        let doomed = fates
            .drop
            .iter()
            .chain(leftovers.iter().filter(|(_, day)| *day < first_kept));
        for (name, _) in doomed {
            if shutdown.is_cancelled() {
                return Err(DdlError::Interrupted.into());
            }
            if !dry {
                partitions::detach_and_drop(conn, name, &ddl, shutdown).await?;
            }
            report.partitions_dropped.push(name.clone());
        }
        Ok(fates)
    }

    /// Step 3, for one class: the rows it has expired in `tables` (the
    /// default partition, and the kept partitions it has expired whole),
    /// then its expired hourly counts.
    async fn expire_rows(
        &self,
        conn: &mut PgConnection,
        report: &mut RunReport,
        shutdown: &CancellationToken,
        class: &RetentionClass,
        tables: impl Iterator<Item = &str>,
    ) -> Result<(), PassError> {
        let dry = self.args.dry_run;
        let cutoff = class.cutoff(report.now.date_naive());
        let expiry = |table| Expiry {
            table,
            services: &class.services,
            cutoff,
            chunk_rows: self.args.delete_chunk_rows,
            pause: self.args.delete_pause,
        };
        for table in tables {
            if shutdown.is_cancelled() {
                return Err(ExpireError::Interrupted.into());
            }
            let rows = if dry {
                expire::count_events(conn, &expiry(table)).await?
            } else {
                let deleted = &mut report.rows_deleted;
                expire::delete_events(conn, &expiry(table), shutdown, |n| *deleted += n).await?
            };
            if dry {
                report.rows_deleted += rows;
            }
            if rows > 0 {
                report.expiries.push(TableExpiry {
                    table: table.to_owned(),
                    class: class.label().to_owned(),
                    cutoff,
                    rows,
                });
            }
        }
        let counts = expiry("event_counts");
        report.counts_deleted += if dry {
            expire::count_counts(conn, &counts).await?
        } else {
            expire::delete_counts(conn, &counts, shutdown).await?
        };
        Ok(())
    }
}

/// `first..=last`, day by day.
fn days(first: NaiveDate, last: NaiveDate) -> impl Iterator<Item = NaiveDate> {
    first.iter_days().take_while(move |d| *d <= last)
}
