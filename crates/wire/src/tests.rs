use bytes::{BufMut, Bytes, BytesMut};
use proptest::prelude::*;

use super::*;

fn arb_name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9.-]{1,200}"
}

fn arb_frame() -> impl Strategy<Value = Frame> {
    let sid = 1u32..;
    prop_oneof![
        (
            any::<u16>(),
            arb_name(),
            ".{0,50}",
            prop::collection::vec("[a-z-]{1,20}", 0..5),
            "[ -~]{0,80}"
        )
            .prop_map(
                |(version, agent_name, software_version, capabilities, credential)| {
                    Frame::Hello(Hello {
                        version,
                        agent_name,
                        software_version,
                        capabilities,
                        credential,
                    })
                }
            ),
        (
            any::<u16>(),
            ".{0,50}",
            prop::collection::vec("[a-z]{1,9}", 0..5)
        )
            .prop_map(|(version, software_version, capabilities)| Frame::HelloAck(
                HelloAck {
                    version,
                    software_version,
                    capabilities,
                }
            )),
        (1u16..7, ".{0,100}").prop_map(|(c, message)| Frame::Reject(Reject {
            code: match c {
                1 => RejectCode::VersionMismatch,
                2 => RejectCode::BadName,
                3 => RejectCode::Unauthorized,
                4 => RejectCode::TooManyLinks,
                5 => RejectCode::ShuttingDown,
                _ => RejectCode::Other(c + 100),
            },
            message,
        })),
        (sid.clone(), any::<bool>(), "[a-z0-9.:-]{1,300}").prop_map(|(stream_id, ack, target)| {
            Frame::Open {
                stream_id,
                ack,
                target,
            }
        }),
        sid.clone()
            .prop_map(|stream_id| Frame::Opened { stream_id }),
        (sid.clone(), prop::collection::vec(any::<u8>(), 0..MAX_DATA)).prop_map(
            |(stream_id, p)| Frame::Data {
                stream_id,
                payload: Bytes::from(p),
            }
        ),
        (sid.clone(), 1u32..).prop_map(|(stream_id, increment)| Frame::Window {
            stream_id,
            increment
        }),
        sid.clone().prop_map(|stream_id| Frame::Fin { stream_id }),
        (sid, any::<u16>(), "[a-z é:]{0,40}").prop_map(|(stream_id, c, reason)| {
            Frame::Reset {
                stream_id,
                code: ResetCode::from_u16(c),
                reason,
            }
        }),
        any::<u64>().prop_map(|nonce| Frame::Ping { nonce }),
        any::<u64>().prop_map(|nonce| Frame::Pong { nonce }),
        (any::<u16>(), prop::collection::vec(any::<u8>(), 0..1000)).prop_map(|(kind, b)| {
            Frame::Control {
                kind,
                body: Bytes::from(b),
            }
        }),
    ]
}

proptest! {
    #[test]
    fn round_trip(frames in prop::collection::vec(arb_frame(), 1..8)) {
        let mut buf = BytesMut::new();
        for f in &frames {
            let before = buf.len();
            f.encode(&mut buf);
            prop_assert_eq!(buf.len() - before, f.encoded_len());
        }
        for f in &frames {
            let got = Frame::decode(&mut buf).expect("decodes").expect("complete");
            prop_assert_eq!(&got, f);
        }
        prop_assert!(buf.is_empty());
        for f in &frames {
            prop_assert_eq!(&Frame::decode_message(f.to_bytes()).expect("decodes"), f);
        }
    }

    #[test]
    fn partial_frames_wait(f in arb_frame(), cut in 0usize..100) {
        let bytes = f.to_bytes();
        let cut = cut.min(bytes.len() - 1);
        let mut buf = BytesMut::from(&bytes[..cut]);
        prop_assert_eq!(Frame::decode(&mut buf), Ok(None));
        prop_assert_eq!(buf.len(), cut, "a partial frame consumes nothing");
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..4096)) {
        let mut buf = BytesMut::from(&data[..]);
        while let Ok(Some(_)) = Frame::decode(&mut buf) {}
        let _ = Frame::decode_message(Bytes::from(data));
    }
}

