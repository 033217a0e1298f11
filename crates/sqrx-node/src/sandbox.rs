//! `Sandbox`: one sandbox, its execs, files, snapshots and lifecycle.

use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use napi::bindgen_prelude::Either;
use napi_derive::napi;

use crate::bridge::blocking;
use crate::error::to_napi;
use crate::exec::{ExecOptions, ExecResult, ExecStream, Process, request};
use crate::files::Files;

/// The core sandbox behind a JS `Sandbox` and its `files`; `None` once destroyed, so a second
/// `destroy()` (say, an explicit one and then `await using`'s) does nothing.
pub(crate) struct Handle {
    id: String,
    sandbox: Mutex<Option<sqrx_core::Sandbox>>,
}

impl Handle {
    fn lock(&self) -> MutexGuard<'_, Option<sqrx_core::Sandbox>> {
        // A panic while holding the lock cannot leave the Option half-written.
        self.sandbox.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A copy of the core handle (cheap; calls run on it without holding the lock).
    pub(crate) fn get(&self) -> napi::Result<sqrx_core::Sandbox> {
        self.lock().clone().ok_or_else(|| {
            to_napi(sqrx_core::SandboxError::NotFound {
                id: self.id.clone(),
            })
        })
    }

    fn take(&self) -> Option<sqrx_core::Sandbox> {
        self.lock().take()
    }

    /// Keep a changed copy (after restore or activate restarted the sandbox's init).
    fn put(&self, sandbox: sqrx_core::Sandbox) {
        let mut slot = self.lock();
        if slot.is_some() {
            *slot = Some(sandbox);
        }
    }
}

/// What `sandbox.info()` reports.
#[napi(object)]
pub struct SandboxInfo {
    /// The id.
    pub id: String,
    /// `"running"`, `"paused"` or `"dead"`.
    pub status: String,
    /// Layer names, base first.
    pub layers: Vec<String>,
    /// The owner, if any.
    pub owner: Option<String>,
    /// When it was created.
    pub created: DateTime<Utc>,
    /// When the runtime's reaper destroys it, if it has a lifetime.
    pub expires: Option<DateTime<Utc>>,
    /// Host pid of its init.
    pub init_pid: i32,
    /// CPU limit in cores.
    pub cpu: Option<f64>,
    /// Memory limit in MiB.
    pub memory_mb: Option<f64>,
    /// Task limit.
    pub pids_max: Option<f64>,
    /// Size of the writable layer in MiB.
    pub upper_mb: f64,
    /// What it may reach: `'none'`, `'all'` or `{ allow: [...], deny: [...] }`.
    #[napi(ts_type = "'none' | 'all' | { allow: string[]; deny: string[] }")]
    pub network: serde_json::Value,
    /// Its IPv4 address inside, when it has a link (a policy other than `'none'`, now or
    /// since it was created).
    pub address: Option<String>,
    /// Its gateway (the host side of its link), when it has a link.
    pub gateway: Option<String>,
}

/// A snapshot of a sandbox's filesystem.
#[napi(object)]
pub struct SnapshotInfo {
    /// Its label, unique in the sandbox.
    pub label: String,
    /// When it was taken.
    pub created: DateTime<Utc>,
    /// Size of its image in bytes.
    pub size: f64,
    /// Digest of its image.
    pub digest: String,
    /// The snapshot the sandbox had been restored to when this one was taken, if any.
    pub parent: Option<String>,
    /// The store layers below it, base first.
    pub layers: Vec<String>,
}

impl From<sqrx_core::sandbox::SnapshotInfo> for SnapshotInfo {
    fn from(s: sqrx_core::sandbox::SnapshotInfo) -> Self {
        SnapshotInfo {
            label: s.label,
            created: s.created,
            size: s.size as f64,
            digest: s.digest,
            parent: s.parent,
            layers: s.layers,
        }
    }
}

/// One exec in a sandbox's history.
#[napi(object)]
pub struct ExecLogEntry {
    /// Sequence number, from 1.
    pub seq: f64,
    /// The command as one line.
    pub command: String,
    /// Exit code.
    pub exit_code: Option<i32>,
    /// Killing signal.
    pub signal: Option<i32>,
    /// The timeout fired.
    pub timed_out: bool,
    /// The OOM killer killed it.
    pub oom_killed: bool,
    /// Output was cut at the cap.
    pub truncated: bool,
    /// Start time.
    pub started: DateTime<Utc>,
    /// End time.
    pub finished: DateTime<Utc>,
    /// Wall time in milliseconds.
    pub duration_ms: f64,
    /// The start of stdout (at most 16 KiB).
    pub stdout: String,
    /// The start of stderr (at most 16 KiB).
    pub stderr: String,
}

