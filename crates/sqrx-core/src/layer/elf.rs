//! Finding the shared libraries an ELF program needs, the way `ld.so` does, without running it.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use goblin::elf::Elf;

use super::LayerError;

/// What the dynamic loader needs to start one ELF file.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct ElfDeps {
    pub interpreter: Option<PathBuf>,
    pub needed: Vec<String>,
    /// Search directories from DT_RPATH (used only when there is no DT_RUNPATH).
    pub rpath: Vec<String>,
    /// Search directories from DT_RUNPATH.
    pub runpath: Vec<String>,
    pub class64: bool,
    pub machine: u16,
}

/// Is the file at `path` an ELF file? Unreadable files are not.
pub(crate) fn is_elf(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && magic == *b"\x7fELF"
}

/// Parse the dynamic section of the ELF file at `path`.
pub(crate) fn read_deps(path: &Path) -> Result<ElfDeps, LayerError> {
    let bytes = std::fs::read(path).map_err(LayerError::read(path))?;
    let elf = Elf::parse(&bytes).map_err(|e| LayerError::Elf {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let split = |v: &[&str]| -> Vec<String> {
        v.iter()
            .flat_map(|s| s.split(':'))
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    };
    Ok(ElfDeps {
        interpreter: elf.interpreter.map(PathBuf::from),
        needed: elf.libraries.iter().map(|s| s.to_string()).collect(),
        rpath: split(&elf.rpaths),
        runpath: split(&elf.runpaths),
        class64: elf.is_64,
        machine: elf.header.e_machine,
    })
}

/// Read the class and machine of an ELF file, to skip libraries of another architecture.
fn arch_of(path: &Path) -> Option<(bool, u16)> {
    let mut head = [0u8; 20];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .ok()?;
    if head[..4] != *b"\x7fELF" {
        return None;
    }
    let class64 = head[4] == 2;
    let machine = if head[5] == 2 {
        u16::from_be_bytes([head[18], head[19]])
    } else {
        u16::from_le_bytes([head[18], head[19]])
    };
    Some((class64, machine))
}

/// The directories `ld.so` searches after RPATH/RUNPATH: those of `/etc/ld.so.conf` (with its
/// `include` globs) followed by the built-in defaults.
pub(crate) fn system_lib_dirs(root: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    read_ld_conf(&root.join("etc/ld.so.conf"), root, &mut dirs, 0);
    for d in ["/lib64", "/usr/lib64", "/lib", "/usr/lib"] {
        dirs.push(PathBuf::from(d));
    }
    let mut seen = std::collections::HashSet::new();
    dirs.retain(|d| seen.insert(d.clone()));
    dirs
}

fn read_ld_conf(file: &Path, root: &Path, dirs: &mut Vec<PathBuf>, depth: u32) {
    let Ok(text) = std::fs::read_to_string(file) else {
        return;
    };
    if depth > 8 {
        return;
    }
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if let Some(pattern) = line.strip_prefix("include") {
            // Included paths are inside `root`, like the file that names them.
            let inside = root.join(pattern.trim().trim_start_matches('/'));
            for conf in glob_files(&inside.to_string_lossy()) {
                read_ld_conf(&conf, root, dirs, depth + 1);
            }
        } else if line.starts_with('/') && !line.starts_with("hwcap") {
            dirs.push(PathBuf::from(line));
        }
    }
}

/// Expand a pattern whose last component may hold one `*` (`/etc/ld.so.conf.d/*.conf`).
fn glob_files(pattern: &str) -> Vec<PathBuf> {
    let p = Path::new(pattern);
    let (Some(dir), Some(name)) = (p.parent(), p.file_name().and_then(|n| n.to_str())) else {
        return Vec::new();
    };
    let Some((prefix, suffix)) = name.split_once('*') else {
        return vec![p.to_path_buf()];
    };
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_str()?.to_string();
            (n.starts_with(prefix) && n.ends_with(suffix) && n.len() >= prefix.len() + suffix.len())
                .then(|| e.path())
        })
        .collect();
    out.sort();
    out
}