#[test]
fn oversized_header_is_refused_before_payload_arrives() {
    let mut buf = BytesMut::new();
    buf.put_u8(FrameType::Data as u8);
    buf.put_u32(1);
    buf.put_u32(u32::MAX);
    assert!(matches!(
        Frame::decode(&mut buf),
        Err(WireError::Oversized { .. })
    ));
}

#[test]
fn oversized_data_payload_is_refused() {
    let f = Frame::Data {
        stream_id: 3,
        payload: Bytes::from(vec![0u8; MAX_DATA + 1]),
    };
    assert!(matches!(
        Frame::decode_message(f.to_bytes()),
        Err(WireError::FieldTooLong { .. })
    ));
}

#[test]
fn unknown_type_is_refused() {
    let mut buf = BytesMut::from(&[0xEEu8, 0, 0, 0, 0, 0, 0, 0, 0][..]);
    assert_eq!(Frame::decode(&mut buf), Err(WireError::UnknownType(0xEE)));
}

#[test]
fn stream_frames_need_a_stream_id_and_link_frames_must_not_have_one() {
    let bad = Frame::Data {
        stream_id: 0,
        payload: Bytes::new(),
    };
    assert!(matches!(
        Frame::decode_message(bad.to_bytes()),
        Err(WireError::BadStreamId { .. })
    ));
    let mut ping = Frame::Ping { nonce: 1 }.to_bytes().to_vec();
    ping[4] = 7;
    assert!(matches!(
        Frame::decode_message(Bytes::from(ping)),
        Err(WireError::BadStreamId { .. })
    ));
}

#[test]
fn hostile_string_lengths_are_refused() {
    let mut buf = BytesMut::new();
    buf.put_u8(FrameType::Open as u8);
    buf.put_u32(1);
    buf.put_u32(1 + 2 + 5);
    buf.put_u8(0);
    buf.put_u16(60000);
    buf.put_slice(b"abcde");
    assert!(matches!(
        Frame::decode(&mut buf),
        Err(WireError::FieldTooLong { .. })
    ));
}

#[test]
fn too_many_capabilities_are_refused() {
    let mut buf = BytesMut::new();
    buf.put_u8(FrameType::HelloAck as u8);
    buf.put_u32(0);
    buf.put_u32(6);
    buf.put_u16(1);
    buf.put_u16(0);
    buf.put_u16(u16::MAX);
    assert!(matches!(
        Frame::decode(&mut buf),
        Err(WireError::FieldTooLong {
            field: "capabilities",
            ..
        })
    ));
}

#[test]
fn trailing_bytes_in_a_message_are_refused() {
    let mut m = Frame::Fin { stream_id: 1 }.to_bytes().to_vec();
    m.push(0);
    assert!(matches!(
        Frame::decode_message(Bytes::from(m)),
        Err(WireError::TrailingBytes(1))
    ));
    let mut w = Frame::Window {
        stream_id: 1,
        increment: 0,
    }
    .to_bytes()
    .to_vec();
    assert!(
        Frame::decode_message(Bytes::from(w.clone())).is_err(),
        "zero increment"
    );
    w.truncate(w.len() - 1);
    assert!(Frame::decode_message(Bytes::from(w)).is_err());
}

#[test]
fn names_follow_octopus_connection_agents_rules() {
    assert!(valid_name("home"));
    assert!(valid_name("dc-1.eu.example"));
    assert!(valid_name(&"a".repeat(200)));
    assert!(!valid_name(&"a".repeat(201)));
    assert!(!valid_name(""));
    assert!(!valid_name("has space"));
    assert!(!valid_name("under_score"));
    assert!(!valid_name("ümlaut"));
    // Dot segments in the admin API's paths.
    assert!(!valid_name("."));
    assert!(!valid_name(".."));
    assert!(!valid_name("..."));
    assert!(valid_name("a..b"));
    assert!(valid_name(".hidden"));
}

#[test]
fn long_strings_are_cut_at_char_boundaries_not_rejected() {
    let f = Frame::Reject(Reject {
        code: RejectCode::Unauthorized,
        message: "é".repeat(MAX_TEXT_LEN),
    });
    let Frame::Reject(r) = Frame::decode_message(f.to_bytes()).expect("decodes") else {
        panic!("not a reject");
    };
    assert!(r.message.len() <= MAX_TEXT_LEN);
}

