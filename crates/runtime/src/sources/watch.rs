//! Watches the manifests folder and reports (debounced) which paths changed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// Quiet time after the last file event before a reload: editors write a file in several
/// steps, and a burst of writes should give one reload.
pub const DEBOUNCE: Duration = Duration::from_millis(30);
/// A reload at least this often, in case an event was missed.
pub const POLL: Duration = Duration::from_secs(5);

/// What changed since the last call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changed {
    /// These paths (files written, renamed or removed).
    Paths(BTreeSet<PathBuf>),
    /// Unknown (the poll interval, or the watcher lost events): look at everything.
    Everything,
}

/// One watcher event: the paths, or `None` for "rescan".
type Event = Option<Vec<PathBuf>>;

/// A running watcher; dropping it stops watching.
pub struct FolderWatch {
    /// `None`: no watch could be set up, only the poll interval reports changes.
    _watcher: Option<notify::RecommendedWatcher>,
    /// Kept while there is no watcher, so `rx` stays open.
    _tx: Option<mpsc::UnboundedSender<Event>>,
    rx: mpsc::UnboundedReceiver<Event>,
}

impl FolderWatch {
    pub fn new(dir: &Path) -> notify::Result<FolderWatch> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut watcher =
            notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
                let ev = match res {
                    Ok(ev) if ev.kind.is_access() => return,
                    Ok(ev) if !ev.need_rescan() && !ev.paths.is_empty() => Some(ev.paths),
                    _ => None,
                };
                let _ = tx.send(ev);
            })?;
        watcher.watch(dir, RecursiveMode::Recursive)?;
        Ok(FolderWatch {
            _watcher: Some(watcher),
            _tx: None,
            rx,
        })
    }

    /// No watch: [`FolderWatch::changed`] reports `Everything` every [`POLL`].
    pub fn polling() -> FolderWatch {
        let (tx, rx) = mpsc::unbounded_channel();
        FolderWatch {
            _watcher: None,
            _tx: Some(tx),
            rx,
        }
    }

    /// Waits for a change (or the poll interval), then for `DEBOUNCE` of quiet; returns the
    /// paths that changed meanwhile.
    pub async fn changed(&mut self) -> Changed {
        let mut paths = BTreeSet::new();
        let mut everything = false;
        let mut add = |ev: Event| match ev {
            Some(p) => paths.extend(p),
            None => everything = true,
        };
        match tokio::time::timeout(POLL, self.rx.recv()).await {
            Ok(Some(ev)) => add(ev),
            _ => return Changed::Everything,
        }
        while let Ok(Some(ev)) = tokio::time::timeout(DEBOUNCE, self.rx.recv()).await {
            add(ev);
        }
        if everything {
            Changed::Everything
        } else {
            Changed::Paths(paths)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without a watch, nothing is reported before the poll interval (no busy loop).
    #[tokio::test]
    async fn polling_waits_for_the_poll_interval() {
        let mut w = FolderWatch::polling();
        let early = tokio::time::timeout(Duration::from_millis(200), w.changed()).await;
        assert!(
            early.is_err(),
            "reported {early:?} before the poll interval"
        );
    }
}
