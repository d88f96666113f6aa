//! Address allocation for new containers.
//!
//! The first 254 pairs are the anchor's: host 10.233.N.1, container
//! 10.233.N.2 for N = 1..254. The pool goes on where the anchor stops, with
//! the next /30 of every /24: 10.233.N.5/.6, then .9/.10, ... which gives
//! 64 x 254 = 16256 pairs in the default 10.233.0.0/16.
//!
//! IPv6 pairs come from a ULA /48 (default fd6e:6978:6f73::/48, "nixos"):
//! pair N is PREFIX:N::1 (host) and PREFIX:N::2 (container), N = 1..65535.
//!
//! Allocation runs under the global lock (see `lock`), so parallel creates
//! never pick the same pair. Pairs taken by other containers are skipped
//! from their confs; pairs the host already uses are skipped through a
//! predicate (one route lookup per candidate, see `net::conflict`).

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::error::{Error, Result};

/// The IPv4 pool: a /16 whose third octet numbers the pairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool4 {
    base: [u8; 2],
}

pub const POOL_ENV: &str = "NIXOS_CONTAINER_IPV4_POOL";

impl Default for Pool4 {
    fn default() -> Self {
        Pool4 { base: [10, 233] }
    }
}

impl Pool4 {
    /// Reads `NIXOS_CONTAINER_IPV4_POOL` (`A.B.0.0/16`), default 10.233.0.0/16.
    pub fn from_env() -> Result<Pool4> {
        match std::env::var(POOL_ENV) {
            Ok(v) if !v.is_empty() => v.parse(),
            _ => Ok(Pool4::default()),
        }
    }

    pub const PAIRS_PER_SUBNET: usize = 64;
    pub const SUBNETS: usize = 254;

    pub fn size(&self) -> usize {
        Self::PAIRS_PER_SUBNET * Self::SUBNETS
    }

    /// The `i`-th pair in allocation order (host, container).
    pub fn pair(&self, i: usize) -> Option<(Ipv4Addr, Ipv4Addr)> {
        if i >= self.size() {
            return None;
        }
        let n = (i % Self::SUBNETS) as u8 + 1;
        let slot = (i / Self::SUBNETS) as u8;
        let [a, b] = self.base;
        Some((Ipv4Addr::new(a, b, n, slot * 4 + 1), Ipv4Addr::new(a, b, n, slot * 4 + 2)))
    }

    /// The first pair in which neither address is taken.
    pub fn allocate(&self, taken: &HashSet<IpAddr>) -> Result<(Ipv4Addr, Ipv4Addr)> {
        self.allocate_where(taken, |_| Ok(true))
    }

    /// The first pair in which neither address is taken and both are
    /// `usable` (asked only for pairs not taken).
    pub fn allocate_where(
        &self,
        taken: &HashSet<IpAddr>,
        usable: impl FnMut(IpAddr) -> Result<bool>,
    ) -> Result<(Ipv4Addr, Ipv4Addr)> {
        first_pair((0..self.size()).filter_map(|i| self.pair(i)), taken, usable)
            .ok_or(Error::PoolExhausted(self.size()))?
    }
}

fn first_pair<A: Into<IpAddr> + Copy>(
    pairs: impl Iterator<Item = (A, A)>,
    taken: &HashSet<IpAddr>,
    mut usable: impl FnMut(IpAddr) -> Result<bool>,
) -> Option<Result<(A, A)>> {
    for (h, l) in pairs {
        if taken.contains(&h.into()) || taken.contains(&l.into()) {
            continue;
        }
        let ok = (|| Ok(usable(h.into())? && usable(l.into())?))();
        match ok {
            Ok(true) => return Some(Ok((h, l))),
            Ok(false) => continue,
            Err(e) => return Some(Err(e)),
        }
    }
    None
}

/// The IPv6 pool: a /48 whose 16-bit subnet id numbers the pairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool6 {
    base: [u16; 3],
}

pub const POOL6_ENV: &str = "NIXOS_CONTAINER_IPV6_POOL";

impl Default for Pool6 {
    fn default() -> Self {
        Pool6 { base: [0xfd6e, 0x6978, 0x6f73] }
    }
}

impl Pool6 {
    /// Reads `NIXOS_CONTAINER_IPV6_POOL` (`P:Q:R::/48`), default fd6e:6978:6f73::/48.
    pub fn from_env() -> Result<Pool6> {
        match std::env::var(POOL6_ENV) {
            Ok(v) if !v.is_empty() => v.parse(),
            _ => Ok(Pool6::default()),
        }
    }

    pub const PAIRS: usize = 65535;

    /// The `i`-th pair (host, container).
    pub fn pair(&self, i: usize) -> Option<(Ipv6Addr, Ipv6Addr)> {
        if i >= Self::PAIRS {
            return None;
        }
        let [a, b, c] = self.base;
        let n = i as u16 + 1;
        Some((Ipv6Addr::new(a, b, c, n, 0, 0, 0, 1), Ipv6Addr::new(a, b, c, n, 0, 0, 0, 2)))
    }

    pub fn allocate_where(
        &self,
        taken: &HashSet<IpAddr>,
        usable: impl FnMut(IpAddr) -> Result<bool>,
    ) -> Result<(Ipv6Addr, Ipv6Addr)> {
        first_pair((0..Self::PAIRS).filter_map(|i| self.pair(i)), taken, usable)
            .ok_or(Error::PoolExhausted(Self::PAIRS))?
    }
}

impl std::str::FromStr for Pool6 {
    type Err = Error;

