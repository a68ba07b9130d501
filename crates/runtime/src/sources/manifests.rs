//! The manifests source: a folder of ordinary Kubernetes YAML (multi-document, recursive).
//!
//! Loading is incremental: only files whose size or modification time changed are read
//! again, and only their objects are replaced in the store. A file that fails to parse is
//! reported with its path and line and keeps the objects it held before.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

pub use model::parse::{parse_file, FileError};
use model::store::Loaded;
use model::{Kind, Object, ObjectKey, ObjectRef, Store};

/// A file's size and modification time: it is re-read when either changes.
type Stamp = (u64, Option<SystemTime>);

/// Reads and parses `p` unless its stamp is `known` (the one already loaded).
fn read_if_changed(p: &Path, known: Option<Stamp>) -> Option<(Stamp, Parsed)> {
    let stamp_of = |m: std::fs::Metadata| (m.len(), m.modified().ok());
    // A rescan only looks (a stat); a file never read is opened straight away, and one open
    // serves its stamp and its read (a cold start's path lookups cost more than the reads).
    // The stamp is taken before the read: a write meanwhile changes it again.
    if known.is_some() && known == Some(stamp_of(std::fs::metadata(p).ok()?)) {
        return None;
    }
    let error = |e: std::io::Error| FileError {
        path: p.to_path_buf(),
        line: None,
        message: e.to_string(),
    };
    let (stamp, text) = match std::fs::File::open(p) {
        Ok(mut file) => {
            let m = match file.metadata() {
                Ok(m) => m,
                Err(_) => std::fs::metadata(p).ok()?,
            };
            let stamp = stamp_of(m);
            if known == Some(stamp) {
                return None;
            }
            (stamp, read_text(&mut file, stamp.0))
        }
        // There but not readable (permissions, say): reported with its path. Gone: nothing.
        Err(e) => (stamp_of(std::fs::metadata(p).ok()?), Err(e)),
    };
    let parsed = text
        .map_err(error)
        .and_then(|text| parse_file(p, &text))
        .map(keyed);
    Some((stamp, parsed))
}

/// The rest of `file` as UTF-8, expecting `size` bytes. (`File::read_to_string` asks the
/// file its size and position again first: two more system calls for every file a cold
/// start reads.)
fn read_text(file: &mut std::fs::File, size: u64) -> std::io::Result<String> {
    use std::io::Read;
    // One byte more than expected, so a file that did not grow ends in the first read and
    // the second says it ended.
    let mut buf = Vec::new();
    grow(
        &mut buf,
        usize::try_from(size)
            .unwrap_or(usize::MAX)
            .saturating_add(1),
    )?;
    let mut filled = 0;
    loop {
        if filled == buf.len() {
            let twice = buf.len().saturating_mul(2);
            grow(&mut buf, twice)?; // it grew meanwhile
        }
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(filled);
    String::from_utf8(buf).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "stream did not contain valid UTF-8",
        )
    })
}

/// Zero-fills `buf` to `len` bytes, or says the file is too large: a size this cannot hold is
/// the file's error, not the process' end (an allocation that fails aborts).
fn grow(buf: &mut Vec<u8>, len: usize) -> std::io::Result<()> {
    buf.try_reserve_exact(len.saturating_sub(buf.len()))
        .map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::OutOfMemory,
                format!("too large to read: no room for {len} bytes"),
            )
        })?;
    buf.resize(len, 0);
    Ok(())
}

/// A file's objects with their keys, or why it could not be read.
type Parsed = Result<Vec<(ObjectRef, Object)>, FileError>;

/// Each object with its key: one key per object, shared by the file's list and the store.
/// A file's objects nearly always share a namespace, and a Revision and its Service a name:
/// their keys share those strings too. (Made where the file is parsed, off
/// the thread that applies files in order.)
fn keyed(objects: Vec<Object>) -> Vec<(ObjectRef, Object)> {
    let mut strings = foldhash::HashSet::<Arc<str>>::default();
    let mut shared = |s: &str| match strings.get(s) {
        Some(a) => a.clone(),
        None => {
            let a: Arc<str> = s.into();
            strings.insert(a.clone());
            a
        }
    };
    objects
        .into_iter()
        .map(|mut o| {
            let kind = o.kind();
            let m = o.meta_mut();
            let key = ObjectKey::new(shared(&m.namespace), shared(&m.name));
            // The object's own copies give way to the key's.
            m.namespace = key.namespace.clone();
            m.name = key.name.clone();
            (ObjectRef { kind, key }, o)
        })
        .collect()
}

