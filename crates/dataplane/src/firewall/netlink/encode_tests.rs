//! Byte-level tests of the element batch encoding and the acknowledgement parser (the bytes are
//! the ones libnftnl sends for `nft add element inet isthmus dnat_b { 10.201.0.1 : 10.112.0.1 }`
//! and the matching `delete element`, little-endian host).

use super::*;

fn ip(a: u8, b: u8, c: u8, d: u8) -> Ipv4Addr {
    Ipv4Addr::new(a, b, c, d)
}

fn change(delete: &[Ipv4Addr], upsert: &[(Ipv4Addr, Ipv4Addr)]) -> ElementChange {
    ElementChange {
        map: "dnat_b".into(),
        upsert: upsert.to_vec(),
        delete: delete.to_vec(),
    }
}

const BEGIN: [u8; 20] = [
    20, 0, 0, 0, 0x10, 0, 1, 0, 7, 0, 0, 0, 0, 0, 0, 0, // nlmsghdr, seq 7
    0, 0, 0, 10, // AF_UNSPEC, v0, res_id NFNL_SUBSYS_NFTABLES (big-endian)
];

const NAMES: [u8; 24] = [
    12, 0, 1, 0, b'i', b's', b't', b'h', b'm', b'u', b's', 0, // table "isthmus\0"
    11, 0, 2, 0, b'd', b'n', b'a', b't', b'_', b'b', 0, 0, // set "dnat_b\0" + 1 pad
];

#[cfg(target_endian = "little")]
#[test]
fn an_add_is_framed_by_begin_and_end_and_carries_key_and_data() {
    let batch = encode_batch(
        "isthmus",
        &[change(&[], &[(ip(10, 201, 0, 1), ip(10, 112, 0, 1))])],
        7,
    );
    let mut want = BEGIN.to_vec();
    want.extend_from_slice(&[76, 0, 0, 0, 0x0c, 0x0a, 0x05, 0x04, 8, 0, 0, 0, 0, 0, 0, 0]);
    want.extend_from_slice(&[1, 0, 0, 0]); // NFPROTO_INET, v0, res_id 0
    want.extend_from_slice(&NAMES);
    want.extend_from_slice(&[32, 0, 3, 0x80]); // ELEMENTS (nested)
    want.extend_from_slice(&[28, 0, 1, 0x80]); // LIST_ELEM (nested)
    want.extend_from_slice(&[12, 0, 1, 0x80, 8, 0, 1, 0, 10, 201, 0, 1]); // KEY → VALUE
    want.extend_from_slice(&[12, 0, 2, 0x80, 8, 0, 1, 0, 10, 112, 0, 1]); // DATA → VALUE
    want.extend_from_slice(&[
        20, 0, 0, 0, 0x11, 0, 1, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 10,
    ]);
    assert_eq!(batch.bytes, want);
    assert_eq!(batch.frame_seqs, (7, 9));
    assert_eq!(
        batch.messages,
        [BatchMessage {
            seq: 8,
            op: ElementOp::Add,
            map: "dnat_b".into()
        }]
    );
}

#[cfg(target_endian = "little")]
#[test]
fn a_delete_carries_keys_only_and_no_create_flag() {
    let batch = encode_batch("isthmus", &[change(&[ip(10, 201, 0, 1)], &[])], 7);
    let msg = &batch.bytes[20..batch.bytes.len() - 20];
    let mut want = vec![
        64, 0, 0, 0, 0x0e, 0x0a, 0x05, 0x00, 8, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
    ];
    want.extend_from_slice(&NAMES);
    want.extend_from_slice(&[20, 0, 3, 0x80, 16, 0, 1, 0x80]);
    want.extend_from_slice(&[12, 0, 1, 0x80, 8, 0, 1, 0, 10, 201, 0, 1]);
    assert_eq!(msg, want.as_slice());
    assert_eq!(batch.messages[0].op, ElementOp::Delete);
}

