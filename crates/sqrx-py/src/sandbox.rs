//! `sqrx.Sandbox`: one sandbox, its execs, files and lifecycle.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::bridge::{off_thread, wait};
use crate::error::to_py;
use crate::exec::{ExecResult, ExecStream, Process, request};
use crate::files::Files;

/// The core sandbox behind a Python `Sandbox` and its `files`; `None` once destroyed, so a
/// second `destroy` (an explicit one, then the `with` block's) does nothing.
pub(crate) struct Handle {
    id: String,
    sandbox: Mutex<Option<sqrx_core::Sandbox>>,
}

impl Handle {
    fn lock(&self) -> MutexGuard<'_, Option<sqrx_core::Sandbox>> {
        // A panic while holding the lock cannot leave the Option half-written.
        self.sandbox.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A copy of the core handle (cheap; execs run on it without holding the lock).
    pub(crate) fn get(&self) -> PyResult<sqrx_core::Sandbox> {
        self.lock().clone().ok_or_else(|| {
            to_py(sqrx_core::SandboxError::NotFound {
                id: self.id.clone(),
            })
        })
    }

    fn take(&self) -> Option<sqrx_core::Sandbox> {
        self.lock().take()
    }

    /// Run an operation that changes the sandbox (restore, activate: they restart its init)
    /// on a copy, without holding the lock, then keep the changed copy.
    fn update<T>(
        &self,
        op: impl FnOnce(&mut sqrx_core::Sandbox) -> Result<T, sqrx_core::SandboxError>,
    ) -> PyResult<T> {
        let mut sb = self.get()?;
        let out = op(&mut sb).map_err(to_py)?;
        let mut slot = self.lock();
        if slot.is_some() {
            *slot = Some(sb);
        }
        Ok(out)
    }
}

/// A running sandbox. Use it as a context manager (`with rt.create(...) as sb:`, or
/// `async with`) to destroy it on exit.
#[pyclass(module = "sqrx", frozen)]
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

#[pymethods]
impl Sandbox {
    /// The sandbox id.
    #[getter]
    fn id(&self) -> &str {
        &self.handle.id
    }

    /// What it is made of, its limits, its network and its status.
    fn info(&self) -> PyResult<SandboxInfo> {
        let sb = self.handle.get()?;
        Ok(SandboxInfo {
            inner: sb.info(),
            network: sb.network_policy().clone(),
            link: sb.network_info(),
        })
    }

    /// Replace what the running sandbox may reach (as `network` of `Runtime.create`): it
    /// takes effect at once, and connections the new policy refuses are cut. A sandbox
    /// without a link gets one; one set to `"none"` keeps it with every packet dropped.
    fn set_network(&self, py: Python<'_>, policy: &Bound<'_, PyAny>) -> PyResult<()> {
        let policy = crate::network::policy(policy)?;
        py.detach(|| self.handle.update(|sb| sb.set_network(policy)))
    }

