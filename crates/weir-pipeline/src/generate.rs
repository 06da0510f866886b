//! Test-data generators for the two reference flows: JSON sensor readings
//! (flow A) and nginx `combined` access lines (flow B) with client
//! addresses mostly from Chinese networks, some foreign, some private.
//! Deterministic for a given seed.

use std::fmt::Write;

/// A small, fast, seedable generator (SplitMix64).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Uniform in `[lo, hi)` with one decimal.
    pub fn decimal(&mut self, lo: f64, hi: f64) -> f64 {
        let tenths = ((hi - lo) * 10.0) as u64;
        lo + self.below(tenths) as f64 / 10.0
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// Picks by weight.
    fn weighted<'a, T>(&mut self, items: &'a [(T, u32)]) -> &'a T {
        let total: u32 = items.iter().map(|(_, w)| w).sum();
        let mut x = self.below(u64::from(total)) as u32;
        for (item, w) in items {
            if x < *w {
                return item;
            }
            x -= w;
        }
        &items[items.len() - 1].0
    }
}

/// One flow-A reading: `{"pressure": 3.4, "temperature": 71.2, "visibility": 12.9}`.
pub fn sensor_line(rng: &mut Rng) -> String {
    format!(
        "{{\"pressure\": {:.1}, \"temperature\": {:.1}, \"visibility\": {:.1}}}",
        rng.decimal(0.0, 10.0),
        rng.decimal(0.0, 100.0),
        rng.decimal(0.0, 100.0)
    )
}

/// First two octets of networks allocated to Chinese carriers.
const CHINA: &[(u8, u8)] = &[
    (1, 180),
    (14, 16),
    (27, 38),
    (36, 110),
    (39, 156),
    (42, 120),
    (49, 64),
    (58, 20),
    (59, 36),
    (60, 12),
    (61, 135),
    (101, 4),
    (106, 38),
    (110, 75),
    (111, 13),
    (112, 80),
    (113, 64),
    (114, 114),
    (115, 236),
    (116, 228),
    (117, 136),
    (118, 112),
    (119, 39),
    (120, 24),
    (121, 8),
    (122, 96),
    (123, 125),
    (124, 64),
    (125, 33),
    (180, 76),
    (182, 50),
    (183, 60),
    (202, 96),
    (210, 21),
    (211, 136),
    (218, 30),
    (220, 181),
    (221, 130),
    (222, 66),
    (223, 5),
];
/// Elsewhere.
const FOREIGN: &[(u8, u8)] = &[
    (8, 8),
    (1, 1),
    (93, 184),
    (151, 101),
    (104, 16),
    (17, 253),
    (31, 13),
    (185, 199),
];

