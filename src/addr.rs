//! Address allocation for new containers.
//!
//! The first 254 pairs are the anchor's: host 10.233.N.1, container
//! 10.233.N.2 for N = 1..254. The pool goes on where the anchor stops, with
//! the next /30 of every /24: 10.233.N.5/.6, then .9/.10, ... which gives
//! 64 x 254 = 16256 pairs in the default 10.233.0.0/16.
//!
//! Allocation runs under the global lock (see `lock`), so parallel creates
//! never pick the same pair.

use std::collections::HashSet;
use std::net::Ipv4Addr;

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
    pub fn allocate(&self, taken: &HashSet<Ipv4Addr>) -> Result<(Ipv4Addr, Ipv4Addr)> {
        (0..self.size())
            .filter_map(|i| self.pair(i))
            .find(|(h, l)| !taken.contains(h) && !taken.contains(l))
            .ok_or(Error::PoolExhausted(self.size()))
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
        let all: HashSet<_> = (0..p.size()).flat_map(|i| {
            let (h, l) = p.pair(i).unwrap();
            [h, l]
        }).collect();
        assert_eq!(all.len(), 2 * p.size(), "pairs never overlap");
    }

    #[test]
    fn allocation_skips_taken_addresses() {
        let p = Pool4::default();
        let mut taken = HashSet::new();
        taken.insert(Ipv4Addr::new(10, 233, 1, 1));
        taken.insert(Ipv4Addr::new(10, 233, 2, 2));
        assert_eq!(p.allocate(&taken).unwrap().0, Ipv4Addr::new(10, 233, 3, 1));
    }

    #[test]
    fn a_full_pool_is_an_error() {
        let p = Pool4::default();
        let taken: HashSet<_> = (0..p.size()).map(|i| p.pair(i).unwrap().1).collect();
        assert!(matches!(p.allocate(&taken), Err(Error::PoolExhausted(16256))));
    }

    #[test]
    fn pool_from_string() {
        assert_eq!("10.42.0.0/16".parse::<Pool4>().unwrap().pair(0).unwrap().0, Ipv4Addr::new(10, 42, 1, 1));
        assert!("10.42.1.0/24".parse::<Pool4>().is_err());
        assert!("nonsense".parse::<Pool4>().is_err());
    }
}
