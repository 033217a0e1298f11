//! Resource usage of a sandbox's cgroup: CPU time, memory, tasks. Read from the control files
//! of either layout (v2: `cpu.stat`, `memory.current`, `memory.max`, `pids.current`; v1:
//! `cpuacct.usage`, `memory.usage_in_bytes`, `memory.limit_in_bytes`, `pids.current`), so a
//! client polling it can show live CPU (the delta of `cpu_usage_usec` over wall time) and
//! memory.

use std::path::{Path, PathBuf};

use super::{CgroupError, CgroupVersion, SandboxCgroup, keyed, read};

/// v1 reports "no memory limit" as the largest page-aligned `i64`; anything this large (4 EiB)
/// is no limit.
const V1_UNLIMITED: u64 = 1 << 62;

/// Resource usage of one cgroup at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct CgroupStats {
    /// CPU time used by every task of the cgroup since it was created, in microseconds.
    pub cpu_usage_usec: u64,
    /// Memory charged to the cgroup now (page cache included), in bytes.
    pub memory_bytes: u64,
    /// The memory limit in bytes; `None` when unlimited.
    pub memory_limit_bytes: Option<u64>,
    /// Tasks (processes and threads) in the cgroup now.
    pub pids: u64,
}

/// Parse a control file holding one number.
fn number(path: &Path) -> Result<u64, CgroupError> {
    let text = read(path)?;
    text.trim().parse().map_err(|_| CgroupError::Parse {
        path: path.to_path_buf(),
        content: text.trim().chars().take(64).collect(),
    })
}

/// Parse a memory limit: a number, or `max` (v2) for none.
fn limit(path: &Path) -> Result<Option<u64>, CgroupError> {
    let text = read(path)?;
    match text.trim() {
        "max" => Ok(None),
        t => t
            .parse::<u64>()
            .map(|n| (n < V1_UNLIMITED).then_some(n))
            .map_err(|_| CgroupError::Parse {
                path: path.to_path_buf(),
                content: t.chars().take(64).collect(),
            }),
    }
}

impl SandboxCgroup {
    /// The directory of v1 hierarchy `controller`, or the v2 directory.
    fn dir(&self, index: usize) -> Result<&PathBuf, CgroupError> {
        let i = match self.version {
            CgroupVersion::V1 => index,
            CgroupVersion::V2 => 0,
        };
        self.dirs.get(i).ok_or_else(|| CgroupError::Parse {
            path: PathBuf::new(),
            content: format!("a cgroup of {} directories", self.dirs.len()),
        })
    }

    /// Where v1 accounts CPU time: the sandbox's `cpuacct` directory, else (a sandbox
    /// recorded with five directories) `cpuacct.usage` next to the cpu controller's files
    /// (the usual co-mounted `cpu,cpuacct` hierarchy) or in a separate `cpuacct` hierarchy.
    fn v1_cpuacct(&self) -> Result<PathBuf, CgroupError> {
        if let Some(dir) = self.dirs.get(5) {
            return Ok(dir.join("cpuacct.usage"));
        }
        let cpu = self.dir(1)?;
        let beside = cpu.join("cpuacct.usage");
        if beside.exists() {
            return Ok(beside);
        }
        // <root>/cpu/sqrx/<name> -> <root>/cpuacct/sqrx/<name>
        let name = cpu.file_name().unwrap_or_default();
        let parent = cpu.parent().and_then(Path::file_name).unwrap_or_default();
        let root = cpu
            .parent()
            .and_then(Path::parent)
            .and_then(Path::parent)
            .unwrap_or(Path::new("/"));
        Ok(root
            .join("cpuacct")
            .join(parent)
            .join(name)
            .join("cpuacct.usage"))
    }

