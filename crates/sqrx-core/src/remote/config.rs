//! Where a layer store's remote copy lives, from the config or sq-sandbox's variables.

use super::RemoteError;

/// The smallest part S3 accepts in a multipart upload (but the last).
pub const MIN_PART_SIZE: u64 = 5 << 20;
/// The part size by default: images larger than this go up in parts of this size.
pub const DEFAULT_PART_SIZE: u64 = 16 << 20;

/// An S3 bucket (AWS, R2, MinIO, B2, any S3-compatible service) holding layers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteConfig {
    /// The bucket.
    pub bucket: String,
    /// A key prefix inside it (`""` or ending in `/`), so that one bucket can hold several
    /// stores.
    pub prefix: String,
    /// The region (default `us-east-1`).
    pub region: String,
    /// The service's URL when it is not AWS (`http://127.0.0.1:9000`).
    pub endpoint: Option<String>,
    /// Address buckets as `endpoint/bucket/key` instead of `bucket.endpoint/key` (most
    /// S3-compatible services need it; on by default with an endpoint).
    pub path_style: bool,
    /// Images larger than this go up in parts of this size (at least 5 MiB).
    pub part_size: u64,
    /// Parts sent at once in a multipart upload (default 4).
    pub concurrency: usize,
    /// Credentials to use instead of the standard AWS chain (environment, profile, instance
    /// role), which is what `None` means.
    pub credentials: Option<StaticCredentials>,
    /// Push new layers and snapshots in the background (default on; a runtime pushes once
    /// [`crate::Runtime::start_pusher`] runs, see `docs/s3.md`).
    pub auto_push: bool,
    /// Ephemeral sandboxes (sq-sandbox's `SQUASH_EPHEMERAL`): destroying a sandbox snapshots
    /// it into the bucket first, and creating a sandbox whose id has a snapshot there
    /// restores the latest one, on any machine.
    pub ephemeral: bool,
    /// Keep the local layer store under this many bytes by removing the least recently used
    /// layers that no sandbox uses and that the bucket holds (`None`: unbounded).
    pub cache_max_bytes: Option<u64>,
}

/// Parts sent at once by default.
pub const DEFAULT_CONCURRENCY: usize = 4;

/// An access key given explicitly.
#[derive(Clone, PartialEq, Eq)]
pub struct StaticCredentials {
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: String,
    /// A session token, for temporary credentials.
    pub session_token: Option<String>,
}

impl std::fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticCredentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

impl RemoteConfig {
    /// A bucket with the defaults: no prefix, `us-east-1`, AWS itself.
    pub fn new(bucket: impl Into<String>) -> Self {
        RemoteConfig {
            bucket: bucket.into(),
            prefix: String::new(),
            region: "us-east-1".into(),
            endpoint: None,
            path_style: false,
            part_size: DEFAULT_PART_SIZE,
            concurrency: DEFAULT_CONCURRENCY,
            credentials: None,
            auto_push: true,
            ephemeral: false,
            cache_max_bytes: None,
        }
    }