    /// Add a secret of its own, or give one a new value or hosts (rotation: the next request
    /// uses it; the placeholder stays unless `placeholder` is given).
    #[pyo3(signature = (name, value, allowed_hosts, *, placeholder=None, allow_http=false, allow_query=false, allow_body=false))]
    #[allow(
        clippy::too_many_arguments,
        reason = "one Python keyword argument each"
    )]
    fn set_secret(
        &self,
        py: Python<'_>,
        name: String,
        value: String,
        allowed_hosts: Vec<String>,
        placeholder: Option<String>,
        allow_http: bool,
        allow_query: bool,
        allow_body: bool,
    ) -> PyResult<()> {
        let secret = sqrx_core::Secret {
            placeholder,
            value,
            allowed_hosts,
            allow_http,
            allow_query,
            allow_body,
        };
        py.detach(|| self.handle.update(|sb| sb.set_secret(&name, secret)))
    }

    /// Remove a secret of its own; `False` when it had none by that name.
    fn remove_secret(&self, py: Python<'_>, name: String) -> PyResult<bool> {
        py.detach(|| self.handle.update(|sb| sb.remove_secret(&name)))
    }

    /// Its secrets (the runtime's and its own): dicts with `name`, `placeholder`,
    /// `allowed_hosts`, `allow_http`, `allow_query`, `allow_body`, `source`; never a value.
    fn secrets(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let sb = self.handle.get()?;
        let secrets = py.detach(|| sb.secrets());
        crate::secrets::to_py(py, &secrets)
    }

    /// Run `command` and wait for it: a `str` runs with `/bin/sh -c`, a list of `str` is
    /// the argv. `env` adds variables, `workdir` sets the directory (default: the user's
    /// home, `/` for root), `user` runs it as an account of the sandbox's `/etc/passwd` (a
    /// name or uid; default root), `stdin` is fed to the
    /// process, `timeout` (seconds) kills its whole process tree, `output_cap` bounds the
    /// bytes kept per stream. Ctrl-C stops the exec and raises `KeyboardInterrupt`.
    #[pyo3(signature = (command, *, env=None, workdir=None, user=None, stdin=None, timeout=None, output_cap=None))]
    #[allow(
        clippy::too_many_arguments,
        reason = "one Python keyword argument each"
    )]
    fn exec(
        &self,
        py: Python<'_>,
        command: &Bound<'_, PyAny>,
        env: Option<BTreeMap<String, String>>,
        workdir: Option<String>,
        user: Option<String>,
        stdin: Option<&Bound<'_, PyAny>>,
        timeout: Option<f64>,
        output_cap: Option<u64>,
    ) -> PyResult<ExecResult> {
        let req = request(command, env, workdir, user, stdin, timeout, output_cap)?;
        let sb = self.handle.get()?;
        let result = wait(py, async move { sb.exec(req).await })?.map_err(to_py)?;
        Ok(result.into())
    }

    /// `exec` for asyncio: returns an awaitable of the `ExecResult`. Cancelling it stops the
    /// exec.
    #[pyo3(signature = (command, *, env=None, workdir=None, user=None, stdin=None, timeout=None, output_cap=None))]
    #[allow(
        clippy::too_many_arguments,
        reason = "one Python keyword argument each"
    )]
    fn exec_async<'py>(
        &self,
        py: Python<'py>,
        command: &Bound<'py, PyAny>,
        env: Option<BTreeMap<String, String>>,
        workdir: Option<String>,
        user: Option<String>,
        stdin: Option<&Bound<'py, PyAny>>,
        timeout: Option<f64>,
        output_cap: Option<u64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let req = request(command, env, workdir, user, stdin, timeout, output_cap)?;
        let sb = self.handle.get()?;
        crate::bridge::runtime()?;
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            sb.exec(req).await.map(ExecResult::from).map_err(to_py)
        })
    }

    /// Start `command` and return its events as they come (`for ev in ...` or
    /// `async for ev in ...`): `"stdout"` and `"stderr"` chunks, then `"exit"` with the
    /// result. Arguments as for `exec`.
    #[pyo3(signature = (command, *, env=None, workdir=None, user=None, stdin=None, timeout=None, output_cap=None))]
    #[allow(
        clippy::too_many_arguments,
        reason = "one Python keyword argument each"
    )]
    fn exec_stream(
        &self,
        py: Python<'_>,
        command: &Bound<'_, PyAny>,
        env: Option<BTreeMap<String, String>>,
        workdir: Option<String>,
        user: Option<String>,
        stdin: Option<&Bound<'_, PyAny>>,
        timeout: Option<f64>,
        output_cap: Option<u64>,
    ) -> PyResult<ExecStream> {
        let req = request(command, env, workdir, user, stdin, timeout, output_cap)?;
        let sb = self.handle.get()?;
        let stream = wait(py, async move { sb.exec_stream(req).await })?.map_err(to_py)?;
        Ok(ExecStream::new(stream))
    }

    /// Start `command` in the background (no stdio) and return a `Process` to wait for or
    /// signal. Processes outlive the call, as on a real machine.
    #[pyo3(signature = (command, *, env=None, workdir=None, user=None, timeout=None))]
    fn spawn(
        &self,
        py: Python<'_>,
        command: &Bound<'_, PyAny>,
        env: Option<BTreeMap<String, String>>,
        workdir: Option<String>,
        user: Option<String>,
        timeout: Option<f64>,
    ) -> PyResult<Process> {
        let req = request(command, env, workdir, user, None, timeout, None)?;
        let sb = self.handle.get()?;
        let handle = wait(py, async move { sb.spawn(req).await })?.map_err(to_py)?;
        Ok(Process::new(handle))
    }

    /// The exec history, oldest first (at least the most recent 200 execs).
    fn logs(&self, py: Python<'_>) -> PyResult<Vec<ExecLogEntry>> {
        let sb = self.handle.get()?;
        let entries = py.detach(|| sb.logs());
        Ok(entries
            .into_iter()
            .map(|inner| ExecLogEntry { inner })
            .collect())
    }

    /// Freeze every process; execs are refused (`Conflict`) until `resume`.
    fn pause(&self, py: Python<'_>) -> PyResult<()> {
        let sb = self.handle.get()?;
        py.detach(|| sb.pause()).map_err(to_py)
    }

    /// Thaw a paused sandbox.
    fn resume(&self, py: Python<'_>) -> PyResult<()> {
        let sb = self.handle.get()?;
        py.detach(|| sb.resume()).map_err(to_py)
    }

    /// The sandbox's files: `read`, `write`, `list`, `stat`, `mkdir`, `remove`.
    #[getter]
    fn files(&self) -> Files {
        Files::new(self.handle.clone())
    }

    /// Snapshot the sandbox's filesystem as `label` (default: a timestamp). The sandbox is
    /// frozen while its changes are packed. `push` also pushes it into the bucket before
    /// returning (with a bucket, snapshots are otherwise pushed in the background).
    #[pyo3(signature = (label=None, *, push=false))]
    fn snapshot(&self, py: Python<'_>, label: Option<&str>, push: bool) -> PyResult<SnapshotInfo> {
        let sb = self.handle.get()?;
        let inner = py
            .detach(|| {
                let info = sb.snapshot(label)?;
                if push {
                    sb.push_snapshot(&info.label)?;
                }
                Ok::<_, sqrx_core::SandboxError>(info)
            })
            .map_err(to_py)?;
        Ok(SnapshotInfo { inner })
    }

    /// Push the snapshot `label` into the bucket now, with the images of its chain. Returns
    /// `{"key", "uploaded_bytes", "latest"}`.
    fn push_snapshot(&self, py: Python<'_>, label: &str) -> PyResult<Py<PyDict>> {
        let sb = self.handle.get()?;
        let r = py.detach(|| sb.push_snapshot(label)).map_err(to_py)?;
        let d = PyDict::new(py);
        d.set_item("key", r.key)?;
        d.set_item("uploaded_bytes", r.uploaded_bytes)?;
        d.set_item("latest", r.latest)?;
        Ok(d.unbind())
    }

    /// `snapshot` for asyncio.
    #[pyo3(signature = (label=None))]
    fn snapshot_async<'py>(
        &self,
        py: Python<'py>,
        label: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let sb = self.handle.get()?;
        crate::bridge::runtime()?;
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            let inner = off_thread(move || sb.snapshot(label.as_deref()))
                .await?
                .map_err(to_py)?;
            Ok(SnapshotInfo { inner })
        })
    }

    /// The sandbox's snapshots.
    fn snapshots(&self, py: Python<'_>) -> PyResult<Vec<SnapshotInfo>> {
        let sb = self.handle.get()?;
        let list = py.detach(|| sb.snapshots()).map_err(to_py)?;
        Ok(list
            .into_iter()
            .map(|inner| SnapshotInfo { inner })
            .collect())
    }

    /// Restore the snapshot `label`: the filesystem becomes what it was then. Every process
    /// of the sandbox is stopped and it restarts on the snapshot.
    fn restore(&self, py: Python<'_>, label: &str) -> PyResult<()> {
        py.detach(|| self.handle.update(|sb| sb.restore(label)))
    }

    /// `restore` for asyncio.
    fn restore_async<'py>(&self, py: Python<'py>, label: String) -> PyResult<Bound<'py, PyAny>> {
        let handle = self.handle.clone();
        crate::bridge::runtime()?;
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            off_thread(move || handle.update(|sb| sb.restore(&label))).await?
        })
    }

    /// Add the store layer `layer` on top of the sandbox's layers; files written in the
    /// sandbox are kept. Every process of the sandbox is stopped and it restarts.
    fn activate(&self, py: Python<'_>, layer: &str) -> PyResult<()> {
        py.detach(|| self.handle.update(|sb| sb.activate(layer)))
    }

    /// Stop every process and remove the sandbox; nothing is left behind. Destroying a
    /// destroyed sandbox does nothing. With ephemeral sandboxes (`SQRX_EPHEMERAL=1`) it is
    /// first snapshotted into the bucket, unless `save` is false.
    #[pyo3(signature = (*, save=true))]
    fn destroy(&self, py: Python<'_>, save: bool) -> PyResult<()> {
        match self.handle.take() {
            Some(sb) if save => py.detach(|| sb.destroy()).map_err(to_py),
            Some(sb) => py.detach(|| sb.destroy_unsaved()).map_err(to_py),
            None => Ok(()),
        }
    }

    /// `destroy` for asyncio.
    fn destroy_async<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let sb = self.handle.take();
        crate::bridge::runtime()?;
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            match sb {
                Some(sb) => off_thread(move || sb.destroy()).await?.map_err(to_py),
                None => Ok(()),
            }
        })
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    #[pyo3(signature = (_exc_type=None, _exc=None, _tb=None))]
    fn __exit__(
        &self,
        py: Python<'_>,
        _exc_type: Option<&Bound<'_, PyAny>>,
        _exc: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        self.destroy(py, true)?;
        Ok(false)
    }

    fn __aenter__<'py>(slf: Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let this: Py<Sandbox> = slf.unbind();
        crate::bridge::runtime()?;
        pyo3_async_runtimes::tokio::future_into_py(py, async move { Ok(this) })
    }

    #[pyo3(signature = (_exc_type=None, _exc=None, _tb=None))]
    fn __aexit__<'py>(
        &self,
        py: Python<'py>,
        _exc_type: Option<&Bound<'py, PyAny>>,
        _exc: Option<&Bound<'py, PyAny>>,
        _tb: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.destroy_async(py)
    }

    fn __repr__(&self) -> String {
        format!("Sandbox(id={:?})", self.handle.id)
    }
}

