//! The tenant database through `sqlx`'s `Any` driver: SQLite (a file in the data directory,
//! WAL) or PostgreSQL, the same migrations and queries for both (`$n` parameters, each used
//! once and in order; times as Unix milliseconds).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

use super::keys;

/// A failure of the tenant store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed (unreachable, corrupt, a constraint).
    #[error("tenant database: {0}")]
    Db(#[from] sqlx::Error),
    /// The migrations could not run.
    #[error("tenant database migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// No such user or key.
    #[error("{what} {id} not found")]
    NotFound {
        /// `user` or `API key`.
        what: &'static str,
        /// What was asked for.
        id: String,
    },
    /// A user of that name exists.
    #[error("a user named {name} exists")]
    Exists {
        /// The name.
        name: String,
    },
    /// A field is out of range.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// No randomness for a key.
    #[error("no randomness for a key: {0}")]
    Random(String),
}

/// Per-user limits; `None` is unlimited.
#[derive(
    Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema, clap::Args,
)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    /// Sandboxes alive at once.
    #[serde(default)]
    #[arg(long)]
    pub max_sandboxes: Option<u64>,
    /// CPU cores summed over the user's sandboxes.
    #[serde(default)]
    #[arg(long)]
    pub max_cpu: Option<f64>,
    /// Memory MiB summed over the user's sandboxes.
    #[serde(default)]
    #[arg(long)]
    pub max_memory_mb: Option<u64>,
    /// Writable-layer MiB summed over the user's sandboxes.
    #[serde(default)]
    #[arg(long)]
    pub max_disk_mb: Option<u64>,
    /// Longest lifetime of a sandbox, seconds (a sandbox asking for none gets this).
    #[serde(default)]
    #[arg(long)]
    pub max_lifetime: Option<u64>,
    /// Requests per minute for each of the user's keys (429 past it).
    #[serde(default)]
    #[arg(long)]
    pub rate_per_minute: Option<u32>,
}

/// A user.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct User {
    /// Its id (`u_` and 16 hex digits).
    pub id: String,
    /// Its unique name.
    pub name: String,
    /// Whether it may use the admin API and sees everything.
    pub admin: bool,
    /// A disabled user's keys stop working; its sandboxes keep running.
    pub disabled: bool,
    /// When it was made.
    pub created: DateTime<Utc>,
    /// Its limits.
    pub quota: Quota,
}

/// An API key as listed (never the key itself).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct KeyInfo {
    /// The public id (the 16 hex digits after `sqrx_`).
    pub id: String,
    /// Whose.
    pub user_id: String,
    /// Its name.
    pub name: String,
    /// When it was made.
    pub created: DateTime<Utc>,
    /// When it stops working.
    pub expires: Option<DateTime<Utc>>,
    /// When it was revoked.
    pub revoked: Option<DateTime<Utc>>,
    /// When it was last used (to the minute).
    pub last_used: Option<DateTime<Utc>>,
}

/// What authentication needs of a key.
#[derive(Debug, Clone)]
pub struct KeyRecord {
    /// The key's hash.
    pub hash: String,
    /// Whose.
    pub user_id: String,
    /// Expiry.
    pub expires_ms: Option<i64>,
    /// Revocation.
    pub revoked_ms: Option<i64>,
}

/// One audit record.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AuditRecord {
    /// Time-ordered id (also the pagination cursor).
    pub id: String,
    /// When.
    pub at: DateTime<Utc>,
    /// Who (`operator` for the server token; absent for an unknown key).
    pub user: Option<String>,
    /// With which key.
    pub key_id: Option<String>,
    /// What: `METHOD route` or a named action.
    pub action: String,
    /// On what (a sandbox, user or key id).
    pub target: Option<String>,
    /// `ok`, `denied`, `error`.
    pub result: String,
    /// The HTTP status answered.
    pub status: u16,
    /// The client's address.
    pub source_ip: Option<String>,
}

/// Filters of an audit query.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
pub struct AuditQuery {
    /// Only this user (id).
    pub user: Option<String>,
    /// Only this action.
    pub action: Option<String>,
    /// From this time (RFC 3339).
    pub since: Option<DateTime<Utc>>,
    /// Until this time (RFC 3339).
    pub until: Option<DateTime<Utc>>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<u32>,
    /// Records older than this id (the `next` of the previous page).
    pub before: Option<String>,
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

fn random_id(prefix: &str, bytes: usize) -> Result<String, StoreError> {
    let mut b = vec![0u8; bytes];
    getrandom::fill(&mut b).map_err(|e| StoreError::Random(e.to_string()))?;
    Ok(format!("{prefix}{}", hex::encode(b)))
}

/// Unsigned columns arrive as BIGINT; negative or absurd values never get in.
fn to_db(v: Option<u64>, field: &'static str) -> Result<Option<i64>, StoreError> {
    v.map(|n| {
        i64::try_from(n).map_err(|_| StoreError::Invalid {
            field,
            reason: format!("{n} is too large"),
        })
    })
    .transpose()
}

fn check_name(name: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.@-".contains(&b))
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid {
            field: "name",
            reason: format!(
                "{name:?}: 1-64 of a-z, A-Z, 0-9, '_', '.', '@', '-', starting with a letter or digit"
            ),
        })
    }
}