/// Expand `$ORIGIN`, `$LIB` and `$PLATFORM` in a search directory.
fn expand_dst(dir: &str, origin: &Path) -> PathBuf {
    let origin = origin.to_string_lossy();
    let lib = if cfg!(target_pointer_width = "64") {
        "lib64"
    } else {
        "lib"
    };
    PathBuf::from(
        dir.replace("${ORIGIN}", &origin)
            .replace("$ORIGIN", &origin)
            .replace("${LIB}", lib)
            .replace("$LIB", lib)
            .replace("${PLATFORM}", std::env::consts::ARCH)
            .replace("$PLATFORM", std::env::consts::ARCH),
    )
}

/// Resolves DT_NEEDED names to host paths, caching by (name, search path).
pub(crate) struct LibResolver {
    system_dirs: Vec<PathBuf>,
    cache: HashMap<(String, Vec<PathBuf>), Option<PathBuf>>,
}

impl LibResolver {
    pub fn new() -> Self {
        LibResolver {
            system_dirs: system_lib_dirs(Path::new("/")),
            cache: HashMap::new(),
        }
    }

    /// Find `name`, needed by `object` (whose deps are `deps`), like `ld.so` would.
    pub fn resolve(&mut self, name: &str, object: &Path, deps: &ElfDeps) -> Option<PathBuf> {
        let origin = object.parent().unwrap_or(Path::new("/"));
        if name.contains('/') {
            let p = expand_dst(name, origin);
            let p = if p.is_absolute() { p } else { origin.join(p) };
            return p.exists().then_some(p);
        }
        let mut dirs: Vec<PathBuf> = Vec::new();
        if deps.runpath.is_empty() {
            dirs.extend(deps.rpath.iter().map(|d| expand_dst(d, origin)));
        }
        dirs.extend(deps.runpath.iter().map(|d| expand_dst(d, origin)));
        let key = (name.to_string(), dirs.clone());
        if let Some(hit) = self.cache.get(&key) {
            return hit.clone();
        }
        let found = dirs
            .iter()
            .chain(self.system_dirs.iter())
            .map(|d| d.join(name))
            .find(|c| arch_of(c).is_some_and(|(c64, m)| c64 == deps.class64 && m == deps.machine));
        self.cache.insert(key, found.clone());
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_dynamic_string_tokens() {
        let o = Path::new("/opt/app/bin");
        assert_eq!(
            expand_dst("$ORIGIN/../lib", o),
            PathBuf::from("/opt/app/bin/../lib")
        );
        assert_eq!(
            expand_dst("${ORIGIN}/x", o),
            PathBuf::from("/opt/app/bin/x")
        );
    }

    #[test]
    fn ld_conf_includes_are_followed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        std::fs::create_dir_all(d.join("etc/ld.so.conf.d")).expect("mkdir");
        std::fs::write(
            d.join("etc/ld.so.conf"),
            "# comment\ninclude /etc/ld.so.conf.d/*.conf\n/opt/top\n",
        )
        .expect("write");
        std::fs::write(d.join("etc/ld.so.conf.d/a.conf"), "/opt/a\n").expect("write");
        std::fs::write(d.join("etc/ld.so.conf.d/b.conf"), "/opt/b # trailing\n").expect("write");
        std::fs::write(d.join("etc/ld.so.conf.d/skip.txt"), "/opt/no\n").expect("write");
        let dirs = system_lib_dirs(d);
        let want: Vec<PathBuf> = [
            "/opt/a",
            "/opt/b",
            "/opt/top",
            "/lib64",
            "/usr/lib64",
            "/lib",
            "/usr/lib",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        assert_eq!(dirs, want);
    }

    #[test]
    fn reads_the_test_binary_itself() {
        let me = std::env::current_exe().expect("current_exe");
        assert!(is_elf(&me));
        let deps = read_deps(&me).expect("parse own ELF");
        assert!(
            deps.needed.iter().any(|n| n.starts_with("libc.so")),
            "{deps:?}"
        );
        let mut r = LibResolver::new();
        for n in &deps.needed {
            let p = r
                .resolve(n, &me, &deps)
                .unwrap_or_else(|| panic!("{n} not resolved"));
            assert!(is_elf(&p));
        }
    }
}