#[derive(Debug, Clone)]
struct FileState {
    stamp: Stamp,
    /// The objects the file defines. The store holds the copy of each object's first
    /// file; only the other files' copies (duplicates) are kept here, in `shadowed`.
    objects: FileObjects,
    shadowed: Vec<Object>,
    /// (Boxed: nearly every file has none, and every one of them would carry its room.)
    error: Option<Box<FileError>>,
}

/// A file's list of objects. Nearly always they share one namespace, kept once: 24 bytes an
/// object instead of 40.
#[derive(Debug, Clone)]
enum FileObjects {
    OneNamespace(Arc<str>, Box<[(Kind, Arc<str>)]>),
    Mixed(Box<[ObjectRef]>),
}

impl Default for FileObjects {
    fn default() -> FileObjects {
        FileObjects::Mixed(Box::default())
    }
}

impl FileObjects {
    fn new(refs: Vec<ObjectRef>) -> FileObjects {
        match refs.first() {
            Some(first) if refs.iter().all(|r| r.key.namespace == first.key.namespace) => {
                let namespace = first.key.namespace.clone();
                let items = refs.into_iter().map(|r| (r.kind, r.key.name)).collect();
                FileObjects::OneNamespace(namespace, items)
            }
            _ => FileObjects::Mixed(refs.into()),
        }
    }

    fn into_vec(self) -> Vec<ObjectRef> {
        match self {
            FileObjects::OneNamespace(namespace, items) => items
                .into_vec()
                .into_iter()
                .map(|(kind, name)| ObjectRef {
                    kind,
                    key: ObjectKey {
                        namespace: namespace.clone(),
                        name,
                    },
                })
                .collect(),
            FileObjects::Mixed(refs) => refs.into_vec(),
        }
    }

    fn contains(&self, r: &ObjectRef) -> bool {
        match self {
            FileObjects::OneNamespace(namespace, items) => {
                *namespace == r.key.namespace
                    && items.iter().any(|(k, n)| *k == r.kind && *n == r.key.name)
            }
            FileObjects::Mixed(refs) => refs.contains(r),
        }
    }
}

/// What one reload changed.
#[derive(Debug, Default)]
pub struct Reload {
    /// Objects added, replaced or removed in the store (an object that moved between
    /// files counts once per file).
    pub changed: usize,
    /// Files read again.
    pub files_read: usize,
}

/// The folder's files and the objects each holds, plus the store they build.
#[derive(Debug, Default)]
pub struct Manifests {
    root: PathBuf,
    /// (Hashed: a cold start looks up every path several times, and comparing paths in a
    /// B-tree parses their components each time.)
    files: foldhash::HashMap<PathBuf, FileState>,
    /// Objects that several files define, with those files in path order: the first wins.
    /// An object one file defines (nearly all) has no entry: the store holds it and that
    /// file's list names it. (A map of every object's files would cost an entry per object.)
    shared: foldhash::HashMap<ObjectRef, Vec<Arc<Path>>>,
    pub store: Store,
    /// Files below the root that are not manifests (by name), as of the last full reload.
    skipped: Vec<PathBuf>,
    /// While a first load reads the folder into an empty store: the objects applied so far,
    /// handed to the store at once at the end ([`Store::load`]) instead of one tree search
    /// each, which was most of the work of the thread that applies files. Anything but
    /// adding an object not seen yet (a duplicate) hands them over first.
    staged: Option<Box<Staged>>,
}

#[derive(Debug, Default)]
struct Staged {
    refs: foldhash::HashSet<ObjectRef>,
    objects: Loaded,
}

