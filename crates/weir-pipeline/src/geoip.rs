//! Offline IP geolocation: IP -> country, province, city, ISP from a
//! database file loaded into memory. Formats:
//!
//! * ip2region `xdb` (IPv4): a 256-byte header, a 256x256 vector index of
//!   (first, last) segment pointers by the first two octets, 14-byte
//!   segments (start ip, end ip, region length, region offset; little-
//!   endian) and `|`-separated region strings, either
//!   `country|region|province|city|ISP` or `country|province|city|ISP|code`
//!   (`0` means unknown).
//! * IPIP.net `ipdb`: a big-endian length, JSON metadata (node count,
//!   fields, languages), a binary trie of 8-byte nodes over the address
//!   bits (IPv4 under `::ffff:0:0/96`), then records (a big-endian u16
//!   length and tab-separated fields).
//!
//! * MaxMind `mmdb` (GeoIP2 / GeoLite2 City, ISP, ASN layouts) through the
//!   `maxminddb` crate: country, first subdivision and city names (Chinese
//!   names when present, else English), `isp` or
//!   `autonomous_system_organization`.
//!
//! Private and reserved addresses are answered without a lookup.

use std::net::IpAddr;
use std::path::Path;

use crate::event::{Event, Text, Value};
use crate::transforms::nginx::is_private;

/// What a lookup finds. Empty strings mean unknown. Names of up to 23
/// bytes (nearly all) are stored inline: a lookup does not allocate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Geo {
    /// Country.
    pub country: Text,
    /// Province / region.
    pub province: Text,
    /// City.
    pub city: Text,
    /// ISP.
    pub isp: Text,
}

