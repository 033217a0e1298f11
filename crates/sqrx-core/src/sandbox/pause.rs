//! `Sandbox::pause` and `Sandbox::resume`: the cgroup freezer stops every process of the
//! sandbox (init included) where it is; nothing runs and no CPU is used until resume.

use std::time::{Duration, Instant};

use super::SandboxError;
use super::runtime::Sandbox;

impl Sandbox {
    /// The sandbox's cgroup (every sandbox has one; an error for a corrupt state).
    pub(crate) fn cgroup_or_err(&self) -> Result<&crate::cgroup::SandboxCgroup, SandboxError> {
        self.state
            .cgroup
            .as_ref()
            .ok_or_else(|| SandboxError::Invalid {
                field: "sandbox",
                reason: format!("sandbox {} has no cgroup", self.id()),
            })
    }

    /// Whether the sandbox is paused.
    pub fn is_paused(&self) -> bool {
        self.state.cgroup.as_ref().is_some_and(|c| c.is_frozen())
    }

    /// Freeze every process of the sandbox. Execs are refused with
    /// [`SandboxError::Paused`] until [`Sandbox::resume`]. Returns once the freeze took effect.
    pub fn pause(&self) -> Result<(), SandboxError> {
        let cg = self.cgroup_or_err()?;
        cg.set_frozen(true)?;
        let frozen = crate::faults::point("pause.wait_frozen")
            .map_err(SandboxError::from)
            .and_then(|()| {
                let deadline = Instant::now() + Duration::from_secs(5);
                while !cg.freeze_complete() {
                    if Instant::now() > deadline {
                        return Err(SandboxError::FreezeTimeout {
                            id: self.id().to_string(),
                        });
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                Ok(())
            });
        // A freeze that did not take effect is undone: a failed pause never leaves the
        // sandbox frozen (or half frozen).
        if let Err(e) = frozen {
            if let Err(thaw) = cg.set_frozen(false) {
                tracing::warn!(sandbox = %self.id(), error = %thaw, "cannot thaw after a failed freeze");
            }
            return Err(e);
        }
        Ok(())
    }

    /// Thaw a paused sandbox: every process continues where it was.
    pub fn resume(&self) -> Result<(), SandboxError> {
        Ok(self.cgroup_or_err()?.set_frozen(false)?)
    }
}