/// A running sandbox. `await using sb = await rt.create(...)` destroys it at the end of the
/// scope (`Symbol.asyncDispose`).
#[napi]
pub struct Sandbox {
    handle: Arc<Handle>,
}

impl Sandbox {
    pub(crate) fn new(sandbox: sqrx_core::Sandbox) -> Self {
        Sandbox {
            handle: Arc::new(Handle {
                id: sandbox.id().to_string(),
                sandbox: Mutex::new(Some(sandbox)),
            }),
        }
    }
}

#[napi]
impl Sandbox {
    /// The sandbox id.
    #[napi(getter)]
    pub fn id(&self) -> String {
        self.handle.id.clone()
    }

    /// What it is made of, its limits, its network and its status.
    #[napi]
    pub fn info(&self) -> napi::Result<SandboxInfo> {
        let sb = self.handle.get()?;
        let i = sb.info();
        let link = sb.network_info();
        Ok(SandboxInfo {
            network: crate::network::to_js(sb.network_policy()),
            address: link.as_ref().map(|l| l.address.to_string()),
            gateway: link.as_ref().map(|l| l.gateway.to_string()),
            id: i.id,
            status: i.status.to_string(),
            layers: i.layers,
            owner: i.owner,
            created: i.created,
            expires: i.expires,
            init_pid: i.init_pid,
            cpu: i.cpu,
            memory_mb: i.memory_mb.map(|m| m as f64),
            pids_max: i.pids_max.map(|p| p as f64),
            upper_mb: i.upper_mb as f64,
        })
    }

