//! The first users of a secured cluster, before any broker is reachable
//! (as `kafka-storage format --add-scram` does): `weir user add
//! --data-dir DIR` writes their credentials (salted, never the password) to
//! `DIR/scram-bootstrap.json`; the node sends them to the controller at its
//! next start, for users that have no credential of that mechanism yet, and
//! removes the file once they are committed.

use std::path::{Path, PathBuf};

use super::scram::{Credential, Mechanism};

/// The file's name in the data directory.
pub const FILE: &str = "scram-bootstrap.json";

/// The file of `data_dir`.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE)
}

/// Why the bootstrap file could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// I/O.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not what this module writes.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A credential that cannot be made (iterations out of bounds).
    #[error(transparent)]
    Credential(#[from] super::scram::CredentialError),
}

/// The credentials waiting in `data_dir` (none without a file).
pub fn pending(data_dir: &Path) -> Result<Vec<weir_meta::ScramCredential>, BootstrapError> {
    let path = path(data_dir);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(BootstrapError::Io { path, source }),
    };
    serde_json::from_slice(&text).map_err(|e| BootstrapError::Invalid {
        path,
        reason: e.to_string(),
    })
}

/// Adds (or replaces) `user`'s credentials for `mechanisms` in the file,
/// each with a fresh random salt; written to a temporary file, synced and
/// renamed, so a crash leaves the old file or the new one.
pub fn add_user(
    data_dir: &Path,
    user: &str,
    password: &str,
    mechanisms: &[Mechanism],
    iterations: u32,
) -> Result<(), BootstrapError> {
    let path = path(data_dir);
    if user.is_empty() {
        return Err(BootstrapError::Invalid {
            path,
            reason: "the user name is empty".into(),
        });
    }
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| BootstrapError::Io { path, source }
    };
    std::fs::create_dir_all(data_dir).map_err(io(data_dir))?;
    let mut all = pending(data_dir)?;
    for &m in mechanisms {
        let salt = uuid::Uuid::new_v4().as_bytes().to_vec();
        let c = Credential::from_password(m, password, salt, iterations)?;
        all.retain(|x| !(x.user == user && x.mechanism == m.name()));
        all.push(weir_meta::ScramCredential {
            user: user.to_owned(),
            mechanism: m.name().to_owned(),
            salt: c.salt,
            iterations: c.iterations,
            stored_key: c.stored_key,
            server_key: c.server_key,
        });
    }
    let tmp = path.with_extension("json.tmp");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        let text = serde_json::to_vec_pretty(&all).map_err(|e| BootstrapError::Invalid {
            path: tmp.clone(),
            reason: e.to_string(),
        })?;
        f.write_all(&text).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
    }
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    if let Ok(d) = std::fs::File::open(data_dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Sends the waiting credentials to the controller (only for users
/// without one of that mechanism) and removes the file once committed.
pub async fn apply(
    cluster: &crate::cluster::Cluster,
    data_dir: &Path,
) -> Result<usize, BootstrapError> {
    let creds = pending(data_dir)?;
    if creds.is_empty() {
        return Ok(0);
    }
    let n = creds.len();
    let path = path(data_dir);
    let answer = cluster
        .request(weir_meta::Request::AlterUserScram {
            upsertions: creds,
            deletions: Vec::new(),
            if_absent: true,
        })
        .await
        .map_err(|e| BootstrapError::Invalid {
            path: path.clone(),
            reason: format!("the controller did not take the users: {e}"),
        })?;
    if !matches!(answer, weir_meta::Answer::ScramAltered { .. }) {
        return Err(BootstrapError::Invalid {
            path,
            reason: format!("unexpected answer from the controller: {answer:?}"),
        });
    }
    std::fs::remove_file(&path).map_err(|source| BootstrapError::Io {
        path: path.clone(),
        source,
    })?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_are_added_replaced_and_kept_without_their_password() {
        let dir = tempfile::tempdir().unwrap();
        assert!(pending(dir.path()).unwrap().is_empty());
        add_user(dir.path(), "admin", "first", &Mechanism::ALL, 4096).unwrap();
        add_user(dir.path(), "ops", "x", &[Mechanism::Sha512], 8192).unwrap();
        add_user(dir.path(), "admin", "second", &[Mechanism::Sha256], 4096).unwrap();
        let all = pending(dir.path()).unwrap();
        assert_eq!(all.len(), 3);
        let admin256 = all
            .iter()
            .find(|c| c.user == "admin" && c.mechanism == "SCRAM-SHA-256")
            .unwrap();
        let c = Credential {
            mechanism: Mechanism::Sha256,
            salt: admin256.salt.clone(),
            iterations: admin256.iterations,
            stored_key: admin256.stored_key.clone(),
            server_key: admin256.server_key.clone(),
        };
        assert!(c.verify_password("second") && !c.verify_password("first"));
        let text = std::fs::read_to_string(path(dir.path())).unwrap();
        assert!(!text.contains("second") && !text.contains("first"));
        assert!(add_user(dir.path(), "x", "p", &Mechanism::ALL, 100).is_err());
        assert!(add_user(dir.path(), "", "p", &Mechanism::ALL, 4096).is_err());
        std::fs::write(path(dir.path()), b"{garbage").unwrap();
        assert!(matches!(
            pending(dir.path()),
            Err(BootstrapError::Invalid { .. })
        ));
    }
}
