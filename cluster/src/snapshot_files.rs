//! Snapshots as files in the storage's snapshot folder, one current at a time: a new one
//! is written beside, made durable, named current, and the one it supersedes is deleted.
//! (They used to be one value in a keyspace: sled rewrote the whole state into its log at
//! every snapshot and kept the superseded copies until its segment cleaning caught up.)
//!
//! A file is what is sent to followers, byte for byte. Its format (version 4):
//! `[4][head length: u64 LE][head: postcard]`, then the cold pairs, each
//! `[key length: u32 LE][key][value length: u32 LE][value]`, then `u32::MAX`. The head
//! holds everything kept in memory; the cold pairs are streamed from the keyspace while
//! the file is written and read back one at a time when it is installed. Files of older
//! versions (one postcard value, `[2]` or `[3]` first) are still read.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::raft_types::SnapshotMeta;

/// The first byte of a streamed snapshot file.
pub(crate) const STREAMED_V4: u8 = 4;
const END_OF_PAIRS: u32 = u32::MAX;
const CURRENT: &str = "current.json";

/// Which file holds the current snapshot, and its meta.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Current {
    file: String,
    meta: SnapshotMeta,
}

#[derive(Debug)]
pub(crate) struct SnapshotFiles {
    dir: PathBuf,
    next: AtomicU64,
    /// Held while the current snapshot changes: a build and an install may finish at once.
    changing: std::sync::Mutex<()>,
}

fn io_error(what: &str, error: impl std::fmt::Display) -> String {
    format!("snapshot file: {what}: {error}")
}

impl SnapshotFiles {
    pub(crate) fn open(dir: PathBuf) -> Result<Self, String> {
        std::fs::create_dir_all(&dir).map_err(|error| io_error("create folder", error))?;
        // Leftovers of a write or a receive that a crash interrupted.
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with("partial-") || name.starts_with("receiving-") {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        let files = Self {
            dir,
            next: AtomicU64::new(0),
            changing: std::sync::Mutex::new(()),
        };
        files.remove_superseded();
        Ok(files)
    }

    fn fresh_name(&self, prefix: &str) -> PathBuf {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_nanos())
            .unwrap_or_default();
        let count = self.next.fetch_add(1, Ordering::Relaxed);
        self.dir.join(format!("{prefix}-{nanos}-{count}"))
    }

    /// A new empty file for a snapshot being received, open for reading and writing.
    pub(crate) fn receiving(&self) -> Result<(PathBuf, File), String> {
        let path = self.fresh_name("receiving");
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|error| io_error("create", error))?;
        Ok((path, file))
    }

    /// A new file to write a snapshot into.
    pub(crate) fn partial(&self) -> Result<(PathBuf, File), String> {
        let path = self.fresh_name("partial");
        let file = File::create(&path).map_err(|error| io_error("create", error))?;
        Ok((path, file))
    }

    /// Makes the snapshot in `path` durable and current (unless the current one is of a
    /// later index: then `path` goes); the one it supersedes goes. Returns where the
    /// current snapshot's file is now.
    pub(crate) fn make_current(&self, path: &Path, meta: &SnapshotMeta) -> Result<PathBuf, String> {
        let _changing = self
            .changing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.make_current_locked(path, meta)
            .map(|(_, current_path)| current_path)
    }

    /// [`Self::make_current`], then the current snapshot's meta and its file opened before
    /// the lock is released: a snapshot made current meanwhile (an install beside a build)
    /// cannot delete the file between the two.
    pub(crate) fn make_current_and_open(
        &self,
        path: &Path,
        meta: &SnapshotMeta,
    ) -> Result<(SnapshotMeta, File), String> {
        let _changing = self
            .changing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (current, current_path) = self.make_current_locked(path, meta)?;
        let file = File::open(&current_path).map_err(|error| io_error("open current", error))?;
        Ok((current, file))
    }

    /// With `changing` held: makes `path` current unless a later snapshot is, and says
    /// which is current now.
    fn make_current_locked(
        &self,
        path: &Path,
        meta: &SnapshotMeta,
    ) -> Result<(SnapshotMeta, PathBuf), String> {
        let index = meta.last_log_id.map_or(0, |log_id| log_id.index);
        if let Some((current, current_path)) = self.current()?
            && current.last_log_id.map_or(0, |log_id| log_id.index) > index
        {
            let _ = std::fs::remove_file(path);
            return Ok((current, current_path));
        }
        File::open(path)
            .and_then(|file| file.sync_all())
            .map_err(|error| io_error("fsync", error))?;
        let name = format!(
            "snapshot-{index:020}-{}",
            path.file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default()
        );
        std::fs::rename(path, self.dir.join(&name)).map_err(|error| io_error("rename", error))?;
        let current = serde_json::to_vec(&Current {
            file: name.clone(),
            meta: meta.clone(),
        })
        .map_err(|error| io_error("encode", error))?;
        let pending = self.dir.join("current.json.new");
        std::fs::write(&pending, current)
            .and_then(|()| File::open(&pending)?.sync_all())
            .map_err(|error| io_error("write current", error))?;
        std::fs::rename(&pending, self.dir.join(CURRENT))
            .map_err(|error| io_error("rename current", error))?;
        File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .map_err(|error| io_error("fsync folder", error))?;
        self.remove_superseded();
        Ok((meta.clone(), self.dir.join(name)))
    }

    /// The current snapshot's meta and file.
    pub(crate) fn current(&self) -> Result<Option<(SnapshotMeta, PathBuf)>, String> {
        let bytes = match std::fs::read(self.dir.join(CURRENT)) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(io_error("read current", error)),
        };
        let current: Current =
            serde_json::from_slice(&bytes).map_err(|error| io_error("decode current", error))?;
        Ok(Some((current.meta, self.dir.join(current.file))))
    }

    /// The current snapshot's meta and its file, opened while no snapshot is being made
    /// current: a snapshot built meanwhile supersedes the file (and deletes it) only
    /// after this handle is open, and an open handle reads on.
    pub(crate) fn open_current(&self) -> Result<Option<(SnapshotMeta, File)>, String> {
        let _changing = self
            .changing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some((meta, path)) = self.current()? else {
            return Ok(None);
        };
        let file = File::open(&path).map_err(|error| io_error("open current", error))?;
        Ok(Some((meta, file)))
    }

    /// Deletes every snapshot file but the current one. A sender still reading one keeps
    /// its open handle.
    fn remove_superseded(&self) {
        let keep = self.current().ok().flatten().map(|(_, path)| path);
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with("snapshot-") && Some(entry.path()) != keep {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
    }
}