/// What `Sandbox.info()` reports.
#[pyclass(module = "sqrx", frozen)]
pub struct SandboxInfo {
    inner: sqrx_core::SandboxInfo,
    network: sqrx_core::network::NetworkPolicy,
    link: Option<sqrx_core::network::NetInfo>,
}

#[pymethods]
impl SandboxInfo {
    /// The id.
    #[getter]
    fn id(&self) -> &str {
        &self.inner.id
    }
    /// `"running"`, `"paused"` or `"dead"`.
    #[getter]
    fn status(&self) -> &'static str {
        self.inner.status
    }
    /// Layer names, base first.
    #[getter]
    fn layers(&self) -> Vec<String> {
        self.inner.layers.clone()
    }
    /// The owner, if any.
    #[getter]
    fn owner(&self) -> Option<&str> {
        self.inner.owner.as_deref()
    }
    /// When it was created (UTC).
    #[getter]
    fn created(&self) -> DateTime<Utc> {
        self.inner.created
    }
    /// When the runtime's reaper destroys it, if it has a lifetime (`timeout` at create).
    #[getter]
    fn expires(&self) -> Option<DateTime<Utc>> {
        self.inner.expires
    }
    /// Host pid of its init.
    #[getter]
    fn init_pid(&self) -> i32 {
        self.inner.init_pid
    }
    /// CPU limit in cores.
    #[getter]
    fn cpu(&self) -> Option<f64> {
        self.inner.cpu
    }
    /// Memory limit in MiB.
    #[getter]
    fn memory_mb(&self) -> Option<u64> {
        self.inner.memory_mb
    }
    /// Task limit.
    #[getter]
    fn pids_max(&self) -> Option<u64> {
        self.inner.pids_max
    }
    /// Size of the writable layer in MiB.
    #[getter]
    fn upper_mb(&self) -> u64 {
        self.inner.upper_mb
    }
    /// What it may reach: `"none"`, `"all"` or `{"allow": [...], "deny": [...]}`.
    #[getter]
    fn network(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        crate::network::to_py(py, &self.network)
    }
    /// Its IPv4 address inside, when it has a link (a policy other than `"none"`, now or
    /// since it was created).
    #[getter]
    fn address(&self) -> Option<String> {
        self.link.as_ref().map(|l| l.address.to_string())
    }
    /// Its gateway (the host side of its link), when it has a link.
    #[getter]
    fn gateway(&self) -> Option<String> {
        self.link.as_ref().map(|l| l.gateway.to_string())
    }
    fn __repr__(&self) -> String {
        format!(
            "SandboxInfo(id={:?}, status={:?}, layers={:?})",
            self.inner.id, self.inner.status, self.inner.layers
        )
    }
}

