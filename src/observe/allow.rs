//! Who may scrape `/metrics`: a list of CIDR blocks (`metrics.allow`).
//!
//! Owns: parsing `10.0.0.0/8`, `fd00::/8` or a bare address (one host), and
//! the membership test, with IPv4-mapped IPv6 peers (`::ffff:a.b.c.d`, as a
//! dual-stack listener reports them) judged as the IPv4 address they are.
//! Must never: allow an address outside every block, or a peer whose
//! address is unknown.

use std::net::IpAddr;

/// One CIDR block: its network address and prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// `addr/prefix`, or a bare address (all its bits). Host bits set under
    /// the prefix are refused: `10.0.0.1/8` is a typo more often than not.
    pub fn parse(raw: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match raw.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (raw.trim(), None),
        };
        let net: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{raw}` is not an IP address or CIDR block"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{raw}`: the prefix length must be 0 to {max}"))?,
        };
        let cidr = Cidr { net, prefix };
        if bits(net) & !mask(prefix, max) != 0 {
            return Err(format!("`{raw}` has host bits set under its prefix"));
        }
        Ok(cidr)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        let max = if self.net.is_ipv4() { 32 } else { 128 };
        if ip.is_ipv4() != self.net.is_ipv4() {
            return false;
        }
        let m = mask(self.prefix, max);
        bits(ip) & m == bits(self.net) & m
    }
}

/// The address as the low bits of a u128.
fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// The top `prefix` bits of a `max`-bit address.
fn mask(prefix: u8, max: u8) -> u128 {
    let all: u128 = if max == 32 { u128::from(u32::MAX) } else { u128::MAX };
    if prefix == 0 {
        0
    } else {
        all & (all << (u32::from(max - prefix)))
    }
}

/// The blocks allowed to scrape. Empty allows no one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList(Vec<Cidr>);

impl AllowList {
    /// Every entry parsed, or the first that does not.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<AllowList, String> {
        entries
            .iter()
            .map(|e| Cidr::parse(e.as_ref()))
            .collect::<Result<_, _>>()
            .map(AllowList)
    }

    pub fn allows(&self, peer: Option<IpAddr>) -> bool {
        peer.is_some_and(|ip| self.0.iter().any(|c| c.contains(ip)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn the_default_loopback_list_allows_loopback_only() {
        let list = AllowList::parse(&["127.0.0.0/8", "::1/128"]).unwrap();
        assert!(list.allows(ip("127.0.0.1")));
        assert!(list.allows(ip("127.255.0.9")));
        assert!(list.allows(ip("::1")));
        assert!(list.allows(ip("::ffff:127.0.0.1")), "IPv4-mapped loopback is loopback");
        assert!(!list.allows(ip("10.0.0.1")));
        assert!(!list.allows(ip("::2")));
        assert!(!list.allows(None), "an unknown peer is refused");
    }

    #[test]
    fn blocks_match_by_prefix_and_bare_addresses_match_one_host() {
        let list = AllowList::parse(&["172.16.0.0/12", "fd00::/8", "192.0.2.7"]).unwrap();
        assert!(list.allows(ip("172.31.255.255")));
        assert!(!list.allows(ip("172.32.0.0")));
        assert!(list.allows(ip("fdab::1")));
        assert!(!list.allows(ip("fe80::1")));
        assert!(list.allows(ip("192.0.2.7")));
        assert!(!list.allows(ip("192.0.2.8")));
        let everyone = AllowList::parse(&["0.0.0.0/0"]).unwrap();
        assert!(everyone.allows(ip("203.0.113.1")));
        assert!(!everyone.allows(ip("2001:db8::1")), "an IPv4 block never matches IPv6");
        assert!(!AllowList::default().allows(ip("127.0.0.1")), "empty allows no one");
    }

    #[test]
    fn malformed_entries_are_refused_with_the_entry() {
        for bad in ["localhost", "10.0.0.0/33", "::/129", "10.0.0.1/8", "10.0.0.0/x", ""] {
            let err = Cidr::parse(bad).unwrap_err();
            assert!(err.contains(bad), "{bad}: {err}");
        }
    }
}
