//! Control groups for sandboxes: limits (cpu, memory, pids), OOM accounting, freezing and
//! cleanup, on cgroup v2 and on v1 (including the hybrid layout where v2 has no controllers).
//!
//! Every path is taken relative to a root (`/sys/fs/cgroup` in production, a temporary directory
//! in unit tests), so the logic is tested without privileges against a fake cgroupfs tree.

mod error;
mod stats;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use error::CgroupError;
pub use stats::CgroupStats;

/// The cgroup hierarchy layout of the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupVersion {
    /// Separate v1 hierarchies per controller (`<root>/memory`, `<root>/cpu`, ...).
    V1,
    /// The unified v2 hierarchy at `<root>`.
    V2,
}

/// Limits applied to a sandbox's cgroup. `None` leaves a resource unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    /// CPU bandwidth in cores (`0.5` = half a core).
    pub cpu: Option<f64>,
    /// Memory in bytes (swap is not allowed on top).
    pub memory_bytes: Option<u64>,
    /// Maximum number of tasks (processes and threads).
    pub pids_max: Option<u64>,
}

/// The v1 controllers sqrx uses. `cpuacct` only accounts (the CPU time of
/// [`SandboxCgroup::stats`]); on hosts that co-mount it with `cpu` both name one directory.
const V1_CONTROLLERS: &[&str] = &["memory", "cpu", "pids", "freezer", "devices", "cpuacct"];

/// The character devices (major, minor; `None` = any minor) a sandbox may open or create:
/// null, zero, full, random, urandom, tty, ptmx and the pts of its own devpts. Everything else
/// is denied, whatever node a layer or a mount brings (overlay whiteouts, char 0/0, are always
/// allowed by the kernel). v1: the `devices` controller; v2: a BPF device program.
pub const ALLOWED_DEVICES: &[(u32, Option<u32>)] = &[
    (1, Some(3)),
    (1, Some(5)),
    (1, Some(7)),
    (1, Some(8)),
    (1, Some(9)),
    (5, Some(0)),
    (5, Some(2)),
    (136, None),
];

/// [`ALLOWED_DEVICES`] in the v1 `devices.allow` syntax (`c 1:3 rwm`).
pub fn v1_device_rules() -> Vec<String> {
    ALLOWED_DEVICES
        .iter()
        .map(|(major, minor)| match minor {
            Some(m) => format!("c {major}:{m} rwm"),
            None => format!("c {major}:* rwm"),
        })
        .collect()
}

/// Attach the device program to the v2 cgroup `dir`; nothing on a tree that is not cgroupfs
/// (the fake trees of unit tests).
fn attach_device_filter(dir: &Path) -> Result<(), CgroupError> {
    let is_cgroup2 = nix::sys::statfs::statfs(dir)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC);
    if !is_cgroup2 || crate::weaken::off("devices") {
        return Ok(());
    }
    attach_device_program(dir, ALLOWED_DEVICES)
}

/// Attach to the cgroup v2 directory `dir` a device program that allows the character devices
/// in `allow` (major, minor; `None` = any minor, as in [`ALLOWED_DEVICES`]) and denies every
/// other device access of the processes in it. Sandboxes get [`ALLOWED_DEVICES`]; another
/// list is for showing the program at work on a cgroup of one's own.
pub fn attach_device_program(dir: &Path, allow: &[(u32, Option<u32>)]) -> Result<(), CgroupError> {
    use crate::sys::devbpf;
    use std::os::fd::AsFd;
    let err = |source| CgroupError::DeviceFilter {
        path: dir.to_path_buf(),
        source,
    };
    let allow: Vec<devbpf::CharDevice> = allow
        .iter()
        .map(|&(major, minor)| devbpf::CharDevice { major, minor })
        .collect();
    let prog = devbpf::load(&devbpf::program(&allow)).map_err(err)?;
    let cgroup = std::fs::File::open(dir).map_err(err)?;
    devbpf::attach(prog.as_fd(), cgroup.as_fd()).map_err(err)
}
/// The parent of every sandbox cgroup.
const PARENT: &str = "sqrx";
const CFS_PERIOD_US: u64 = 100_000;