/// Why a database file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum GeoError {
    /// Could not read the file.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// Not a database of the expected format.
    #[error("{path} is not a valid {format} database: {reason}")]
    Format {
        /// The file.
        path: String,
        /// Expected format.
        format: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// A loaded database.
#[derive(Debug)]
pub enum GeoDb {
    /// ip2region xdb.
    Xdb(Xdb),
    /// IPIP.net ipdb.
    Ipdb(Ipdb),
    /// MaxMind mmdb.
    Mmdb(Mmdb),
}

/// The answer for private or reserved addresses.
pub const PRIVATE: &str = "private";

impl GeoDb {
    /// Loads a database; the format comes from the extension (`.xdb`,
    /// `.ipdb`).
    pub fn open(path: &Path) -> Result<Self, GeoError> {
        let data = std::fs::read(path).map_err(|source| GeoError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let name = path.display().to_string();
        match path.extension().and_then(|e| e.to_str()) {
            Some("xdb") => Xdb::new(data)
                .map(GeoDb::Xdb)
                .map_err(|reason| GeoError::Format {
                    path: name,
                    format: "ip2region xdb",
                    reason,
                }),
            Some("ipdb") => Ipdb::new(data)
                .map(GeoDb::Ipdb)
                .map_err(|reason| GeoError::Format {
                    path: name,
                    format: "IPIP.net ipdb",
                    reason,
                }),
            Some("mmdb") => Mmdb::new(data)
                .map(GeoDb::Mmdb)
                .map_err(|reason| GeoError::Format {
                    path: name,
                    format: "MaxMind mmdb",
                    reason,
                }),
            _ => Err(GeoError::Format {
                path: name,
                format: "xdb, ipdb or mmdb",
                reason: "unknown extension (expected .xdb, .ipdb or .mmdb)".to_owned(),
            }),
        }
    }

    /// Looks an address up. Private and reserved addresses give a `Geo`
    /// whose every part is [`PRIVATE`]; unknown addresses give `None`.
    pub fn lookup(&self, ip: IpAddr) -> Option<Geo> {
        if is_private(&ip) {
            let p = Text::new_static(PRIVATE);
            return Some(Geo {
                country: p.clone(),
                province: p.clone(),
                city: p.clone(),
                isp: p,
            });
        }
        match self {
            GeoDb::Xdb(db) => db.lookup(ip),
            GeoDb::Ipdb(db) => db.lookup(ip),
            GeoDb::Mmdb(db) => db.lookup(ip),
        }
    }
}

/// The `geoip` transform: looks up the address in one field and adds
/// `country`, `province`, `city` and `isp` fields (each name behind an
/// optional prefix).
#[derive(Debug)]
pub struct GeoEnricher {
    db: GeoDb,
    field: Text,
    keys: [Text; 4],
}

impl GeoEnricher {
    /// Reads addresses from `field`; output names start with `prefix`.
    pub fn new(db: GeoDb, field: &str, prefix: &str) -> Self {
        let key = |k: &str| Text::from(format!("{prefix}{k}"));
        Self {
            db,
            field: field.into(),
            keys: [key("country"), key("province"), key("city"), key("isp")],
        }
    }

    /// Adds the location of the event's address; events without a
    /// parseable address, or with an address the database does not know,
    /// pass unchanged.
    pub fn apply(&self, e: &mut Event) {
        let Some(Value::Str(ip)) = e.fields.get(&self.field) else {
            return;
        };
        let Some(g) = ip.parse::<IpAddr>().ok().and_then(|ip| self.db.lookup(ip)) else {
            return;
        };
        for (k, v) in self.keys.iter().zip([g.country, g.province, g.city, g.isp]) {
            e.fields.insert(k.clone(), Value::Str(v));
        }
    }
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn unknown_to_empty(s: &str) -> Text {
    if s == "0" { Text::default() } else { s.into() }
}

/// An ip2region `xdb` file in memory.
#[derive(Debug)]
pub struct Xdb {
    data: Vec<u8>,
}

const XDB_HEADER: usize = 256;
const XDB_VECTOR: usize = 256 * 256 * 8;
const XDB_SEGMENT: usize = 14;

impl Xdb {
    /// Checks the layout.
    pub fn new(data: Vec<u8>) -> Result<Self, String> {
        if data.len() < XDB_HEADER + XDB_VECTOR {
            return Err(format!(
                "{} bytes is shorter than the header and vector index",
                data.len()
            ));
        }
        Ok(Self { data })
    }

    /// Looks up an IPv4 address (IPv6 gives `None`).
    pub fn lookup(&self, ip: IpAddr) -> Option<Geo> {
        let IpAddr::V4(v4) = ip else { return None };
        let ip = u32::from(v4);
        let idx = XDB_HEADER + ((ip >> 24) as usize * 256 + ((ip >> 16) & 0xff) as usize) * 8;
        let (start, end) = (
            le32(&self.data, idx)? as usize,
            le32(&self.data, idx + 4)? as usize,
        );
        if end < start {
            return None;
        }
        let (mut lo, mut hi) = (0usize, (end - start) / XDB_SEGMENT);
        while lo <= hi {
            let mid = lo + (hi - lo) / 2;
            let p = start + mid * XDB_SEGMENT;
            let sip = le32(&self.data, p)?;
            if ip < sip {
                hi = mid.checked_sub(1)?;
                continue;
            }
            if ip > le32(&self.data, p + 4)? {
                lo = mid + 1;
                continue;
            }
            let len = u16::from_le_bytes(self.data.get(p + 8..p + 10)?.try_into().ok()?) as usize;
            let at = le32(&self.data, p + 10)? as usize;
            let region = std::str::from_utf8(self.data.get(at..at + len)?).ok()?;
            return Some(parse_region(region));
        }
        None
    }
}

/// `country|region|province|city|ISP` (ip2region 2.x) or
/// `country|province|city|ISP|code` (newer files, ending in a country code).
fn parse_region(s: &str) -> Geo {
    let mut p = [""; 6];
    let mut n = 0;
    for (slot, part) in p.iter_mut().zip(s.split('|')) {
        *slot = part;
        n += 1;
    }
    let p = &p[..n];
    let get = |i: usize| p.get(i).map_or(Text::default(), |v| unknown_to_empty(v));
    let ends_in_code =
        p.len() == 5 && p[4].len() == 2 && p[4].bytes().all(|b| b.is_ascii_uppercase());
    if ends_in_code || p.len() == 4 {
        Geo {
            country: get(0),
            province: get(1),
            city: get(2),
            isp: get(3),
        }
    } else {
        Geo {
            country: get(0),
            province: get(2),
            city: get(3),
            isp: get(4),
        }
    }
}

/// An IPIP.net `ipdb` file in memory.
#[derive(Debug)]
pub struct Ipdb {
    data: Vec<u8>,
    node_count: usize,
    /// The node reached after each 16-bit IPv4 prefix (`u32::MAX`: the
    /// file's trie is broken there): half the walk of every IPv4 lookup,
    /// and the half whose nodes are spread widest, done once at load.
    v4_top: Vec<u32>,
    /// Index of each wanted field in a record (for the first language).
    country: Option<usize>,
    province: Option<usize>,
    city: Option<usize>,
    isp: Option<usize>,
    language_offset: usize,
}

impl Ipdb {
    /// Parses the metadata and finds the IPv4 root.
    pub fn new(file: Vec<u8>) -> Result<Self, String> {
        let meta_len = be32(&file, 0).ok_or("no metadata length")? as usize;
        let meta_text = file
            .get(4..4 + meta_len)
            .ok_or("metadata runs past the end")?;
        let meta: serde_json::Value =
            serde_json::from_slice(meta_text).map_err(|e| format!("metadata: {e}"))?;
        let node_count = meta["node_count"].as_u64().ok_or("no node_count")? as usize;
        let fields: Vec<String> = meta["fields"]
            .as_array()
            .ok_or("no fields")?
            .iter()
            .filter_map(|f| f.as_str().map(str::to_owned))
            .collect();
        let language_offset = meta["languages"]
            .as_object()
            .and_then(|l| l.get("CN").or_else(|| l.values().next()))
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0) as usize;
        let data = file[4 + meta_len..].to_vec();
        if data.len() < node_count * 8 {
            return Err(format!(
                "{} bytes cannot hold {node_count} nodes",
                data.len()
            ));
        }
        let pos = |name: &str| fields.iter().position(|f| f == name);
        let mut db = Self {
            data,
            node_count,
            v4_top: Vec::new(),
            country: pos("country_name"),
            province: pos("region_name"),
            city: pos("city_name"),
            isp: pos("isp_domain").or_else(|| pos("owner_domain")),
            language_offset,
        };
        // IPv4 lives under ::ffff:0:0/96.
        let mapped = std::net::Ipv4Addr::UNSPECIFIED.to_ipv6_mapped().octets();
        let v4_root = db
            .walk(0, &mapped, 0..96)
            .ok_or("trie too short for IPv4")?;
        db.v4_top = (0..=u16::MAX)
            .map(|top| {
                let [a, b] = top.to_be_bytes();
                db.walk(v4_root, &[a, b, 0, 0], 0..16)
                    .map_or(u32::MAX, |n| n as u32)
            })
            .collect();
        Ok(db)
    }

    fn child(&self, node: usize, bit: usize) -> Option<usize> {
        be32(&self.data, node * 8 + bit * 4).map(|v| v as usize)
    }

    /// Follows the address bits `bits` of `addr` from `node`, stopping
    /// early at a leaf.
    fn walk(&self, mut node: usize, addr: &[u8], bits: std::ops::Range<usize>) -> Option<usize> {
        for i in bits {
            if node >= self.node_count {
                break;
            }
            let bit = usize::from((addr[i / 8] >> (7 - i % 8)) & 1);
            node = self.child(node, bit)?;
        }
        Some(node)
    }

    /// Looks up an address.
    pub fn lookup(&self, ip: IpAddr) -> Option<Geo> {
        let node = match ip {
            IpAddr::V4(v4) => {
                let o = v4.octets();
                let top = *self
                    .v4_top
                    .get(usize::from(u16::from_be_bytes([o[0], o[1]])))?;
                if top == u32::MAX {
                    return None;
                }
                self.walk(top as usize, &o, 16..32)?
            }
            IpAddr::V6(v6) => self.walk(0, &v6.octets(), 0..128)?,
        };
        if node <= self.node_count {
            return None;
        }
        let at = node - self.node_count + self.node_count * 8;
        let len = u16::from_be_bytes(self.data.get(at..at + 2)?.try_into().ok()?) as usize;
        let record = self.data.get(at + 2..at + 2 + len)?;
        let get = |i: Option<usize>| {
            i.and_then(|i| record.split(|&b| b == b'\t').nth(self.language_offset + i))
                .and_then(|field| std::str::from_utf8(field).ok())
                .map_or(Text::default(), Text::from)
        };
        Some(Geo {
            country: get(self.country),
            province: get(self.province),
            city: get(self.city),
            isp: get(self.isp),
        })
    }
}

/// A MaxMind `mmdb` file in memory.
pub struct Mmdb {
    reader: maxminddb::Reader<Vec<u8>>,
}

impl std::fmt::Debug for Mmdb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mmdb")
            .field("database_type", &self.reader.metadata().database_type)
            .finish()
    }
}