    /// The remote `env` describes, if any: `SQRX_S3_BUCKET` (or sq-sandbox's
    /// `SQUASH_S3_BUCKET`) enables it; `_ENDPOINT`, `_REGION` (default `us-east-1`),
    /// `_PREFIX`, `_PATH_STYLE` (`1`/`0`; default on with an endpoint), `_PART_MB`,
    /// `_CONCURRENCY`, `_AUTO_PUSH` (`1`/`0`, default on) and `_CACHE_MAX_MB` refine it;
    /// `SQRX_EPHEMERAL` or `SQUASH_EPHEMERAL` (`1`) makes sandboxes ephemeral. Credentials come from the standard AWS chain (`AWS_ACCESS_KEY_ID`, profiles,
    /// instance roles).
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Option<Self>, RemoteError> {
        let var = |name: &str| {
            env(&format!("SQRX_S3_{name}"))
                .or_else(|| env(&format!("SQUASH_S3_{name}")))
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let Some(bucket) = var("BUCKET") else {
            return Ok(None);
        };
        let mut config = RemoteConfig::new(bucket);
        if let Some(region) = var("REGION") {
            config.region = region;
        }
        if let Some(prefix) = var("PREFIX") {
            config.prefix = prefix;
        }
        config.endpoint = var("ENDPOINT");
        config.path_style =
            flag(var("PATH_STYLE"), "SQRX_S3_PATH_STYLE")?.unwrap_or(config.endpoint.is_some());
        config.auto_push = flag(var("AUTO_PUSH"), "SQRX_S3_AUTO_PUSH")?.unwrap_or(true);
        config.ephemeral = Self::ephemeral_from_env(env)?.unwrap_or(false);
        let number = |name: &str, v: String| {
            v.parse::<u64>().map_err(|_| RemoteError::Config {
                reason: format!("SQRX_S3_{name}={v:?} is not a number"),
            })
        };
        if let Some(n) = var("CONCURRENCY") {
            config.concurrency = number("CONCURRENCY", n)?.try_into().unwrap_or(usize::MAX);
        }
        if let Some(mb) = var("CACHE_MAX_MB") {
            config.cache_max_bytes = Some(number("CACHE_MAX_MB", mb)?.saturating_mul(1 << 20));
        }
        if let Some(mb) = var("PART_MB") {
            config.part_size = mb
                .parse::<u64>()
                .map_err(|_| RemoteError::Config {
                    reason: format!("SQRX_S3_PART_MB={mb:?} is not a number of MiB"),
                })?
                .saturating_mul(1 << 20);
        }
        config.validate()?;
        Ok(Some(config))
    }

    /// `SQRX_EPHEMERAL` (or sq-sandbox's `SQUASH_EPHEMERAL`), if set.
    pub fn ephemeral_from_env(
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<bool>, RemoteError> {
        let value = env("SQRX_EPHEMERAL").or_else(|| env("SQUASH_EPHEMERAL"));
        flag(value, "SQRX_EPHEMERAL")
    }

    /// Check the settings (bucket name, prefix, endpoint, part size).
    pub fn validate(&self) -> Result<(), RemoteError> {
        let bad = |reason: String| Err(RemoteError::Config { reason });
        let b = &self.bucket;
        if b.len() < 3
            || b.len() > 63
            || !b
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.')
        {
            return bad(format!(
                "bucket {b:?}: 3-63 lower-case letters, digits, '-' and '.'"
            ));
        }
        if !self.prefix.is_empty() && !self.prefix.ends_with('/') {
            return bad(format!("prefix {:?} must end with '/'", self.prefix));
        }
        if self.prefix.starts_with('/') {
            return bad(format!("prefix {:?} must not start with '/'", self.prefix));
        }
        if let Some(e) = &self.endpoint
            && !(e.starts_with("http://") || e.starts_with("https://"))
        {
            return bad(format!("endpoint {e:?} must be an http:// or https:// URL"));
        }
        if !(1..=64).contains(&self.concurrency) {
            return bad(format!(
                "concurrency {} must be between 1 and 64 parts",
                self.concurrency
            ));
        }
        if self.part_size < MIN_PART_SIZE {
            return bad(format!(
                "part size {} bytes is under S3's minimum of 5 MiB",
                self.part_size
            ));
        }
        Ok(())
    }
}

/// A yes/no setting: `1`, `true`, `yes` or `0`, `false`, `no` (`None` when unset).
fn flag(value: Option<String>, name: &str) -> Result<Option<bool>, RemoteError> {
    match value.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some("1" | "true" | "yes") => Ok(Some(true)),
        Some("0" | "false" | "no") => Ok(Some(false)),
        Some(other) => Err(RemoteError::Config {
            reason: format!("{name}={other:?}: use 1 or 0"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn sq_sandbox_variables_work_and_ours_win() {
        assert_eq!(RemoteConfig::from_env(&env(&[])).expect("none"), None);
        let c = RemoteConfig::from_env(&env(&[
            ("SQUASH_S3_BUCKET", "layers"),
            ("SQUASH_S3_ENDPOINT", "http://127.0.0.1:9000"),
            ("SQUASH_S3_PREFIX", "team/"),
            ("SQRX_S3_REGION", "eu-west-1"),
        ]))
        .expect("valid")
        .expect("enabled");
        assert_eq!(c.bucket, "layers");
        assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(
            (c.prefix.as_str(), c.region.as_str()),
            ("team/", "eu-west-1")
        );
        assert!(c.path_style, "on with an endpoint");
        let c = RemoteConfig::from_env(&env(&[
            ("SQRX_S3_BUCKET", "ours"),
            ("SQUASH_S3_BUCKET", "theirs"),
        ]))
        .expect("valid")
        .expect("enabled");
        assert_eq!(
            (c.bucket.as_str(), c.region.as_str()),
            ("ours", "us-east-1")
        );
        assert!(!c.path_style);
    }

    #[test]
    fn bad_settings_are_named() {
        for (pairs, needle) in [
            (&[("SQRX_S3_BUCKET", "No_Caps")][..], "bucket"),
            (
                &[("SQRX_S3_BUCKET", "ok-bucket"), ("SQRX_S3_PREFIX", "x")][..],
                "prefix",
            ),
            (
                &[
                    ("SQRX_S3_BUCKET", "ok-bucket"),
                    ("SQRX_S3_ENDPOINT", "minio:9000"),
                ][..],
                "endpoint",
            ),
            (
                &[("SQRX_S3_BUCKET", "ok-bucket"), ("SQRX_S3_PART_MB", "1")][..],
                "5 MiB",
            ),
            (
                &[
                    ("SQRX_S3_BUCKET", "ok-bucket"),
                    ("SQRX_S3_PATH_STYLE", "maybe"),
                ][..],
                "PATH_STYLE",
            ),
        ] {
            let pairs: &'static [(&'static str, &'static str)] = pairs;
            let e = RemoteConfig::from_env(&env(pairs)).expect_err("invalid");
            assert!(e.to_string().contains(needle), "{e}");
        }
    }
}