/// Where cgroups live on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupRoot {
    version: CgroupVersion,
    root: PathBuf,
}

fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    std::fs::write(path, value).map_err(|source| CgroupError::Write {
        path: path.to_path_buf(),
        value: value.to_string(),
        source,
    })
}

fn read(path: &Path) -> Result<String, CgroupError> {
    std::fs::read_to_string(path).map_err(|source| CgroupError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Read `key N` from a flat-keyed file such as `memory.events` or `memory.oom_control`.
fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut parts = l.split_whitespace();
        (parts.next() == Some(key))
            .then(|| parts.next().and_then(|v| v.parse().ok()))
            .flatten()
    })
}

impl CgroupRoot {
    /// Detect the layout under `/sys/fs/cgroup`. A hybrid host (v1 controllers plus an empty
    /// v2 hierarchy at `unified/`) counts as v1.
    pub fn detect() -> Result<Self, CgroupError> {
        Self::detect_at(Path::new("/sys/fs/cgroup"))
    }

    /// Detect the layout under `root`.
    pub fn detect_at(root: &Path) -> Result<Self, CgroupError> {
        if root.join("cgroup.controllers").is_file() {
            return Ok(CgroupRoot {
                version: CgroupVersion::V2,
                root: root.to_path_buf(),
            });
        }
        if root.join("memory").is_dir() || root.join("pids").is_dir() {
            return Ok(CgroupRoot {
                version: CgroupVersion::V1,
                root: root.to_path_buf(),
            });
        }
        Err(CgroupError::NoCgroups {
            root: root.to_path_buf(),
        })
    }

    /// A layout given explicitly (tests, unusual mounts).
    pub fn new(version: CgroupVersion, root: impl Into<PathBuf>) -> Self {
        CgroupRoot {
            version,
            root: root.into(),
        }
    }

    /// The layout version.
    pub fn version(&self) -> CgroupVersion {
        self.version
    }

    fn v2_controllers(&self, dir: &Path) -> Result<Vec<String>, CgroupError> {
        Ok(read(&dir.join("cgroup.controllers"))?
            .split_whitespace()
            .map(str::to_string)
            .collect())
    }

    /// The directories of sandbox `name`'s cgroup (one per v1 controller, or one on v2).
    pub fn dirs(&self, name: &str) -> Vec<PathBuf> {
        match self.version {
            CgroupVersion::V1 => V1_CONTROLLERS
                .iter()
                .map(|c| self.root.join(c).join(PARENT).join(name))
                .collect(),
            CgroupVersion::V2 => vec![self.root.join(PARENT).join(name)],
        }
    }

    /// The cgroup of sandbox `name` as it is (created or not): for cleaning up after a create
    /// that crashed before it recorded it.
    pub fn existing(&self, name: &str) -> SandboxCgroup {
        SandboxCgroup {
            version: self.version,
            dirs: self.dirs(name),
        }
    }

    /// Create the cgroup of sandbox `name` and apply `limits`. A limit whose controller is
    /// missing fails with [`CgroupError::ControllerMissing`]; nothing is left behind on error.
    pub fn create(&self, name: &str, limits: &Limits) -> Result<SandboxCgroup, CgroupError> {
        let cg = SandboxCgroup {
            version: self.version,
            dirs: self.dirs(name),
        };
        let result = match self.version {
            CgroupVersion::V1 => self.create_v1(&cg, limits),
            CgroupVersion::V2 => self.create_v2(&cg, limits),
        };
        if let Err(e) = result {
            let _ = cg.remove(Duration::from_millis(200));
            return Err(e);
        }
        Ok(cg)
    }

