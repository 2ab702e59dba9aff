//! RFC 4733 telephone events of `bibridge_media::dtmf`: `parse_event`/`encode_event`, the
//! digit mapping, `DtmfDetector` over a sequence of packets, and the SIP INFO
//! `application/dtmf-relay` body parser over the whole input as text.
//!
//! Input: records of 8 bytes, `rtp_timestamp:u32be payload[4]`; a shorter last record is a
//! truncated payload. Invariants besides "no panic": encode(parse(x)) == x with the R bit
//! cleared; a digit reported is a DTMF character; the same (timestamp, payload) packet sent
//! twice in a row never yields a second digit.
#![no_main]

use bibridge_media::dtmf::{
    char_event, encode_event, event_char, parse_dtmf_relay, parse_event, DtmfDetector,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut det = DtmfDetector::new();
    let mut last: Option<(u32, &[u8])> = None;
    for rec in data.chunks(8) {
        let (ts, payload) = if rec.len() >= 4 {
            (
                u32::from_be_bytes([rec[0], rec[1], rec[2], rec[3]]),
                &rec[4..],
            )
        } else {
            (0, rec)
        };
        if let Some(ev) = parse_event(payload) {
            let wire = encode_event(&ev);
            assert_eq!(wire[0], payload[0]);
            assert_eq!(
                wire[1],
                payload[1] & 0xBF,
                "E/volume not kept (R must be cleared)"
            );
            assert_eq!(wire[2..4], payload[2..4]);
            if let Some(c) = event_char(ev.event) {
                assert_eq!(char_event(c), Some(ev.event));
                assert_eq!(char_event(c.to_ascii_lowercase()), Some(ev.event));
            }
        } else {
            assert!(payload.len() < 4);
        }
        let digit = det.on_packet(ts, payload);
        if let Some(d) = digit {
            assert!("0123456789*#ABCD".contains(d), "not a DTMF digit: {d:?}");
            if last == Some((ts, payload)) {
                panic!("a retransmission gave a second digit");
            }
        }
        last = Some((ts, payload));
    }
    let text = String::from_utf8_lossy(data);
    if let Some(d) = parse_dtmf_relay(&text) {
        assert!("0123456789*#ABCD".contains(d), "not a DTMF digit: {d:?}");
    }
});
