//! The `NETLINK_NETFILTER` socket that carries element batches: one `send` per batch, then one
//! acknowledgement read per element message (the kernel answers each, success or not, once the
//! whole batch was applied or rolled back).
//!
//! The socket belongs to the namespace of the thread that opened it and can then be used from
//! any thread, so a driver opens it once inside its namespace and keeps it.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use super::NlNftError;
use super::encode::{self, Batch, BatchMessage};
use crate::firewall::ElementChange;

const AF_NETLINK: i32 = 16;
const NETLINK_NETFILTER: i32 = 12;
/// How long the kernel may take to answer a batch before it counts as lost.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// A netfilter netlink socket sending DNAT element batches.
#[derive(Debug)]
pub struct ElementSocket {
    socket: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl ElementSocket {
    /// Opens the socket in the calling thread's network namespace. Unbound: the first send
    /// binds it to a port id the kernel picks.
    pub fn open() -> Result<Self, NlNftError> {
        let io = |source| NlNftError::Io {
            step: "open",
            source,
        };
        let socket = Socket::new(
            Domain::from(AF_NETLINK),
            Type::RAW,
            Some(Protocol::from(NETLINK_NETFILTER)),
        )
        .map_err(io)?;
        socket.set_read_timeout(Some(ANSWER_TIMEOUT)).map_err(io)?;
        let seq = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.subsec_nanos());
        Ok(ElementSocket {
            socket,
            seq,
            buf: vec![0; 64 * 1024],
        })
    }

    /// Applies `changes` to maps of the `inet` table `table` in one atomic batch: `Ok` when the
    /// kernel acknowledged every message, else the first refusal (map and operation named).
    pub fn apply(&mut self, table: &str, changes: &[ElementChange]) -> Result<(), NlNftError> {
        let batch = encode::encode_batch(table, changes, self.seq);
        self.seq = batch.frame_seqs.1.wrapping_add(1);
        if batch.bytes.len() > encode::MAX_BATCH_BYTES {
            return Err(NlNftError::TooLarge {
                bytes: batch.bytes.len(),
            });
        }
        let sent = self
            .socket
            .send(&batch.bytes)
            .map_err(|source| NlNftError::Io {
                step: "send",
                source,
            })?;
        if sent != batch.bytes.len() {
            let source = io::Error::other(format!("sent {sent} of {} bytes", batch.bytes.len()));
            return Err(NlNftError::Io {
                step: "send",
                source,
            });
        }
        self.await_acks(table, &batch)
    }

    /// The namespace's nf_tables ruleset generation: it grows by one with every committed
    /// batch, ours or anyone's, on any table of the namespace.
    pub fn generation(&mut self) -> Result<u32, NlNftError> {
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        let request = encode::encode_get_generation(seq);
        let io = |step| move |source| NlNftError::Io { step, source };
        self.socket
            .send(&request)
            .map_err(io("send generation request"))?;
        loop {
            let len = match (&self.socket).read(&mut self.buf) {
                Ok(len) => len,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => return Err(io("read generation")(source)),
            };
            match encode::parse_generation(&self.buf[..len], seq) {
                Some(Ok(generation)) => return Ok(generation),
                Some(Err(errno)) => {
                    let source = io::Error::from_raw_os_error(errno);
                    return Err(io("generation refused")(source));
                }
                None => continue,
            }
        }
    }

    /// Reads answers until every element message of `batch` was answered (answers to earlier
    /// batches, left over after a timeout, are skipped).
    fn await_acks(&mut self, table: &str, batch: &Batch) -> Result<(), NlNftError> {
        let mut waiting: BTreeMap<u32, &BatchMessage> =
            batch.messages.iter().map(|m| (m.seq, m)).collect();
        let mut refused = None;
        while !waiting.is_empty() {
            let len = match (&self.socket).read(&mut self.buf) {
                Ok(len) => len,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    let step = "read answer";
                    return Err(NlNftError::Io { step, source });
                }
            };
            for ack in encode::parse_acks(&self.buf[..len]) {
                if ack.errno != 0
                    && (ack.seq == batch.frame_seqs.0 || ack.seq == batch.frame_seqs.1)
                {
                    return Err(NlNftError::Batch {
                        table: table.to_owned(),
                        source: io::Error::from_raw_os_error(ack.errno),
                    });
                }
                let Some(message) = waiting.remove(&ack.seq) else {
                    continue;
                };
                if ack.errno != 0 && refused.is_none() {
                    refused = Some(NlNftError::Refused {
                        op: message.op,
                        table: table.to_owned(),
                        map: message.map.clone(),
                        source: io::Error::from_raw_os_error(ack.errno),
                    });
                }
            }
        }
        refused.map_or(Ok(()), Err)
    }
}
