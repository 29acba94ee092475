//! Trust anchors: the system store (`SSL_CERT_FILE`/`SSL_CERT_DIR` honoured, through
//! `rustls-native-certs`) plus `CAfile`/`CApath`. Each distinct store is read once and shared by
//! every section that names the same files: forty sections with one `CAfile` each used to read
//! (and parse the system store) forty times. A reload calls [`reread`], so changed files are
//! read again, once, and shared again.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer};

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
    file_and_dir(ca_file, ca_path, pem_file, pem_dir)
}

/// What a file option and a directory option (`CAfile`/`CApath`, `CRLfile`/`CRLpath`) hold
/// together.
fn file_and_dir<T>(
    file: Option<&Path>,
    dir: Option<&Path>,
    of_file: fn(&Path) -> Result<Vec<T>, SetupError>,
    of_dir: fn(&Path) -> Result<Vec<T>, SetupError>,
) -> Result<Vec<T>, SetupError> {
    let mut found = Vec::new();
    if let Some(path) = file {
        found.extend(of_file(path)?);
    }
    if let Some(dir) = dir {
        found.extend(of_dir(dir)?);
    }
    Ok(found)
}

/// What the files of `dir` hold, read by `of_file`: a file it finds nothing in is passed
/// over, an error it calls `fatal` stops the reading; nothing at all is the error `none`.
fn each_file<T>(
    dir: &Path,
    of_file: fn(&Path) -> Result<Vec<T>, SetupError>,
    fatal: fn(&SetupError) -> bool,
    none: fn(PathBuf) -> SetupError,
) -> Result<Vec<T>, SetupError> {
    let mut found = Vec::new();
    for path in files_in(dir)? {
        match of_file(&path) {
            Ok(items) => found.extend(items),
            Err(e) if fatal(&e) => return Err(e),
            Err(_) => {}
        }
    }
    if found.is_empty() {
        return Err(none(dir.into()));
    }
    Ok(found)
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
    each_file(dir, pem_file, |_| false, |path| SetupError::NoCertificates { path })
}

/// The CRLs of `CRLfile` and `CRLpath` (read per section, so a reload reads them again).
pub fn crls(
    crl_file: Option<&Path>,
    crl_path: Option<&Path>,
) -> Result<Vec<CertificateRevocationListDer<'static>>, SetupError> {
    file_and_dir(crl_file, crl_path, crl_file_of, crl_dir)
}

/// Every CRL in a PEM file, each checked to be one webpki can use; none is an error.
fn crl_file_of(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, SetupError> {
    let bad = |reason: String| SetupError::BadCrl {
        path: path.into(),
        reason,
    };
    let crls = CertificateRevocationListDer::pem_slice_iter(&read(path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if crls.is_empty() {
        return Err(SetupError::NoCrls { path: path.into() });
    }
    for crl in &crls {
        webpki::OwnedCertRevocationList::from_der(crl).map_err(|e| bad(format!("{e:?}")))?;
    }
    Ok(crls)
}

/// Every CRL in the files of a directory (`HASH.r0` as OpenSSL names them, or any other
/// name); files holding none are passed over, a directory without any is an error.
fn crl_dir(dir: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, SetupError> {
    let fatal = |e: &SetupError| matches!(e, SetupError::BadCrl { .. });
    each_file(dir, crl_file_of, fatal, |path| SetupError::NoCrls { path })
}

/// The regular files of a directory, sorted by name.
fn files_in(dir: &Path) -> Result<Vec<PathBuf>, SetupError> {
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
    Ok(entries)
}

/// A digest of what the files and directories in `paths` hold now (a directory: each of its
/// files, by name), to tell whether a reload found them changed. A file that cannot be read
/// counts by its error, so that it becoming readable counts as a change too.
pub fn contents_digest<'a>(paths: impl IntoIterator<Item = &'a Path>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for path in paths {
        path.hash(&mut h);
        let files = match path.is_dir() {
            true => files_in(path).unwrap_or_default(),
            false => vec![path.to_path_buf()],
        };
        for file in files {
            file.hash(&mut h);
            match std::fs::read(&file) {
                Ok(bytes) => bytes.hash(&mut h),
                Err(e) => e.kind().hash(&mut h),
            }
        }
    }
    h.finish()
}

/// Whether `hay` contains `needle`.
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed CA certificate as PEM.
    fn ca_pem(name: &str) -> Vec<u8> {
        use openssl::{asn1::Asn1Time, hash::MessageDigest, pkey::PKey, x509};
        let key = PKey::from_ec_key(
            openssl::ec::EcKey::generate(
                &openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).unwrap(),
            )
            .unwrap(),
        )
        .unwrap();
        let mut n = x509::X509NameBuilder::new().unwrap();
        n.append_entry_by_text("CN", name).unwrap();
        let n = n.build();
        let mut b = x509::X509::builder().unwrap();
        b.set_version(2).unwrap();
        b.set_subject_name(&n).unwrap();
        b.set_issuer_name(&n).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&Asn1Time::days_from_now(0).unwrap()).unwrap();
        b.set_not_after(&Asn1Time::days_from_now(2).unwrap()).unwrap();
        b.append_extension(
            x509::extension::BasicConstraints::new()
                .critical()
                .ca()
                .build()
                .unwrap(),
        )
        .unwrap();
        b.sign(&key, MessageDigest::sha256()).unwrap();
        b.build().to_pem().unwrap()
    }

    #[test]
    fn each_store_is_read_once_and_shared_until_a_reload_reads_it_again() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.pem"), dir.path().join("b.pem"));
        std::fs::write(&a, ca_pem("ca-a")).unwrap();
        std::fs::write(&b, ca_pem("ca-b")).unwrap();
        let first = roots(Some(&a), None).unwrap();
        assert!(Arc::ptr_eq(&first, &roots(Some(&a), None).unwrap()), "read twice");
        assert!(
            !Arc::ptr_eq(&first, &roots(Some(&b), None).unwrap()),
            "two files, one store"
        );
        // A reload reads the file again: a second CA added to it is trusted from then on.
        let mut both = ca_pem("ca-a");
        both.extend(ca_pem("ca-c"));
        std::fs::write(&a, both).unwrap();
        assert_eq!(
            roots(Some(&a), None).unwrap().len(),
            first.len(),
            "changed before a reload"
        );
        reread();
        let again = roots(Some(&a), None).unwrap();
        assert!(!Arc::ptr_eq(&first, &again));
        assert_eq!(again.len(), first.len() + 1);
    }
}
