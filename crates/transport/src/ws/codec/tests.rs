use std::io::Cursor;

use bytes::Bytes;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::{Role as TRole, WebSocket, WebSocketConfig};

use burrow_wire::MAX_DATA;

use super::*;

fn data(stream_id: u32, len: usize) -> Frame {
    Frame::Data {
        stream_id,
        payload: Bytes::from(
            (0..len)
                .map(|i| (i * 7 + stream_id as usize) as u8)
                .collect::<Vec<_>>(),
        ),
    }
}

fn encode(codec: &mut WsCodec, frames: &[Frame]) -> BytesMut {
    let mut buf = BytesMut::new();
    for f in frames {
        codec.encode(f.clone(), &mut buf).expect("encodes");
    }
    buf
}

fn decode_all(codec: &mut WsCodec, buf: &mut BytesMut) -> io::Result<Vec<Frame>> {
    let mut out = Vec::new();
    while let Some(f) = codec.decode(buf)? {
        out.push(f);
    }
    Ok(out)
}

/// Frames on both sides of the 7-bit and the 16-bit lengths: data up to
/// its largest, and a control frame whose message needs a 64-bit length.
fn frames(stream_id: u32) -> Vec<Frame> {
    let mut f: Vec<Frame> = [0, 1, 116, 117, 125, 126, 1_000, MAX_DATA]
        .into_iter()
        .map(|n| data(stream_id, n))
        .collect();
    f.push(Frame::Control {
        kind: 7,
        body: Bytes::from(vec![0x5a; MAX_PAYLOAD - 2]),
    });
    f
}

#[test]
fn frames_round_trip_both_ways_and_only_the_client_masks() {
    for (from, to) in [(Role::Client, Role::Server), (Role::Server, Role::Client)] {
        let frames = frames(3);
        let mut buf = encode(&mut WsCodec::new(from), &frames);
        assert_eq!(
            buf[1] & 0x80 != 0,
            from == Role::Client,
            "mask bit from {from:?}"
        );
        // Byte by byte for the first frames: nothing is decoded early.
        let mut dec = WsCodec::new(to);
        let mut fed = BytesMut::new();
        let mut got = Vec::new();
        for b in buf.split_to(2_000).iter() {
            fed.put_u8(*b);
            got.extend(decode_all(&mut dec, &mut fed).expect("decodes"));
        }
        fed.unsplit(buf);
        got.extend(decode_all(&mut dec, &mut fed).expect("decodes"));
        assert_eq!(got, frames, "{from:?} to {to:?}");
        assert!(fed.is_empty());
    }
}

#[test]
fn masking_matches_the_byte_by_byte_definition() {
    let key = [0x12, 0x34, 0x56, 0x78];
    for len in 0..40 {
        let plain: Vec<u8> = (0..len as u8).collect();
        let mut fast = plain.clone();
        apply_mask(&mut fast, key);
        let slow: Vec<u8> = plain
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ key[i % 4])
            .collect();
        assert_eq!(fast, slow, "length {len}");
    }
}

/// A tungstenite end over an in-memory stream.
fn tungstenite_end(role: TRole, input: Vec<u8>) -> WebSocket<Cursor<Vec<u8>>> {
    let cfg = WebSocketConfig::default().max_frame_size(Some(MAX_MESSAGE + 16));
    WebSocket::from_raw_socket(Cursor::new(input), role, Some(cfg))
}

#[test]
fn tungstenite_reads_what_this_codec_writes_and_the_other_way() {
    let frames = frames(9);
    for (ours, theirs) in [(Role::Client, TRole::Server), (Role::Server, TRole::Client)] {
        // Ours to tungstenite.
        let buf = encode(&mut WsCodec::new(ours), &frames);
        let mut t = tungstenite_end(theirs, buf.to_vec());
        for f in &frames {
            match t.read().expect("tungstenite reads") {
                Message::Binary(b) => assert_eq!(&Frame::decode_message(b).expect("frame"), f),
                other => panic!("unexpected {other:?}"),
            }
        }
        // Tungstenite to ours (it masks as a client, not as a server).
        let mut t = tungstenite_end(theirs, Vec::new());
        for f in &frames {
            t.send(Message::Binary(f.to_bytes()))
                .expect("tungstenite writes");
        }
        let mut wire = BytesMut::from(&t.get_ref().get_ref()[..]);
        let got = decode_all(&mut WsCodec::new(ours), &mut wire).expect("decodes");
        assert_eq!(got, frames);
    }
}

/// One frame by hand: `fin`, `opcode`, masked with `key` when given.
fn raw(fin: bool, opcode: u8, key: Option<[u8; 4]>, payload: &[u8]) -> BytesMut {
    let mut b = BytesMut::new();
    b.put_u8(if fin { 0x80 } else { 0 } | opcode);
    let m = if key.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => b.put_u8(m | n as u8),
        n if n <= 0xffff => {
            b.put_u8(m | 126);
            b.put_u16(n as u16);
        }
        n => {
            b.put_u8(m | 127);
            b.put_u64(n as u64);
        }
    }
    let mut p = payload.to_vec();
    if let Some(k) = key {
        b.put_slice(&k);
        apply_mask(&mut p, k);
    }
    b.put_slice(&p);
    b
}

const KEY: Option<[u8; 4]> = Some([1, 2, 3, 4]);

