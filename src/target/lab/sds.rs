//! A Kubernetes-style secret directory that Envoy reads through file-based SDS.
//!
//! # Contract
//!
//! [`SdsDir::create`] makes a private (`0700`) directory laid out the way the kubelet lays out a
//! mounted Secret, which is what Envoy's file watcher is built to follow:
//!
//! ```text
//! <dir>/..data            -> ..<generation>/        (swapped atomically on every write)
//! <dir>/..<generation>/cert-chain.pem               leaf first, then intermediates (0644)
//! <dir>/..<generation>/key.pem                      PKCS#8 private key (0600)
//! <dir>/..<generation>/root-cert.pem                trust bundle of the own trust domain (0644)
//! <dir>/cert-chain.pem    -> ..data/cert-chain.pem  (stable names Envoy's config points at)
//! <dir>/key.pem           -> ..data/key.pem
//! <dir>/root-cert.pem     -> ..data/root-cert.pem
//! <dir>/sds-cert.yaml                               SDS resource: Secret "default"
//! <dir>/sds-validation.yaml                         SDS resource: Secret "ROOTCA"
//! ```
//!
//! [`SdsDir::write`] publishes a new certificate, key and bundle as one unit: it fills a fresh
//! `..<generation>` directory, points a temporary symlink at it and renames that over `..data`.
//! A reader following the stable names therefore sees either the old triple or the new one,
//! never a new certificate with an old key (renaming the files one by one briefly mismatches
//! them; overwriting in place is not noticed by Envoy at all). The rename is a move *into*
//! `<dir>`, which is the event Envoy's `watched_directory` reacts to: both SDS subscriptions
//! re-read their resource file and the files it names.
//!
//! The resource files are written as JSON (a subset of YAML, so the `.yaml` names Envoy dispatches
//! on parse as-is). They name files only; no key material is ever inside them, in an error
//! message, or in anything this module prints. Errors name paths and the failing operation.
//!
//! Not provided: garbage collection of generations left behind by a crashed writer (the next
//! successful write removes only the generation it replaced), and cross-process locking — one
//! writer per directory (the lab's sidecar) is assumed.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

/// The leaf-first certificate chain, as Istio names it.
pub const CERT_CHAIN_FILE: &str = "cert-chain.pem";
/// The private key (mode `0600`).
pub const KEY_FILE: &str = "key.pem";
/// The trust bundle of the workload's own trust domain.
pub const ROOT_CERT_FILE: &str = "root-cert.pem";
/// The symlink that is swapped on every write.
pub const DATA_LINK: &str = "..data";
/// SDS resource file holding the workload certificate secret.
pub const CERT_RESOURCE_FILE: &str = "sds-cert.yaml";
/// SDS resource file holding the validation context secret.
pub const VALIDATION_RESOURCE_FILE: &str = "sds-validation.yaml";
/// SDS secret name of the workload certificate (Istio's name for it).
pub const CERT_SECRET_NAME: &str = "default";
/// SDS secret name of the validation context (Istio's name for it).
pub const VALIDATION_SECRET_NAME: &str = "ROOTCA";

const SECRET_TYPE: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";

/// Why the secret directory could not be written. Never carries file contents.
#[derive(Debug, thiserror::Error)]
pub enum SdsError {
    #[error("SDS directory {path}: {action} failed: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        source: std::io::Error,
    },
    #[error("SDS directory {path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

/// One published generation of the secret: the directory `..data` pointed at after a write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SdsGeneration {
    /// The `..<generation>` directory name.
    pub name: String,
}

/// A Kubernetes-style secret directory watched by Envoy (see the module docs).
#[derive(Debug)]
pub struct SdsDir {
    root: PathBuf,
}

impl SdsDir {
    /// Creates `root` (mode `0700`, parents as needed) with the stable symlinks and both SDS
    /// resource files. The validation resource starts as a plain `trusted_ca` on
    /// `root-cert.pem`; replace it with [`SdsDir::set_validation_context`]. Nothing is readable
    /// by Envoy until the first [`SdsDir::write`].
    pub fn create(root: impl Into<PathBuf>) -> Result<SdsDir, SdsError> {
        let root = root.into();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&root)
            .map_err(|source| io(&root, "creating the directory", source))?;
        let dir = SdsDir { root };
        for name in [CERT_CHAIN_FILE, KEY_FILE, ROOT_CERT_FILE] {
            let link = dir.root.join(name);
            if fs::symlink_metadata(&link).is_err() {
                symlink(Path::new(DATA_LINK).join(name), &link)
                    .map_err(|source| io(&link, "creating the stable symlink", source))?;
            }
        }
        dir.write_resource(CERT_RESOURCE_FILE, &dir.cert_resource())?;
        let trusted_ca = json!({
            "trusted_ca": { "filename": dir.root_cert_path() },
            "watched_directory": { "path": dir.root },
        });
        dir.set_validation_context(&trusted_ca)?;
        Ok(dir)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// The stable path of the certificate chain (a symlink through `..data`).
    pub fn cert_chain_path(&self) -> PathBuf {
        self.root.join(CERT_CHAIN_FILE)
    }

