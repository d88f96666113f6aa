//! Users of the guest, from its /etc/passwd and /etc/group.
//!
//! The agent is a static binary, and glibc's NSS does not work in static
//! programs, so the files are read directly (users from LDAP and the like
//! are not found; name them by uid instead).

use std::io;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: Vec<u8>,
    pub uid: u32,
    pub gid: u32,
    pub home: Vec<u8>,
    pub shell: Vec<u8>,
    /// Supplementary groups (the primary one included).
    pub groups: Vec<u32>,
}

/// Finds `who` (a name, or a numeric uid) in passwd text, with its groups
/// from group text.
pub fn lookup(who: &[u8], passwd: &[u8], group: &[u8]) -> io::Result<User> {
    let numeric = std::str::from_utf8(who).ok().and_then(|s| s.parse::<u32>().ok());
    for line in passwd.split(|&b| b == b'\n') {
        let f: Vec<&[u8]> = line.split(|&b| b == b':').collect();
        if f.len() < 7 {
            continue;
        }
        let (Some(uid), Some(gid)) = (num(f[2]), num(f[3])) else { continue };
        if f[0] == who || numeric == Some(uid) {
            let mut groups = vec![gid];
            for gl in group.split(|&b| b == b'\n') {
                let g: Vec<&[u8]> = gl.split(|&b| b == b':').collect();
                if g.len() < 4 {
                    continue;
                }
                let Some(id) = num(g[2]) else { continue };
                if g[3].split(|&b| b == b',').any(|m| m == f[0]) && !groups.contains(&id) {
                    groups.push(id);
                }
            }
            return Ok(User {
                name: f[0].to_vec(),
                uid,
                gid,
                home: f[5].to_vec(),
                shell: if f[6].is_empty() { b"/bin/sh".to_vec() } else { f[6].to_vec() },
                groups,
            });
        }
    }
    if let Some(uid) = numeric {
        // A uid without an entry, as `setpriv` allows.
        return Ok(User {
            name: who.to_vec(),
            uid,
            gid: uid,
            home: b"/".to_vec(),
            shell: b"/bin/sh".to_vec(),
            groups: vec![uid],
        });
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!("no user '{}' in the container's /etc/passwd", String::from_utf8_lossy(who)),
    ))
}

fn num(b: &[u8]) -> Option<u32> {
    std::str::from_utf8(b).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &[u8] = b"root:x:0:0:System administrator:/root:/bin/bash\n\
alice:x:1000:100::/home/alice:/bin/zsh\n\
broken line\n\
nosh:x:1001:100::/home/nosh:\n";
    const GROUP: &[u8] = b"root:x:0:\nwheel:x:1:alice,bob\nusers:x:100:\naudio:x:17:bob,alice\n";

    #[test]
    fn by_name_with_groups() {
        let u = lookup(b"alice", PASSWD, GROUP).unwrap();
        assert_eq!((u.uid, u.gid), (1000, 100));
        assert_eq!(u.home, b"/home/alice");
        assert_eq!(u.shell, b"/bin/zsh");
        assert_eq!(u.groups, [100, 1, 17]);
    }

    #[test]
    fn by_uid_and_defaults() {
        assert_eq!(lookup(b"0", PASSWD, GROUP).unwrap().name, b"root");
        assert_eq!(lookup(b"nosh", PASSWD, GROUP).unwrap().shell, b"/bin/sh");
        let anon = lookup(b"4242", PASSWD, GROUP).unwrap();
        assert_eq!((anon.uid, anon.gid, anon.home.as_slice()), (4242, 4242, &b"/"[..]));
        let err = lookup(b"mallory", PASSWD, GROUP).unwrap_err();
        assert_eq!(err.to_string(), "no user 'mallory' in the container's /etc/passwd");
    }
}
