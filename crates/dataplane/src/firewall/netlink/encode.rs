//! Pure nfnetlink encoding of a DNAT element batch, and decoding of the kernel's answers.
//!
//! Layout (`linux/netfilter/nf_tables.h`, `nfnetlink.h`): every message is an `nlmsghdr`, an
//! `nfgenmsg` and attributes padded to 4 bytes. Element messages carry the table and map names
//! (NUL-terminated) and a nested list of elements, each a key and, for an add, its data, both
//! `NFTA_DATA_VALUE` with the 4 address bytes in network order — what libnftnl sends for
//! `nft add element` / `nft delete element`. Also the ruleset generation request
//! (`NFT_MSG_GETGEN`) and its answer, which the driver's repair check reads.

use std::net::Ipv4Addr;

use super::ElementOp;
use crate::firewall::ElementChange;

const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_CREATE: u16 = 0x400;
const NLA_F_NESTED: u16 = 0x8000;

const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;
const NFT_MSG_NEWGEN: u16 = 15;
const NFT_MSG_GETGEN: u16 = 16;
const NFTA_GEN_ID: u16 = 1;
const NFPROTO_INET: u8 = 1;
const AF_UNSPEC: u8 = 0;

const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;

/// One acknowledged message of a batch: which sequence number does what to which map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchMessage {
    /// Its sequence number.
    pub seq: u32,
    /// What it does.
    pub op: ElementOp,
    /// The map it names.
    pub map: String,
}

/// An encoded batch and what each of its acknowledged messages is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// The bytes to send in one `send`.
    pub bytes: Vec<u8>,
    /// Sequence numbers of the begin and end messages (not acknowledged unless refused).
    pub frame_seqs: (u32, u32),
    /// The element messages, each acknowledged.
    pub messages: Vec<BatchMessage>,
}

/// The kernel's answer to one message: `errno` 0 is success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    /// Sequence number of the message answered.
    pub seq: u32,
    /// 0, or the positive errno.
    pub errno: i32,
}

/// Encodes `changes` to maps of `table` (family `inet`) as one batch: every delete first, then
/// every add, so a key whose value changed is deleted and re-added atomically. Sequence numbers
/// start at `first_seq` and are consecutive.
pub fn encode_batch(table: &str, changes: &[ElementChange], first_seq: u32) -> Batch {
    let mut seq = first_seq;
    let mut next = || {
        let s = seq;
        seq = seq.wrapping_add(1);
        s
    };
    let mut bytes = Vec::new();
    let begin = next();
    frame(&mut bytes, NFNL_MSG_BATCH_BEGIN, begin);
    let mut messages = Vec::new();
    for change in changes.iter().filter(|c| !c.delete.is_empty()) {
        let seq = next();
        let elements: Vec<_> = change.delete.iter().map(|k| (*k, None)).collect();
        element_message(
            &mut bytes,
            ElementOp::Delete,
            seq,
            table,
            &change.map,
            &elements,
        );
        messages.push(BatchMessage {
            seq,
            op: ElementOp::Delete,
            map: change.map.clone(),
        });
    }
    for change in changes.iter().filter(|c| !c.upsert.is_empty()) {
        let seq = next();
        let elements: Vec<_> = change.upsert.iter().map(|(k, v)| (*k, Some(*v))).collect();
        element_message(
            &mut bytes,
            ElementOp::Add,
            seq,
            table,
            &change.map,
            &elements,
        );
        messages.push(BatchMessage {
            seq,
            op: ElementOp::Add,
            map: change.map.clone(),
        });
    }
    let end = next();
    frame(&mut bytes, NFNL_MSG_BATCH_END, end);
    Batch {
        bytes,
        frame_seqs: (begin, end),
        messages,
    }
}

/// A request for the namespace's nf_tables ruleset generation (`NFT_MSG_GETGEN`), answered by
/// one `NFT_MSG_NEWGEN` message with sequence number `seq`.
pub fn encode_get_generation(seq: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let start = header(
        &mut out,
        (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETGEN,
        NLM_F_REQUEST,
        seq,
    );
    nfgenmsg(&mut out, AF_UNSPEC, 0);
    finish(&mut out, start);
    out
}

/// The answer to the generation request `seq` in one datagram: `Some(Ok(id))`, `Some(Err(errno))`
/// when the kernel refused it, `None` when the datagram does not answer it.
pub fn parse_generation(mut buf: &[u8], seq: u32) -> Option<Result<u32, i32>> {
    while buf.len() >= NLMSG_HDRLEN {
        let len = u32::from_ne_bytes(buf[0..4].try_into().expect("4 bytes")) as usize;
        let kind = u16::from_ne_bytes(buf[4..6].try_into().expect("2 bytes"));
        let this = u32::from_ne_bytes(buf[8..12].try_into().expect("4 bytes"));
        if len < NLMSG_HDRLEN || len > buf.len() {
            return None;
        }
        let body = &buf[NLMSG_HDRLEN..len];
        if this == seq && kind == NLMSG_ERROR && body.len() >= 4 {
            let code = i32::from_ne_bytes(body[0..4].try_into().expect("4 bytes"));
            return Some(Err(-code));
        }
        if this == seq && kind == (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN {
            // after the 4-byte nfgenmsg: attributes, NFTA_GEN_ID a big-endian u32
            return attributes(body.get(4..)?)
                .find(|(kind, _)| *kind == NFTA_GEN_ID)
                .and_then(|(_, v)| Some(Ok(u32::from_be_bytes(v.try_into().ok()?))));
        }
        buf = buf.get(len.next_multiple_of(4)..).unwrap_or_default();
    }
    None
}

/// The attributes of a message body: (type without flags, payload).
fn attributes(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if buf.len() < 4 {
            return None;
        }
        let len = usize::from(u16::from_ne_bytes(buf[0..2].try_into().expect("2 bytes")));
        let kind = u16::from_ne_bytes(buf[2..4].try_into().expect("2 bytes")) & !NLA_F_NESTED;
        if len < 4 || len > buf.len() {
            return None;
        }
        let payload = &buf[4..len];
        buf = buf.get(len.next_multiple_of(4)..).unwrap_or_default();
        Some((kind, payload))
    })
}