    /// The stable path of the private key (a symlink through `..data`).
    pub fn key_path(&self) -> PathBuf {
        self.root.join(KEY_FILE)
    }

    /// The stable path of the own trust domain's bundle (a symlink through `..data`).
    pub fn root_cert_path(&self) -> PathBuf {
        self.root.join(ROOT_CERT_FILE)
    }

    /// Publishes a new certificate chain, key and trust bundle atomically (see the module docs)
    /// and removes the generation it replaced. All three must be non-empty PEM text.
    pub fn write(
        &self,
        chain_pem: &str,
        key_pem: &str,
        bundle_pem: &str,
    ) -> Result<SdsGeneration, SdsError> {
        for (what, pem) in [
            (CERT_CHAIN_FILE, chain_pem),
            (KEY_FILE, key_pem),
            (ROOT_CERT_FILE, bundle_pem),
        ] {
            // Only the marker is checked, never echoed: the key's text must not reach an error.
            if !pem.contains("-----BEGIN ") {
                return Err(SdsError::Invalid {
                    path: self.root.join(what),
                    reason: format!("{what} content is not PEM (no BEGIN marker)"),
                });
            }
        }
        let generation = generation_name();
        let gen_dir = self.root.join(&generation);
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&gen_dir)
            .map_err(|source| io(&gen_dir, "creating the generation directory", source))?;
        write_file(&gen_dir.join(CERT_CHAIN_FILE), chain_pem, 0o644)?;
        write_file(&gen_dir.join(KEY_FILE), key_pem, 0o600)?;
        write_file(&gen_dir.join(ROOT_CERT_FILE), bundle_pem, 0o644)?;

        let data = self.root.join(DATA_LINK);
        let previous = fs::read_link(&data).ok();
        let tmp = self.root.join("..data_tmp");
        // A leftover from an interrupted write would make symlink() fail; it points nowhere
        // that matters, so it is simply replaced.
        let _ = fs::remove_file(&tmp);
        symlink(&generation, &tmp)
            .map_err(|source| io(&tmp, "creating the temporary ..data symlink", source))?;
        fs::rename(&tmp, &data).map_err(|source| io(&data, "swapping ..data", source))?;

        if let Some(previous) = previous {
            // Only ever remove a sibling generation directory, never whatever a tampered link
            // might point at.
            if let Some(name) = previous.file_name().filter(|n| previous == Path::new(n)) {
                if name.to_string_lossy().starts_with("..") && *name != *generation.as_str() {
                    let _ = fs::remove_dir_all(self.root.join(name));
                }
            }
        }
        Ok(SdsGeneration { name: generation })
    }

    /// Gives the directory and everything in it to `uid:gid`, for an Envoy that runs as that
    /// user and must read the secret. Symlinks themselves are re-owned, never followed. Call it
    /// again after every [`SdsDir::write`]: a new generation is created by the harness's user.
    pub fn hand_to(&self, uid: u32, gid: u32) -> Result<(), SdsError> {
        fn walk(path: &Path, uid: u32, gid: u32) -> Result<(), SdsError> {
            std::os::unix::fs::lchown(path, Some(uid), Some(gid))
                .map_err(|source| io(path, "changing the owner", source))?;
            let meta = fs::symlink_metadata(path)
                .map_err(|source| io(path, "reading metadata", source))?;
            if meta.is_dir() {
                let entries = fs::read_dir(path)
                    .map_err(|source| io(path, "listing the directory", source))?;
                for entry in entries {
                    let entry =
                        entry.map_err(|source| io(path, "listing the directory", source))?;
                    walk(&entry.path(), uid, gid)?;
                }
            }
            Ok(())
        }
        walk(&self.root, uid, gid)
    }

    /// Replaces the validation-context secret's `validation_context` (an Envoy
    /// `CertificateValidationContext` as JSON, e.g. one with the SPIFFE validator). The file is
    /// replaced by a rename, so a running Envoy picks the change up like a certificate swap.
    pub fn set_validation_context(&self, validation_context: &Value) -> Result<(), SdsError> {
        let resource = json!({
            "resources": [{
                "@type": SECRET_TYPE,
                "name": VALIDATION_SECRET_NAME,
                "validation_context": validation_context,
            }]
        });
        self.write_resource(VALIDATION_RESOURCE_FILE, &resource)
    }

    /// The `SdsSecretConfig` (JSON) that makes Envoy load the workload certificate from here,
    /// for `tls_certificate_sds_secret_configs`.
    pub fn cert_secret_config(&self) -> Value {
        self.secret_config(CERT_SECRET_NAME, CERT_RESOURCE_FILE)
    }

    /// The `SdsSecretConfig` (JSON) of the validation context, for
    /// `validation_context_sds_secret_config`.
    pub fn validation_secret_config(&self) -> Value {
        self.secret_config(VALIDATION_SECRET_NAME, VALIDATION_RESOURCE_FILE)
    }

    fn secret_config(&self, name: &str, file: &str) -> Value {
        json!({
            "name": name,
            "sds_config": {
                "path_config_source": {
                    "path": self.root.join(file),
                    "watched_directory": { "path": self.root },
                },
                "resource_api_version": "V3",
            }
        })
    }

    fn cert_resource(&self) -> Value {
        json!({
            "resources": [{
                "@type": SECRET_TYPE,
                "name": CERT_SECRET_NAME,
                "tls_certificate": {
                    "certificate_chain": { "filename": self.cert_chain_path() },
                    "private_key": { "filename": self.key_path() },
                    // Watch the directory, not the (never changing) stable symlinks: the
                    // ..data rename is what signals a new pair, and Envoy then reads chain
                    // and key together.
                    "watched_directory": { "path": self.root },
                }
            }]
        })
    }

    /// Writes a resource file by temp file + rename, so Envoy never reads half of one.
    fn write_resource(&self, name: &str, value: &Value) -> Result<(), SdsError> {
        let path = self.root.join(name);
        let text = serde_json::to_string_pretty(value).map_err(|e| SdsError::Invalid {
            path: path.clone(),
            reason: format!("cannot encode the resource: {e}"),
        })?;
        let tmp = self.root.join(format!(".{name}.tmp"));
        let _ = fs::remove_file(&tmp);
        write_file(&tmp, &text, 0o644)?;
        fs::rename(&tmp, &path).map_err(|source| io(&path, "replacing the resource file", source))
    }
}