#[test]
fn fragments_are_joined_and_pings_answered_by_the_next_write() {
    let whole = data(5, 3_000).to_bytes();
    let mut wire = raw(false, OP_BINARY, KEY, &whole[..1_000]);
    wire.unsplit(raw(true, OP_PING, KEY, b"are you there"));
    wire.unsplit(raw(false, OP_CONTINUATION, KEY, &whole[1_000..2_000]));
    wire.unsplit(raw(true, OP_PONG, KEY, b"ignored"));
    wire.unsplit(raw(true, OP_CONTINUATION, KEY, &whole[2_000..]));
    let mut server = WsCodec::new(Role::Server);
    let got = decode_all(&mut server, &mut wire).expect("decodes");
    assert_eq!(got, vec![data(5, 3_000)]);

    // The pong goes out first with the next frame, once.
    let out = encode(&mut server, &[data(1, 4), data(1, 4)]);
    let mut client = tungstenite_end(TRole::Client, out.to_vec());
    let first = client.read().expect("reads");
    assert_eq!(first, Message::Pong(Bytes::from_static(b"are you there")));
    assert!(matches!(client.read().expect("reads"), Message::Binary(_)));
    assert!(matches!(client.read().expect("reads"), Message::Binary(_)));
}

#[test]
fn a_close_ends_the_stream_and_what_follows_is_ignored() {
    let mut wire = raw(true, OP_BINARY, KEY, &data(1, 10).to_bytes());
    wire.unsplit(raw(true, OP_CLOSE, KEY, &[0x03, 0xe8]));
    wire.unsplit(raw(true, OP_TEXT, KEY, b"after the close"));
    let mut server = WsCodec::new(Role::Server);
    assert_eq!(
        decode_all(&mut server, &mut wire).expect("decodes"),
        vec![data(1, 10)]
    );
    assert!(wire.is_empty());
    assert!(
        server
            .decode(&mut raw(true, OP_BINARY, KEY, b"x"))
            .expect("ignored")
            .is_none()
    );
}

fn refused(role: Role, mut wire: BytesMut) -> String {
    match decode_all(&mut WsCodec::new(role), &mut wire) {
        Ok(f) => panic!("accepted {f:?}"),
        Err(e) => {
            assert_eq!(e.kind(), io::ErrorKind::InvalidData);
            e.to_string()
        }
    }
}

#[test]
fn protocol_breaches_are_refused() {
    let f = data(1, 10).to_bytes();
    assert!(refused(Role::Server, raw(true, OP_BINARY, None, &f)).contains("unmasked"));
    assert!(refused(Role::Client, raw(true, OP_BINARY, KEY, &f)).contains("masked"));
    assert!(refused(Role::Server, raw(true, OP_TEXT, KEY, b"hi")).contains("text message"));
    let mut rsv = raw(true, OP_BINARY, KEY, &f);
    rsv[0] |= 0x40;
    assert!(refused(Role::Server, rsv).contains("reserved bits"));
    assert!(refused(Role::Server, raw(true, OP_PING, KEY, &[0; 126])).contains("control frame"));
    assert!(refused(Role::Server, raw(false, OP_PING, KEY, b"x")).contains("control frame"));
    assert!(refused(Role::Server, raw(true, OP_CONTINUATION, KEY, &f)).contains("continuation"));
    let mut twice = raw(false, OP_BINARY, KEY, &f[..4]);
    twice.unsplit(raw(true, OP_BINARY, KEY, &f));
    assert!(refused(Role::Server, twice).contains("inside a fragmented"));
    assert!(refused(Role::Server, raw(true, 0x3, KEY, b"")).contains("opcode"));
    // A Burrow frame that is not whole inside its message.
    assert!(!refused(Role::Server, raw(true, OP_BINARY, KEY, &f[..12])).is_empty());
}

#[test]
fn an_oversized_message_is_refused_from_its_header_alone() {
    // Only the header of a message one byte over the limit: refused
    // before any of its payload is waited for or buffered.
    let mut head = BytesMut::new();
    head.put_u8(0x80 | OP_BINARY);
    head.put_u8(0x80 | 127);
    head.put_u64(MAX_MESSAGE as u64 + 1);
    head.put_slice(&[1, 2, 3, 4]);
    assert!(refused(Role::Server, head).contains("exceeds the maximum"));
    // Fragments that add up to more than the limit.
    let half = vec![0u8; MAX_MESSAGE / 2 + 1];
    let mut wire = raw(false, OP_BINARY, KEY, &half);
    wire.unsplit(raw(true, OP_CONTINUATION, KEY, &half));
    assert!(refused(Role::Server, wire).contains("exceeds the maximum"));
    // A 64-bit length with the top bit set is no exception.
    let mut huge = BytesMut::new();
    huge.put_u8(0x80 | OP_BINARY);
    huge.put_u8(0x80 | 127);
    huge.put_u64(u64::MAX);
    huge.put_slice(&[1, 2, 3, 4]);
    assert!(refused(Role::Server, huge).contains("exceeds the maximum"));
}

#[test]
fn a_stream_ending_inside_a_frame_is_a_lost_connection() {
    let mut wire = raw(true, OP_BINARY, KEY, &data(1, 10).to_bytes());
    wire.unsplit(raw(true, OP_BINARY, KEY, &data(2, 10).to_bytes()));
    let whole = wire.len();
    let mut cut = wire.split_to(whole - 3);
    let mut server = WsCodec::new(Role::Server);
    assert_eq!(
        server.decode_eof(&mut cut).expect("first frame"),
        Some(data(1, 10))
    );
    let e = server.decode_eof(&mut cut).expect_err("cut off");
    assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
    // Ending between frames is a clean end.
    assert_eq!(
        server.decode_eof(&mut BytesMut::new()).expect("clean"),
        None
    );
}
