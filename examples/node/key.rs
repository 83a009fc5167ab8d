//! The node's identity file.

use std::path::Path;

use anyhow::Context as _;
use libp2p::identity::Keypair;

/// Reads the keypair in `path`, or creates the file with a new ed25519 keypair if there is none.
pub fn load_or_create_key(path: &Path) -> anyhow::Result<Keypair> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let key = Keypair::from_protobuf_encoding(&bytes).with_context(|| {
                format!(
                    "key file {} does not hold a protobuf-encoded libp2p keypair \
                     (corrupt, or another format); move it away to create a new identity",
                    path.display()
                )
            })?;
            crate::output::say(
                "identity",
                &format!("identity read from {}", path.display()),
            );
            Ok(key)
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let key = Keypair::generate_ed25519();
            write_new_key_file(path, &key)?;
            crate::output::say(
                "identity",
                &format!("new identity written to {}", path.display()),
            );
            Ok(key)
        }
        Err(error) => {
            Err(error).with_context(|| format!("cannot read key file {}", path.display()))
        }
    }
}

/// Writes `key` to a file that must not exist yet, readable by the owner only (on unix).
pub fn write_new_key_file(path: &Path, key: &Keypair) -> anyhow::Result<()> {
    use std::io::Write as _;

    let bytes = key
        .to_protobuf_encoding()
        .context("cannot encode the keypair")?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create key file {}", path.display()))?;
    file.write_all(&bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write key file {}", path.display()))
}