/// A snapshot of a sandbox's filesystem (`Sandbox.snapshot()`).
#[pyclass(module = "sqrx", frozen)]
pub struct SnapshotInfo {
    inner: sqrx_core::sandbox::SnapshotInfo,
}

#[pymethods]
impl SnapshotInfo {
    /// Its label, unique in the sandbox.
    #[getter]
    fn label(&self) -> &str {
        &self.inner.label
    }
    /// When it was taken (UTC).
    #[getter]
    fn created(&self) -> DateTime<Utc> {
        self.inner.created
    }
    /// Size of its image in bytes.
    #[getter]
    fn size(&self) -> u64 {
        self.inner.size
    }
    /// Digest of its image.
    #[getter]
    fn digest(&self) -> &str {
        &self.inner.digest
    }
    /// The snapshot the sandbox had been restored to when this one was taken, if any.
    #[getter]
    fn parent(&self) -> Option<&str> {
        self.inner.parent.as_deref()
    }
    /// The store layers below it, base first.
    #[getter]
    fn layers(&self) -> Vec<String> {
        self.inner.layers.clone()
    }
    fn __repr__(&self) -> String {
        format!(
            "SnapshotInfo(label={:?}, size={}, parent={:?})",
            self.inner.label, self.inner.size, self.inner.parent
        )
    }
}

