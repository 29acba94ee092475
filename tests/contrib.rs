//! `contrib/retunnel.service` is a unit systemd accepts: `systemd-analyze verify` with its
//! `ExecStart` pointed at the built binary and the man page `Documentation=` names generated
//! by `retunnel man` (verify fails when a man page it names is missing).

mod support;

use std::process::Command;

use support::*;

#[test]
fn the_systemd_unit_verifies_and_documents_retunnel() {
    let unit = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/retunnel.service")).unwrap();
    assert!(unit.contains("\nType=notify\n"), "{unit}");
    assert!(unit.contains("\nDocumentation=man:retunnel(1)\n"), "{unit}");
    let dir = tempfile::tempdir().unwrap();
    let man1 = dir.path().join("man/man1");
    std::fs::create_dir_all(&man1).unwrap();
    let page = run_retunnel(&["man"]);
    assert_eq!(page.code, Some(0), "{}", page.stderr);
    std::fs::write(man1.join("retunnel.1"), page.stdout).unwrap();
    let path = dir.path().join("retunnel.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/retunnel", retunnel_bin())).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .env("MANPATH", dir.path().join("man"))
        .output()
        .expect("systemd-analyze must be installed (apt-get install systemd man-db)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify failed:\n{stderr}");
    assert!(
        !stderr.contains("retunnel.service"),
        "warnings about the unit:\n{stderr}"
    );
}
