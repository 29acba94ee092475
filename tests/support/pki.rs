//! A private PKI per test: a CA and leaf certificates (expired, wrong-host, RSA or EC) made with the openssl crate.
#![allow(dead_code)]

use super::*;

pub fn new_key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

/// A certificate authority that signs test certificates.
pub struct Ca {
    cert: X509,
    key: PKey<Private>,
    /// The CA certificate as PEM, written to disk.
    pub pem: PathBuf,
}

/// A certificate and its key on disk.
#[derive(Clone)]
pub struct Leaf {
    /// PEM certificate.
    pub cert: PathBuf,
    /// PEM PKCS#8 key.
    pub key: PathBuf,
}

/// A directory of test certificates that lives as long as the test.
pub struct Pki {
    /// Where the files are.
    pub dir: tempfile::TempDir,
}

impl Pki {
    pub fn new() -> Pki {
        Pki {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A self-signed CA named `name`.
    pub fn ca(&self, name: &str) -> Ca {
        let key = new_key();
        let mut n = X509NameBuilder::new().unwrap();
        n.append_entry_by_text("CN", name).unwrap();
        let n = n.build();
        let mut b = X509::builder().unwrap();
        b.set_version(2).unwrap();
        b.set_serial_number(&serial()).unwrap();
        b.set_subject_name(&n).unwrap();
        b.set_issuer_name(&n).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&Asn1Time::days_from_now(0).unwrap()).unwrap();
        b.set_not_after(&Asn1Time::days_from_now(2).unwrap()).unwrap();
        b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
            .unwrap();
        b.sign(&key, MessageDigest::sha256()).unwrap();
        let cert = b.build();
        let pem = self.path(&format!("{name}.pem"));
        std::fs::write(&pem, cert.to_pem().unwrap()).unwrap();
        Ca { cert, key, pem }
    }

    /// A server certificate signed by `ca`, for the DNS names and IPs in `sans`, valid from
    /// `from_days` to `to_days` relative to now (negative `to_days`: already expired).
    pub fn leaf(&self, ca: &Ca, file: &str, sans: &[&str], from_days: i64, to_days: i64) -> Leaf {
        let key = new_key();
        let cert = sign_leaf(ca, &key, sans, from_days, to_days);
        let leaf = Leaf {
            cert: self.path(&format!("{file}.pem")),
            key: self.path(&format!("{file}.key")),
        };
        std::fs::write(&leaf.cert, cert.to_pem().unwrap()).unwrap();
        std::fs::write(&leaf.key, key.private_key_to_pem_pkcs8().unwrap()).unwrap();
        leaf
    }

    /// A certificate signed by `ca` whose key is RSA, written in the old PKCS#1 form
    /// (`-----BEGIN RSA PRIVATE KEY-----`) that many private CAs still hand out.
    pub fn rsa_leaf(&self, ca: &Ca, file: &str, sans: &[&str]) -> Leaf {
        let rsa = openssl::rsa::Rsa::generate(2048).unwrap();
        let pkcs1 = rsa.private_key_to_pem().unwrap();
        let key = PKey::from_rsa(rsa).unwrap();
        let cert = sign_leaf(ca, &key, sans, -1, 2);
        let leaf = Leaf {
            cert: self.path(&format!("{file}.pem")),
            key: self.path(&format!("{file}.key")),
        };
        std::fs::write(&leaf.cert, cert.to_pem().unwrap()).unwrap();
        std::fs::write(&leaf.key, pkcs1).unwrap();
        leaf
    }

    /// The usual pair: a CA and a server certificate for localhost and 127.0.0.1 (plus `extra`).
    pub fn standard(&self, extra: &[&str]) -> (Ca, Leaf) {
        let ca = self.ca("test-ca");
        let mut sans = vec!["localhost", "127.0.0.1"];
        sans.extend_from_slice(extra);
        let leaf = self.leaf(&ca, "server", &sans, -1, 2);
        (ca, leaf)
    }
}

/// A certificate for `key`, signed by `ca`, for the DNS names and IPs in `sans`.
pub fn sign_leaf(ca: &Ca, key: &PKey<Private>, sans: &[&str], from_days: i64, to_days: i64) -> X509 {
    let mut n = X509NameBuilder::new().unwrap();
    n.append_entry_by_text("CN", sans.first().copied().unwrap_or("test"))
        .unwrap();
    let n = n.build();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    b.set_serial_number(&serial()).unwrap();
    b.set_subject_name(&n).unwrap();
    b.set_issuer_name(ca.cert.subject_name()).unwrap();
    b.set_pubkey(key).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    b.set_not_before(&Asn1Time::from_unix(now + from_days * 86400).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::from_unix(now + to_days * 86400).unwrap())
        .unwrap();
    let mut san = SubjectAlternativeName::new();
    for s in sans {
        if s.parse::<std::net::IpAddr>().is_ok() {
            san.ip(s);
        } else {
            san.dns(s);
        }
    }
    let ext = san.build(&b.x509v3_context(Some(&ca.cert), None)).unwrap();
    b.append_extension(ext).unwrap();
    b.sign(&ca.key, MessageDigest::sha256()).unwrap();
    b.build()
}

pub fn serial() -> openssl::asn1::Asn1Integer {
    let mut bn = BigNum::new().unwrap();
    bn.rand(64, MsbOption::MAYBE_ZERO, false).unwrap();
    bn.to_asn1_integer().unwrap()
}

impl Pki {
    /// A CRL of `ca` revoking `revoked`, made as a CA operator would, with the real `openssl ca`
    /// (each call starts a fresh database, so an empty `revoked` gives an empty CRL).
    pub fn crl(&self, ca: &Ca, name: &str, revoked: &[&Leaf]) -> PathBuf {
        let db = self.path(&format!("{name}-db"));
        std::fs::create_dir_all(&db).unwrap();
        let key = db.join("ca.key");
        std::fs::write(&key, ca.key.private_key_to_pem_pkcs8().unwrap()).unwrap();
        std::fs::write(db.join("index.txt"), "").unwrap();
        std::fs::write(db.join("crlnumber"), "01\n").unwrap();
        let cnf = db.join("ca.cnf");
        let text = format!(
            "[ca]\ndefault_ca = test\n[test]\ndatabase = {db}/index.txt\ncrlnumber = {db}/crlnumber\n\
             default_md = sha256\ndefault_crl_days = 2\ncertificate = {ca}\nprivate_key = {key}\n",
            db = db.display(),
            ca = ca.pem.display(),
            key = key.display()
        );
        std::fs::write(&cnf, text).unwrap();
        for leaf in revoked {
            openssl_ca(&cnf, &[OsStr::new("-revoke"), leaf.cert.as_os_str()]);
        }
        let out = self.path(&format!("{name}.crl.pem"));
        openssl_ca(&cnf, &[OsStr::new("-gencrl"), OsStr::new("-out"), out.as_os_str()]);
        out
    }
}

/// Runs `openssl ca -config cnf ARGS`, failing the test with its output if it fails.
fn openssl_ca(cnf: &Path, args: &[&OsStr]) {
    let out = Command::new("openssl")
        .arg("ca")
        .arg("-config")
        .arg(cnf)
        .args(args)
        .output()
        .expect("the openssl command must be installed (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl ca {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// OpenSSL's subject hash of a CRL's issuer: the `HASH.r0` name a CRLpath entry has.
pub fn crl_hash(crl: &Path) -> String {
    let out = Command::new("openssl")
        .args(["crl", "-hash", "-noout", "-in"])
        .arg(crl)
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}