fn check_quota(q: &Quota) -> Result<(), StoreError> {
    if let Some(c) = q.max_cpu
        && !(c.is_finite() && c > 0.0)
    {
        return Err(StoreError::Invalid {
            field: "max_cpu",
            reason: format!("{c} is not a positive number of cores"),
        });
    }
    Ok(())
}

fn user_of(row: &AnyRow) -> Result<User, sqlx::Error> {
    let u = |c: &str| -> Result<Option<u64>, sqlx::Error> {
        Ok(row.try_get::<Option<i64>, _>(c)?.map(|v| v.max(0) as u64))
    };
    Ok(User {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        admin: row.try_get::<i64, _>("admin")? != 0,
        disabled: row.try_get::<i64, _>("disabled")? != 0,
        created: time(row.try_get("created_ms")?),
        quota: Quota {
            max_sandboxes: u("max_sandboxes")?,
            max_cpu: u("max_cpu_millis")?.map(|m| m as f64 / 1000.0),
            max_memory_mb: u("max_memory_mb")?,
            max_disk_mb: u("max_disk_mb")?,
            max_lifetime: u("max_lifetime_s")?,
            rate_per_minute: u("rate_per_minute")?.map(|r| r.min(u32::MAX as u64) as u32),
        },
    })
}

fn key_of(row: &AnyRow) -> Result<KeyInfo, sqlx::Error> {
    Ok(KeyInfo {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        name: row.try_get("name")?,
        created: time(row.try_get("created_ms")?),
        expires: row.try_get::<Option<i64>, _>("expires_ms")?.map(time),
        revoked: row.try_get::<Option<i64>, _>("revoked_ms")?.map(time),
        last_used: row.try_get::<Option<i64>, _>("last_used_ms")?.map(time),
    })
}

const USER_COLUMNS: &str = "id, name, admin, disabled, created_ms, max_sandboxes, max_cpu_millis, \
     max_memory_mb, max_disk_mb, max_lifetime_s, rate_per_minute";
const KEY_COLUMNS: &str = "id, user_id, name, created_ms, expires_ms, revoked_ms, last_used_ms";

/// The tenant database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: &'static str,
}

