//! Watches the manifests folder and signals (debounced) that something changed.

use std::path::Path;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// Quiet time after the last file event before a reload: editors write a file in several
/// steps, and a burst of writes should give one reload.
pub const DEBOUNCE: Duration = Duration::from_millis(30);
/// A reload at least this often, in case an event was missed.
pub const POLL: Duration = Duration::from_secs(5);

/// A running watcher; dropping it stops watching.
pub struct FolderWatch {
    _watcher: notify::RecommendedWatcher,
    rx: mpsc::UnboundedReceiver<()>,
}

impl FolderWatch {
    pub fn new(dir: &Path) -> notify::Result<FolderWatch> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut watcher =
            notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
                if let Ok(ev) = res {
                    if !ev.kind.is_access() {
                        let _ = tx.send(());
                    }
                }
            })?;
        watcher.watch(dir, RecursiveMode::Recursive)?;
        Ok(FolderWatch {
            _watcher: watcher,
            rx,
        })
    }

    /// Waits for a change (or the poll interval), then for `DEBOUNCE` of quiet.
    pub async fn changed(&mut self) {
        let _ = tokio::time::timeout(POLL, self.rx.recv()).await;
        while let Ok(Some(())) = tokio::time::timeout(DEBOUNCE, self.rx.recv()).await {}
    }
}