#[test]
fn deletes_of_every_map_come_before_any_add() {
    let changed = change(
        &[ip(10, 201, 0, 1)],
        &[(ip(10, 201, 0, 1), ip(10, 112, 0, 9))],
    );
    let other = ElementChange {
        map: "dnat_c".into(),
        ..change(&[ip(10, 201, 0, 2)], &[])
    };
    let batch = encode_batch("isthmus", &[changed, other], u32::MAX);
    let ops: Vec<_> = batch
        .messages
        .iter()
        .map(|m| (m.seq, m.op, m.map.as_str()))
        .collect();
    assert_eq!(
        ops,
        [
            (0, ElementOp::Delete, "dnat_b"),
            (1, ElementOp::Delete, "dnat_c"),
            (2, ElementOp::Add, "dnat_b")
        ]
    );
    assert_eq!(batch.frame_seqs, (u32::MAX, 3));
    // every message's length field walks exactly to the end of the bytes
    let (mut at, mut count) = (0, 0);
    while at < batch.bytes.len() {
        at += u32::from_ne_bytes(batch.bytes[at..at + 4].try_into().unwrap()) as usize;
        count += 1;
    }
    assert_eq!((at, count), (batch.bytes.len(), 5));
}

#[cfg(target_endian = "little")]
#[test]
fn acks_are_read_with_their_sequence_and_errno() {
    // NLMSG_ERROR, error 0 (ack) for seq 8, then error -ENOENT for seq 9 with the echoed header
    let mut buf = vec![36, 0, 0, 0, 2, 0, 0, 1, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    buf.extend_from_slice(&[0; 16]);
    buf.extend_from_slice(&[36, 0, 0, 0, 2, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0]);
    buf.extend_from_slice(&(-2i32).to_ne_bytes());
    buf.extend_from_slice(&[0; 16]);
    buf.extend_from_slice(&[40, 0, 0]); // truncated tail: ignored
    assert_eq!(
        parse_acks(&buf),
        [Ack { seq: 8, errno: 0 }, Ack { seq: 9, errno: 2 }]
    );
    assert!(parse_acks(&[0; 8]).is_empty());
}

/// A `NFT_MSG_NEWGEN` answer as the kernel sends it: header, nfgenmsg, then `NFTA_GEN_ID`
/// (big-endian) and `NFTA_GEN_PROC_PID`.
fn newgen(seq: u32, id: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let start = header(&mut out, (10 << 8) | 15, 0, seq);
    nfgenmsg(&mut out, 0, 0);
    attr(&mut out, 1, &id.to_be_bytes());
    attr(&mut out, 2, &77u32.to_be_bytes());
    finish(&mut out, start);
    out
}

#[test]
fn a_generation_request_is_one_getgen_message() {
    let bytes = encode_get_generation(9);
    assert_eq!(bytes.len(), 20);
    assert_eq!(u32::from_ne_bytes(bytes[0..4].try_into().unwrap()), 20);
    assert_eq!(
        u16::from_ne_bytes(bytes[4..6].try_into().unwrap()),
        (10 << 8) | 16
    );
    assert_eq!(u32::from_ne_bytes(bytes[8..12].try_into().unwrap()), 9);
}

#[test]
fn the_generation_answer_is_read_only_for_its_own_request() {
    assert_eq!(
        parse_generation(&newgen(9, 0x0102_0304), 9),
        Some(Ok(0x0102_0304))
    );
    assert_eq!(
        parse_generation(&newgen(8, 5), 9),
        None,
        "another request's answer"
    );
    // two answers in one datagram: the second is ours
    let mut two = newgen(8, 5);
    two.extend(newgen(9, 6));
    assert_eq!(parse_generation(&two, 9), Some(Ok(6)));
    // a refusal
    let mut error = Vec::new();
    let start = header(&mut error, 2, 0, 9);
    error.extend_from_slice(&(-1i32).to_ne_bytes());
    finish(&mut error, start);
    assert_eq!(parse_generation(&error, 9), Some(Err(1)));
    // truncated: no answer, no panic
    let whole = newgen(9, 6);
    for cut in 0..whole.len() {
        assert_eq!(parse_generation(&whole[..cut], 9), None, "cut at {cut}");
    }
}