/// A name that sorts by time and never repeats within the process, like the kubelet's
/// `..2006_01_02_15_04_05.<random>`.
fn generation_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("..{nanos}.{}.{n}", std::process::id())
}

/// Creates `path` (which must not exist) with `mode` set at open(2) time, so a key file is never
/// readable by others, not even for an instant.
fn write_file(path: &Path, contents: &str, mode: u32) -> Result<(), SdsError> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|source| io(path, "creating the file", source))?;
    file.write_all(contents.as_bytes())
        .map_err(|source| io(path, "writing the file", source))
}

fn io(path: &Path, action: &'static str, source: std::io::Error) -> SdsError {
    SdsError::Io {
        path: path.to_path_buf(),
        action,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const KEY: &str = "-----BEGIN PRIVATE KEY-----\nU0VDUkVU\n-----END PRIVATE KEY-----\n";

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "meshproof-sds-test-{name}-{}-{}",
            std::process::id(),
            generation_name()
        ));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn write_swaps_data_atomically_and_removes_the_old_generation() {
        let root = scratch("swap");
        let dir = SdsDir::create(&root).unwrap();
        assert_eq!(
            fs::metadata(&root).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let first = dir
            .write(
                "-----BEGIN CERTIFICATE-----\n1\n",
                KEY,
                "-----BEGIN CERTIFICATE-----\nr\n",
            )
            .unwrap();
        assert!(
            fs::read_to_string(dir.cert_chain_path())
                .unwrap()
                .ends_with("1\n")
        );
        let key_mode = fs::metadata(dir.key_path()).unwrap().permissions().mode();
        assert_eq!(key_mode & 0o777, 0o600);
        let second = dir
            .write(
                "-----BEGIN CERTIFICATE-----\n2\n",
                KEY,
                "-----BEGIN CERTIFICATE-----\nr\n",
            )
            .unwrap();
        assert_ne!(first, second);
        assert!(
            fs::read_to_string(dir.cert_chain_path())
                .unwrap()
                .ends_with("2\n")
        );
        assert_eq!(
            fs::read_link(root.join(DATA_LINK)).unwrap(),
            PathBuf::from(&second.name)
        );
        assert!(!root.join(&first.name).exists(), "old generation removed");
        assert!(!root.join("..data_tmp").exists());
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn resource_files_name_the_stable_paths_and_watch_the_directory() {
        let root = scratch("resources");
        let dir = SdsDir::create(&root).unwrap();
        let text = fs::read_to_string(root.join(CERT_RESOURCE_FILE)).unwrap();
        let value: Value = serde_json::from_str(&text).unwrap();
        let secret = &value["resources"][0];
        assert_eq!(secret["name"], CERT_SECRET_NAME);
        assert_eq!(
            secret["tls_certificate"]["private_key"]["filename"],
            json!(dir.key_path())
        );
        let config = dir.cert_secret_config();
        assert_eq!(
            config["sds_config"]["path_config_source"]["watched_directory"]["path"],
            json!(root)
        );
        let validation: Value =
            serde_json::from_str(&fs::read_to_string(root.join(VALIDATION_RESOURCE_FILE)).unwrap())
                .unwrap();
        assert_eq!(validation["resources"][0]["name"], VALIDATION_SECRET_NAME);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn non_pem_input_is_refused_without_echoing_it() {
        let root = scratch("invalid");
        let dir = SdsDir::create(&root).unwrap();
        let err = dir
            .write(
                "-----BEGIN CERTIFICATE-----\n",
                "SECRETKEYTEXT",
                "-----BEGIN CERTIFICATE-----\n",
            )
            .unwrap_err();
        assert!(!err.to_string().contains("SECRETKEYTEXT"), "{err}");
        fs::remove_dir_all(&root).unwrap();
    }
}