/// A batch begin or end message: `res_id` names the nf_tables subsystem.
fn frame(out: &mut Vec<u8>, kind: u16, seq: u32) {
    let start = header(out, kind, NLM_F_REQUEST, seq);
    nfgenmsg(out, AF_UNSPEC, NFNL_SUBSYS_NFTABLES);
    finish(out, start);
}

fn element_message(
    out: &mut Vec<u8>,
    op: ElementOp,
    seq: u32,
    table: &str,
    map: &str,
    elements: &[(Ipv4Addr, Option<Ipv4Addr>)],
) {
    let (msg, flags) = match op {
        ElementOp::Add => (NFT_MSG_NEWSETELEM, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_ACK),
        ElementOp::Delete => (NFT_MSG_DELSETELEM, NLM_F_REQUEST | NLM_F_ACK),
    };
    let start = header(out, (NFNL_SUBSYS_NFTABLES << 8) | msg, flags, seq);
    nfgenmsg(out, NFPROTO_INET, 0);
    attr_strz(out, NFTA_SET_ELEM_LIST_TABLE, table);
    attr_strz(out, NFTA_SET_ELEM_LIST_SET, map);
    let list = nest_start(out, NFTA_SET_ELEM_LIST_ELEMENTS);
    for (key, data) in elements {
        let element = nest_start(out, NFTA_LIST_ELEM);
        value(out, NFTA_SET_ELEM_KEY, *key);
        if let Some(data) = data {
            value(out, NFTA_SET_ELEM_DATA, *data);
        }
        nest_end(out, element);
    }
    nest_end(out, list);
    finish(out, start);
}

/// `kind` nesting one `NFTA_DATA_VALUE` of the address's 4 bytes.
fn value(out: &mut Vec<u8>, kind: u16, addr: Ipv4Addr) {
    let nest = nest_start(out, kind);
    attr(out, NFTA_DATA_VALUE, &addr.octets());
    nest_end(out, nest);
}

fn header(out: &mut Vec<u8>, kind: u16, flags: u16, seq: u32) -> usize {
    let start = out.len();
    out.extend_from_slice(&0u32.to_ne_bytes()); // length, patched by `finish`
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
    start
}

fn nfgenmsg(out: &mut Vec<u8>, family: u8, res_id: u16) {
    out.push(family);
    out.push(0); // NFNETLINK_V0
    out.extend_from_slice(&res_id.to_be_bytes());
}

fn finish(out: &mut [u8], start: usize) {
    let len = u32::try_from(out.len() - start).expect("netlink message under 4 GiB");
    out[start..start + 4].copy_from_slice(&len.to_ne_bytes());
}

fn attr(out: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    let len = u16::try_from(4 + payload.len()).expect("attribute under 64 KiB");
    out.extend_from_slice(&len.to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(payload);
    pad(out);
}

fn attr_strz(out: &mut Vec<u8>, kind: u16, text: &str) {
    let mut payload = Vec::with_capacity(text.len() + 1);
    payload.extend_from_slice(text.as_bytes());
    payload.push(0);
    attr(out, kind, &payload);
}

fn nest_start(out: &mut Vec<u8>, kind: u16) -> usize {
    let start = out.len();
    out.extend_from_slice(&0u16.to_ne_bytes());
    out.extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
    start
}

/// Patches the nest's length. A nest longer than 64 KiB cannot be sent: the socket layer
/// checks the batch size first ([`super::socket`]).
fn nest_end(out: &mut [u8], start: usize) {
    let len = u16::try_from(out.len() - start).unwrap_or(u16::MAX);
    out[start..start + 2].copy_from_slice(&len.to_ne_bytes());
}

fn pad(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

/// The acknowledgements (`NLMSG_ERROR` messages) in one datagram from the kernel; anything else
/// and a truncated tail are skipped.
pub fn parse_acks(mut buf: &[u8]) -> Vec<Ack> {
    let mut acks = Vec::new();
    while buf.len() >= NLMSG_HDRLEN {
        let len = u32::from_ne_bytes(buf[0..4].try_into().expect("4 bytes")) as usize;
        let kind = u16::from_ne_bytes(buf[4..6].try_into().expect("2 bytes"));
        let seq = u32::from_ne_bytes(buf[8..12].try_into().expect("4 bytes"));
        if len < NLMSG_HDRLEN {
            break;
        }
        if kind == NLMSG_ERROR && buf.len() >= NLMSG_HDRLEN + 4 {
            let code = i32::from_ne_bytes(buf[16..20].try_into().expect("4 bytes"));
            acks.push(Ack { seq, errno: -code });
        }
        let step = len.next_multiple_of(4);
        if step > buf.len() {
            break;
        }
        buf = &buf[step..];
    }
    acks
}

/// Sizes above this are not sent in one datagram (the default socket send buffer is ~208 KiB
/// and a nest's length is 16 bits).
pub const MAX_BATCH_BYTES: usize = 60 * 1024;

#[cfg(test)]
#[path = "encode_tests.rs"]
mod tests;
