//! Changing when a running sandbox expires.

use std::time::Duration;

use super::SandboxError;
use super::runtime::Sandbox;

impl Sandbox {
    /// Make the sandbox expire `from_now` after now (the reaper destroys it then), replacing
    /// its lifetime, longer or shorter; `Duration::ZERO` removes it (the sandbox lives until
    /// destroyed).
    pub fn set_timeout(&mut self, from_now: Duration) -> Result<(), SandboxError> {
        let _lock = self.state_lock()?;
        let fresh = self.rt.get(self.id())?;
        self.state = fresh.state;
        let mut state = self.state.clone();
        state.spec.max_lifetime = if from_now.is_zero() {
            0
        } else {
            let lived = chrono::Utc::now()
                .signed_duration_since(state.created)
                .to_std()
                .unwrap_or_default();
            // Whole seconds, rounded up: never earlier than asked.
            (lived + from_now).as_secs_f64().ceil().max(1.0) as u64
        };
        state.save(&self.rt.state_path(self.id()))?;
        self.state = state;
        Ok(())
    }
}
