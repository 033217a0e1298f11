//! Users of a sandbox: entries of its own `/etc/passwd` and `/etc/group`, parsed the way the
//! C library's `files` backend reads them. Init runs execs as them; the host writes files
//! owned by them.

/// The account files of a sandbox, read once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accounts {
    /// `/etc/passwd`.
    pub passwd: String,
    /// `/etc/group`.
    pub group: String,
}

impl Accounts {
    /// The user `user` (a name or numeric uid), as [`resolve`].
    pub fn resolve(&self, user: &str) -> Option<Account> {
        resolve(user, &self.passwd, &self.group)
    }

    /// The name of `uid`, else the number.
    pub fn user_name(&self, uid: u32) -> String {
        name_of(&self.passwd, uid)
    }

    /// The name of `gid`, else the number.
    pub fn group_name(&self, gid: u32) -> String {
        name_of(&self.group, gid)
    }
}

/// The name of the entry with id `id` (third field) of a passwd- or group-shaped file.
fn name_of(file: &str, id: u32) -> String {
    file.lines()
        .find_map(|line| {
            let mut f = line.split(':');
            let name = f.next()?;
            f.next()?;
            (f.next()?.parse::<u32>().ok()? == id).then(|| name.to_string())
        })
        .unwrap_or_else(|| id.to_string())
}

/// A user resolved from the sandbox's account files.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Account {
    /// The user name (the uid itself for a uid without an entry).
    pub name: String,
    /// The uid inside the sandbox.
    pub uid: u32,
    /// The primary gid.
    pub gid: u32,
    /// The primary gid, then the supplementary groups that list the user.
    pub groups: Vec<u32>,
    /// The home directory.
    pub home: String,
}

/// Look `user` (a name or a numeric uid) up in `passwd` and collect its groups from `group`.
/// A numeric uid without an entry runs with gid = uid and home `/`.
pub fn resolve(user: &str, passwd: &str, group: &str) -> Option<Account> {
    let numeric = user.parse::<u32>().ok();
    let entry = passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 7 {
            return None;
        }
        let uid = f[2].parse::<u32>().ok()?;
        let gid = f[3].parse::<u32>().ok()?;
        (f[0] == user || numeric == Some(uid)).then(|| (f[0].to_string(), uid, gid, f[5]))
    });
    let (name, uid, gid, home) = match entry {
        Some((name, uid, gid, home)) => (name, uid, gid, home.to_string()),
        None => {
            let uid = numeric?;
            (uid.to_string(), uid, uid, "/".to_string())
        }
    };
    let mut groups = vec![gid];
    for line in group.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 4 {
            continue;
        }
        if let Ok(g) = f[2].parse::<u32>()
            && f[3].split(',').any(|m| m == name)
            && !groups.contains(&g)
        {
            groups.push(g);
        }
    }
    Some(Account {
        name,
        uid,
        gid,
        groups,
        home,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
                          user:x:1000:1000::/home/user:/bin/bash\n\
                          bad line\n";
    const GROUP: &str = "root:x:0:\nsudo:x:27:user,other\nuser:x:1000:\nusers:x:100:alice,user\n";

    #[test]
    fn names_and_uids_resolve_with_their_groups() {
        let by_name = resolve("user", PASSWD, GROUP).expect("user");
        assert_eq!(
            (by_name.uid, by_name.gid, by_name.home.as_str()),
            (1000, 1000, "/home/user")
        );
        assert_eq!(by_name.groups, vec![1000, 27, 100]);
        assert_eq!(resolve("1000", PASSWD, GROUP).expect("uid 1000"), by_name);
        let root = resolve("root", PASSWD, GROUP).expect("root");
        assert_eq!((root.uid, root.gid, root.groups), (0, 0, vec![0]));
    }

    #[test]
    fn ids_name_their_entries() {
        let a = Accounts {
            passwd: PASSWD.into(),
            group: GROUP.into(),
        };
        assert_eq!(a.user_name(1000), "user");
        assert_eq!(a.group_name(27), "sudo");
        assert_eq!(a.user_name(4242), "4242");
        assert_eq!(a.resolve("user").map(|u| u.uid), Some(1000));
    }

    #[test]
    fn unknown_names_fail_and_unknown_uids_get_their_own_group() {
        assert_eq!(resolve("nobody-here", PASSWD, GROUP), None);
        let n = resolve("4242", PASSWD, GROUP).expect("uid 4242");
        assert_eq!(
            (n.uid, n.gid, n.home.as_str(), n.groups),
            (4242, 4242, "/", vec![4242])
        );
    }
}