/// Writes a streamed snapshot: the head, then the pairs `next_pairs` hands out (in
/// chunks, until it returns an empty one).
pub(crate) fn write_streamed<H: Serialize>(
    file: File,
    head: &H,
    mut next_pairs: impl FnMut() -> Result<Vec<(Vec<u8>, Vec<u8>)>, String>,
) -> Result<u64, String> {
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let head = postcard::to_stdvec(head).map_err(|error| io_error("encode head", error))?;
    let mut write = |bytes: &[u8]| {
        out.write_all(bytes)
            .map_err(|error| io_error("write", error))
    };
    write(&[STREAMED_V4])?;
    write(&(head.len() as u64).to_le_bytes())?;
    write(&head)?;
    let mut written = 1 + 8 + head.len() as u64;
    loop {
        let pairs = next_pairs()?;
        if pairs.is_empty() {
            break;
        }
        for (key, value) in pairs {
            for part in [&key, &value] {
                let length = u32::try_from(part.len())
                    .ok()
                    .filter(|length| *length != END_OF_PAIRS)
                    .ok_or_else(|| io_error("write", "a key or value of 4 GiB or more"))?;
                write(&length.to_le_bytes())?;
                write(part)?;
                written += 4 + part.len() as u64;
            }
        }
    }
    write(&END_OF_PAIRS.to_le_bytes())?;
    out.flush().map_err(|error| io_error("flush", error))?;
    Ok(written + 4)
}

/// A streamed snapshot being read: its head, then its pairs one at a time.
pub(crate) struct StreamedReader {
    input: BufReader<File>,
}

impl StreamedReader {
    /// Opens `file` (positioned anywhere); `Ok(None)` when it is not a streamed snapshot.
    pub(crate) fn open<H: serde::de::DeserializeOwned>(
        mut file: File,
    ) -> Result<Result<(H, Self), File>, String> {
        use std::io::Seek;
        file.seek(std::io::SeekFrom::Start(0))
            .map_err(|error| io_error("seek", error))?;
        let mut input = BufReader::with_capacity(1 << 20, file);
        let mut tag = [0u8; 1];
        if input.read_exact(&mut tag).is_err() || tag[0] != STREAMED_V4 {
            let mut file = input.into_inner();
            file.seek(std::io::SeekFrom::Start(0))
                .map_err(|error| io_error("seek", error))?;
            return Ok(Err(file));
        }
        let mut length = [0u8; 8];
        input
            .read_exact(&mut length)
            .map_err(|error| io_error("read head length", error))?;
        let length = usize::try_from(u64::from_le_bytes(length))
            .map_err(|error| io_error("head length", error))?;
        let mut head = vec![0u8; length];
        input
            .read_exact(&mut head)
            .map_err(|error| io_error("read head", error))?;
        let head = postcard::from_bytes(&head).map_err(|error| io_error("decode head", error))?;
        Ok(Ok((head, Self { input })))
    }

    fn read_part(&mut self) -> Result<Option<Vec<u8>>, String> {
        let mut length = [0u8; 4];
        self.input
            .read_exact(&mut length)
            .map_err(|error| io_error("read length", error))?;
        let length = u32::from_le_bytes(length);
        if length == END_OF_PAIRS {
            return Ok(None);
        }
        let mut part = vec![0u8; length as usize];
        self.input
            .read_exact(&mut part)
            .map_err(|error| io_error("read pair", error))?;
        Ok(Some(part))
    }