    fn create_v1(&self, cg: &SandboxCgroup, limits: &Limits) -> Result<(), CgroupError> {
        for (controller, dir) in V1_CONTROLLERS.iter().zip(&cg.dirs) {
            let hierarchy = self.root.join(controller);
            if !hierarchy.is_dir() {
                let needed = match *controller {
                    "memory" => limits.memory_bytes.is_some(),
                    "cpu" => limits.cpu.is_some(),
                    "pids" => limits.pids_max.is_some(),
                    _ => false,
                };
                if needed {
                    return Err(CgroupError::ControllerMissing {
                        controller: controller.to_string(),
                        root: self.root.clone(),
                    });
                }
                continue;
            }
            std::fs::create_dir_all(dir).map_err(|source| CgroupError::Create {
                path: dir.clone(),
                source,
            })?;
        }
        let [memory, cpu, pids, _freezer, devices] = [0, 1, 2, 3, 4].map(|i| &cg.dirs[i]);
        if devices.is_dir() && !crate::weaken::off("devices") {
            write(&devices.join("devices.deny"), "a")?;
            for rule in v1_device_rules() {
                write(&devices.join("devices.allow"), &rule)?;
            }
        }
        if let Some(bytes) = limits.memory_bytes {
            write(&memory.join("memory.limit_in_bytes"), &bytes.to_string())?;
            // Without this the limit only covers RAM and a host with swap would swap instead.
            let memsw = memory.join("memory.memsw.limit_in_bytes");
            if memsw.exists() {
                write(&memsw, &bytes.to_string())?;
            }
        }
        if let Some(cores) = limits.cpu {
            write(&cpu.join("cpu.cfs_period_us"), &CFS_PERIOD_US.to_string())?;
            write(&cpu.join("cpu.cfs_quota_us"), &quota_us(cores).to_string())?;
        }
        if let Some(max) = limits.pids_max {
            write(&pids.join("pids.max"), &max.to_string())?;
        }
        Ok(())
    }

    fn create_v2(&self, cg: &SandboxCgroup, limits: &Limits) -> Result<(), CgroupError> {
        let parent = self.root.join(PARENT);
        let available = self.v2_controllers(&self.root)?;
        let wanted: Vec<&str> = [
            ("cpu", limits.cpu.is_some()),
            ("memory", limits.memory_bytes.is_some()),
            ("pids", limits.pids_max.is_some()),
        ]
        .into_iter()
        .filter(|(_, needed)| *needed)
        .map(|(c, _)| c)
        .collect();
        for c in &wanted {
            if !available.iter().any(|a| a == c) {
                return Err(CgroupError::ControllerMissing {
                    controller: c.to_string(),
                    root: self.root.clone(),
                });
            }
        }
        std::fs::create_dir_all(&parent).map_err(|source| CgroupError::Create {
            path: parent.clone(),
            source,
        })?;
        // Controllers must be enabled in every ancestor's subtree_control to reach the leaf.
        let enable: String = ["cpu", "memory", "pids"]
            .iter()
            .filter(|c| available.iter().any(|a| a == *c))
            .map(|c| format!("+{c}"))
            .collect::<Vec<_>>()
            .join(" ");
        if !enable.is_empty() {
            write(&self.root.join("cgroup.subtree_control"), &enable)?;
            write(&parent.join("cgroup.subtree_control"), &enable)?;
        }
        let dir = &cg.dirs[0];
        std::fs::create_dir_all(dir).map_err(|source| CgroupError::Create {
            path: dir.clone(),
            source,
        })?;
        if let Some(bytes) = limits.memory_bytes {
            write(&dir.join("memory.max"), &bytes.to_string())?;
            let swap = dir.join("memory.swap.max");
            if swap.exists() {
                write(&swap, "0")?;
            }
        }
        if let Some(cores) = limits.cpu {
            write(
                &dir.join("cpu.max"),
                &format!("{} {CFS_PERIOD_US}", quota_us(cores)),
            )?;
        }
        if let Some(max) = limits.pids_max {
            write(&dir.join("pids.max"), &max.to_string())?;
        }
        attach_device_filter(dir)
    }
}