impl Mmdb {
    /// Parses the metadata.
    pub fn new(data: Vec<u8>) -> Result<Self, String> {
        maxminddb::Reader::from_source(data)
            .map(|reader| Self { reader })
            .map_err(|e| e.to_string())
    }

    /// Looks an address up.
    pub fn lookup(&self, ip: IpAddr) -> Option<Geo> {
        use maxminddb::PathElement::{Index, Key};
        let found = self.reader.lookup(ip).ok()?;
        if !found.has_data() {
            return None;
        }
        let text = |path: &[maxminddb::PathElement<'_>]| {
            found
                .decode_path::<&str>(path)
                .ok()
                .flatten()
                .map(Text::from)
        };
        let name = |base: &[maxminddb::PathElement<'_>]| {
            ["zh-CN", "en"]
                .iter()
                .find_map(|lang| {
                    let mut p = base.to_vec();
                    p.extend([Key("names"), Key(lang)]);
                    text(&p)
                })
                .unwrap_or_default()
        };
        Some(Geo {
            country: name(&[Key("country")]),
            province: name(&[Key("subdivisions"), Index(0)]),
            city: name(&[Key("city")]),
            isp: text(&[Key("isp")])
                .or_else(|| text(&[Key("autonomous_system_organization")]))
                .unwrap_or_default(),
        })
    }
}