    /// Replace what the running sandbox may reach (as `network` of `create`): it takes effect
    /// at once, and connections the new policy refuses are cut. A sandbox without a link gets
    /// one; one set to `'none'` keeps it with every packet dropped.
    #[napi(
        ts_args_type = "policy: 'none' | 'all' | string[] | { allow?: string[]; deny?: string[] }"
    )]
    pub async fn set_network(&self, policy: serde_json::Value) -> napi::Result<()> {
        let policy = crate::network::policy(policy)?;
        let mut sb = self.handle.get()?;
        let sb = blocking(move || sb.set_network(policy).map(|()| sb)).await?;
        self.handle.put(sb);
        Ok(())
    }

    /// Add a secret of its own, or give one a new value or hosts (rotation: the next request
    /// uses it; the placeholder stays unless one is given).
    #[napi]
    pub async fn set_secret(
        &self,
        name: String,
        secret: crate::secrets::SecretOptions,
    ) -> napi::Result<()> {
        let secret: sqrx_core::Secret = secret.into();
        let mut sb = self.handle.get()?;
        let sb = blocking(move || sb.set_secret(&name, secret).map(|()| sb)).await?;
        self.handle.put(sb);
        Ok(())
    }

    /// Remove a secret of its own; resolves `false` when it had none by that name.
    #[napi]
    pub async fn remove_secret(&self, name: String) -> napi::Result<bool> {
        let mut sb = self.handle.get()?;
        let (removed, sb) = blocking(move || sb.remove_secret(&name).map(|r| (r, sb))).await?;
        self.handle.put(sb);
        Ok(removed)
    }

    /// Its secrets (the runtime's and its own); never values.
    #[napi]
    pub fn secrets(&self) -> napi::Result<Vec<crate::secrets::SecretInfo>> {
        let sb = self.handle.get()?;
        Ok(sb.secrets().into_iter().map(Into::into).collect())
    }

    /// Run `command` and resolve with its result once it exits: a string runs with
    /// `/bin/sh -c`, an array is the argv.
    #[napi]
    pub async fn exec(
        &self,
        command: Either<String, Vec<String>>,
        options: Option<ExecOptions>,
    ) -> napi::Result<ExecResult> {
        let req = request(command, options)?;
        let sb = self.handle.get()?;
        Ok(sb.exec(req).await.map_err(to_napi)?.into())
    }

    /// Run `command` and iterate its events as they come:
    /// `for await (const ev of sb.execStream(cmd))`.
    #[napi]
    pub fn exec_stream(
        &self,
        command: Either<String, Vec<String>>,
        options: Option<ExecOptions>,
    ) -> napi::Result<ExecStream> {
        let req = request(command, options)?;
        Ok(ExecStream::new(self.handle.get()?, req))
    }

    /// Start `command` in the background (no stdio); processes outlive the call.
    #[napi]
    pub async fn spawn(
        &self,
        command: Either<String, Vec<String>>,
        options: Option<ExecOptions>,
    ) -> napi::Result<Process> {
        let req = request(command, options)?;
        let sb = self.handle.get()?;
        Ok(Process::new(sb.spawn(req).await.map_err(to_napi)?))
    }

    /// The sandbox's files: `read`, `write`, `list`, `stat`, `mkdir`, `remove`.
    #[napi(getter)]
    pub fn files(&self) -> Files {
        Files::new(self.handle.clone())
    }

    /// The exec history, oldest first.
    #[napi]
    pub async fn logs(&self) -> napi::Result<Vec<ExecLogEntry>> {
        let sb = self.handle.get()?;
        let entries = blocking(move || Ok::<_, sqrx_core::SandboxError>(sb.logs())).await?;
        Ok(entries
            .into_iter()
            .map(|e| ExecLogEntry {
                seq: e.seq as f64,
                command: e.command,
                exit_code: e.exit_code,
                signal: e.signal,
                timed_out: e.timed_out,
                oom_killed: e.oom_killed,
                truncated: e.truncated,
                started: e.started,
                finished: e.finished,
                duration_ms: e.duration_ms as f64,
                stdout: e.stdout,
                stderr: e.stderr,
            })
            .collect())
    }

    /// Freeze every process; execs are refused (`Conflict`) until `resume()`.
    #[napi]
    pub async fn pause(&self) -> napi::Result<()> {
        let sb = self.handle.get()?;
        blocking(move || sb.pause()).await
    }

    /// Thaw a paused sandbox.
    #[napi]
    pub async fn resume(&self) -> napi::Result<()> {
        let sb = self.handle.get()?;
        blocking(move || sb.resume()).await
    }

    /// Snapshot the filesystem as `label` (default: a timestamp). `push` also pushes it into
    /// the bucket before resolving (with a bucket, snapshots are otherwise pushed in the
    /// background).
    #[napi]
    pub async fn snapshot(
        &self,
        label: Option<String>,
        push: Option<bool>,
    ) -> napi::Result<SnapshotInfo> {
        let sb = self.handle.get()?;
        let push = push.unwrap_or(false);
        Ok(blocking(move || {
            let info = sb.snapshot(label.as_deref())?;
            if push {
                sb.push_snapshot(&info.label)?;
            }
            Ok::<_, sqrx_core::SandboxError>(info)
        })
        .await?
        .into())
    }

    /// Push the snapshot `label` into the bucket now, with the images of its chain.
    #[napi]
    pub async fn push_snapshot(&self, label: String) -> napi::Result<SnapshotPushed> {
        let sb = self.handle.get()?;
        let r = blocking(move || sb.push_snapshot(&label)).await?;
        Ok(SnapshotPushed {
            key: r.key,
            uploaded_bytes: r.uploaded_bytes as f64,
            latest: r.latest,
        })
    }

    /// The sandbox's snapshots.
    #[napi]
    pub async fn snapshots(&self) -> napi::Result<Vec<SnapshotInfo>> {
        let sb = self.handle.get()?;
        let list = blocking(move || sb.snapshots()).await?;
        Ok(list.into_iter().map(Into::into).collect())
    }

    /// Restore the snapshot `label`: the filesystem becomes what it was then; every process
    /// is stopped and the sandbox restarts.
    #[napi]
    pub async fn restore(&self, label: String) -> napi::Result<()> {
        let mut sb = self.handle.get()?;
        let sb = blocking(move || sb.restore(&label).map(|()| sb)).await?;
        self.handle.put(sb);
        Ok(())
    }

    /// Add the store layer `layer` on top; files written are kept; the sandbox restarts.
    #[napi]
    pub async fn activate(&self, layer: String) -> napi::Result<()> {
        let mut sb = self.handle.get()?;
        let sb = blocking(move || sb.activate(&layer).map(|()| sb)).await?;
        self.handle.put(sb);
        Ok(())
    }

    /// Stop every process and remove the sandbox; nothing is left behind. Destroying a
    /// destroyed sandbox does nothing.
    #[napi]
    pub async fn destroy(&self, options: Option<DestroyOptions>) -> napi::Result<()> {
        let save = options.and_then(|o| o.save).unwrap_or(true);
        match self.handle.take() {
            Some(sb) if save => blocking(move || sb.destroy()).await,
            Some(sb) => blocking(move || sb.destroy_unsaved()).await,
            None => Ok(()),
        }
    }
}

/// Options of `destroy`.
#[napi(object)]
pub struct DestroyOptions {
    /// With ephemeral sandboxes (`SQRX_EPHEMERAL=1`): snapshot it into the bucket first
    /// (default true; false discards it).
    pub save: Option<bool>,
}

/// What `pushSnapshot` did.
#[napi(object)]
pub struct SnapshotPushed {
    /// The manifest's key in the bucket.
    pub key: String,
    /// Image bytes sent (0: the bucket had every image of its chain).
    pub uploaded_bytes: f64,
    /// Whether it is now the sandbox's latest snapshot in the bucket.
    pub latest: bool,
}
