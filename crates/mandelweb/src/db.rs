//! Provides mandelweb's PostgreSQL side: the `people` table, seeding it by
//! COPY, and the one query `POST /find-by-age` runs, reached in either of the
//! two ways the seed compares: a new connection per request (`--pool-size
//! 0`, the seed's starting point) or a pool of warm connections.
//!
//! Every failure to reach the database is [`DbError::Unavailable`] and
//! comes back fast (connects and pool waits are bounded by
//! [`Settings::timeout`]); a dead pooled connection is dropped when
//! it is next taken, so the service recovers by itself once the database
//! is back.

use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{
    Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime, Timeouts,
};
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntGauge, IntGaugeVec, Opts};
use serde::Serialize;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, Config, NoTls};
use tracing::Instrument as _;

/// The query `POST /find-by-age` runs.
pub const FIND_BY_AGE: &str = "SELECT id, name, age FROM people WHERE age = $1 ORDER BY id";

/// One row of `people`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Person {
    /// Primary key, 1-based in seeding order.
    pub id: i32,
    /// `person-<id>`.
    pub name: String,
    /// [`seed_age`] of the id.
    pub age: i32,
}

/// Why a query failed.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The database could not be reached or did not answer in time: a 503.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The database answered with an error (e.g. no `people` table): a 500.
    #[error("database error: {0}")]
    Query(String),
    /// The URL does not parse.
    #[error("bad --database-url: {0}")]
    Config(String),
}

/// How the service reaches PostgreSQL.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `postgres://user@host:port/db` or a key=value string.
    pub url: String,
    /// 0: a new connection per request; N: a pool of at most N connections.
    pub pool_size: usize,
    /// Connections opened at start and kept open (pool only).
    pub min_idle: usize,
    /// `--db-timeout`: bound on a request's whole database work (connect
    /// or pool wait, prepare and query), and on each connect.
    pub timeout: Duration,
}

/// The seed's pool panel: `db_pool_connections{state="in_use"|"idle"}`,
/// `db_pool_max_connections` and `db_pool_waiting` (requests waiting for a
/// connection), read from the pool when scraped.
pub struct PoolMetrics {
    pool: Pool,
    connections: IntGaugeVec,
    max: IntGauge,
    waiting: IntGauge,
}

impl PoolMetrics {
    fn new(pool: Pool) -> PoolMetrics {
        PoolMetrics {
            pool,
            connections: IntGaugeVec::new(
                Opts::new(
                    "db_pool_connections",
                    "Pooled database connections open, by state",
                ),
                &["state"],
            )
            .expect("a valid metric"),
            max: IntGauge::new(
                "db_pool_max_connections",
                "Most connections the pool may open",
            )
            .expect("a valid metric"),
            waiting: IntGauge::new(
                "db_pool_waiting",
                "Requests waiting for a pooled connection",
            )
            .expect("a valid metric"),
        }
    }
}

impl Collector for PoolMetrics {
    fn desc(&self) -> Vec<&Desc> {
        let mut d = self.connections.desc();
        d.extend(self.max.desc());
        d.extend(self.waiting.desc());
        d
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let s = self.pool.status();
        let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.connections
            .with_label_values(&["in_use"])
            .set(gauge(s.size.saturating_sub(s.available)));
        self.connections
            .with_label_values(&["idle"])
            .set(gauge(s.available));
        self.max.set(gauge(s.max_size));
        self.waiting.set(gauge(s.waiting));
        let mut f = self.connections.collect();
        f.extend(self.max.collect());
        f.extend(self.waiting.collect());
        f
    }
}

/// A handle on the database, cheap to clone.
#[derive(Clone)]
pub struct Db {
    access: Access,
    /// Bound on the whole of a request's database work.
    deadline: Duration,
    min_idle: usize,
}

#[derive(Clone)]
enum Access {
    PerRequest(Box<Config>),
    Pooled(Pool),
}