/// Builders of small databases, for tests here and in other crates.
pub mod build {
    use std::net::Ipv4Addr;

    /// One child of a search-tree node: nothing, another node, or a leaf
    /// (a record index or data offset, as the format wants).
    #[derive(Clone, Copy)]
    enum Slot {
        Empty,
        Node(usize),
        Leaf(usize),
    }

    /// The binary search tree both `ipdb` and `mmdb` files carry.
    pub(crate) struct Trie {
        nodes: Vec<[Slot; 2]>,
    }

    impl Default for Trie {
        fn default() -> Self {
            Self {
                nodes: vec![[Slot::Empty, Slot::Empty]],
            }
        }
    }

    impl Trie {
        /// How many nodes the tree has.
        pub(crate) fn len(&self) -> usize {
            self.nodes.len()
        }

        /// Makes the first `bits` bits of `key` (most significant first)
        /// lead to `leaf`.
        pub(crate) fn insert(&mut self, key: &[u8], bits: usize, leaf: usize) {
            let mut node = 0;
            for i in 0..bits {
                let bit = usize::from((key[i / 8] >> (7 - i % 8)) & 1);
                if i + 1 == bits {
                    self.nodes[node][bit] = Slot::Leaf(leaf);
                } else {
                    node = match self.nodes[node][bit] {
                        Slot::Node(n) => n,
                        _ => {
                            self.nodes.push([Slot::Empty, Slot::Empty]);
                            let n = self.nodes.len() - 1;
                            self.nodes[node][bit] = Slot::Node(n);
                            n
                        }
                    };
                }
            }
        }

        /// Every child in node order, as the number the file stores:
        /// `empty` for none, the index of a node, or `leaf(value)`.
        pub(crate) fn cells(
            &self,
            empty: usize,
            leaf: impl Fn(usize) -> usize,
        ) -> impl Iterator<Item = usize> {
            self.nodes.iter().flatten().map(move |s| match *s {
                Slot::Empty => empty,
                Slot::Node(i) => i,
                Slot::Leaf(v) => leaf(v),
            })
        }
    }

