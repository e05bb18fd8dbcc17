//! Click quality at the door: the flags that need what only ingest sees, the user agent
//! before a denied consent drops it and the client IP before it is hashed. Only the flags are
//! kept (`quality_flags`, see `schemas::quality`); the IP never leaves this process.
//!
//! - `BOT_USER_AGENT`: the `isbot` crate's list of bot and crawler user agents (its
//!   maintainers test it against 12k bot and 180k browser user agents).
//! - `DATACENTER_IP`: the operator's range files (`--datacenter-ranges`): one IPv4 or IPv6
//!   network in CIDR notation per line, anything after it on the line a label, `#` comments
//!   and blank lines ignored (config/datacenter-ranges.example.txt).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use iprange::IpRange;
use schemas::{quality, EventName, TrackingEvent};

use crate::metrics::Metrics;

pub struct ClickQuality {
    bots: isbot::Bots,
    v4: IpRange<Ipv4Net>,
    v6: IpRange<Ipv6Net>,
    /// Networks read from the range files.
    pub networks: usize,
}

impl ClickQuality {
    pub fn new(range_files: &[PathBuf]) -> Result<Self, String> {
        let mut v4 = IpRange::new();
        let mut v6 = IpRange::new();
        let mut networks = 0;
        // An empty setting (INGEST_DATACENTER_RANGES= in compose) names no file.
        for file in range_files.iter().filter(|f| !f.as_os_str().is_empty()) {
            for net in read_ranges(file)? {
                match net {
                    IpNet::V4(n) => {
                        v4.add(n);
                    }
                    IpNet::V6(n) => {
                        v6.add(n);
                    }
                }
                networks += 1;
            }
        }
        v4.simplify();
        v6.simplify();
        Ok(Self {
            bots: isbot::Bots::default(),
            v4,
            v6,
            networks,
        })
    }

    /// Flags a CLICK from its raw user agent and client IP; other events are left alone.
    pub fn assess(&self, event: &mut TrackingEvent, ip: Option<IpAddr>, metrics: &Metrics) {
        if event.event_name != EventName::Click {
            return;
        }
        let mut flag = |f: &str| {
            if !event.quality_flags.iter().any(|have| have == f) {
                event.quality_flags.push(f.to_owned());
            }
        };
        if matches!(&event.user_agent, Some(ua) if self.bots.is_bot(ua)) {
            flag(quality::BOT_USER_AGENT);
        }
        if ip.is_some_and(|ip| self.in_datacenter(ip)) {
            flag(quality::DATACENTER_IP);
        }
        metrics.count_click(&event.quality_flags);
    }

    fn in_datacenter(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => self.v4.contains(&a),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(a) => self.v4.contains(&a),
                None => self.v6.contains(&a),
            },
        }
    }
}

/// The networks of one range file; a line that is not a network names the file and line.
fn read_ranges(file: &Path) -> Result<Vec<IpNet>, String> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        format!(
            "cannot read the data-centre range file {}: {e} (set INGEST_DATACENTER_RANGES)",
            file.display()
        )
    })?;
    let mut nets = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some(cidr) = line.split_whitespace().next() else {
            continue;
        };
        let net: IpNet = cidr.parse().map_err(|_| {
            format!(
                "{}:{}: {cidr:?} is not an IPv4 or IPv6 network in CIDR notation (like 203.0.113.0/24)",
                file.display(),
                i + 1
            )
        })?;
        if net != net.trunc() {
            return Err(format!(
                "{}:{}: {cidr} has host bits set; the network is {}",
                file.display(),
                i + 1,
                net.trunc()
            ));
        }
        nets.push(net);
    }
    Ok(nets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn click(ua: Option<&str>) -> TrackingEvent {
        let now = Utc::now();
        let mut e = TrackingEvent::new("c1", EventName::Click, now, now, "first_party", "/c");
        e.click_id = Some("c1".into());
        e.user_agent = ua.map(String::from);
        e
    }

    fn ranges(text: &str) -> Result<ClickQuality, String> {
        let dir = std::env::temp_dir().join(format!("ranges-{}", uuid::Uuid::now_v7()));
        std::fs::write(&dir, text).unwrap();
        let q = ClickQuality::new(std::slice::from_ref(&dir));
        std::fs::remove_file(&dir).unwrap();
        q
    }

    #[test]
    fn bots_and_data_centres_are_flagged_and_browsers_are_not() {
        let q = ranges("# cloud\n203.0.113.0/24 example-cloud\n\n2001:db8::/32\n").unwrap();
        assert_eq!(q.networks, 2);
        let m = Metrics::new();
        let browser = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
        let mut e = click(Some(browser));
        q.assess(&mut e, Some("198.51.100.7".parse().unwrap()), &m);
        assert!(e.quality_flags.is_empty());

        let mut e = click(Some("Googlebot/2.1 (+http://www.google.com/bot.html)"));
        q.assess(&mut e, Some("203.0.113.200".parse().unwrap()), &m);
        assert_eq!(e.quality_flags, ["BOT_USER_AGENT", "DATACENTER_IP"]);

        for ip in ["2001:db8:1::9", "::ffff:203.0.113.9"] {
            let mut e = click(Some(browser));
            q.assess(&mut e, Some(ip.parse().unwrap()), &m);
            assert_eq!(e.quality_flags, ["DATACENTER_IP"], "{ip}");
        }
        // HTTP libraries are on the list too.
        for ua in ["curl/8.4.0", "python-requests/2.31.0", "Go-http-client/1.1"] {
            let mut e = click(Some(ua));
            q.assess(&mut e, None, &m);
            assert_eq!(e.quality_flags, ["BOT_USER_AGENT"], "{ua}");
        }
        // No user agent is not a bot; a sale is never assessed.
        let mut e = click(None);
        q.assess(&mut e, None, &m);
        assert!(e.quality_flags.is_empty());
        let mut sale = schemas::samples::sale();
        sale.user_agent = Some("Googlebot/2.1".into());
        q.assess(&mut sale, None, &m);
        assert!(sale.quality_flags.is_empty());
    }

    #[test]
    fn the_example_file_reads() {
        let example = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../config/datacenter-ranges.example.txt"
        );
        let q = ClickQuality::new(&[PathBuf::from(example)]).unwrap();
        assert_eq!(q.networks, 3);
        assert!(q.in_datacenter("198.51.100.127".parse().unwrap()));
        assert_eq!(ClickQuality::new(&[PathBuf::new()]).unwrap().networks, 0);
        assert!(!q.in_datacenter("198.51.100.128".parse().unwrap()));
    }

    #[test]
    fn a_bad_line_names_its_file_and_line() {
        let err = ranges("10.0.0.0/8\nnot-a-net label\n").err().unwrap();
        assert!(err.ends_with(":2: \"not-a-net\" is not an IPv4 or IPv6 network in CIDR notation (like 203.0.113.0/24)"), "{err}");
        let err = ranges("10.0.0.1/8\n").err().unwrap();
        assert!(
            err.ends_with(":1: 10.0.0.1/8 has host bits set; the network is 10.0.0.0/8"),
            "{err}"
        );
    }
}