impl Db {
    /// Builds the handle; connects nothing yet (see [`Db::warm`]).
    pub fn new(settings: &Settings) -> Result<Db, DbError> {
        let mut config =
            Config::from_str(&settings.url).map_err(|e| DbError::Config(e.to_string()))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(settings.timeout);
        }
        if config.get_options().is_none() {
            // A profile of PostgreSQL under load showed it planning every
            // query: with the no-match body the custom plan looks cheaper
            // than the generic one, so the server never switches to its
            // cached plan. The one query here is an index lookup whose plan
            // does not depend on the age; planning it once cut the server's
            // CPU per query from ~84 to ~48 µs (bench/find-by-age.sh).
            config.options("-c plan_cache_mode=force_generic_plan");
        }
        let access = if settings.pool_size == 0 {
            Access::PerRequest(Box::new(config))
        } else {
            let manager = Manager::from_config(
                config,
                NoTls,
                ManagerConfig {
                    recycling_method: RecyclingMethod::Fast,
                },
            );
            let t = Some(settings.timeout);
            let pool = Pool::builder(manager)
                .max_size(settings.pool_size)
                .timeouts(Timeouts {
                    wait: t,
                    create: t,
                    recycle: t,
                })
                .runtime(Runtime::Tokio1)
                .build()
                .map_err(|e| DbError::Config(e.to_string()))?;
            Access::Pooled(pool)
        };
        Ok(Db {
            access,
            deadline: settings.timeout,
            min_idle: settings.min_idle,
        })
    }

    /// Opens [`Settings::min_idle`] pooled connections now and leaves them
    /// idle, so the first requests find them warm (the seed's MaxIdleConns
    /// step; the pool never closes an idle connection). Returns how many
    /// are open; a no-op without a pool.
    pub async fn warm(&self) -> Result<usize, DbError> {
        let Access::Pooled(pool) = &self.access else {
            return Ok(0);
        };
        let n = self.min_idle.min(pool.status().max_size);
        let mut held = Vec::with_capacity(n);
        for _ in 0..n {
            held.push(pool.get().await.map_err(pool_error)?);
        }
        Ok(held.len())
    }

    /// The pool's figures for `/metrics`, read at each scrape; `None`
    /// without a pool (a connection per request).
    pub fn pool_metrics(&self) -> Option<PoolMetrics> {
        match &self.access {
            Access::Pooled(pool) => Some(PoolMetrics::new(pool.clone())),
            Access::PerRequest(_) => None,
        }
    }

    /// Connections open now in the pool (idle and in use); 0 without one.
    pub fn open_connections(&self) -> usize {
        match &self.access {
            Access::Pooled(pool) => pool.status().size,
            Access::PerRequest(_) => 0,
        }
    }

    /// The rows of people of this age, by id, within the connect timeout
    /// (`--db-timeout`) for the whole of it — connect or pool wait, prepare
    /// and query — so a hung database is a 503 on time, never a hang. Its
    /// waits are spans, for the wall profile: `db.connect` (a connection per
    /// request), `db.pool.get`, `db.prepare` and `db.query`.
    pub async fn find_by_age(&self, age: i32) -> Result<Vec<Person>, DbError> {
        match tokio::time::timeout(self.deadline, self.find_by_age_unbounded(age)).await {
            Ok(found) => found,
            Err(_) => Err(DbError::Unavailable(format!(
                "no answer within {:?}",
                self.deadline
            ))),
        }
    }

    async fn find_by_age_unbounded(&self, age: i32) -> Result<Vec<Person>, DbError> {
        let rows = match &self.access {
            Access::PerRequest(config) => {
                let client = connect(config)
                    .instrument(tracing::info_span!("db.connect"))
                    .await?;
                client
                    .query(FIND_BY_AGE, &[&age])
                    .instrument(tracing::info_span!("db.query"))
                    .await
                    .map_err(query_error)?
            }
            Access::Pooled(pool) => {
                let client = pool
                    .get()
                    .instrument(tracing::info_span!("db.pool.get"))
                    .await
                    .map_err(pool_error)?;
                let statement = client
                    .prepare_typed_cached(FIND_BY_AGE, &[Type::INT4])
                    .instrument(tracing::info_span!("db.prepare"))
                    .await
                    .map_err(query_error)?;
                client
                    .query(&statement, &[&age])
                    .instrument(tracing::info_span!("db.query"))
                    .await
                    .map_err(query_error)?
            }
        };
        Ok(rows
            .iter()
            .map(|r| Person {
                id: r.get(0),
                name: r.get(1),
                age: r.get(2),
            })
            .collect())
    }
}

/// Opens one connection and drives it on a task of its own.
async fn connect(config: &Config) -> Result<Client, DbError> {
    let (client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|e| DbError::Unavailable(e.to_string()))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "database connection ended");
        }
    });
    Ok(client)
}

fn pool_error(e: PoolError) -> DbError {
    DbError::Unavailable(e.to_string())
}

/// A closed connection or an I/O error is an outage; an error the server
/// sent (SQLSTATE) is the query's fault, except the ones a restarting or
/// shutting-down server sends.
fn query_error(e: tokio_postgres::Error) -> DbError {
    match e.code() {
        Some(code) if code.code().starts_with("57P") || code.code().starts_with("08") => {
            DbError::Unavailable(e.to_string())
        }
        Some(_) => DbError::Query(e.to_string()),
        None => DbError::Unavailable(e.to_string()),
    }
}

/// The age the seed gives the person with this id: ids cycle through
/// 0..=99, so every age in that range has `rows / 100` people and an age of
/// 300 (the seed's no-match body) has none.
pub fn seed_age(id: i32) -> i32 {
    id % 100
}

/// Rows COPYed per progress callback.
pub const SEED_BATCH: usize = 10_000;

/// (Re)creates `people` with `rows` rows by binary COPY, then builds the
/// index on age and analyzes the table. `progress` is called with the rows
/// written so far every [`SEED_BATCH`] rows.
pub async fn seed(url: &str, rows: usize, mut progress: impl FnMut(usize)) -> Result<(), DbError> {
    let config = Config::from_str(url).map_err(|e| DbError::Config(e.to_string()))?;
    let client = connect(&config).await?;
    client
        .batch_execute(
            "SET client_min_messages = warning;
             DROP TABLE IF EXISTS people;
             CREATE TABLE people (id integer PRIMARY KEY, name text NOT NULL, age integer NOT NULL);",
        )
        .await
        .map_err(query_error)?;
    let sink = client
        .copy_in("COPY people (id, name, age) FROM STDIN BINARY")
        .await
        .map_err(query_error)?;
    let writer = BinaryCopyInWriter::new(sink, &[Type::INT4, Type::TEXT, Type::INT4]);
    let mut writer = std::pin::pin!(writer);
    let mut name = String::new();
    for i in 0..rows {
        let id = i32::try_from(i + 1).map_err(|_| DbError::Config("too many rows".into()))?;
        name.clear();
        std::fmt::Write::write_fmt(&mut name, format_args!("person-{id}")).ok();
        writer
            .as_mut()
            .write(&[&id, &name, &seed_age(id)])
            .await
            .map_err(query_error)?;
        if (i + 1) % SEED_BATCH == 0 {
            progress(i + 1);
        }
    }
    writer.finish().await.map_err(query_error)?;
    progress(rows);
    client
        .batch_execute("CREATE INDEX people_age ON people (age); ANALYZE people;")
        .await
        .map_err(query_error)
}