    /// An `xdb` file mapping inclusive IPv4 ranges to region strings.
    /// Ranges must not overlap.
    pub fn xdb(ranges: &[(Ipv4Addr, Ipv4Addr, &str)]) -> Vec<u8> {
        // Split every range at /16 boundaries so each vector cell has its own segments.
        let mut segs: Vec<(u32, u32, &str)> = Vec::new();
        for &(a, b, r) in ranges {
            let (mut s, e) = (u32::from(a), u32::from(b));
            loop {
                let cell_end = s | 0xffff;
                if cell_end >= e {
                    segs.push((s, e, r));
                    break;
                }
                segs.push((s, cell_end, r));
                s = cell_end + 1;
            }
        }
        segs.sort_by_key(|s| s.0);
        let mut out = vec![0u8; super::XDB_HEADER + super::XDB_VECTOR];
        out[0..2].copy_from_slice(&2u16.to_le_bytes());
        // Region strings.
        let mut offsets = Vec::new();
        for (_, _, r) in &segs {
            offsets.push((out.len() as u32, r.len() as u16));
            out.extend_from_slice(r.as_bytes());
        }
        let seg_start = out.len();
        for (i, (s, e, _)) in segs.iter().enumerate() {
            out.extend_from_slice(&s.to_le_bytes());
            out.extend_from_slice(&e.to_le_bytes());
            out.extend_from_slice(&offsets[i].1.to_le_bytes());
            out.extend_from_slice(&offsets[i].0.to_le_bytes());
        }
        // Vector index: first and last segment of each /16 cell.
        for (i, (s, _, _)) in segs.iter().enumerate() {
            let cell = (s >> 16) as usize;
            let p = (seg_start + i * super::XDB_SEGMENT) as u32;
            let at = super::XDB_HEADER + cell * 8;
            if out[at..at + 8] == [0u8; 8] {
                out[at..at + 4].copy_from_slice(&p.to_le_bytes());
            }
            out[at + 4..at + 8].copy_from_slice(&p.to_le_bytes());
        }
        out
    }

    /// An `ipdb` file (IPv4 networks) with the given fields and records.
    pub fn ipdb(fields: &[&str], nets: &[(Ipv4Addr, u8, Vec<&str>)]) -> Vec<u8> {
        // A binary trie over 128-bit keys; IPv4 under ::ffff:0:0/96.
        let mut trie = Trie::default();
        let mut records: Vec<String> = Vec::new();
        for (net, prefix, values) in nets {
            records.push(values.join("\t"));
            let rec = records.len() - 1;
            let mut key = [0u8; 16];
            key[10] = 0xff;
            key[11] = 0xff;
            key[12..].copy_from_slice(&net.octets());
            trie.insert(&key, 96 + usize::from(*prefix), rec);
        }
        let node_count = trie.len();
        // Offset 0 is never a record: a child equal to node_count means "none".
        let mut rec_data = vec![0u8];
        let mut rec_at = Vec::new();
        for r in &records {
            rec_at.push(rec_data.len());
            rec_data.extend_from_slice(&(r.len() as u16).to_be_bytes());
            rec_data.extend_from_slice(r.as_bytes());
        }
        // A record is reached as node_count + its offset after the nodes
        // (readers resolve node - node_count + node_count * 8).
        let mut data = Vec::new();
        for v in trie.cells(node_count, |r| node_count + rec_at[r]) {
            data.extend_from_slice(&(v as u32).to_be_bytes());
        }
        data.extend_from_slice(&rec_data);
        let meta = serde_json::json!({
            "build": 0,
            "ip_version": 1,
            "languages": {"CN": 0},
            "node_count": node_count,
            "total_size": data.len(),
            "fields": fields,
        })
        .to_string();
        let mut out = (meta.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(meta.as_bytes());
        out.extend_from_slice(&data);
        out
    }
}

/// A minimal MaxMind DB writer (IPv4 tree, 24-bit records), for tests.
pub mod mmdb_build {
    use std::collections::BTreeMap;
    use std::net::Ipv4Addr;

    /// A value of the MaxMind DB data section.
    #[derive(Debug, Clone)]
    pub enum V {
        /// UTF-8 string.
        S(String),
        /// Unsigned 16-bit.
        U16(u16),
        /// Unsigned 32-bit.
        U32(u32),
        /// Unsigned 64-bit.
        U64(u64),
        /// Map.
        M(BTreeMap<String, V>),
        /// Array.
        A(Vec<V>),
    }

    fn control(out: &mut Vec<u8>, ty: u8, size: usize) {
        let (first, extra): (u8, Vec<u8>) = match size {
            0..29 => (size as u8, vec![]),
            29..285 => (29, vec![(size - 29) as u8]),
            285..65_821 => (30, ((size - 285) as u16).to_be_bytes().to_vec()),
            _ => (31, ((size - 65_821) as u32).to_be_bytes()[1..].to_vec()),
        };
        if ty <= 7 {
            out.push((ty << 5) | first);
        } else {
            out.push(first);
            out.push(ty - 7);
        }
        out.extend(extra);
    }

