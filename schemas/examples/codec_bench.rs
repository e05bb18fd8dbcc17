//! Avro single-object encode/decode throughput for the canonical event, beside serde_json
//! for the same event as the baseline. Rounds alternate between the two so that machine
//! noise hits both alike; the median round is reported.
//!
//!     cargo run --release -p schemas --example codec_bench [events-per-round] [rounds]

use std::hint::black_box;
use std::time::Instant;

use schemas::{samples, EventCodec, SingleObjectCodec, TrackingEvent};

fn rate(n: usize, f: impl FnMut()) -> f64 {
    let mut f = f;
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .map_or(200_000, |a| a.parse().expect("events per round"));
    let rounds: usize = args.next().map_or(5, |a| a.parse().expect("rounds"));

    let event = samples::sale();
    let codec = SingleObjectCodec::new();
    let avro = codec.encode(&event).unwrap();
    let json = serde_json::to_vec(&event).unwrap();
    assert_eq!(codec.decode(&avro).unwrap(), event);
    assert_eq!(
        serde_json::from_slice::<TrackingEvent>(&json).unwrap(),
        event
    );

    let (mut ae, mut ad, mut je, mut jd) = (vec![], vec![], vec![], vec![]);
    for _ in 0..rounds {
        ae.push(rate(n, || {
            black_box(codec.encode(black_box(&event)).unwrap());
        }));
        je.push(rate(n, || {
            black_box(serde_json::to_vec(black_box(&event)).unwrap());
        }));
        ad.push(rate(n, || {
            black_box(codec.decode(black_box(&avro)).unwrap());
        }));
        jd.push(rate(n, || {
            black_box(serde_json::from_slice::<TrackingEvent>(black_box(&json)).unwrap());
        }));
    }
    let (ae, ad, je, jd) = (median(ae), median(ad), median(je), median(jd));
    println!(
        "event: samples::sale() (every field kind set), {n} events x {rounds} rounds, median round"
    );
    println!("| codec | bytes/event | encode events/s | decode events/s |");
    println!("|---|---|---|---|");
    println!(
        "| Avro single-object | {} | {ae:.0} | {ad:.0} |",
        avro.len()
    );
    println!(
        "| serde_json (baseline) | {} | {je:.0} | {jd:.0} |",
        json.len()
    );
    println!(
        "| ratio Avro / JSON | {:.2} | {:.2} | {:.2} |",
        avro.len() as f64 / json.len() as f64,
        ae / je,
        ad / jd
    );
}
