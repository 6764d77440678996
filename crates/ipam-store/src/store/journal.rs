//! [`Journal`]: the file store's append-only log, one JSON line per effect, in a file filled with
//! zeros ahead of the write position. Writing into blocks that already exist lets `fdatasync`
//! skip the file-size metadata update an append needs, which roughly halves its cost here.
//!
//! The data ends at the first NUL byte. On open, a torn last line (a write cut by a crash, never
//! acknowledged) is zeroed; an unreadable line followed by more data is corruption.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::StoreError;
use crate::error::at::{corrupt, io};

/// Bytes of zeros added ahead of the write position at a time.
const PREALLOCATE: u64 = 8 << 20;

/// An open journal file.
#[derive(Debug)]
pub(crate) struct Journal {
    file: File,
    path: PathBuf,
    write_pos: u64,
    allocated: u64,
}

impl Journal {
    /// Opens `path` (creating it, zero-filled), returning the complete lines it holds.
    pub(crate) fn open(path: &Path) -> Result<(Journal, Vec<String>), StoreError> {
        if !path.exists() {
            return Ok((Self::create(path)?, Vec::new()));
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(io(path))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io(path))?;
        let data_end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
        let data = &bytes[..data_end];
        let complete = data.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        let mut lines = Vec::new();
        for raw in data[..complete]
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
        {
            let line = std::str::from_utf8(raw).map_err(|e| corrupt(path, e))?;
            lines.push(line.to_owned());
        }
        let mut journal = Journal {
            file,
            path: path.to_owned(),
            write_pos: complete as u64,
            allocated: bytes.len() as u64,
        };
        if complete < data_end {
            tracing::warn!(path = %path.display(), "zeroing a torn journal tail (unacknowledged)");
            journal.zero(complete as u64, (data_end - complete) as u64)?;
            journal.file.sync_data().map_err(io(path))?;
        }
        Ok((journal, lines))
    }

    /// Creates an empty, zero-filled journal at `path` (replacing any file there atomically).
    pub(crate) fn create(path: &Path) -> Result<Journal, StoreError> {
        let tmp = path.with_extension("tmp");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(io(&tmp))?;
        let mut journal = Journal {
            file,
            path: tmp.clone(),
            write_pos: 0,
            allocated: 0,
        };
        journal.extend(PREALLOCATE)?;
        std::fs::rename(&tmp, path).map_err(io(path))?;
        journal.path = path.to_owned();
        if let Some(dir) = path.parent() {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io(dir))?;
        }
        Ok(journal)
    }

    /// Appends `buf` (whole lines) and makes it durable.
    pub(crate) fn append(&mut self, buf: &[u8]) -> Result<(), StoreError> {
        let len = buf.len() as u64;
        if self.write_pos + len > self.allocated {
            self.extend(len.max(PREALLOCATE))?;
        }
        self.file
            .write_all_at(buf, self.write_pos)
            .map_err(io(&self.path))?;
        self.file.sync_data().map_err(io(&self.path))?;
        self.write_pos += len;
        Ok(())
    }

    fn extend(&mut self, by: u64) -> Result<(), StoreError> {
        self.zero(self.allocated, by)?;
        self.allocated += by;
        self.file.sync_all().map_err(io(&self.path))
    }

    fn zero(&mut self, at: u64, len: u64) -> Result<(), StoreError> {
        let chunk = vec![0u8; (len.min(1 << 20)) as usize];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(chunk.len() as u64) as usize;
            self.file
                .write_all_at(&chunk[..n], at + done)
                .map_err(io(&self.path))?;
            done += n as u64;
        }
        Ok(())
    }
}