impl Manifests {
    pub fn new(root: impl Into<PathBuf>) -> Manifests {
        Manifests {
            root: root.into(),
            ..Default::default()
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Current file errors (each file keeps serving its last good objects).
    pub fn errors(&self) -> Vec<FileError> {
        let mut errors: Vec<FileError> = self
            .files
            .values()
            .filter_map(|f| f.error.as_deref().cloned())
            .collect();
        errors.sort_by(|a, b| a.path.cmp(&b.path));
        errors
    }

    /// Objects defined in more than one file: the later files' copies are ignored.
    pub fn duplicates(&self) -> Vec<(ObjectRef, Vec<PathBuf>)> {
        let mut out: Vec<(ObjectRef, Vec<PathBuf>)> = self
            .shared
            .iter()
            .map(|(r, files)| (r.clone(), files.iter().map(|f| f.to_path_buf()).collect()))
            .collect();
        out.sort();
        out
    }

    /// Reads every changed file and updates the store. Fails only when the folder itself
    /// cannot be read.
    pub fn reload(&mut self) -> std::io::Result<Reload> {
        let mut paths = Vec::new();
        let mut skipped = Vec::new();
        collect_manifest_files(&self.root, &mut paths, &mut skipped)?;
        self.skipped = skipped;
        let present: foldhash::HashSet<&Path> = paths.iter().map(|p| p.as_path()).collect();
        let mut reload = Reload::default();
        let mut gone: Vec<PathBuf> = self
            .files
            .keys()
            .filter(|p| !present.contains(p.as_path()))
            .cloned()
            .collect();
        gone.sort();
        for p in gone {
            self.forget_file(&p, &mut reload);
        }
        if self.store.is_empty() {
            self.staged = Some(Default::default());
        }
        self.refresh_files(paths, &mut reload);
        self.unstage();
        Ok(reload)
    }

    /// Like [`Manifests::reload`], looking only at `paths` (what the watcher reported):
    /// a change costs its files, not a walk of the whole folder. `None` when a path is not
    /// a plain YAML file below the root (a folder, say): then only a full reload will do.
    pub fn reload_paths(&mut self, paths: &BTreeSet<PathBuf>) -> Option<Reload> {
        let mut files = Vec::new();
        for p in paths {
            let rel = p.strip_prefix(&self.root).ok()?;
            let hidden = rel
                .components()
                .any(|c| c.as_os_str().to_string_lossy().starts_with('.'));
            let yaml = p
                .file_name()
                .is_some_and(|n| model::parse::is_manifest(&n.to_string_lossy()));
            match std::fs::symlink_metadata(p) {
                Ok(m) if m.is_dir() => return None,
                _ if hidden || !yaml => continue, // editor temp files, .git, other files
                Ok(m) if !m.is_file() => return None,
                _ => files.push(p.clone()),
            }
        }
        let mut reload = Reload::default();
        for p in files {
            if p.exists() {
                self.refresh_file(p, &mut reload);
            } else {
                self.forget_file(&p, &mut reload);
            }
        }
        Some(reload)
    }

    /// A file that is gone: its objects leave the store.
    fn forget_file(&mut self, p: &Path, reload: &mut Reload) {
        if let Some(old) = self.files.remove(p) {
            self.replace(p, old.objects.into_vec(), Vec::new(), &mut reload.changed);
        }
    }

    /// The stamp of the file's loaded contents.
    fn stamp_of(&self, p: &Path) -> Option<Stamp> {
        self.files.get(p).map(|f| f.stamp)
    }

    /// Re-reads one file if its size or modification time changed.
    fn refresh_file(&mut self, p: PathBuf, reload: &mut Reload) {
        if let Some((stamp, parsed)) = read_if_changed(&p, self.stamp_of(&p)) {
            self.settle_file(p, stamp, parsed, reload);
        }
    }

    /// Reads and parses the changed ones of `paths` on every core while this thread applies
    /// each in path order (so which file owns a duplicate object does not depend on timing).
    fn refresh_files(&mut self, paths: Vec<PathBuf>, reload: &mut Reload) {
        let paths: Vec<(PathBuf, Option<Stamp>)> = paths
            .into_iter()
            .map(|p| {
                let known = self.stamp_of(&p);
                (p, known)
            })
            .collect();
        model::par::map_then(
            &paths,
            64,
            |(p, known)| read_if_changed(p, *known),
            |(p, _), read| {
                if let Some((stamp, parsed)) = read {
                    self.settle_file(p.clone(), stamp, parsed, reload);
                }
            },
        );
    }

    /// Takes a file's new contents into the store (or records why it could not be read).
    fn settle_file(&mut self, p: PathBuf, stamp: Stamp, parsed: Parsed, reload: &mut Reload) {
        reload.files_read += 1;
        let old = self.files.remove(&p);
        match parsed {
            Ok(objects) => {
                let old_objects = old.map(|o| o.objects.into_vec()).unwrap_or_default();
                let refs = FileObjects::new(objects.iter().map(|(r, _)| r.clone()).collect());
                let shadowed = self.replace(&p, old_objects, objects, &mut reload.changed);
                self.files.insert(
                    p,
                    FileState {
                        stamp,
                        objects: refs,
                        shadowed,
                        error: None,
                    },
                );
            }
            Err(error) => {
                // Keep what the file held before; report the error.
                let (objects, shadowed) = old.map(|o| (o.objects, o.shadowed)).unwrap_or_default();
                self.files.insert(
                    p,
                    FileState {
                        stamp,
                        objects,
                        shadowed,
                        error: Some(Box::new(error)),
                    },
                );
            }
        }
    }

    /// Swaps one file's objects in the store, honouring which file owns each object (its
    /// file is not in `self.files` meanwhile). Returns the file's copies that another file
    /// owns.
    fn replace(
        &mut self,
        path: &Path,
        mut old: Vec<ObjectRef>,
        new: Vec<(ObjectRef, Object)>,
        changed: &mut usize,
    ) -> Vec<Object> {
        // (A file that names an object twice lists it twice.)
        old.sort();
        old.dedup();
        let new_refs: BTreeSet<&ObjectRef> = if old.is_empty() {
            BTreeSet::new() // a new file (every file at start): nothing to compare with
        } else {
            new.iter().map(|(r, _)| r).collect()
        };
        for r in &old {
            if new_refs.contains(r) {
                continue;
            }
            let Some(files) = self.shared.get_mut(r) else {
                // This file was its only one.
                if self.delete(r) {
                    *changed += 1;
                }
                continue;
            };
            let was_first = files.first().map(|f| &**f) == Some(path);
            files.retain(|f| &**f != path);
            let next = files.first().cloned();
            if files.len() < 2 {
                self.shared.remove(r);
            }
            if was_first {
                // The next file's copy takes over.
                if let Some(obj) = next.and_then(|f| self.take_shadowed(&f, r)) {
                    self.apply(obj);
                    *changed += 1;
                }
            }
        }
        let mut shadowed = Vec::new();
        let shared: Arc<Path> = Arc::from(path);
        for (r, o) in new {
            // A first load's object seen in no file before (nearly always): staged, with one
            // lookup instead of the three below.
            if let Some(staged) = self.staged.as_mut().filter(|_| old.is_empty()) {
                if staged.refs.insert(r.clone()) {
                    staged.objects.push(r.key, o);
                    *changed += 1;
                    continue;
                }
            }
            let mut files = match self.shared.remove(&r) {
                Some(files) => files,
                // New to this file and already served: another file defines it too.
                None if old.binary_search(&r).is_err() => (self.sole_file(&r))
                    .map(|p| vec![Arc::from(p)])
                    .unwrap_or_default(),
                None => Vec::new(),
            };
            let before = files.first().cloned();
            if let Err(at) = files.binary_search_by(|f| (**f).cmp(path)) {
                files.insert(at, shared.clone());
            }
            let first = files.first().map(|f| &**f) == Some(path);
            if files.len() > 1 {
                self.shared.insert(r.clone(), files);
            }
            if !first {
                shadowed.push(o);
                continue;
            }
            // This file comes first now: the previous owner's copy steps back.
            if let Some(prev) = before.filter(|f| &**f != path) {
                if let (Some(obj), Some(state)) = (self.object(&r), self.files.get_mut(&*prev)) {
                    state.shadowed.push(obj);
                }
            }
            if self.apply_if_changed(r, o) {
                *changed += 1;
            }
        }
        shadowed
    }

    // The objects being applied: staged during a first load, else the store's.

    fn unstage(&mut self) {
        if let Some(staged) = self.staged.take() {
            self.store.load(staged.objects);
        }
    }

    fn contains(&self, r: &ObjectRef) -> bool {
        match &self.staged {
            Some(staged) => staged.refs.contains(r),
            None => self.store.contains(r.kind, &r.key),
        }
    }

    fn object(&mut self, r: &ObjectRef) -> Option<Object> {
        self.unstage();
        self.store.get(r.kind, &r.key)
    }

    fn delete(&mut self, r: &ObjectRef) -> bool {
        self.unstage();
        self.store.delete(r.kind, &r.key)
    }

    fn apply(&mut self, obj: Object) {
        self.unstage();
        self.store.apply(obj)
    }

    /// Whether it changed anything.
    fn apply_if_changed(&mut self, r: ObjectRef, obj: Object) -> bool {
        if let Some(staged) = &mut self.staged {
            // Not seen yet (nearly always): staged.
            if staged.refs.insert(r.clone()) {
                staged.objects.push(r.key, obj);
                return true;
            }
        }
        self.unstage();
        self.store.apply_keyed_if_changed(r.key, obj)
    }

    fn take_shadowed(&mut self, file: &Path, r: &ObjectRef) -> Option<Object> {
        let shadowed = &mut self.files.get_mut(file)?.shadowed;
        // A file that names an object twice holds a copy of each: the last is the one
        // reading the file gives.
        let last = shadowed.remove(shadowed.iter().rposition(|o| o.object_ref() == *r)?);
        shadowed.retain(|o| o.object_ref() != *r);
        Some(last)
    }
}

/// The manifest files (`*.yaml`, `*.yml`, `*.json`) below `dir` that a folder's reload reads,
/// in path order; the other files go to `skipped`. Hidden files and folders are passed over
/// quietly (`.git`, editors' swap files).
pub fn collect_manifest_files(
    dir: &Path,
    out: &mut Vec<PathBuf>,
    skipped: &mut Vec<PathBuf>,
) -> std::io::Result<()> {
    // Each entry's name taken once (`sort_by_key` would copy two names per comparison).
    let mut entries: Vec<_> = (std::fs::read_dir(dir)?.filter_map(Result::ok))
        .map(|e| (e.file_name(), e))
        .collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    for (name, e) in entries {
        let path = e.path();
        let name = name.to_string_lossy();
        if name.starts_with('.') {
            continue; // editor swap files, .git
        }
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            // An unreadable sub-folder is skipped, not fatal.
            let _ = collect_manifest_files(&path, out, skipped);
        } else if model::parse::is_manifest(&name) {
            out.push(path);
        } else {
            skipped.push(path);
        }
    }
    Ok(())
}

impl Manifests {
    /// The files below the root that are not manifests, so were not read.
    pub fn skipped(&self) -> &[PathBuf] {
        &self.skipped
    }

