//! A runtime's and a sandbox's secrets: reading the runtime's file, adding and rotating a
//! sandbox's own, and what an exec sees of them (placeholders, never values).

use std::collections::BTreeMap;

use super::SandboxError;
use super::runtime::{Runtime, Sandbox};
use crate::secrets::{self, Secret, SecretInfo};

impl Runtime {
    /// Read `<data>/secrets.json` again (the server does on `SIGHUP`): new values take effect
    /// for the next request of every sandbox; new secrets reach sandboxes created from now on
    /// (and those that already have secrets, at their next exec). A bad file changes nothing
    /// and is an error naming the file and the secret. Returns how many secrets it holds.
    pub fn reload_secrets(&self) -> Result<usize, SandboxError> {
        let data = self.data_dir();
        let mut fresh = secrets::read(&secrets::runtime_file(data))?;
        let store = secrets::runtime_store(data);
        let previous = secrets::read(&store).unwrap_or_default();
        secrets::fill_placeholders(&mut fresh, &previous);
        if fresh.is_empty() && !store.exists() {
            return Ok(0);
        }
        if fresh != previous {
            secrets::write(&store, &fresh)?;
            tracing::info!(count = fresh.len(), "runtime secrets read");
        }
        Ok(fresh.len())
    }

    /// The runtime's secrets as last read (no values).
    pub fn secrets(&self) -> Vec<SecretInfo> {
        let store = secrets::read(&secrets::runtime_store(self.data_dir())).unwrap_or_default();
        secrets::infos(store.into_iter().map(|(n, s)| (n, s, "runtime")).collect())
    }

    /// Does the runtime have secrets (so new networked sandboxes go through the egress proxy)?
    pub(crate) fn has_secrets(&self) -> bool {
        secrets::read(&secrets::runtime_store(self.data_dir())).is_ok_and(|s| !s.is_empty())
    }

    /// The runtime's CA certificate (PEM), made on first use.
    pub(crate) fn egress_ca(&self) -> Result<String, SandboxError> {
        let dir = secrets::dir(self.data_dir());
        secrets::ca::ensure(&dir).map_err(|e| SandboxError::Io {
            op: "create the egress CA in",
            path: dir,
            source: e,
        })
    }
}

impl Sandbox {
    /// Its secrets now: the runtime's and its own (no values).
    pub fn secrets(&self) -> Vec<SecretInfo> {
        if !self.state.egress {
            return Vec::new();
        }
        secrets::infos(secrets::effective(self.rt.data_dir(), &self.dir()))
    }

    /// Add a secret of its own, or give one a new value or hosts (rotation): the next request
    /// uses it, nothing restarts. A secret without a placeholder keeps the one it had. A
    /// sandbox created without secrets starts going through the egress proxy (its trust store
    /// gets the runtime's CA); it needs a network.
    pub fn set_secret(&mut self, name: &str, secret: Secret) -> Result<(), SandboxError> {
        secrets::validate(name, &secret)?;
        let _lock = self.state_lock()?;
        let fresh = self.rt.get(self.id())?;
        self.state = fresh.state;
        let path = secrets::sandbox_store(&self.dir());
        let previous = secrets::read(&path)?;
        let mut next = previous.clone();
        next.insert(name.to_string(), secret);
        secrets::validate_all(&next)?;
        secrets::fill_placeholders(&mut next, &previous);
        if !self.state.egress {
            self.start_egress()?;
        }
        secrets::write(&path, &next)?;
        let mut state = self.state.clone();
        state.spec.secrets = next
            .into_iter()
            .map(|(n, mut s)| {
                s.value.clear();
                (n, s)
            })
            .collect();
        state.egress = true;
        state.save(&self.rt.state_path(self.id()))?;
        self.rt.inner.network.policies_changed();
        self.state = state;
        tracing::info!(sandbox = %self.id(), secret = %name, "secret set");
        Ok(())
    }

    /// Remove a secret of its own; `false` when it had none of that name.
    pub fn remove_secret(&mut self, name: &str) -> Result<bool, SandboxError> {
        let _lock = self.state_lock()?;
        let fresh = self.rt.get(self.id())?;
        self.state = fresh.state;
        let path = secrets::sandbox_store(&self.dir());
        let mut next = secrets::read(&path)?;
        if next.remove(name).is_none() {
            return Ok(false);
        }
        secrets::write(&path, &next)?;
        let mut state = self.state.clone();
        state.spec.secrets.remove(name);
        state.save(&self.rt.state_path(self.id()))?;
        self.state = state;
        Ok(true)
    }

    /// Route a running sandbox's HTTP and HTTPS through the egress proxy and trust its CA.
    fn start_egress(&mut self) -> Result<(), SandboxError> {
        let Some(slot) = self
            .state
            .net
            .filter(|_| self.state.spec.network.has_network())
        else {
            return Err(SandboxError::Invalid {
                field: "secrets",
                reason: "secrets go out through the network: give the sandbox a network first"
                    .into(),
            });
        };
        let ca = self.rt.egress_ca()?;
        let mut bundle = self
            .read_file(secrets::trust::BUNDLE)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        if !bundle.contains(ca.trim()) {
            if !bundle.is_empty() && !bundle.ends_with('\n') {
                bundle.push('\n');
            }
            bundle.push_str(&ca);
        }
        self.write_file(secrets::trust::CA_FILE, ca.as_bytes(), 0o644)?;
        self.write_file(secrets::trust::BUNDLE, bundle.as_bytes(), 0o644)?;
        let program = self.rt.init_program()?;
        self.rt.inner.network.set_policy(
            self.id(),
            &self.state.spec.network,
            &crate::network::Networked {
                slot,
                policy: self.state.spec.network.clone(),
                egress: true,
            },
            &|| self.rt.networked_sandboxes(),
            &program,
        )?;
        Ok(())
    }

    /// The runtime's CA for its init, when it has secrets.
    pub(crate) fn trust_ca(&self) -> Result<Option<String>, SandboxError> {
        if self.state.egress {
            self.rt.egress_ca().map(Some)
        } else {
            Ok(None)
        }
    }

    /// What every exec sees of its secrets: `NAME=placeholder`, and where its trust store is.
    pub(crate) fn secret_env(&self) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        if !self.state.egress {
            return env;
        }
        for (k, v) in secrets::trust::env() {
            env.insert(k.to_string(), v.to_string());
        }
        for (name, s, _) in secrets::effective(self.rt.data_dir(), &self.dir()) {
            if let Some(p) = s.placeholder {
                env.insert(name, p);
            }
        }
        env
    }
}