impl Store {
    /// Open `url` (`sqlite://PATH` or `postgres://...`) and bring its schema up to date.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let sqlite = url.starts_with("sqlite:");
        let url = if sqlite && !url.contains('?') {
            format!("{url}?mode=rwc")
        } else {
            url.to_string()
        };
        let pool = AnyPoolOptions::new()
            .max_connections(if sqlite { 4 } else { 8 })
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if sqlite {
                        // Writers wait for each other instead of failing with SQLITE_BUSY.
                        sqlx::query("PRAGMA busy_timeout = 5000")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA foreign_keys = ON")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        if sqlite {
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&pool)
                .await?;
        }
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Store {
            pool,
            backend: if sqlite { "sqlite" } else { "postgres" },
        })
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        self.backend
    }

    /// Make a user.
    pub async fn create_user(
        &self,
        name: &str,
        admin: bool,
        quota: &Quota,
    ) -> Result<User, StoreError> {
        check_name(name)?;
        check_quota(quota)?;
        if self.user_by_name(name).await?.is_some() {
            return Err(StoreError::Exists { name: name.into() });
        }
        let id = random_id("u_", 8)?;
        let now = Utc::now();
        sqlx::query(
            "INSERT INTO users (id, name, admin, disabled, created_ms, max_sandboxes, \
             max_cpu_millis, max_memory_mb, max_disk_mb, max_lifetime_s, rate_per_minute) \
             VALUES ($1, $2, $3, 0, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&id)
        .bind(name)
        .bind(i64::from(admin))
        .bind(ms(now))
        .bind(to_db(quota.max_sandboxes, "max_sandboxes")?)
        .bind(quota.max_cpu.map(|c| (c * 1000.0).round() as i64))
        .bind(to_db(quota.max_memory_mb, "max_memory_mb")?)
        .bind(to_db(quota.max_disk_mb, "max_disk_mb")?)
        .bind(to_db(quota.max_lifetime, "max_lifetime")?)
        .bind(quota.rate_per_minute.map(i64::from))
        .execute(&self.pool)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(d) if d.is_unique_violation() => {
                StoreError::Exists { name: name.into() }
            }
            _ => StoreError::Db(e),
        })?;
        self.user(&id).await
    }

    /// The user `id`.
    pub async fn user(&self, id: &str) -> Result<User, StoreError> {
        let row = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(r) => Ok(user_of(&r)?),
            None => Err(StoreError::NotFound {
                what: "user",
                id: id.into(),
            }),
        }
    }

    /// The user named `name`.
    pub async fn user_by_name(&self, name: &str) -> Result<Option<User>, StoreError> {
        let row = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE name = $1"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(user_of).transpose()?)
    }

    /// Every user, oldest first.
    pub async fn users(&self) -> Result<Vec<User>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users ORDER BY created_ms, id"
        ))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(user_of).collect::<Result<_, _>>()?)
    }

    /// Change a user's flags and limits.
    pub async fn update_user(
        &self,
        id: &str,
        admin: bool,
        disabled: bool,
        quota: &Quota,
    ) -> Result<User, StoreError> {
        check_quota(quota)?;
        let done = sqlx::query(
            "UPDATE users SET admin = $1, disabled = $2, max_sandboxes = $3, max_cpu_millis = $4, \
             max_memory_mb = $5, max_disk_mb = $6, max_lifetime_s = $7, rate_per_minute = $8 \
             WHERE id = $9",
        )
        .bind(i64::from(admin))
        .bind(i64::from(disabled))
        .bind(to_db(quota.max_sandboxes, "max_sandboxes")?)
        .bind(quota.max_cpu.map(|c| (c * 1000.0).round() as i64))
        .bind(to_db(quota.max_memory_mb, "max_memory_mb")?)
        .bind(to_db(quota.max_disk_mb, "max_disk_mb")?)
        .bind(to_db(quota.max_lifetime, "max_lifetime")?)
        .bind(quota.rate_per_minute.map(i64::from))
        .bind(id)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                what: "user",
                id: id.into(),
            });
        }
        self.user(id).await
    }

    /// Delete a user and its keys.
    pub async fn delete_user(&self, id: &str) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM api_keys WHERE user_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                what: "user",
                id: id.into(),
            });
        }
        tx.commit().await?;
        Ok(())
    }

    /// Make a key for `user_id`; the key itself is in the answer only.
    pub async fn create_key(
        &self,
        user_id: &str,
        name: &str,
        expires: Option<DateTime<Utc>>,
    ) -> Result<(KeyInfo, String), StoreError> {
        self.user(user_id).await?;
        if name.len() > 128 || name.chars().any(char::is_control) {
            return Err(StoreError::Invalid {
                field: "name",
                reason: "at most 128 printable characters".into(),
            });
        }
        let k = keys::generate().map_err(|e| StoreError::Random(e.to_string()))?;
        sqlx::query(
            "INSERT INTO api_keys (id, user_id, name, hash, created_ms, expires_ms) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&k.id)
        .bind(user_id)
        .bind(name)
        .bind(&k.hash)
        .bind(ms(Utc::now()))
        .bind(expires.map(ms))
        .execute(&self.pool)
        .await?;
        Ok((self.key(&k.id).await?, k.key))
    }

    /// The key `id` as listed.
    pub async fn key(&self, id: &str) -> Result<KeyInfo, StoreError> {
        let row = sqlx::query(&format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(r) => Ok(key_of(&r)?),
            None => Err(StoreError::NotFound {
                what: "API key",
                id: id.into(),
            }),
        }
    }

    /// A user's keys, oldest first.
    pub async fn keys(&self, user_id: &str) -> Result<Vec<KeyInfo>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE user_id = $1 ORDER BY created_ms, id"
        ))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(key_of).collect::<Result<_, _>>()?)
    }

    /// Revoke a key (effective at once). Revoking twice keeps the first time.
    pub async fn revoke_key(&self, id: &str) -> Result<KeyInfo, StoreError> {
        sqlx::query("UPDATE api_keys SET revoked_ms = $1 WHERE id = $2 AND revoked_ms IS NULL")
            .bind(ms(Utc::now()))
            .bind(id)
            .execute(&self.pool)
            .await?;
        self.key(id).await
    }

    /// What authentication needs of the key `id`.
    pub async fn key_record(&self, id: &str) -> Result<Option<KeyRecord>, StoreError> {
        let row =
            sqlx::query("SELECT hash, user_id, expires_ms, revoked_ms FROM api_keys WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        let Some(r) = row else { return Ok(None) };
        Ok(Some(KeyRecord {
            hash: r.try_get("hash")?,
            user_id: r.try_get("user_id")?,
            expires_ms: r.try_get("expires_ms")?,
            revoked_ms: r.try_get("revoked_ms")?,
        }))
    }

    /// Record that the key `id` was used now.
    pub async fn touch_key(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE api_keys SET last_used_ms = $1 WHERE id = $2")
            .bind(ms(Utc::now()))
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Whether any key exists (then every request needs one).
    pub async fn has_keys(&self) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM api_keys")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>("n")? > 0)
    }

    /// The owners of user-uploaded layers, by layer name.
    pub async fn layer_owners(
        &self,
    ) -> Result<std::collections::HashMap<String, String>, StoreError> {
        let rows = sqlx::query("SELECT layer, user_id FROM layer_owners")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("layer")?, r.try_get("user_id")?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// Record that `user_id` uploaded `layer` (replacing an earlier owner: a forced
    /// re-upload by someone allowed to replace it).
    pub async fn set_layer_owner(&self, layer: &str, user_id: &str) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM layer_owners WHERE layer = $1")
            .bind(layer)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO layer_owners (layer, user_id, created_ms) VALUES ($1, $2, $3)")
            .bind(layer)
            .bind(user_id)
            .bind(ms(Utc::now()))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Forget the owner of a removed layer.
    pub async fn forget_layer(&self, layer: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM layer_owners WHERE layer = $1")
            .bind(layer)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Append an audit record (its id and time are made here).
    pub async fn audit(&self, mut r: AuditRecord) -> Result<(), StoreError> {
        r.at = Utc::now();
        // Time-ordered: milliseconds then randomness, so ids sort as records were written.
        r.id = format!("{:013x}{}", ms(r.at).max(0), &random_id("", 4)?);
        sqlx::query(
            "INSERT INTO audit (id, at_ms, user_id, key_id, action, target, result, status, \
             source_ip) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&r.id)
        .bind(ms(r.at))
        .bind(&r.user)
        .bind(&r.key_id)
        .bind(&r.action)
        .bind(&r.target)
        .bind(&r.result)
        .bind(i64::from(r.status))
        .bind(&r.source_ip)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Audit records, newest first, filtered; with the cursor of the next page.
    pub async fn audit_records(
        &self,
        q: &AuditQuery,
    ) -> Result<(Vec<AuditRecord>, Option<String>), StoreError> {
        let limit = i64::from(q.limit.unwrap_or(100).clamp(1, 1000));
        // Unused filters compare a column with itself, so parameters keep their order.
        let mut sql = String::from(
            "SELECT id, at_ms, user_id, key_id, action, target, result, status, source_ip \
             FROM audit WHERE 1 = 1",
        );
        let mut n = 0;
        let mut param = |clause: &str| {
            n += 1;
            sql.push_str(&clause.replace('?', &format!("${n}")));
        };
        if q.user.is_some() {
            param(" AND user_id = ?");
        }
        if q.action.is_some() {
            param(" AND action = ?");
        }
        if q.since.is_some() {
            param(" AND at_ms >= ?");
        }
        if q.until.is_some() {
            param(" AND at_ms <= ?");
        }
        if q.before.is_some() {
            param(" AND id < ?");
        }
        param(" ORDER BY id DESC LIMIT ?");
        let mut query = sqlx::query(&sql);
        if let Some(u) = &q.user {
            query = query.bind(u.clone());
        }
        if let Some(a) = &q.action {
            query = query.bind(a.clone());
        }
        if let Some(s) = q.since {
            query = query.bind(ms(s));
        }
        if let Some(u) = q.until {
            query = query.bind(ms(u));
        }
        if let Some(b) = &q.before {
            query = query.bind(b.clone());
        }
        let rows = query.bind(limit + 1).fetch_all(&self.pool).await?;
        let mut records = rows
            .iter()
            .map(|r| -> Result<AuditRecord, sqlx::Error> {
                Ok(AuditRecord {
                    id: r.try_get("id")?,
                    at: time(r.try_get("at_ms")?),
                    user: r.try_get("user_id")?,
                    key_id: r.try_get("key_id")?,
                    action: r.try_get("action")?,
                    target: r.try_get("target")?,
                    result: r.try_get("result")?,
                    status: r.try_get::<i64, _>("status")?.clamp(0, 999) as u16,
                    source_ip: r.try_get("source_ip")?,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let next = if records.len() as i64 > limit {
            records.truncate(limit as usize);
            records.last().map(|r| r.id.clone())
        } else {
            None
        };
        Ok((records, next))
    }
}