    /// The file an object was read from (the first, if several define it).
    pub fn file_of(&self, r: &ObjectRef) -> Option<&Path> {
        match self.shared.get(r) {
            Some(files) => files.first().map(|f| &**f),
            None => self.sole_file(r),
        }
    }

    /// The one file that defines an object several files do not: found by looking through
    /// every file's list, as that is needed rarely (a duplicate appearing, a rejection
    /// logged) and a map of every object's file would cost an entry per object.
    fn sole_file(&self, r: &ObjectRef) -> Option<&Path> {
        if !self.contains(r) {
            return None;
        }
        self.files
            .iter()
            .find(|(_, f)| f.objects.contains(r))
            .map(|(p, _)| p.as_path())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTE: &str = "apiVersion: serving.knative.dev/v1\nkind: Route\nmetadata:\n  name: r\nspec:\n  traffic:\n  - revisionName: a\n    percent: 100\n";

    #[test]
    fn multi_document_file_yields_known_kinds_and_skips_others() {
        let text = format!(
            "{ROUTE}---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\n---\n"
        );
        let objs = parse_file(Path::new("x.yaml"), &text).unwrap();
        assert_eq!(objs.len(), 1);
        assert_eq!(objs[0].kind(), Kind::Route);
        assert_eq!(&*objs[0].key().namespace, "default");
    }

    #[test]
    fn malformed_document_reports_file_and_absolute_line() {
        let text = format!("{ROUTE}---\napiVersion: serving.knative.dev/v1\nkind: Route\nmetadata:\n  name: [oops\n");
        let e = parse_file(Path::new("bad.yaml"), &text).unwrap_err();
        assert_eq!(e.path, PathBuf::from("bad.yaml"));
        let line = e.line.unwrap();
        assert!((12..=14).contains(&line), "line {line}: {e}");
    }

    #[test]
    fn wrong_field_type_names_object_and_line() {
        let text = "apiVersion: serving.knative.dev/v1\nkind: Route\nmetadata:\n  name: r\nspec:\n  traffic:\n  - percent: lots\n";
        let e = parse_file(Path::new("t.yaml"), text).unwrap_err();
        assert!(e.message.contains("Route r"), "{e}");
        assert_eq!(e.line, Some(7), "{e}");
    }

    #[test]
    fn broken_file_keeps_its_previous_objects() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("r.yaml");
        std::fs::write(&f, ROUTE).unwrap();
        let mut m = Manifests::new(dir.path());
        m.reload().unwrap();
        assert_eq!(m.store.routes.len(), 1);
        std::fs::write(
            &f,
            "apiVersion: serving.knative.dev/v1\nkind: Route\nmetadata: [\n",
        )
        .unwrap();
        m.reload().unwrap();
        assert_eq!(m.store.routes.len(), 1, "objects kept");
        assert_eq!(m.errors().len(), 1);
        std::fs::remove_file(&f).unwrap();
        m.reload().unwrap();
        assert!(
            m.store.routes.is_empty(),
            "deleted file removes its objects"
        );
        assert!(m.errors().is_empty());
    }