    /// The cgroup's resource usage now. A control file that cannot be read (a controller this
    /// host lacks, a cgroup already removed) is an error naming the file.
    pub fn stats(&self) -> Result<CgroupStats, CgroupError> {
        match self.version {
            CgroupVersion::V2 => {
                let dir = self.dir(0)?;
                let cpu_stat = dir.join("cpu.stat");
                let text = read(&cpu_stat)?;
                let cpu_usage_usec =
                    keyed(&text, "usage_usec").ok_or_else(|| CgroupError::Parse {
                        path: cpu_stat.clone(),
                        content: "no usage_usec line".to_string(),
                    })?;
                Ok(CgroupStats {
                    cpu_usage_usec,
                    memory_bytes: number(&dir.join("memory.current"))?,
                    memory_limit_bytes: limit(&dir.join("memory.max"))?,
                    pids: number(&dir.join("pids.current"))?,
                })
            }
            CgroupVersion::V1 => {
                let memory = self.dir(0)?;
                let pids = self.dir(2)?;
                Ok(CgroupStats {
                    cpu_usage_usec: number(&self.v1_cpuacct()?)? / 1000,
                    memory_bytes: number(&memory.join("memory.usage_in_bytes"))?,
                    memory_limit_bytes: limit(&memory.join("memory.limit_in_bytes"))?,
                    pids: number(&pids.join("pids.current"))?,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, file: &str, text: &str) {
        std::fs::create_dir_all(dir).expect("mkdir");
        std::fs::write(dir.join(file), text).expect("write");
    }

    fn v2(dir: &Path) -> SandboxCgroup {
        SandboxCgroup {
            version: CgroupVersion::V2,
            dirs: vec![dir.to_path_buf()],
        }
    }

    #[test]
    fn v2_reads_the_four_files() {
        let d = tempfile::tempdir().expect("tempdir");
        let leaf = d.path().join("sqrx/box");
        write(
            &leaf,
            "cpu.stat",
            "usage_usec 123456\nuser_usec 100000\nsystem_usec 23456\nnr_periods 0\n",
        );
        write(&leaf, "memory.current", "4096000\n");
        write(&leaf, "memory.max", "268435456\n");
        write(&leaf, "pids.current", "3\n");
        let stats = v2(&leaf).stats().expect("stats");
        assert_eq!(
            stats,
            CgroupStats {
                cpu_usage_usec: 123_456,
                memory_bytes: 4_096_000,
                memory_limit_bytes: Some(256 << 20),
                pids: 3,
            }
        );
        write(&leaf, "memory.max", "max\n");
        assert_eq!(v2(&leaf).stats().expect("stats").memory_limit_bytes, None);
    }

    #[test]
    fn v2_errors_name_the_file() {
        let d = tempfile::tempdir().expect("tempdir");
        let leaf = d.path().join("sqrx/box");
        write(&leaf, "cpu.stat", "user_usec 1\n");
        let e = v2(&leaf).stats().expect_err("no usage_usec");
        assert!(
            matches!(&e, CgroupError::Parse { path, .. } if path.ends_with("cpu.stat")),
            "{e}"
        );
        write(&leaf, "cpu.stat", "usage_usec 5\n");
        let e = v2(&leaf).stats().expect_err("no memory.current");
        assert!(
            matches!(&e, CgroupError::Read { path, .. } if path.ends_with("memory.current")),
            "{e}"
        );
        write(&leaf, "memory.current", "lots\n");
        let e = v2(&leaf).stats().expect_err("not a number");
        assert!(e.to_string().contains("lots"), "{e}");
        let gone = v2(&d.path().join("sqrx/gone"))
            .stats()
            .expect_err("removed");
        assert!(matches!(gone, CgroupError::Read { .. }));
    }

    #[test]
    fn v1_reads_each_hierarchy() {
        let d = tempfile::tempdir().expect("tempdir");
        let dirs: Vec<PathBuf> = ["memory", "cpu", "pids", "freezer", "devices"]
            .iter()
            .map(|c| d.path().join(c).join("sqrx/box"))
            .collect();
        write(&dirs[0], "memory.usage_in_bytes", "1048576\n");
        write(&dirs[0], "memory.limit_in_bytes", "9223372036854771712\n");
        write(&dirs[2], "pids.current", "2\n");
        // cpuacct in a hierarchy of its own
        write(
            &d.path().join("cpuacct/sqrx/box"),
            "cpuacct.usage",
            "7000123\n",
        );
        std::fs::create_dir_all(&dirs[1]).expect("mkdir");
        let cg = SandboxCgroup {
            version: CgroupVersion::V1,
            dirs: dirs.clone(),
        };
        let stats = cg.stats().expect("stats");
        assert_eq!(stats.cpu_usage_usec, 7000);
        assert_eq!(stats.memory_bytes, 1 << 20);
        assert_eq!(stats.memory_limit_bytes, None, "v1's 'unlimited'");
        assert_eq!(stats.pids, 2);
        // co-mounted cpu,cpuacct wins
        write(&dirs[1], "cpuacct.usage", "2000000\n");
        write(&dirs[0], "memory.limit_in_bytes", "67108864\n");
        let stats = cg.stats().expect("stats");
        assert_eq!(stats.cpu_usage_usec, 2000);
        assert_eq!(stats.memory_limit_bytes, Some(64 << 20));
        // A cgroup created with its own cpuacct directory reads that one.
        let mut six = dirs;
        six.push(d.path().join("cpuacct/sqrx/box"));
        let cg = SandboxCgroup {
            version: CgroupVersion::V1,
            dirs: six,
        };
        assert_eq!(cg.stats().expect("stats").cpu_usage_usec, 7000);
    }

    #[test]
    fn v1_create_makes_the_cpuacct_group() {
        let d = tempfile::tempdir().expect("tempdir");
        for c in ["memory", "cpu", "pids", "freezer", "cpuacct"] {
            std::fs::create_dir_all(d.path().join(c)).expect("mkdir");
        }
        let root = super::super::CgroupRoot::detect_at(d.path()).expect("detect");
        let cg = root
            .create("acct", &super::super::Limits::default())
            .expect("create");
        assert_eq!(cg.dirs.len(), 6);
        assert!(d.path().join("cpuacct/sqrx/acct").is_dir());
        write(&cg.dirs[5], "cpuacct.usage", "5000\n");
        write(&cg.dirs[0], "memory.usage_in_bytes", "1\n");
        write(
            &cg.dirs[0],
            "memory.limit_in_bytes",
            "9223372036854771712\n",
        );
        write(&cg.dirs[2], "pids.current", "1\n");
        assert_eq!(cg.stats().expect("stats").cpu_usage_usec, 5);
    }
}
