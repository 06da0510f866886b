//! `meta.properties`: the cluster id and node id, created once and kept in
//! the data directory (Kafka's file name and keys).

use std::path::Path;

use crate::error::BrokerError;

/// Identity of this broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterMeta {
    /// Cluster id (22-character URL-safe base64 of a random UUID, as Kafka).
    pub cluster_id: String,
    /// Node id.
    pub node_id: i32,
    /// The cluster id was made up here at first start and is the
    /// cluster's only once the metadata quorum confirms it (or gives
    /// another, which then replaces it).
    pub provisional: bool,
}

const FILE: &str = "meta.properties";

fn base64_url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n =
            chunk.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

impl ClusterMeta {
    /// Reads `meta.properties`, or creates it with a new cluster id and
    /// `node_id` (0 when not given). A configured `node_id` that differs
    /// from the directory's is refused, as Kafka refuses it.
    pub fn load_or_create(dir: &Path, node_id: Option<i32>) -> Result<Self, BrokerError> {
        let meta = Self::load_or_create_any(dir, node_id)?;
        if let Some(want) = node_id
            && want != meta.node_id
        {
            return Err(BrokerError::Metadata {
                path: dir.join(FILE),
                reason: format!(
                    "node.id {want} is set, but this data directory belongs to node.id {}",
                    meta.node_id
                ),
            });
        }
        Ok(meta)
    }

    /// Rewrites `meta.properties` with the cluster id of the metadata
    /// quorum this node joined (the nodes of a new cluster each wrote
    /// their own at first start; the first one's stands).
    pub fn adopt(dir: &Path, cluster_id: String) -> Result<Self, BrokerError> {
        let current = Self::load_or_create_any(dir, None)?;
        let meta = Self {
            cluster_id,
            node_id: current.node_id,
            provisional: false,
        };
        meta.write(dir)?;
        Ok(meta)
    }

    fn write(&self, dir: &Path) -> Result<(), BrokerError> {
        let text = format!(
            "# Written by weir on first start; do not edit.\nversion=1\ncluster.id={}\nnode.id={}\n{}",
            self.cluster_id,
            self.node_id,
            if self.provisional {
                "# the cluster id is confirmed by the metadata quorum at the first start\nweir.cluster.id.provisional=true\n"
            } else {
                ""
            }
        );
        crate::topics::write_atomic(dir, FILE, text.as_bytes()).map_err(|source| BrokerError::Io {
            what: "writing",
            path: dir.join(FILE),
            source,
        })
    }

    fn load_or_create_any(dir: &Path, node_id: Option<i32>) -> Result<Self, BrokerError> {
        let path = dir.join(FILE);
        let bad = |reason: String| BrokerError::Metadata {
            path: path.clone(),
            reason,
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let mut cluster_id = None;
                let mut node_id = None;
                let mut provisional = false;
                for line in text
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.starts_with('#') && !l.is_empty())
                {
                    let Some((k, v)) = line.split_once('=') else {
                        return Err(bad(format!("line without '=': {line}")));
                    };
                    match k.trim() {
                        "cluster.id" => cluster_id = Some(v.trim().to_owned()),
                        "weir.cluster.id.provisional" => provisional = v.trim() == "true",
                        "node.id" | "broker.id" => {
                            node_id = Some(
                                v.trim()
                                    .parse()
                                    .map_err(|_| bad(format!("bad node.id {v}")))?,
                            );
                        }
                        _ => {}
                    }
                }
                Ok(Self {
                    cluster_id: cluster_id.ok_or_else(|| bad("no cluster.id".to_owned()))?,
                    node_id: node_id.ok_or_else(|| bad("no node.id".to_owned()))?,
                    provisional,
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let meta = Self {
                    cluster_id: base64_url(uuid::Uuid::new_v4().as_bytes()),
                    node_id: node_id.unwrap_or(0),
                    provisional: true,
                };
                meta.write(dir)?;
                Ok(meta)
            }
            Err(source) => Err(BrokerError::Io {
                what: "reading",
                path,
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_persist() {
        let tmp = tempfile::tempdir().unwrap();
        let a = ClusterMeta::load_or_create(tmp.path(), None).unwrap();
        assert_eq!(a.cluster_id.len(), 22);
        assert!(a.provisional);
        assert_eq!(a.node_id, 0);
        let b = ClusterMeta::load_or_create(tmp.path(), Some(0)).unwrap();
        assert_eq!(a, b);
        let e = ClusterMeta::load_or_create(tmp.path(), Some(3)).unwrap_err();
        assert!(e.to_string().contains("node.id 3"), "{e}");
        let fresh = tempfile::tempdir().unwrap();
        assert_eq!(
            ClusterMeta::load_or_create(fresh.path(), Some(7))
                .unwrap()
                .node_id,
            7
        );
        let adopted = ClusterMeta::adopt(tmp.path(), "other".into()).unwrap();
        assert_eq!(adopted.node_id, 0);
        assert!(
            !ClusterMeta::load_or_create(tmp.path(), None)
                .unwrap()
                .provisional
        );
        assert_eq!(
            ClusterMeta::load_or_create(tmp.path(), Some(0))
                .unwrap()
                .cluster_id,
            "other"
        );
        std::fs::write(tmp.path().join(FILE), "cluster.id=x\n").unwrap();
        assert!(ClusterMeta::load_or_create(tmp.path(), None).is_err());
    }

    #[test]
    fn base64_matches_known_values() {
        assert_eq!(base64_url(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_url(b"fo"), "Zm8");
        assert_eq!(base64_url(&[0xfb, 0xff]), "-_8");
    }
}