    /// The next pair, or `None` at the end.
    pub(crate) fn next_pair(&mut self) -> Result<Option<crate::storage::KeyValue>, String> {
        let Some(key) = self.read_part()? else {
            return Ok(None);
        };
        let value = self
            .read_part()?
            .ok_or_else(|| io_error("read pair", "a key without its value"))?;
        Ok(Some((key, value)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(index: u64) -> SnapshotMeta {
        SnapshotMeta {
            last_log_id: Some(openraft::LogId::new(
                openraft::CommittedLeaderId::new(1, 1),
                index,
            )),
            last_membership: Default::default(),
            snapshot_id: format!("s{index}"),
        }
    }

    fn snapshot_files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with("snapshot-"))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn the_current_snapshot_opens_while_newer_ones_supersede_it() {
        // A snapshot built while the current one is being opened for a follower must not
        // delete the file between reading its name and opening it.
        let folder = tempfile::tempdir().unwrap();
        let files = std::sync::Arc::new(SnapshotFiles::open(folder.path().join("s")).unwrap());
        let (path, file) = files.partial().unwrap();
        write_streamed(file, &1u64, || Ok(Vec::new())).unwrap();
        files.make_current(&path, &meta(1)).unwrap();
        let builder = {
            let files = files.clone();
            std::thread::spawn(move || {
                for index in 2..300 {
                    let (path, file) = files.partial().unwrap();
                    write_streamed(file, &index, || Ok(Vec::new())).unwrap();
                    files.make_current(&path, &meta(index)).unwrap();
                }
            })
        };
        let mut opened = 0;
        while !builder.is_finished() {
            let (_, file) = files.open_current().unwrap().unwrap();
            assert!(file.metadata().unwrap().len() > 0);
            opened += 1;
        }
        builder.join().unwrap();
        assert!(opened > 0);
    }

    #[test]
    fn a_built_snapshot_is_opened_before_an_install_can_supersede_it() {
        // A build (older) and installs (newer) made current side by side: the build's
        // file, or the newer one it yields to, is always opened with its meta.
        let folder = tempfile::tempdir().unwrap();
        let files = std::sync::Arc::new(SnapshotFiles::open(folder.path().join("s")).unwrap());
        let installer = {
            let files = files.clone();
            std::thread::spawn(move || {
                for index in (2..400).step_by(2) {
                    let (path, file) = files.partial().unwrap();
                    write_streamed(file, &index, || Ok(Vec::new())).unwrap();
                    files.make_current(&path, &meta(index)).unwrap();
                }
            })
        };
        let mut built = 1;
        while !installer.is_finished() {
            let (path, file) = files.partial().unwrap();
            write_streamed(file, &built, || Ok(Vec::new())).unwrap();
            let (current, file) = files.make_current_and_open(&path, &meta(built)).unwrap();
            assert!(current.last_log_id.unwrap().index >= built);
            assert!(file.metadata().unwrap().len() > 0);
            built += 2;
        }
        installer.join().unwrap();
    }

    #[test]
    fn one_snapshot_file_is_kept_and_an_older_one_never_replaces_a_newer() {
        let folder = tempfile::tempdir().unwrap();
        let files = SnapshotFiles::open(folder.path().join("snapshots")).unwrap();
        for index in [10, 20] {
            let (path, file) = files.partial().unwrap();
            write_streamed(file, &index, || Ok(Vec::new())).unwrap();
            files.make_current(&path, &meta(index)).unwrap();
        }
        let dir = folder.path().join("snapshots");
        assert_eq!(snapshot_files(&dir).len(), 1, "the superseded file is gone");
        let (path, file) = files.partial().unwrap();
        write_streamed(file, &5u64, || Ok(Vec::new())).unwrap();
        files.make_current(&path, &meta(5)).unwrap();
        let (current, _) = files.current().unwrap().unwrap();
        assert_eq!(current.snapshot_id, "s20");
        assert_eq!(snapshot_files(&dir).len(), 1);
        assert!(!path.exists(), "the older snapshot was dropped");

        // What was written reads back: the head, then the pairs, then the end.
        let mut pairs = vec![
            vec![(b"a".to_vec(), b"1".to_vec())],
            vec![(b"b".to_vec(), vec![])],
        ];
        let (path, file) = files.partial().unwrap();
        write_streamed(file, &"head".to_string(), || {
            Ok(if pairs.is_empty() {
                Vec::new()
            } else {
                pairs.remove(0)
            })
        })
        .unwrap();
        let current_path = files.make_current(&path, &meta(30)).unwrap();
        let (head, mut reader) = StreamedReader::open::<String>(File::open(current_path).unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(head, "head");
        assert_eq!(
            reader.next_pair().unwrap(),
            Some((b"a".to_vec(), b"1".to_vec()))
        );
        assert_eq!(reader.next_pair().unwrap(), Some((b"b".to_vec(), vec![])));
        assert_eq!(reader.next_pair().unwrap(), None);
        // A crash's leftovers are cleared at the next open.
        std::fs::write(dir.join("partial-1"), b"x").unwrap();
        let _files = SnapshotFiles::open(dir.clone()).unwrap();
        assert!(!dir.join("partial-1").exists());
    }
}