    fn uint(out: &mut Vec<u8>, ty: u8, v: u64) {
        let bytes = v.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        control(out, ty, 8 - skip);
        out.extend(&bytes[skip..]);
    }

    /// Encodes a value.
    pub fn encode(out: &mut Vec<u8>, v: &V) {
        match v {
            V::S(s) => {
                control(out, 2, s.len());
                out.extend(s.as_bytes());
            }
            V::U16(n) => uint(out, 5, u64::from(*n)),
            V::U32(n) => uint(out, 6, u64::from(*n)),
            V::U64(n) => uint(out, 9, *n),
            V::M(m) => {
                control(out, 7, m.len());
                for (k, v) in m {
                    encode(out, &V::S(k.clone()));
                    encode(out, v);
                }
            }
            V::A(a) => {
                control(out, 11, a.len());
                for v in a {
                    encode(out, v);
                }
            }
        }
    }

    /// Shorthand for a map.
    pub fn map(pairs: &[(&str, V)]) -> V {
        V::M(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
        )
    }

    /// A database of IPv4 networks with their records.
    pub fn mmdb(nets: &[(Ipv4Addr, u8, V)]) -> Vec<u8> {
        let mut trie = super::build::Trie::default();
        let mut data = Vec::new();
        for (net, prefix, value) in nets {
            let at = data.len();
            encode(&mut data, value);
            trie.insert(&net.octets(), usize::from(*prefix), at);
        }
        let count = trie.len();
        let mut out = Vec::new();
        for v in trie.cells(count, |at| count + 16 + at) {
            out.extend(&(v as u32).to_be_bytes()[1..]);
        }
        out.extend([0u8; 16]);
        out.extend(&data);
        out.extend(b"\xAB\xCD\xEFMaxMind.com");
        let meta = map(&[
            ("binary_format_major_version", V::U16(2)),
            ("binary_format_minor_version", V::U16(0)),
            ("build_epoch", V::U64(1_700_000_000)),
            ("database_type", V::S("Weir-Test-City".into())),
            ("description", map(&[("en", V::S("test".into()))])),
            ("ip_version", V::U16(4)),
            (
                "languages",
                V::A(vec![V::S("en".into()), V::S("zh-CN".into())]),
            ),
            ("node_count", V::U32(count as u32)),
            ("record_size", V::U16(24)),
        ]);
        encode(&mut out, &meta);
        out
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn xdb_lookups_in_both_region_formats() {
        let data = build::xdb(&[
            (
                Ipv4Addr::new(1, 180, 0, 0),
                Ipv4Addr::new(1, 183, 255, 255),
                "中国|0|内蒙古|呼和浩特市|电信",
            ),
            (
                Ipv4Addr::new(36, 110, 0, 0),
                Ipv4Addr::new(36, 110, 127, 255),
                "中国|北京|北京市|电信|CN",
            ),
            (
                Ipv4Addr::new(8, 8, 8, 0),
                Ipv4Addr::new(8, 8, 8, 255),
                "美国|0|0|0|Google",
            ),
        ]);
        let db = Xdb::new(data).unwrap();
        let g = db.lookup(ip("1.181.200.3")).unwrap();
        assert_eq!(
            (
                g.country.as_str(),
                g.province.as_str(),
                g.city.as_str(),
                g.isp.as_str()
            ),
            ("中国", "内蒙古", "呼和浩特市", "电信")
        );
        let g = db.lookup(ip("36.110.2.3")).unwrap();
        assert_eq!((g.province.as_str(), g.isp.as_str()), ("北京", "电信"));
        let g = db.lookup(ip("8.8.8.8")).unwrap();
        assert_eq!(
            (g.country.as_str(), g.province.as_str(), g.isp.as_str()),
            ("美国", "", "Google")
        );
        assert_eq!(db.lookup(ip("36.110.200.1")), None);
        assert_eq!(db.lookup(ip("9.9.9.9")), None);
        assert_eq!(db.lookup(ip("2001:db8::1")), None);
        assert!(Xdb::new(vec![0; 100]).is_err());
    }

    #[test]
    fn ipdb_lookups() {
        let fields = [
            "country_name",
            "region_name",
            "city_name",
            "owner_domain",
            "isp_domain",
        ];
        let data = build::ipdb(
            &fields,
            &[
                (
                    Ipv4Addr::new(58, 20, 0, 0),
                    16,
                    vec!["中国", "湖南", "长沙", "", "电信"],
                ),
                (
                    Ipv4Addr::new(120, 24, 0, 0),
                    14,
                    vec!["中国", "广东", "深圳", "", "阿里云"],
                ),
                (
                    Ipv4Addr::new(93, 184, 216, 0),
                    24,
                    vec!["美国", "马萨诸塞州", "", "", ""],
                ),
            ],
        );
        let db = Ipdb::new(data).unwrap();
        let g = db.lookup(ip("58.20.9.9")).unwrap();
        assert_eq!(
            (
                g.country.as_str(),
                g.province.as_str(),
                g.city.as_str(),
                g.isp.as_str()
            ),
            ("中国", "湖南", "长沙", "电信")
        );
        let g = db.lookup(ip("120.27.1.1")).unwrap();
        assert_eq!((g.province.as_str(), g.isp.as_str()), ("广东", "阿里云"));
        assert_eq!(db.lookup(ip("120.28.0.1")), None);
        assert_eq!(db.lookup(ip("93.184.216.34")).unwrap().country, "美国");
        assert!(Ipdb::new(b"\0\0\0\x05nope!".to_vec()).is_err());
    }

    #[test]
    fn mmdb_lookups_in_geoip2_layouts() {
        use mmdb_build::{V, map, mmdb};
        let names = |en: &str, zh: &str| {
            map(&[(
                "names",
                map(&[("en", V::S(en.into())), ("zh-CN", V::S(zh.into()))]),
            )])
        };
        let data = mmdb(&[
            (
                Ipv4Addr::new(58, 20, 0, 0),
                16,
                map(&[
                    ("country", names("China", "中国")),
                    ("subdivisions", V::A(vec![names("Hunan", "湖南")])),
                    ("city", names("Changsha", "长沙")),
                    ("isp", V::S("China Telecom".into())),
                ]),
            ),
            (
                Ipv4Addr::new(8, 8, 8, 0),
                24,
                map(&[
                    (
                        "country",
                        map(&[("names", map(&[("en", V::S("United States".into()))]))]),
                    ),
                    ("autonomous_system_organization", V::S("GOOGLE".into())),
                ]),
            ),
        ]);
        let db = Mmdb::new(data).unwrap();
        let g = db.lookup(ip("58.20.7.7")).unwrap();
        assert_eq!(
            (
                g.country.as_str(),
                g.province.as_str(),
                g.city.as_str(),
                g.isp.as_str()
            ),
            ("中国", "湖南", "长沙", "China Telecom")
        );
        let g = db.lookup(ip("8.8.8.8")).unwrap();
        assert_eq!(
            (g.country.as_str(), g.province.as_str(), g.isp.as_str()),
            ("United States", "", "GOOGLE")
        );
        assert_eq!(db.lookup(ip("9.9.9.9")), None);
        assert!(Mmdb::new(vec![1, 2, 3]).is_err());
    }

    #[test]
    fn private_addresses_and_files() {
        let tmp = std::env::temp_dir().join(format!("weir-geo-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).unwrap();
        let path = tmp.join("t.xdb");
        std::fs::write(
            &path,
            build::xdb(&[(
                Ipv4Addr::new(1, 1, 1, 0),
                Ipv4Addr::new(1, 1, 1, 255),
                "澳大利亚|0|0|0|Cloudflare",
            )]),
        )
        .unwrap();
        let db = GeoDb::open(&path).unwrap();
        assert_eq!(db.lookup(ip("10.1.2.3")).unwrap().province, PRIVATE);
        assert_eq!(db.lookup(ip("1.1.1.1")).unwrap().isp, "Cloudflare");
        assert!(GeoDb::open(&tmp.join("missing.xdb")).is_err());
        std::fs::write(tmp.join("x.bin"), b"x").unwrap();
        assert!(GeoDb::open(&tmp.join("x.bin")).is_err());
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
