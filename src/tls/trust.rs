//! Trust anchors: the system store (`SSL_CERT_FILE`/`SSL_CERT_DIR` honoured, through
//! `rustls-native-certs`) plus `CAfile`/`CApath`. Each distinct store is read once and shared by
//! every section that names the same files: forty sections with one `CAfile` each used to read
//! (and parse the system store) forty times. A reload calls [`reread`], so changed files are
//! read again, once, and shared again.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use super::SetupError;

/// Which files a store is made of.
type Key = (Option<PathBuf>, Option<PathBuf>);

/// The stores read since the last [`reread`].
#[derive(Default)]
struct Cache {
    /// The system store alone, parsed once.
    system: Option<Arc<RootCertStore>>,
    /// System store plus `CAfile`/`CApath`, by file names.
    stores: HashMap<Key, Arc<RootCertStore>>,
}

static CACHE: Mutex<Option<Cache>> = Mutex::new(None);

fn cache() -> MutexGuard<'static, Option<Cache>> {
    CACHE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Forgets every store read so far: the next section to need one reads its files again
/// (SIGHUP). Sections still running keep the store they were built with.
pub fn reread() {
    *cache() = None;
}

/// The trust store for `CAfile`/`CApath`: the system's plus theirs, shared.
pub fn roots(ca_file: Option<&Path>, ca_path: Option<&Path>) -> Result<Arc<RootCertStore>, SetupError> {
    let key = (ca_file.map(Path::to_path_buf), ca_path.map(Path::to_path_buf));
    // Held while reading: a second section naming the same files waits and shares the result.
    let mut guard = cache();
    let cache = guard.get_or_insert_with(Cache::default);
    if let Some(found) = cache.stores.get(&key) {
        return Ok(found.clone());
    }
    let system = cache.system.get_or_insert_with(|| Arc::new(system_store())).clone();
    let extra = anchors(ca_file, ca_path)?;
    let store = match extra.is_empty() {
        true => system,
        false => Arc::new(with_extra(&system, extra, ca_file.or(ca_path))?),
    };
    cache.stores.insert(key, store.clone());
    Ok(store)
}

fn system_store() -> RootCertStore {
    let found = rustls_native_certs::load_native_certs();
    let mut store = RootCertStore::empty();
    // Unparsable system certificates are skipped, as OpenSSL skips them.
    store.add_parsable_certificates(found.certs);
    store
}

fn with_extra(
    system: &RootCertStore,
    extra: Vec<CertificateDer<'static>>,
    from: Option<&Path>,
) -> Result<RootCertStore, SetupError> {
    let mut store = system.clone();
    for cert in extra {
        store.add(cert).map_err(|e| SetupError::BadCertificate {
            path: from.map(Path::to_path_buf).unwrap_or_default(),
            reason: e.to_string(),
        })?;
    }
    Ok(store)
}

/// The certificates `CAfile` and `CApath` add to the system's trust store.
pub fn anchors(ca_file: Option<&Path>, ca_path: Option<&Path>) -> Result<Vec<CertificateDer<'static>>, SetupError> {
    let mut certs = Vec::new();
    if let Some(path) = ca_file {
        certs.extend(pem_file(path)?);
    }
    if let Some(dir) = ca_path {
        certs.extend(pem_dir(dir)?);
    }
    Ok(certs)
}

/// Reads a file, naming it in the error.
pub fn read(path: &Path) -> Result<Vec<u8>, SetupError> {
    std::fs::read(path).map_err(|source| SetupError::Read {
        path: path.into(),
        source,
    })
}

/// Every certificate in a PEM file; none is an error.
pub fn pem_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, SetupError> {
    let certs = pem_certs(&read(path)?, path)?;
    if certs.is_empty() {
        return Err(SetupError::NoCertificates { path: path.into() });
    }
    Ok(certs)
}

/// The certificates in PEM text (none when it holds none).
pub fn pem_certs(pem: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>, SetupError> {
    CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| SetupError::BadCertificate {
            path: path.into(),
            reason: e.to_string(),
        })
}

/// Every PEM certificate in the files of a directory (OpenSSL's hashed links or any other
/// names); files holding none (keys, CRLs, notes) are passed over.
fn pem_dir(dir: &Path) -> Result<Vec<CertificateDer<'static>>, SetupError> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|source| SetupError::Read {
            path: dir.into(),
            source,
        })?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    entries.sort();
    let mut certs = Vec::new();
    for path in entries {
        if let Ok(found) = pem_file(&path) {
            certs.extend(found);
        }
    }
    if certs.is_empty() {
        return Err(SetupError::NoCertificates { path: dir.into() });
    }
    Ok(certs)
}

/// Whether `hay` contains `needle`.
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}
