//! A running sandbox's network: what it is and changing its policy live.

use super::SandboxError;
use super::runtime::Sandbox;
use crate::network::{NetInfo, NetworkPolicy};

impl Sandbox {
    /// Its address, gateway and host-side interface; `None` when it has no link (policy
    /// `none` since it was created).
    pub fn network_info(&self) -> Option<NetInfo> {
        self.state.net.map(|slot| self.rt.inner.network.info(slot))
    }

    /// Its network policy.
    pub fn network_policy(&self) -> &NetworkPolicy {
        &self.state.spec.network
    }

    /// Replace the policy of the running sandbox. Takes effect for the next packet (one
    /// nftables transaction): connections to destinations the new policy refuses are cut.
    /// A sandbox created without a network gets its link now; one that goes to `none` keeps
    /// its link with every packet dropped.
    pub fn set_network(&mut self, policy: NetworkPolicy) -> Result<(), SandboxError> {
        let _lock = self.state_lock()?;
        let fresh = self.rt.get(self.id())?;
        self.state = fresh.state;
        let net = &self.rt.inner.network;
        let existing = || self.rt.networked_sandboxes();
        let program = self.rt.init_program()?;
        let egress = self.state.egress;
        let target = |slot| crate::network::Networked {
            slot,
            policy: policy.clone(),
            egress,
        };
        let slot = match self.state.net {
            Some(slot) => {
                net.set_policy(
                    self.id(),
                    &self.state.spec.network,
                    &target(slot),
                    &existing,
                    &program,
                )?;
                Some(slot)
            }
            None if policy.has_network() => {
                let pid = self.state.init_pid;
                let ns = std::fs::File::open(format!("/proc/{pid}/ns/net")).map_err(|e| {
                    SandboxError::Network {
                        id: self.id().to_string(),
                        reason: format!("cannot open the sandbox's network namespace: {e}"),
                    }
                })?;
                // The namespace must still be this sandbox's: its init was not replaced.
                if super::state::process_start_time(pid) != Some(self.state.init_start) {
                    return Err(SandboxError::Dead {
                        id: self.id().to_string(),
                    });
                }
                let dir = self.dir();
                let slot = net.reserve(&dir)?;
                let attached = {
                    use std::os::fd::AsFd;
                    net.attach(self.id(), ns.as_fd(), &target(slot), &existing, &program)
                };
                if let Err(e) = attached {
                    net.detach(self.id(), &dir, Some(slot), &policy);
                    return Err(e);
                }
                // Its init started without a resolver: point it there now.
                let gateway = net.info(slot).gateway;
                self.write_file(
                    "/etc/resolv.conf",
                    format!("nameserver {gateway}\n").as_bytes(),
                    0o644,
                )?;
                Some(slot)
            }
            None => None,
        };
        let mut state = self.state.clone();
        state.spec.network = policy;
        state.net = slot;
        state.save(&self.rt.state_path(self.id()))?;
        self.rt.inner.network.policies_changed();
        self.state = state;
        tracing::info!(sandbox = %self.id(), "network policy changed");
        Ok(())
    }
}