#[test]
fn reset_reasons_are_optional_cut_and_bounded() {
    // An old peer's reset: the code alone.
    let old = Bytes::from_static(&[0x15, 0, 0, 0, 1, 0, 0, 0, 2, 0, 3]);
    assert_eq!(
        Frame::decode_message(old),
        Ok(Frame::Reset {
            stream_id: 1,
            code: ResetCode::Unreachable,
            reason: String::new(),
        })
    );
    // A reason past the limit is cut at a char boundary when sent.
    let f = Frame::Reset {
        stream_id: 1,
        code: ResetCode::NameNotFound,
        reason: "é".repeat(MAX_TEXT_LEN),
    };
    let Ok(Frame::Reset { code, reason, .. }) = Frame::decode_message(f.to_bytes()) else {
        panic!("a long reason decodes");
    };
    assert_eq!(code, ResetCode::NameNotFound);
    assert!(reason.len() <= MAX_TEXT_LEN && reason.chars().all(|c| c == 'é'));
    // A hostile peer's longer one, or one without a code, closes the link.
    let mut m = vec![0x15, 0, 0, 0, 1];
    m.extend_from_slice(&u32::try_from(3 + MAX_TEXT_LEN).unwrap_or(0).to_be_bytes());
    m.extend_from_slice(&[0, 3]);
    m.extend(std::iter::repeat_n(b'x', MAX_TEXT_LEN + 1));
    assert!(Frame::decode_message(Bytes::from(m)).is_err());
    let short = Bytes::from_static(&[0x15, 0, 0, 0, 1, 0, 0, 0, 1, 0]);
    assert!(Frame::decode_message(short).is_err());
    // A reason that is not UTF-8 is refused, not read lossily (which could
    // grow it past the limit).
    let mut bad = vec![0x15, 0, 0, 0, 1, 0, 0, 0, 6, 0, 3];
    bad.extend_from_slice(&[0xff; 4]);
    assert!(Frame::decode_message(Bytes::from(bad)).is_err());
    // The finer codes read as `Unreachable` to a peer that does not know them.
    for c in [9, 10, 11, 12] {
        assert_eq!(ResetCode::from_u16(c).to_u16(), c);
        assert_eq!(ResetCode::from_u16(c).legacy(), ResetCode::Unreachable);
    }
    assert_eq!(ResetCode::Refused.legacy(), ResetCode::Refused);
}

#[test]
fn unknown_open_flags_are_refused() {
    let mut m = Frame::Open {
        stream_id: 2,
        ack: true,
        target: "a:1".into(),
    }
    .to_bytes()
    .to_vec();
    m[9] = 0x81;
    assert!(matches!(
        Frame::decode_message(Bytes::from(m)),
        Err(WireError::Malformed {
            why: "unknown open flags",
            ..
        })
    ));
}

#[test]
fn hello_debug_never_shows_the_credential() {
    let h = Hello {
        version: 1,
        agent_name: "a".into(),
        software_version: "0".into(),
        capabilities: vec![],
        credential: "very-secret-pre-shared-key".into(),
    };
    let shown = format!("{h:?}");
    assert!(!shown.contains("very-secret"), "{shown}");
    assert!(shown.contains("(redacted)"), "{shown}");
}

#[test]
fn oversized_credential_is_refused() {
    use bytes::BufMut;
    let mut payload = bytes::BytesMut::new();
    payload.put_u16(1);
    payload.put_u16(1);
    payload.put_slice(b"a");
    payload.put_u16(0);
    payload.put_u16(0);
    payload.put_u16((MAX_CREDENTIAL_LEN + 1) as u16);
    payload.put_slice(&vec![b'k'; MAX_CREDENTIAL_LEN + 1]);
    let mut buf = bytes::BytesMut::new();
    buf.put_u8(FrameType::Hello as u8);
    buf.put_u32(0);
    buf.put_u32(payload.len() as u32);
    buf.put_slice(&payload);
    let e = Frame::decode(&mut buf).expect_err("too long");
    assert!(e.to_string().contains("credential"), "{e}");
}