    fn from_str(s: &str) -> Result<Pool6> {
        let invalid = || Error::InvalidValue {
            what: "IPv6 address pool",
            value: s.to_string(),
            reason: "expected a /48 such as fd6e:6978:6f73::/48".to_string(),
        };
        let (addr, prefix) = s.split_once('/').ok_or_else(invalid)?;
        let addr: Ipv6Addr = addr.parse().map_err(|_| invalid())?;
        let seg = addr.segments();
        if prefix != "48" || seg[3..].iter().any(|s| *s != 0) {
            return Err(invalid());
        }
        Ok(Pool6 { base: [seg[0], seg[1], seg[2]] })
    }
}

impl std::str::FromStr for Pool4 {
    type Err = Error;

    fn from_str(s: &str) -> Result<Pool4> {
        let invalid = || Error::InvalidValue {
            what: "address pool",
            value: s.to_string(),
            reason: "expected A.B.0.0/16".to_string(),
        };
        let (addr, prefix) = s.split_once('/').ok_or_else(invalid)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| invalid())?;
        let o = addr.octets();
        if prefix != "16" || o[2] != 0 || o[3] != 0 {
            return Err(invalid());
        }
        Ok(Pool4 { base: [o[0], o[1]] })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_like_the_anchor() {
        let p = Pool4::default();
        assert_eq!(p.pair(0), Some((Ipv4Addr::new(10, 233, 1, 1), Ipv4Addr::new(10, 233, 1, 2))));
        assert_eq!(p.pair(253), Some((Ipv4Addr::new(10, 233, 254, 1), Ipv4Addr::new(10, 233, 254, 2))));
    }

    #[test]
    fn goes_past_254_containers() {
        let p = Pool4::default();
        assert_eq!(p.pair(254), Some((Ipv4Addr::new(10, 233, 1, 5), Ipv4Addr::new(10, 233, 1, 6))));
        let last = p.pair(p.size() - 1).unwrap();
        assert_eq!(last, (Ipv4Addr::new(10, 233, 254, 253), Ipv4Addr::new(10, 233, 254, 254)));
        assert_eq!(p.pair(p.size()), None);
        let all: HashSet<_> = (0..p.size())
            .flat_map(|i| {
                let (h, l) = p.pair(i).unwrap();
                [h, l]
            })
            .collect();
        assert_eq!(all.len(), 2 * p.size(), "pairs never overlap");
    }

    #[test]
    fn allocation_skips_taken_addresses() {
        let p = Pool4::default();
        let mut taken = HashSet::new();
        taken.insert(IpAddr::V4(Ipv4Addr::new(10, 233, 1, 1)));
        taken.insert(IpAddr::V4(Ipv4Addr::new(10, 233, 2, 2)));
        assert_eq!(p.allocate(&taken).unwrap().0, Ipv4Addr::new(10, 233, 3, 1));
    }

    #[test]
    fn allocation_skips_what_the_host_uses_and_asks_only_for_free_pairs() {
        let p = Pool4::default();
        let mut taken = HashSet::new();
        taken.insert(IpAddr::V4(Ipv4Addr::new(10, 233, 1, 2)));
        let mut asked = Vec::new();
        let got = p
            .allocate_where(&taken, |a| {
                asked.push(a);
                Ok(a != IpAddr::V4(Ipv4Addr::new(10, 233, 2, 2)))
            })
            .unwrap();
        assert_eq!(got, (Ipv4Addr::new(10, 233, 3, 1), Ipv4Addr::new(10, 233, 3, 2)));
        let asked: Vec<String> = asked.iter().map(|a| a.to_string()).collect();
        assert_eq!(asked, ["10.233.2.1", "10.233.2.2", "10.233.3.1", "10.233.3.2"]);
    }

    #[test]
    fn a_failing_lookup_is_an_error_not_a_skip() {
        let err = Pool4::default().allocate_where(&HashSet::new(), |_| Err(Error::other("netlink down"))).unwrap_err();
        assert_eq!(err.to_string(), "netlink down");
    }

    #[test]
    fn ipv6_pairs() {
        let p = Pool6::default();
        assert_eq!(p.pair(0).unwrap().0.to_string(), "fd6e:6978:6f73:1::1");
        assert_eq!(p.pair(0).unwrap().1.to_string(), "fd6e:6978:6f73:1::2");
        assert_eq!(p.pair(Pool6::PAIRS - 1).unwrap().1.to_string(), "fd6e:6978:6f73:ffff::2");
        assert_eq!(p.pair(Pool6::PAIRS), None);
        let mut taken = HashSet::new();
        taken.insert(IpAddr::V6("fd6e:6978:6f73:1::2".parse().unwrap()));
        assert_eq!(p.allocate_where(&taken, |_| Ok(true)).unwrap().0.to_string(), "fd6e:6978:6f73:2::1");
        let q: Pool6 = "fd00:1:2::/48".parse().unwrap();
        assert_eq!(q.pair(4).unwrap().0.to_string(), "fd00:1:2:5::1");
        assert!("fd00:1:2:3::/48".parse::<Pool6>().is_err());
        assert!("fd00::/64".parse::<Pool6>().is_err());
    }

    #[test]
    fn a_full_pool_is_an_error() {
        let p = Pool4::default();
        let taken: HashSet<_> = (0..p.size()).map(|i| IpAddr::V4(p.pair(i).unwrap().1)).collect();
        assert!(matches!(p.allocate(&taken), Err(Error::PoolExhausted(16256))));
    }

    #[test]
    fn pool_from_string() {
        assert_eq!("10.42.0.0/16".parse::<Pool4>().unwrap().pair(0).unwrap().0, Ipv4Addr::new(10, 42, 1, 1));
        assert!("10.42.1.0/24".parse::<Pool4>().is_err());
        assert!("nonsense".parse::<Pool4>().is_err());
    }
}
