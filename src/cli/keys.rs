//! `keys generate`.

use anyhow::Context as _;

/// Writes a fresh key pair into `out`; refuses to overwrite anything.
pub(super) fn keys_generate(out: &std::path::Path) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let names = [
        ("app_private_key.pem", true),
        ("app_private_key_pkcs1.pem", true),
        ("app_private_key.b64", true),
        ("app_public_key.pem", false),
        ("app_public_key.b64", false),
    ];
    let existing: Vec<String> = names
        .iter()
        .map(|(name, _)| out.join(name))
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .collect();
    if !existing.is_empty() {
        anyhow::bail!(
            "refusing to overwrite existing key files: {} (choose another --out or move them away)",
            existing.join(", ")
        );
    }
    std::fs::create_dir_all(out).with_context(|| format!("--out {}", out.display()))?;
    let pair = crate::alipay::keys::generate().map_err(anyhow::Error::msg)?;
    let with_newline = |s: &str| {
        if s.ends_with('\n') {
            s.to_string()
        } else {
            format!("{s}\n")
        }
    };
    let contents = [
        with_newline(&pair.private_pkcs8_pem),
        with_newline(&pair.private_pkcs1_pem),
        with_newline(&pair.private_pkcs8_base64),
        with_newline(&pair.public_spki_pem),
        with_newline(&pair.public_base64),
    ];
    let mut written = Vec::new();
    for ((name, private), content) in names.iter().zip(&contents) {
        let path = out.join(name);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(if *private { 0o600 } else { 0o644 })
            .open(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        file.write_all(content.as_bytes())
            .and_then(|()| file.sync_all())
            .with_context(|| format!("cannot write {}", path.display()))?;
        written.push((path, *private));
    }
    println!(
        "App public key (paste into the console's 应用公钥 field):\n{}\n",
        pair.public_base64
    );
    for (path, private) in written {
        let note = if private { " (private, mode 0600)" } else { "" };
        println!("  {}{note}", path.display());
    }
    println!(
        "\nConfigure alipay.app_private_key_file with {}. Keep the private key files secret.",
        out.join("app_private_key.pem").display()
    );
    Ok(())
}

/// The SN of a certificate file as Alipay computes it (`--root`: of the root bundle).
pub(super) fn cert_sn(file: &std::path::Path, root: bool) -> anyhow::Result<String> {
    use crate::alipay::cert;
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let sn = if root {
        cert::root_sn(&cert::parse_bundle(&bytes, true)?)?
    } else {
        cert::parse_leaf(&bytes)?[0].sn()?
    };
    Ok(sn)
}