    /// A file is read to its end whatever size its stamp gave (it may change between the
    /// stat and the read), and bytes that are not UTF-8 are an error naming the file.
    #[test]
    fn files_are_read_whole_and_must_be_utf8() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("r.yaml");
        std::fs::write(&f, ROUTE).unwrap();
        let len = ROUTE.len() as u64;
        for size in [0, 1, len - 1, len, len + 1, 10 * len] {
            let mut file = std::fs::File::open(&f).unwrap();
            assert_eq!(read_text(&mut file, size).unwrap(), ROUTE, "size {size}");
        }
        // A size no buffer can hold is an error, not an abort.
        let mut file = std::fs::File::open(&f).unwrap();
        let e = read_text(&mut file, u64::MAX).unwrap_err();
        assert!(e.to_string().contains("too large to read"), "{e}");
        std::fs::write(&f, b"kind: Route\nmetadata:\n  name: \xff\n").unwrap();
        let mut m = Manifests::new(dir.path());
        m.reload().unwrap();
        let errors = m.errors();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].path, f);
        assert!(errors[0].message.contains("UTF-8"), "{}", errors[0]);
    }

    #[test]
    fn reload_of_reported_paths_reads_only_those() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.yaml"), dir.path().join("sub/b.yaml"));
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(&a, ROUTE).unwrap();
        std::fs::write(&b, ROUTE.replace("name: r", "name: s")).unwrap();
        let mut m = Manifests::new(dir.path());
        m.reload().unwrap();
        assert_eq!(m.store.routes.len(), 2);
        // An editor's write + rename: the temp file is ignored, the target re-read.
        let tmp = dir.path().join("sub/.b.yaml.tmp");
        std::fs::write(
            &tmp,
            ROUTE.replace("name: r", "name: s").replace("100", "50"),
        )
        .unwrap();
        std::fs::rename(&tmp, &b).unwrap();
        let r = m.reload_paths(&[tmp, b.clone()].into()).unwrap();
        assert_eq!(r.files_read, 1);
        assert_eq!(r.changed, 1);
        // A deleted file's objects go.
        std::fs::remove_file(&a).unwrap();
        let r = m.reload_paths(&[a].into()).unwrap();
        assert_eq!(r.changed, 1);
        assert_eq!(m.store.routes.len(), 1);
        // A folder (created or moved in) needs a full look.
        assert!(m.reload_paths(&[dir.path().join("sub")].into()).is_none());
        // So does a path outside the folder.
        assert!(m
            .reload_paths(&["/elsewhere/x.yaml".into()].into())
            .is_none());
    }

    /// `*.json` files are manifests like YAML ones, on a full reload and a watched change;
    /// other files are listed as skipped, hidden ones passed over quietly.
    #[test]
    fn json_files_are_read_and_other_files_listed() {
        let dir = tempfile::tempdir().unwrap();
        let json = r#"{"apiVersion": "serving.knative.dev/v1", "kind": "Route",
            "metadata": {"name": "j"}, "spec": {"traffic": [{"revisionName": "a", "percent": 100}]}}"#;
        std::fs::write(dir.path().join("j.json"), json).unwrap();
        std::fs::write(dir.path().join("README.md"), "# notes").unwrap();
        std::fs::create_dir(dir.path().join(".git")).unwrap();
        std::fs::write(dir.path().join(".git/config"), "x").unwrap();
        let mut m = Manifests::new(dir.path());
        m.reload().unwrap();
        assert_eq!(m.store.routes.len(), 1);
        assert_eq!(m.skipped(), [dir.path().join("README.md")]);
        let k = dir.path().join("k.json");
        std::fs::write(&k, json.replace("\"j\"", "\"k\"")).unwrap();
        let r = m.reload_paths(&[k].into()).unwrap();
        assert_eq!(r.changed, 1);
        assert_eq!(m.store.routes.len(), 2);
    }

    /// A first load (staged, then handed to the store at once) gives the store, owners
    /// and duplicates that applying the files one at a time gives, duplicates included.
    #[test]
    fn first_load_is_the_files_applied_one_by_one() {
        let w = workload::generate(60, 11);
        let dir = tempfile::tempdir().unwrap();
        let mut paths = Vec::new();
        for (path, text) in &w.files {
            let p = dir.path().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, text).unwrap();
            paths.push(p);
        }
        // A second copy of a file's objects, changed, in a file that sorts after it; and
        // one that sorts first.
        let (path, text) = &w.files[3];
        let changed = text.replace("percent: ", "percent: 1");
        std::fs::write(dir.path().join(format!("{path}.copy.yaml")), &changed).unwrap();
        std::fs::write(dir.path().join("0-first.yaml"), &changed).unwrap();
        paths.push(dir.path().join(format!("{path}.copy.yaml")));
        paths.push(dir.path().join("0-first.yaml"));
        paths.sort();

        let mut loaded = Manifests::new(dir.path());
        loaded.reload().unwrap();
        let mut one_by_one = Manifests::new(dir.path());
        for p in &paths {
            one_by_one
                .reload_paths(&BTreeSet::from([p.clone()]))
                .unwrap();
        }
        assert!(loaded.store.revisions.len() >= 60);
        assert_eq!(loaded.store, one_by_one.store);
        assert!(!loaded.duplicates().is_empty());
        assert_eq!(loaded.duplicates(), one_by_one.duplicates());
        for (k, _) in loaded.store.routes.iter() {
            let r = ObjectRef {
                kind: Kind::Route,
                key: k.clone(),
            };
            assert_eq!(loaded.file_of(&r), one_by_one.file_of(&r), "{k}");
        }
        // Nothing staged is left behind: changes go to the store.
        std::fs::remove_file(dir.path().join("0-first.yaml")).unwrap();
        loaded.reload().unwrap();
        one_by_one
            .reload_paths(&BTreeSet::from([dir.path().join("0-first.yaml")]))
            .unwrap();
        assert_eq!(loaded.store, one_by_one.store);
    }

    #[test]
    fn object_defined_twice_is_owned_by_the_first_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), ROUTE).unwrap();
        std::fs::write(
            dir.path().join("b.yaml"),
            ROUTE.replace("percent: 100", "percent: 50"),
        )
        .unwrap();
        let mut m = Manifests::new(dir.path());
        m.reload().unwrap();
        assert_eq!(m.duplicates().len(), 1);
        let r = m.store.routes.values().next().unwrap();
        assert_eq!(r.spec.traffic[0].percent, Some(100));
        std::fs::remove_file(dir.path().join("a.yaml")).unwrap();
        m.reload().unwrap();
        let r = m.store.routes.values().next().unwrap();
        assert_eq!(r.spec.traffic[0].percent, Some(50), "b.yaml takes over");
        // A file that sorts first takes over; when it goes, b.yaml's copy is back.
        std::fs::write(
            dir.path().join("0.yaml"),
            ROUTE.replace("percent: 100", "percent: 70"),
        )
        .unwrap();
        m.reload().unwrap();
        let percent =
            |m: &Manifests| m.store.routes.values().next().unwrap().spec.traffic[0].percent;
        assert_eq!(percent(&m), Some(70), "0.yaml comes first");
        std::fs::remove_file(dir.path().join("0.yaml")).unwrap();
        m.reload().unwrap();
        assert_eq!(percent(&m), Some(50), "b.yaml's copy was kept");
        std::fs::remove_file(dir.path().join("b.yaml")).unwrap();
        m.reload().unwrap();
        assert!(m.store.routes.is_empty());
    }

    /// Files that define, redefine, move and drop the same objects, in random orders: after
    /// each change the store, the duplicates and each object's file are what reading the
    /// folder from scratch gives.
    #[test]
    fn ownership_after_random_changes_matches_a_fresh_read() {
        use workload::SplitMix64;
        let files = ["a.yaml", "b.yaml", "c/d.yaml", "e.yaml"];
        let route = |name: &str, percent: u64| {
            ROUTE
                .replace("name: r", &format!("name: {name}"))
                .replace("percent: 100", &format!("percent: {percent}"))
        };
        let view = |m: &Manifests| {
            let routes: Vec<(String, Option<i64>, Option<PathBuf>)> = (m.store.routes.iter())
                .map(|(k, r)| {
                    let at = ObjectRef {
                        kind: Kind::Route,
                        key: k.clone(),
                    };
                    let file = m.file_of(&at).map(Path::to_path_buf);
                    (k.to_string(), r.spec.traffic[0].percent, file)
                })
                .collect();
            (routes, m.duplicates())
        };
        for seed in 0..40 {
            let mut rng = SplitMix64::new(seed);
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir(dir.path().join("c")).unwrap();
            let mut m = Manifests::new(dir.path());
            for step in 0..30u64 {
                let f = dir
                    .path()
                    .join(files[rng.below(files.len() as u64) as usize]);
                if rng.chance(25) {
                    let _ = std::fs::remove_file(&f);
                } else {
                    // 0-3 of four Routes, a name possibly twice; the comment gives every
                    // write its own size, so its stamp differs from the last one's.
                    let mut text = format!("# {}\n", "#".repeat(step as usize));
                    for _ in 0..rng.below(4) {
                        let name = format!("r{}", rng.below(4));
                        text += &route(&name, rng.below(100));
                        text += "---\n";
                    }
                    std::fs::write(&f, text).unwrap();
                }
                if rng.chance(50) {
                    m.reload().unwrap();
                } else {
                    m.reload_paths(&BTreeSet::from([f.clone()])).unwrap();
                }
                let mut fresh = Manifests::new(dir.path());
                fresh.reload().unwrap();
                assert_eq!(view(&m), view(&fresh), "seed {seed}, step {step}");
            }
        }
    }

    /// A file that cannot be read as text is reported with its path, whether it is new or
    /// was good before (its objects then stay), and is read again once it changes.
    #[test]
    fn unreadable_file_is_reported_and_keeps_its_objects() {
        let dir = tempfile::tempdir().unwrap();
        let (good, bad) = (dir.path().join("good.yaml"), dir.path().join("bad.yaml"));
        std::fs::write(&good, ROUTE).unwrap();
        std::fs::write(&bad, b"kind: Route\n\xff\xfe\n").unwrap();
        let mut m = Manifests::new(dir.path());
        m.reload().unwrap();
        let errors = m.errors();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].path, bad);
        assert!(errors[0].message.contains("UTF-8"), "{}", errors[0].message);
        assert_eq!(m.store.routes.len(), 1);
        // The good file goes bad: its Route is kept, and the error names it.
        std::fs::write(&good, b"\xff").unwrap();
        m.reload().unwrap();
        assert_eq!(m.store.routes.len(), 1, "the last good objects stay");
        assert!(m.errors().iter().any(|e| e.path == good));
        // Both mended: no errors, both read.
        std::fs::write(&good, ROUTE).unwrap();
        std::fs::write(&bad, ROUTE.replace("name: r", "name: r2")).unwrap();
        m.reload().unwrap();
        assert!(m.errors().is_empty(), "{:?}", m.errors());
        assert_eq!(m.store.routes.len(), 2);
    }
}