fn client_ip(rng: &mut Rng) -> String {
    match rng.below(100) {
        0..75 => {
            let (a, b) = *rng.pick(CHINA);
            format!("{a}.{b}.{}.{}", rng.below(256), 1 + rng.below(254))
        }
        75..90 => {
            let (a, b) = *rng.pick(FOREIGN);
            format!("{a}.{b}.{}.{}", rng.below(256), 1 + rng.below(254))
        }
        _ => match rng.below(3) {
            0 => format!(
                "10.{}.{}.{}",
                rng.below(256),
                rng.below(256),
                1 + rng.below(254)
            ),
            1 => format!("192.168.{}.{}", rng.below(256), 1 + rng.below(254)),
            _ => format!(
                "172.{}.{}.{}",
                16 + rng.below(16),
                rng.below(256),
                1 + rng.below(254)
            ),
        },
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `dd/Mon/yyyy:HH:MM:SS +0800` for a Unix time, in China Standard Time.
pub fn time_local(unix_secs: i64) -> String {
    let (year, month, day, h, m, s) = crate::transforms::time::unix_to_civil(unix_secs + 8 * 3600);
    format!(
        "{day:02}/{}/{year}:{h:02}:{m:02}:{s:02} +0800",
        MONTHS[(month - 1) as usize]
    )
}

const PATHS: &[&str] = &[
    "/",
    "/index.html",
    "/login",
    "/static/js/app.js",
    "/static/css/site.css",
    "/images/logo.png",
    "/api/v1/items",
    "/api/v1/orders",
    "/search",
    "/favicon.ico",
    "/news/2024/hello.html",
];
const AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.44",
    "Mozilla/5.0 (Linux; Android 13; V2183A) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/108.0.5359.128 Mobile Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
    "Mozilla/5.0 (compatible; Baiduspider/2.0; +http://www.baidu.com/search/spider.html)",
    "curl/8.4.0",
];
const REFERERS: &[&str] = &[
    "-",
    "https://www.baidu.com/s?wd=weir",
    "https://www.google.com/",
    "https://www.example.cn/index.html",
];

/// One nginx `combined` line at `unix_secs`.
pub fn nginx_line(rng: &mut Rng, unix_secs: i64) -> String {
    let method = *rng.weighted(&[
        ("GET", 80),
        ("POST", 15),
        ("HEAD", 3),
        ("PUT", 1),
        ("DELETE", 1),
    ]);
    let mut path = (*rng.pick(PATHS)).to_owned();
    if path.starts_with("/api") || path == "/search" {
        let _ = write!(path, "?id={}", rng.below(10_000));
    }
    let status = *rng.weighted(&[
        (200u16, 80),
        (304, 8),
        (301, 3),
        (404, 6),
        (500, 2),
        (502, 1),
    ]);
    let bytes = match status {
        304 => 0,
        200 => 200 + rng.below(60_000),
        _ => 100 + rng.below(600),
    };
    let user = if rng.below(20) == 0 { "admin" } else { "-" };
    format!(
        "{} - {user} [{}] \"{method} {path} HTTP/1.1\" {status} {bytes} \"{}\" \"{}\"",
        client_ip(rng),
        time_local(unix_secs),
        rng.pick(REFERERS),
        rng.pick(AGENTS),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Value;
    use crate::transforms::json::JsonParser;
    use crate::transforms::nginx::{NginxParser, is_private};

    #[test]
    fn sensor_readings_are_in_range_with_one_decimal() {
        let mut rng = Rng::new(1);
        let p = JsonParser::new(None);
        for _ in 0..1000 {
            let line = sensor_line(&mut rng);
            let e = &p.parse(&line, 0).unwrap()[0];
            for (k, hi) in [
                ("pressure", 10.0),
                ("temperature", 100.0),
                ("visibility", 100.0),
            ] {
                let Some(Value::Float(v)) = e.fields.get(k) else {
                    panic!("{line}")
                };
                assert!((0.0..hi).contains(v), "{line}");
                assert!(
                    ((v * 10.0).round() - v * 10.0).abs() < 1e-9,
                    "one decimal: {line}"
                );
            }
        }
        assert_eq!(
            sensor_line(&mut Rng::new(7)),
            sensor_line(&mut Rng::new(7)),
            "deterministic"
        );
    }

    #[test]
    fn nginx_lines_parse_and_mix_addresses() {
        let mut rng = Rng::new(2);
        let p = NginxParser::new("combined", "access_log").unwrap();
        let (mut china, mut private) = (0, 0);
        for i in 0..2000 {
            let line = nginx_line(&mut rng, 1_700_000_000 + i);
            let e = p.parse(&line).unwrap_or_else(|err| panic!("{line}: {err}"));
            let Some(Value::Str(ip)) = e.fields.get("client_ip") else {
                panic!()
            };
            let ip: std::net::IpAddr = ip.parse().unwrap();
            if is_private(&ip) {
                private += 1;
            } else if let std::net::IpAddr::V4(v4) = ip
                && CHINA.contains(&(v4.octets()[0], v4.octets()[1]))
            {
                china += 1;
            }
            assert_eq!(e.timestamp_ns, (1_700_000_000 + i) * 1_000_000_000);
        }
        assert!(
            china > 1300 && private > 100,
            "china {china}, private {private}"
        );
    }

    #[test]
    fn time_local_matches_nginx() {
        assert_eq!(time_local(971_211_336), "11/Oct/2000:04:55:36 +0800");
        assert_eq!(time_local(1_709_164_800), "29/Feb/2024:08:00:00 +0800");
    }
}
