//! [`FileStore`]: a directory holding `snapshot.json` (replaced atomically) and `journal.log`
//! (one JSON effect per line, each with its sequence number, fsync'd per batch).
//!
//! Recovery: read the snapshot, then replay journal lines whose sequence is past the snapshot's.
//! A torn last line (a crash mid-write, never acknowledged) is cut off by [`Journal`]; a bad line
//! anywhere else is corruption and refuses the start.

use std::fs::{self, File};
use std::io::Write;
use std::path::PathBuf;

use isthmus_ipam::{Effect, IpamSnapshot};
use serde::{Deserialize, Serialize};

use super::journal::Journal;
use super::{Recovered, Store};
use crate::StoreError;
use crate::error::at::{corrupt, io, sync_dir};

const SNAPSHOT: &str = "snapshot.json";
const JOURNAL: &str = "journal.log";

/// Compact once the journal holds this many effects.
const COMPACT_AFTER: u64 = 200_000;

#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    seq: u64,
    state: IpamSnapshot,
}

#[derive(Serialize, Deserialize)]
struct JournalLine<'a> {
    seq: u64,
    effect: std::borrow::Cow<'a, Effect>,
}

/// A snapshot and a journal in one directory.
#[derive(Debug)]
pub struct FileStore {
    dir: PathBuf,
    journal: Option<Journal>,
    /// Sequence number of the last effect made durable.
    seq: u64,
    journal_len: u64,
    compact_after: u64,
    buf: Vec<u8>,
}

impl FileStore {
    /// A store in `dir` (created if missing).
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        Ok(FileStore {
            dir,
            journal: None,
            seq: 0,
            journal_len: 0,
            compact_after: COMPACT_AFTER,
            buf: Vec::new(),
        })
    }

    /// Compacts once the journal holds `effects` effects (default 200,000).
    pub fn with_compaction_after(mut self, effects: u64) -> Self {
        self.compact_after = effects.max(1);
        self
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn read_snapshot(&self) -> Result<Option<SnapshotFile>, StoreError> {
        let path = self.path(SNAPSHOT);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| corrupt(&path, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// Opens the journal; returns the effects logged past `after`. An unreadable line is
    /// corruption (the journal already cut any torn tail).
    fn read_journal(&mut self, after: u64) -> Result<Vec<Effect>, StoreError> {
        let path = self.path(JOURNAL);
        let (journal, lines) = Journal::open(&path)?;
        self.journal = Some(journal);
        let mut effects = Vec::new();
        for line in lines {
            let l: JournalLine = serde_json::from_str(&line).map_err(|e| corrupt(&path, e))?;
            self.seq = self.seq.max(l.seq);
            self.journal_len += 1;
            if l.seq > after {
                effects.push(l.effect.into_owned());
            }
        }
        Ok(effects)
    }

    fn journal(&mut self) -> Result<&mut Journal, StoreError> {
        if self.journal.is_none() {
            self.journal = Some(Journal::open(&self.path(JOURNAL))?.0);
        }
        self.journal
            .as_mut()
            .ok_or_else(|| StoreError::Other("journal not open".into()))
    }
}

impl Store for FileStore {
    fn load(&mut self) -> Result<Option<Recovered>, StoreError> {
        let Some(snap) = self.read_snapshot()? else {
            if self.path(JOURNAL).exists() {
                return Err(corrupt(&self.path(JOURNAL), "journal without a snapshot"));
            }
            return Ok(None);
        };
        self.seq = snap.seq;
        let log = self.read_journal(snap.seq)?;
        Ok(Some(Recovered {
            snapshot: snap.state,
            log,
        }))
    }

    fn append(&mut self, effects: &[Effect]) -> Result<(), StoreError> {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let mut seq = self.seq;
        for effect in effects {
            seq += 1;
            let line = JournalLine {
                seq,
                effect: std::borrow::Cow::Borrowed(effect),
            };
            serde_json::to_writer(&mut buf, &line).map_err(|e| StoreError::Other(e.to_string()))?;
            buf.push(b'\n');
        }
        let res = self.journal().and_then(|j| j.append(&buf));
        self.buf = buf;
        res?;
        self.seq = seq;
        self.journal_len += effects.len() as u64;
        Ok(())
    }

    fn compact(&mut self, snapshot: &IpamSnapshot) -> Result<(), StoreError> {
        let path = self.path(SNAPSHOT);
        let tmp = self.path("snapshot.json.tmp");
        let body = serde_json::to_vec(&SnapshotFile {
            seq: self.seq,
            state: snapshot.clone(),
        })
        .map_err(|e| StoreError::Other(e.to_string()))?;
        let mut f = File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(&body)
            .and_then(|()| f.sync_all())
            .map_err(io(&tmp))?;
        fs::rename(&tmp, &path).map_err(io(&path))?;
        sync_dir(&self.dir)?;
        // The snapshot now covers every journal line; empty the journal. A crash before this
        // point is harmless: lines at or below the snapshot's sequence are skipped on load.
        self.journal = Some(Journal::create(&self.path(JOURNAL))?);
        self.journal_len = 0;
        Ok(())
    }

    fn wants_compaction(&self) -> bool {
        self.journal_len >= self.compact_after
    }

    fn describe(&self) -> String {
        format!("file:{}", self.dir.display())
    }
}
