//! Who the client is: the TCP peer, or, only when the peer is a configured trusted proxy,
//! the nearest address in `X-Forwarded-For` that is not itself a trusted proxy. A client can
//! write any `X-Forwarded-For` it likes, so entries left of the last untrusted hop are never
//! believed.

use std::net::IpAddr;

use axum::http::HeaderMap;
use ipnet::IpNet;

/// The proxies whose `X-Forwarded-For` is believed; empty (the default) believes none.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

/// The client address a request was attributed to, put in the request's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

/// A network (`10.0.0.0/8`) or a single address (`127.0.0.1`).
pub fn parse_net(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{text:?} is not an IP address or CIDR network"))
}

impl TrustedProxies {
    pub fn new(nets: Vec<IpNet>) -> Self {
        Self(nets)
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(&canonical(ip)))
    }

    /// The client of a request that came from `peer` with `headers`.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.trusts(peer) {
            return peer;
        }
        // Each proxy appends the address it received from: read right to left and stop at
        // the first hop that is not one of ours.
        let hops: Vec<IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|hop| hop.trim().parse::<IpAddr>().map(canonical))
            .collect::<Result<_, _>>()
            .unwrap_or_default();
        hops.iter()
            .rev()
            .find(|ip| !self.trusts(**ip))
            .or(hops.first())
            .copied()
            .unwrap_or(peer)
    }
}

/// IPv4-mapped IPv6 addresses as the IPv4 address they are.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in xff {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn without_trusted_proxies_the_peer_is_the_client() {
        let none = TrustedProxies::default();
        assert_eq!(
            none.client_ip(ip("203.0.113.9"), &headers(&["198.51.100.1"])),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn behind_trusted_proxies_the_last_untrusted_hop_is_the_client() {
        let trusted = TrustedProxies::new(vec![
            parse_net("10.0.0.0/8").unwrap(),
            parse_net("127.0.0.1").unwrap(),
        ]);
        // The client forged the first entry; the proxy appended what it really saw.
        let h = headers(&["6.6.6.6, 198.51.100.7", "10.1.2.3"]);
        assert_eq!(trusted.client_ip(ip("127.0.0.1"), &h), ip("198.51.100.7"));
        // A peer that is not trusted is the client, whatever it writes.
        assert_eq!(trusted.client_ip(ip("203.0.113.9"), &h), ip("203.0.113.9"));
        // Only trusted hops: the first one.
        assert_eq!(
            trusted.client_ip(ip("127.0.0.1"), &headers(&["10.0.0.5"])),
            ip("10.0.0.5")
        );
        // Garbage in the header: the peer.
        assert_eq!(
            trusted.client_ip(ip("::ffff:127.0.0.1"), &headers(&["nonsense"])),
            ip("127.0.0.1")
        );
        assert!(parse_net("10.0.0.0/33").is_err());
    }
}