/// One exec in a sandbox's history (`Sandbox.logs()`).
#[pyclass(module = "sqrx", frozen)]
pub struct ExecLogEntry {
    inner: sqrx_core::sandbox::ExecLogEntry,
}

#[pymethods]
impl ExecLogEntry {
    /// Sequence number, from 1, increasing for the life of the sandbox.
    #[getter]
    fn seq(&self) -> u64 {
        self.inner.seq
    }
    /// The command as one line.
    #[getter]
    fn command(&self) -> &str {
        &self.inner.command
    }
    /// Exit code.
    #[getter]
    fn exit_code(&self) -> Option<i32> {
        self.inner.exit_code
    }
    /// Killing signal.
    #[getter]
    fn signal(&self) -> Option<i32> {
        self.inner.signal
    }
    /// The timeout fired.
    #[getter]
    fn timed_out(&self) -> bool {
        self.inner.timed_out
    }
    /// The OOM killer killed it.
    #[getter]
    fn oom_killed(&self) -> bool {
        self.inner.oom_killed
    }
    /// Output was cut at the cap.
    #[getter]
    fn truncated(&self) -> bool {
        self.inner.truncated
    }
    /// Start time (UTC).
    #[getter]
    fn started(&self) -> DateTime<Utc> {
        self.inner.started
    }
    /// End time (UTC).
    #[getter]
    fn finished(&self) -> DateTime<Utc> {
        self.inner.finished
    }
    /// Wall time in milliseconds.
    #[getter]
    fn duration_ms(&self) -> u64 {
        self.inner.duration_ms
    }
    /// The start of stdout (at most 16 KiB).
    #[getter]
    fn stdout(&self) -> &str {
        &self.inner.stdout
    }
    /// The start of stderr (at most 16 KiB).
    #[getter]
    fn stderr(&self) -> &str {
        &self.inner.stderr
    }
    fn __repr__(&self) -> String {
        format!(
            "ExecLogEntry(seq={}, command={:?}, exit_code={})",
            self.inner.seq,
            self.inner.command,
            self.inner
                .exit_code
                .map_or("None".to_string(), |c| c.to_string())
        )
    }
}
