//! `cert`/`key`: a certificate chain and its private key, as both sides use them (our
//! certificate in server mode, the client certificate towards the upstream). PEM keys in
//! PKCS#8, RSA (PKCS#1) or EC (SEC1) form. Everything that can be wrong is found at start: a
//! missing file, no key, a password-protected key, a key that does not belong to the
//! certificate. The key itself never reaches a message or the log.

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls::{Error, InconsistentKeys};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;

use super::SetupError;
use super::trust::{contains, pem_certs, read};
use crate::config::CertKey;

/// A chain (leaf first) and its key, checked to belong together.
pub struct Pair {
    /// The certificates, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The private key.
    pub key: PrivateKeyDer<'static>,
}

/// Reads `cert` and its key (from `key`, else from the certificate file).
pub fn load(pair: &CertKey, provider: &CryptoProvider) -> Result<Pair, SetupError> {
    let chain = pem_certs(&read(&pair.cert)?, &pair.cert)?;
    if chain.is_empty() {
        return Err(SetupError::NoChain {
            path: pair.cert.clone(),
        });
    }
    let key_path = pair.key.as_ref().unwrap_or(&pair.cert);
    let key = private_key(&read(key_path)?, key_path)?;
    let signing = provider
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| SetupError::BadKey {
            path: key_path.clone(),
            reason: e.to_string(),
        })?;
    match CertifiedKey::new(chain.clone(), signing).keys_match() {
        Err(Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => Err(SetupError::KeyMismatch {
            cert: pair.cert.clone(),
            key: key_path.clone(),
        }),
        // `Unknown`: the certificate's key type cannot be compared; the handshake will tell.
        _ => Ok(Pair { chain, key }),
    }
}

/// The private key in a PEM file; refuses encrypted keys with the way out.
fn private_key(pem: &[u8], path: &Path) -> Result<PrivateKeyDer<'static>, SetupError> {
    if contains(pem, b"-----BEGIN ENCRYPTED PRIVATE KEY-----") || contains(pem, b"Proc-Type: 4,ENCRYPTED") {
        return Err(SetupError::EncryptedKey { path: path.into() });
    }
    if !contains(pem, b"PRIVATE KEY-----") {
        return Err(SetupError::NoKey { path: path.into() });
    }
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| SetupError::BadKey {
        path: path.into(),
        reason: e.to_string(),
    })
}
