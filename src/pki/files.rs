//! Writing PKI material to disk in Istio's layouts, with private keys created `0600`.

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::{PkiError, PrivateKey, Svid};

/// Mode of files holding private keys.
pub const SECRET_FILE_MODE: u32 = 0o600;
/// Mode of files holding only certificates.
pub const PUBLIC_FILE_MODE: u32 = 0o644;

/// Paths written by [`Pki::write_plugin_ca`](super::Pki::write_plugin_ca): Istio's plug-in
/// CA secret (`cacerts`) layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginCaFiles {
    /// `ca-cert.pem`: the mesh intermediate.
    pub ca_cert: PathBuf,
    /// `ca-key.pem`: the intermediate's private key (mode `0600`).
    pub ca_key: PathBuf,
    /// `root-cert.pem`: the corporate root.
    pub root_cert: PathBuf,
    /// `cert-chain.pem`: intermediate then root.
    pub cert_chain: PathBuf,
}

/// Paths written by [`write_svid`]: Istio's `/etc/certs` layout for one workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SvidFiles {
    /// The workload's directory, `<dir>/<name>`.
    pub dir: PathBuf,
    /// `cert-chain.pem`: leaf then intermediate.
    pub cert_chain: PathBuf,
    /// `key.pem`: the leaf's private key (mode `0600`).
    pub key: PathBuf,
    /// `root-cert.pem`: the trust anchor.
    pub root_cert: PathBuf,
}

/// Writes `svid` as `<dir>/<name>/cert-chain.pem`, `<dir>/<name>/key.pem` (mode `0600`) and
/// `<dir>/<name>/root-cert.pem`. `name` must be one plain path component (no `/`, not `.` or
/// `..`). Existing files are replaced atomically.
pub fn write_svid(dir: &Path, name: &str, svid: &Svid) -> Result<SvidFiles, PkiError> {
    write_workload(dir, name, svid.chain_pem(), svid.key(), svid.root().pem())
}

pub(super) fn write_workload(
    dir: &Path,
    name: &str,
    chain_pem: &str,
    key: &PrivateKey,
    root_pem: &str,
) -> Result<SvidFiles, PkiError> {
    check_name(name)?;
    let dir = dir.join(name);
    create_dir(&dir)?;
    let files = SvidFiles {
        cert_chain: dir.join("cert-chain.pem"),
        key: dir.join("key.pem"),
        root_cert: dir.join("root-cert.pem"),
        dir,
    };
    write_file(&files.cert_chain, chain_pem.as_bytes(), PUBLIC_FILE_MODE)?;
    write_file(&files.key, key.secret_pem().as_bytes(), SECRET_FILE_MODE)?;
    write_file(&files.root_cert, root_pem.as_bytes(), PUBLIC_FILE_MODE)?;
    Ok(files)
}

pub(super) fn write_plugin_ca(
    dir: &Path,
    intermediate_pem: &str,
    intermediate_key: &PrivateKey,
    root_pem: &str,
) -> Result<PluginCaFiles, PkiError> {
    create_dir(dir)?;
    let files = PluginCaFiles {
        ca_cert: dir.join("ca-cert.pem"),
        ca_key: dir.join("ca-key.pem"),
        root_cert: dir.join("root-cert.pem"),
        cert_chain: dir.join("cert-chain.pem"),
    };
    write_file(
        &files.ca_cert,
        intermediate_pem.as_bytes(),
        PUBLIC_FILE_MODE,
    )?;
    write_file(
        &files.ca_key,
        intermediate_key.secret_pem().as_bytes(),
        SECRET_FILE_MODE,
    )?;
    write_file(&files.root_cert, root_pem.as_bytes(), PUBLIC_FILE_MODE)?;
    let chain = format!("{intermediate_pem}{root_pem}");
    write_file(&files.cert_chain, chain.as_bytes(), PUBLIC_FILE_MODE)?;
    Ok(files)
}

fn check_name(name: &str) -> Result<(), PkiError> {
    let reason = if name.is_empty() {
        Some("is empty")
    } else if name == "." || name == ".." {
        Some("is a relative directory reference")
    } else if name.contains(['/', '\\', '\0']) {
        Some("contains a path separator or NUL")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(PkiError::InvalidName {
            name: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

fn create_dir(dir: &Path) -> Result<(), PkiError> {
    fs::create_dir_all(dir).map_err(|cause| PkiError::Io {
        action: "creating directory",
        path: dir.to_path_buf(),
        cause,
    })
}

/// Writes `contents` to `path` with `mode` set *at creation* (never widened, never chmod-ed
/// after the bytes are on disk): the bytes go to a fresh sibling temp file opened with
/// `O_CREAT|O_EXCL` and `mode`, which is then renamed over `path`. A pre-existing `path` with a
/// looser mode is therefore replaced, not reused, and a symlink at `path` is replaced rather
/// than followed. The process umask can only narrow `mode`.
fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), PkiError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(
        ".{file_name}.tmp.{}.{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let io = |action: &'static str, p: &Path| {
        let p = p.to_path_buf();
        move |cause| PkiError::Io {
            action,
            path: p,
            cause,
        }
    };
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .map_err(io("creating", &tmp))?;
        file.write_all(contents).map_err(io("writing", &tmp))?;
        file.sync_all().map_err(io("syncing", &tmp))?;
        fs::rename(&tmp, path).map_err(io("renaming into place", path))
    })();
    if result.is_err() {
        // Best effort: do not leave a half-written temp file (possibly holding a key) behind.
        let _ = fs::remove_file(&tmp);
    }
    result
}
