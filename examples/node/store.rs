//! The peer store (`--store`, feature `redb`).

use std::path::Path;
#[cfg(feature = "redb")]
use std::time::Duration;

use libp2p_connection_manager as manager;

/// `manager` keeping its state in the redb file `path`.
#[cfg(feature = "redb")]
pub fn with_store(
    manager: manager::Behaviour,
    path: &Path,
    fresh: bool,
    flush_ms: Option<u64>,
) -> anyhow::Result<manager::Behaviour> {
    use manager::store::{RedbStore, StoreConfig};
    let store = if fresh {
        RedbStore::open_or_start_fresh(path)
    } else {
        RedbStore::open(path)
    };
    let store = store.map_err(|error| {
        let hint = match error {
            manager::store::StoreError::Corrupted { .. }
            | manager::store::StoreError::Incompatible { .. } => {
                "; start with --fresh-store to set the file aside and begin with an empty store"
            }
            _ => "",
        };
        anyhow::anyhow!("{error}{hint}")
    })?;
    if let Some(aside) = store.set_aside() {
        let text = format!(
            "peer store {} was unreadable: moved to {}, starting empty",
            path.display(),
            aside.display()
        );
        crate::output::say("store", &text);
    }
    crate::output::say("store", &format!("peer store: {}", path.display()));
    let mut config = StoreConfig::default();
    if let Some(ms) = flush_ms {
        config.flush_interval = Duration::from_millis(ms);
    }
    Ok(manager.with_store_config(store, config)?)
}

/// Without the redb feature `check_node_args` refuses `--store` before this is reached.
#[cfg(not(feature = "redb"))]
pub fn with_store(
    _manager: manager::Behaviour,
    path: &Path,
    _fresh: bool,
    _flush_ms: Option<u64>,
) -> anyhow::Result<manager::Behaviour> {
    anyhow::bail!(
        "--store {} needs the example built with the redb feature",
        path.display()
    )
}