fn quota_us(cores: f64) -> u64 {
    ((cores * CFS_PERIOD_US as f64).round() as u64).max(1000)
}

/// One sandbox's cgroup (one directory per v1 controller, or one v2 directory).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SandboxCgroup {
    /// The layout.
    pub version: CgroupVersion,
    /// Its directories (v1: memory, cpu, pids, freezer, devices and cpuacct, in that order;
    /// sandboxes created before cpuacct was added have the first five).
    pub dirs: Vec<PathBuf>,
}

impl SandboxCgroup {
    fn existing(&self) -> impl Iterator<Item = &PathBuf> {
        self.dirs.iter().filter(|d| d.is_dir())
    }

    /// The `cgroup.procs` files a process writes its pid to in order to join.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.existing().map(|d| d.join("cgroup.procs")).collect()
    }

    /// Move `pid` into the cgroup.
    pub fn add(&self, pid: i32) -> Result<(), CgroupError> {
        for f in self.procs_files() {
            write(&f, &pid.to_string())?;
        }
        Ok(())
    }

    /// How many processes the kernel OOM-killed in this cgroup so far.
    pub fn oom_kills(&self) -> u64 {
        match self.version {
            CgroupVersion::V1 => read(&self.dirs[0].join("memory.oom_control"))
                .ok()
                .and_then(|t| keyed(&t, "oom_kill"))
                .unwrap_or(0),
            CgroupVersion::V2 => read(&self.dirs[0].join("memory.events"))
                .ok()
                .and_then(|t| keyed(&t, "oom_kill"))
                .unwrap_or(0),
        }
    }

    /// Pids of every process in the cgroup.
    pub fn pids(&self) -> Vec<i32> {
        let mut out: Vec<i32> = self
            .procs_files()
            .iter()
            .filter_map(|f| std::fs::read_to_string(f).ok())
            .flat_map(|t| {
                t.lines()
                    .filter_map(|l| l.trim().parse().ok())
                    .collect::<Vec<i32>>()
            })
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Freeze (`true`) or thaw every process in the cgroup.
    pub fn set_frozen(&self, frozen: bool) -> Result<(), CgroupError> {
        match self.version {
            CgroupVersion::V1 => write(
                &self.dirs[3].join("freezer.state"),
                if frozen { "FROZEN" } else { "THAWED" },
            ),
            CgroupVersion::V2 => write(
                &self.dirs[0].join("cgroup.freeze"),
                if frozen { "1" } else { "0" },
            ),
        }
    }

    /// Whether the cgroup is frozen (or freezing).
    pub fn is_frozen(&self) -> bool {
        match self.version {
            CgroupVersion::V1 => {
                read(&self.dirs[3].join("freezer.state")).is_ok_and(|s| s.trim() != "THAWED")
            }
            CgroupVersion::V2 => {
                read(&self.dirs[0].join("cgroup.freeze")).is_ok_and(|s| s.trim() == "1")
            }
        }
    }

    /// Whether every task of the cgroup has stopped (the freeze took effect).
    pub fn freeze_complete(&self) -> bool {
        match self.version {
            CgroupVersion::V1 => {
                read(&self.dirs[3].join("freezer.state")).is_ok_and(|s| s.trim() == "FROZEN")
            }
            CgroupVersion::V2 => {
                read(&self.dirs[0].join("cgroup.events"))
                    .ok()
                    .and_then(|t| keyed(&t, "frozen"))
                    == Some(1)
            }
        }
    }

    /// SIGKILL every process in the cgroup (thawing it first: frozen tasks on v1 do not die
    /// until thawed) and wait until none is left, for at most `patience`. Whether it emptied.
    pub fn kill_all(&self, patience: Duration) -> bool {
        if self.is_frozen() {
            let _ = self.set_frozen(false);
        }
        let deadline = std::time::Instant::now() + patience;
        loop {
            let pids = self.pids();
            if pids.is_empty() {
                return true;
            }
            if std::time::Instant::now() > deadline {
                return false;
            }
            for pid in pids {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Remove the cgroup directories, killing what is left in them and retrying while the
    /// kernel still counts exiting tasks, for at most `patience`.
    pub fn remove(&self, patience: Duration) -> Result<(), CgroupError> {
        let deadline = std::time::Instant::now() + patience;
        for dir in &self.dirs {
            loop {
                match std::fs::remove_dir(dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                    Err(e) if std::time::Instant::now() < deadline => {
                        tracing::trace!(path = %dir.display(), error = %e, "cgroup busy; retrying");
                        for pid in self.pids() {
                            let _ = nix::sys::signal::kill(
                                nix::unistd::Pid::from_raw(pid),
                                nix::sys::signal::Signal::SIGKILL,
                            );
                        }
                        // A fake tree (tests) holds plain files that rmdir cannot remove.
                        if dir.join("cgroup.procs").is_file() && !is_cgroupfs(dir) {
                            let _ = std::fs::remove_dir_all(dir);
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(source) => {
                        return Err(CgroupError::Remove {
                            path: dir.clone(),
                            source,
                        });
                    }
                }
            }
        }
        Ok(())
    }
}

/// Is `path` on a real cgroup filesystem (as opposed to a fake tree in tests)?
fn is_cgroupfs(path: &Path) -> bool {
    nix::sys::statfs::statfs(path).is_ok_and(|s| {
        let t = s.filesystem_type();
        t == nix::sys::statfs::CGROUP_SUPER_MAGIC || t == nix::sys::statfs::CGROUP2_SUPER_MAGIC
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_v2() -> tempfile::TempDir {
        let d = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            d.path().join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .expect("w");
        std::fs::write(d.path().join("cgroup.subtree_control"), "").expect("w");
        d
    }

    fn fake_v1(controllers: &[&str]) -> tempfile::TempDir {
        let d = tempfile::tempdir().expect("tempdir");
        for c in controllers {
            std::fs::create_dir_all(d.path().join(c)).expect("mkdir");
        }
        d
    }

    fn limits() -> Limits {
        Limits {
            cpu: Some(0.5),
            memory_bytes: Some(256 << 20),
            pids_max: Some(64),
        }
    }

    #[test]
    fn detects_layouts() {
        let v2 = fake_v2();
        assert_eq!(
            CgroupRoot::detect_at(v2.path()).expect("v2").version(),
            CgroupVersion::V2
        );
        let v1 = fake_v1(&["memory", "cpu"]);
        assert_eq!(
            CgroupRoot::detect_at(v1.path()).expect("v1").version(),
            CgroupVersion::V1
        );
        let none = tempfile::tempdir().expect("tempdir");
        assert!(matches!(
            CgroupRoot::detect_at(none.path()),
            Err(CgroupError::NoCgroups { .. })
        ));
    }

    #[test]
    fn v2_enables_controllers_and_writes_limits() {
        let d = fake_v2();
        let root = CgroupRoot::detect_at(d.path()).expect("detect");
        let cg = root.create("box1", &limits()).expect("create");
        let leaf = d.path().join("sqrx/box1");
        assert_eq!(cg.dirs, vec![leaf.clone()]);
        let r = |p: &Path| std::fs::read_to_string(p).expect("read");
        assert_eq!(
            r(&d.path().join("cgroup.subtree_control")),
            "+cpu +memory +pids"
        );
        assert_eq!(
            r(&d.path().join("sqrx/cgroup.subtree_control")),
            "+cpu +memory +pids"
        );
        assert_eq!(r(&leaf.join("memory.max")), (256u64 << 20).to_string());
        assert_eq!(r(&leaf.join("cpu.max")), "50000 100000");
        assert_eq!(r(&leaf.join("pids.max")), "64");
        std::fs::write(
            leaf.join("memory.events"),
            "low 0\nhigh 0\nmax 3\noom 1\noom_kill 2\n",
        )
        .expect("w");
        assert_eq!(cg.oom_kills(), 2);
        std::fs::write(leaf.join("cgroup.procs"), "12\n7\n").expect("w");
        assert_eq!(cg.pids(), vec![7, 12]);
        cg.set_frozen(true).expect("freeze");
        assert_eq!(r(&leaf.join("cgroup.freeze")), "1");
        assert!(cg.is_frozen());
        assert!(!cg.freeze_complete(), "no cgroup.events yet");
        std::fs::write(leaf.join("cgroup.events"), "populated 1\nfrozen 1\n").expect("w");
        assert!(cg.freeze_complete());
        std::fs::write(leaf.join("cgroup.procs"), "").expect("w");
        cg.remove(Duration::from_millis(100)).expect("remove");
        assert!(!leaf.exists());
    }

    #[test]
    fn v2_without_a_controller_fails_clearly() {
        let d = fake_v2();
        std::fs::write(d.path().join("cgroup.controllers"), "cpu pids\n").expect("w");
        let root = CgroupRoot::detect_at(d.path()).expect("detect");
        let e = root
            .create("box2", &limits())
            .expect_err("no memory controller");
        assert!(
            matches!(&e, CgroupError::ControllerMissing { controller, .. } if controller == "memory"),
            "{e}"
        );
        assert!(!d.path().join("sqrx/box2").exists(), "nothing left behind");
        // without a memory limit the same host is fine
        let mut l = limits();
        l.memory_bytes = None;
        root.create("box3", &l).expect("create without memory");
    }

    #[test]
    fn v1_writes_each_hierarchy() {
        let d = fake_v1(&["memory", "cpu", "pids", "freezer"]);
        let root = CgroupRoot::detect_at(d.path()).expect("detect");
        let cg = root.create("box", &limits()).expect("create");
        let r = |p: &str| std::fs::read_to_string(d.path().join(p)).expect(p);
        assert_eq!(
            r("memory/sqrx/box/memory.limit_in_bytes"),
            (256u64 << 20).to_string()
        );
        assert_eq!(r("cpu/sqrx/box/cpu.cfs_quota_us"), "50000");
        assert_eq!(r("cpu/sqrx/box/cpu.cfs_period_us"), "100000");
        assert_eq!(r("pids/sqrx/box/pids.max"), "64");
        assert_eq!(cg.procs_files().len(), 4);
        std::fs::write(
            d.path().join("memory/sqrx/box/memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 5\n",
        )
        .expect("w");
        assert_eq!(cg.oom_kills(), 5);
        let missing = fake_v1(&["memory", "pids"]);
        let root = CgroupRoot::detect_at(missing.path()).expect("detect");
        let e = root.create("box", &limits()).expect_err("no cpu hierarchy");
        assert!(e.to_string().contains("cpu"), "{e}");
    }

    #[test]
    fn v1_devices_deny_all_then_allow_the_list() {
        let d = fake_v1(&["memory", "cpu", "pids", "freezer", "devices"]);
        let root = CgroupRoot::detect_at(d.path()).expect("detect");
        let cg = root.create("box", &limits()).expect("create");
        let r = |p: &str| std::fs::read_to_string(d.path().join(p)).expect(p);
        assert_eq!(r("devices/sqrx/box/devices.deny"), "a");
        // A fake file keeps the last write; the kernel's takes each rule.
        assert_eq!(
            r("devices/sqrx/box/devices.allow"),
            *v1_device_rules().last().expect("rules")
        );
        assert_eq!(v1_device_rules()[0], "c 1:3 rwm");
        assert!(v1_device_rules().contains(&"c 136:* rwm".to_string()));
        assert_eq!(cg.procs_files().len(), 5);
    }

    #[test]
    fn cpu_quota_has_a_floor() {
        assert_eq!(quota_us(2.0), 200_000);
        assert_eq!(quota_us(0.001), 1000);
    }
}
