//! `Sandbox::stats`: what the sandbox uses now (CPU time, memory, tasks), from its cgroup.

use super::SandboxError;
use super::runtime::Sandbox;
use crate::cgroup::CgroupStats;

impl Sandbox {
    /// The sandbox's resource usage now, read from its cgroup (works while paused). CPU time
    /// is cumulative: a caller computes a CPU share from two readings.
    pub fn stats(&self) -> Result<CgroupStats, SandboxError> {
        Ok(self.cgroup_or_err()?.stats()?)
    }
}
