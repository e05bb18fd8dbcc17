//! What click quality costs ingest per click: `ClickQuality::assess` on browser and bot user
//! agents, with 10 000 data-centre networks loaded, beside the keyed IP hash every click
//! already pays. `cargo run --release -p ingest --example click_quality_bench [clicks]`.

use std::hint::black_box;
use std::time::Instant;

use chrono::Utc;
use ingest::metrics::Metrics;
use ingest::quality::ClickQuality;
use schemas::privacy::PiiHasher;
use schemas::{EventName, TrackingEvent};

const USER_AGENTS: [&str; 4] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
];

fn main() {
    let clicks: usize = std::env::args()
        .nth(1)
        .map_or(200_000, |a| a.parse().expect("clicks"));
    // 10 000 /24 networks spread over the address space, as a cloud provider's list is.
    let ranges = std::env::temp_dir().join(format!("bench-ranges-{}", std::process::id()));
    let text: String = (0..10_000u32)
        .map(|i| {
            let n = i.wrapping_mul(2_654_435_761) & 0xFFFF_FF00;
            format!("{}/24\n", std::net::Ipv4Addr::from(n))
        })
        .collect();
    std::fs::write(&ranges, text).unwrap();
    let quality = ClickQuality::new(std::slice::from_ref(&ranges)).unwrap();
    std::fs::remove_file(&ranges).unwrap();
    let hasher = PiiHasher::new(b"bench-key-0123456789");
    let metrics = Metrics::new();
    let now = Utc::now();
    let click = |i: usize| {
        let mut e = TrackingEvent::new("c", EventName::Click, now, now, "first_party", "/c");
        e.user_agent = Some(USER_AGENTS[i % USER_AGENTS.len()].to_owned());
        e
    };
    let ip = |i: usize| {
        std::net::IpAddr::from(std::net::Ipv4Addr::from((i as u32).wrapping_mul(40_503)))
    };
    let events: Vec<TrackingEvent> = (0..clicks).map(click).collect();

    for round in 1..=3 {
        let mut batch = events.clone();
        let t = Instant::now();
        for (i, e) in batch.iter_mut().enumerate() {
            black_box(hasher.hash(&ip(i).to_string()));
            black_box(&e);
        }
        let hash_only = t.elapsed();
        let mut batch = events.clone();
        let t = Instant::now();
        for (i, e) in batch.iter_mut().enumerate() {
            quality.assess(e, Some(ip(i)), &metrics);
            black_box(&e.quality_flags);
        }
        let assess = t.elapsed();
        let per = |d: std::time::Duration| d.as_nanos() as f64 / clicks as f64;
        println!(
            "round {round}: keyed IP hash {:.0} ns/click, quality assessment {:.0} ns/click ({:.2}x the hash)",
            per(hash_only),
            per(assess),
            per(assess) / per(hash_only)
        );
    }
}
