//! Tests of the RTP module: parsing, rewriting, latching, the inactivity timer, statistics.
#![allow(clippy::unwrap_used)]
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::*;

fn pkt(pt: u8, marker: bool, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, pt | if marker { 0x80 } else { 0 }];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

#[test]
fn parse_plain_packet() {
    let p = pkt(0, true, 0xBEEF, 0x01020304, 0xCAFEBABE, &[1, 2, 3]);
    let h = RtpHeader::parse(&p).unwrap();
    assert_eq!(h.payload_type, 0);
    assert!(h.marker);
    assert_eq!(h.seq, 0xBEEF);
    assert_eq!(h.timestamp, 0x01020304);
    assert_eq!(h.ssrc, 0xCAFEBABE);
    assert_eq!(h.payload, 12..15);
    assert_eq!(h.payload(&p), &[1, 2, 3]);
    assert_eq!(h.extension, None);
    assert_eq!(h.padding_len, 0);
    // Empty payload is valid (e.g. keep-alive).
    let h = RtpHeader::parse(&p[..12]).unwrap();
    assert!(h.payload.is_empty());
}

#[test]
fn parse_csrc_extension_padding() {
    let mut p = pkt(8, false, 1, 2, 3, &[]);
    p[0] = 0x80 | 0x20 | 0x10 | 2; // P, X, CC=2
    p.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 2]); // CSRCs
    p.extend_from_slice(&[0xBE, 0xDE, 0x00, 0x01, 9, 9, 9, 9]); // extension, 1 word
    p.extend_from_slice(&[0xAA, 0xBB]); // payload
    p.extend_from_slice(&[0, 0, 3]); // 3 padding bytes
    let h = RtpHeader::parse(&p).unwrap();
    assert_eq!(h.csrc_count, 2);
    assert_eq!(h.extension, Some((0xBEDE, 24..28)));
    assert_eq!(h.header_len(), 28);
    assert_eq!(h.padding_len, 3);
    assert_eq!(h.payload(&p), &[0xAA, 0xBB]);
    assert_eq!(h.payload_type, 8);
}

#[test]
fn parse_rejects_malformed() {
    let good = pkt(0, false, 1, 2, 3, &[0; 4]);
    assert!(RtpHeader::parse(&good[..11]).is_err());
    assert!(RtpHeader::parse(&[]).is_err());
    let mut v1 = good.clone();
    v1[0] = 0x40;
    assert!(RtpHeader::parse(&v1).is_err());
    let mut cc = good.clone();
    cc[0] = 0x82; // 2 CSRCs = 8 bytes, only 4 present
    assert!(RtpHeader::parse(&cc).is_err());
    let mut ext = good.clone();
    ext[0] = 0x90; // extension header of 4 bytes fits, its length says 0x0101 words
    ext[14] = 1;
    ext[15] = 1;
    assert!(RtpHeader::parse(&ext).is_err());
    let mut ext_hdr = pkt(0, false, 1, 2, 3, &[0; 2]);
    ext_hdr[0] = 0x90; // extension header itself truncated
    assert!(RtpHeader::parse(&ext_hdr).is_err());
    let mut pad0 = good.clone();
    pad0[0] = 0xA0;
    *pad0.last_mut().unwrap() = 0; // padding count 0
    assert!(RtpHeader::parse(&pad0).is_err());
    let mut pad_big = good.clone();
    pad_big[0] = 0xA0;
    *pad_big.last_mut().unwrap() = 5; // more than the 4 bytes after the header
    assert!(RtpHeader::parse(&pad_big).is_err());
    let mut pad_none = good[..12].to_vec();
    pad_none[0] = 0xA0; // padding bit without any byte after the header
    assert!(RtpHeader::parse(&pad_none).is_err());
    let mut pad_all = good.clone();
    pad_all[0] = 0xA0;
    *pad_all.last_mut().unwrap() = 4;
    assert!(RtpHeader::parse(&pad_all).unwrap().payload.is_empty());
}

#[test]
fn rtcp_demux() {
    // RR: V=2, RC=0, PT=201, length 1.
    assert!(is_rtcp(&[0x80, 201, 0, 1, 0, 0, 0, 1]));
    assert!(is_rtcp(&[0x81, 200, 0, 6]));
    assert!(is_rtcp(&[0x80, 223, 0, 0]));
    assert!(!is_rtcp(&[0x80, 224, 0, 0]));
    assert!(!is_rtcp(&[0x80, 191, 0, 0]));
    assert!(!is_rtcp(&pkt(0, true, 1, 2, 3, &[0; 160]))); // PCMU with marker: 128
    assert!(!is_rtcp(&pkt(96, true, 1, 2, 3, &[0; 10]))); // 224
    assert!(!is_rtcp(&[0x40, 200, 0, 0])); // version 1
    assert!(!is_rtcp(&[0x80, 200, 0])); // too short
}

/// Relay one packet through `rw` and return (seq, ts, ssrc, marker) as written.
fn relay(rw: &mut StreamRewriter, ssrc: u32, seq: u16, ts: u32) -> Option<(u16, u32, u32, bool)> {
    let mut p = pkt(0, false, seq, ts, ssrc, &[0x55; 160]);
    let orig_payload = p[12..].to_vec();
    match rw.rewrite_in_place(&mut p, 8000).unwrap() {
        Rewrite::Drop => None,
        Rewrite::Forward {
            seq: s,
            timestamp,
            rebased,
        } => {
            let h = RtpHeader::parse(&p).unwrap();
            assert_eq!((h.seq, h.timestamp), (s, timestamp));
            assert_eq!(h.marker, rebased);
            assert_eq!(h.payload(&p), &orig_payload[..], "payload untouched");
            Some((h.seq, h.timestamp, h.ssrc, h.marker))
        }
    }
}

#[test]
fn first_packet_gets_initial_values_and_offsets_are_kept() {
    let mut rw = StreamRewriter::new(0xAABBCCDD, 1000, 50_000);
    assert_eq!(
        relay(&mut rw, 7, 65534, 4_000_000_000),
        Some((1000, 50_000, 0xAABBCCDD, true))
    );
    // Input seq wraps; output follows with fixed offset.
    assert_eq!(
        relay(&mut rw, 7, 65535, 4_000_000_160),
        Some((1001, 50_160, 0xAABBCCDD, false))
    );
    assert_eq!(
        relay(&mut rw, 7, 0, 4_000_000_320),
        Some((1002, 50_320, 0xAABBCCDD, false))
    );
    // Loss of two packets shows as a gap; a DTX silence gap in timestamps shows too.
    assert_eq!(
        relay(&mut rw, 7, 3, 4_000_008_000),
        Some((1005, 58_000, 0xAABBCCDD, false))
    );
    assert_eq!(rw.ssrc(), 0xAABBCCDD);
    assert_eq!(rw.last_output(), Some((1005, 58_000)));
}

#[test]
fn ssrc_change_keeps_seq_and_ts_continuous() {
    let mut rw = StreamRewriter::new(42, 100, 0);
    for i in 0..5u16 {
        let r = relay(&mut rw, 1, 5000 + i, 9000 + 160 * u32::from(i)).unwrap();
        assert_eq!((r.0, r.1), (100 + i, 160 * u32::from(i)));
    }
    // New source with unrelated numbering: continues at +1 / +160 (observed ptime).
    assert_eq!(relay(&mut rw, 2, 17, 123_456), Some((105, 800, 42, true)));
    assert_eq!(relay(&mut rw, 2, 18, 123_616), Some((106, 960, 42, false)));
    assert_eq!(relay(&mut rw, 2, 19, 123_776), Some((107, 1120, 42, false)));
    // A straggler of the old source would duplicate seq 104: dropped.
    assert_eq!(relay(&mut rw, 1, 5004, 9640), None);
    assert_eq!(relay(&mut rw, 1, 5003, 9480), None);
    // The old source really coming back (newer numbering) is a new switch.
    assert_eq!(relay(&mut rw, 1, 5010, 10_600), Some((108, 1280, 42, true)));
}

#[test]
fn ptime_estimate_used_for_rebase() {
    let mut rw = StreamRewriter::new(1, 0, 0);
    relay(&mut rw, 1, 10, 0);
    relay(&mut rw, 1, 11, 240); // 30 ms packets
    assert_eq!(relay(&mut rw, 2, 500, 7), Some((2, 480, 1, true)));
    // Without any estimate the default is 20 ms of the clock rate.
    let mut rw = StreamRewriter::new(1, 0, 0);
    relay(&mut rw, 1, 10, 0);
    assert_eq!(relay(&mut rw, 2, 500, 7), Some((1, 160, 1, true)));
}

#[test]
fn reordering_and_loss_preserved() {
    let mut rw = StreamRewriter::new(9, 200, 1000);
    let input = [1u16, 2, 4, 3, 5, 8, 6];
    let out: Vec<u16> = input
        .iter()
        .map(|&s| relay(&mut rw, 5, s, u32::from(s) * 160).unwrap().0)
        .collect();
    assert_eq!(out, vec![200, 201, 203, 202, 204, 207, 205]);
    // Timestamps follow the same fixed offset.
    assert_eq!(relay(&mut rw, 5, 7, 7 * 160).unwrap().1, 1000 + 6 * 160);
    // A packet older than the start of the mapping would reuse a slot: dropped.
    assert_eq!(relay(&mut rw, 5, 0, 0), None);
}

#[test]
fn large_seq_jump_rebases() {
    let mut rw = StreamRewriter::new(9, 0, 0);
    relay(&mut rw, 5, 100, 16_000);
    relay(&mut rw, 5, 101, 16_160);
    // Sender restarted its numbering without changing SSRC.
    assert_eq!(relay(&mut rw, 5, 40_000, 99), Some((2, 320, 9, true)));
    assert_eq!(relay(&mut rw, 5, 40_001, 259), Some((3, 480, 9, false)));
    // Backwards beyond MAX_MISORDER is also a restart.
    assert_eq!(relay(&mut rw, 5, 39_000, 0), Some((4, 640, 9, true)));
}

#[test]
fn relay_generated_relay_continuity() {
    let mut rw = StreamRewriter::new(77, 10, 1_000);
    assert_eq!(relay(&mut rw, 3, 500, 0).unwrap().0, 10);
    assert_eq!(relay(&mut rw, 3, 501, 160).unwrap().0, 11);
    // Relay stops (hold/DTX); the mixer generates on its own 20 ms clock.
    assert_eq!(rw.next_generated(160), (12, 1_320));
    assert_eq!(rw.next_generated(160), (13, 1_480));
    assert_eq!(rw.next_generated(160), (14, 1_640));
    // Same source resumes later (its seq/ts moved on): re-based after the generated ones.
    assert_eq!(
        relay(&mut rw, 3, 560, 60 * 160),
        Some((15, 1_800, 77, true))
    );
    assert_eq!(
        relay(&mut rw, 3, 561, 61 * 160),
        Some((16, 1_960, 77, false))
    );
    // Stragglers from before the generated stretch are dropped.
    assert_eq!(rw.next_generated(160), (17, 2_120));
    assert_eq!(relay(&mut rw, 3, 559, 59 * 160), None);
    assert_eq!(
        relay(&mut rw, 3, 562, 62 * 160),
        Some((18, 2_280, 77, true))
    );
}

#[test]
fn generated_first_then_relay() {
    let mut rw = StreamRewriter::new(77, 65535, u32::MAX - 100);
    assert_eq!(rw.next_generated(160), (65535, u32::MAX - 100));
    assert_eq!(rw.next_generated(160), (0, 59)); // both wrap
    assert_eq!(relay(&mut rw, 3, 9, 9), Some((1, 219, 77, true)));
}

#[test]
fn explicit_source_switch_rebases_even_with_same_ssrc() {
    let mut rw = StreamRewriter::new(1, 0, 0);
    relay(&mut rw, 3, 10, 1600);
    relay(&mut rw, 3, 11, 1760);
    rw.note_source_switch();
    // Another leg that happens to use the same SSRC and a later seq.
    assert_eq!(relay(&mut rw, 3, 900, 5), Some((2, 320, 1, true)));
    assert_eq!(relay(&mut rw, 3, 901, 165), Some((3, 480, 1, false)));
}

#[test]
fn rewrite_rejects_garbage_without_touching_it() {
    let mut rw = StreamRewriter::new(1, 0, 0);
    let mut junk = vec![0x40u8; 20];
    assert!(rw.rewrite_in_place(&mut junk, 8000).is_err());
    assert_eq!(junk, vec![0x40u8; 20]);
    assert!(rw.rewrite_in_place(&mut [0x80, 0], 8000).is_err());
    assert_eq!(rw.last_output(), None);
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// An RTP packet of 172 bytes (PCMU, 20 ms) with this payload type and SSRC.
fn rtp(pt: u8, ssrc: u32) -> Vec<u8> {
    pkt(pt, false, 1, 160, ssrc, &[0xff; 160])
}

/// An RTCP receiver report from `ssrc`.
fn rr(ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 201, 0, 1];
    p.extend_from_slice(&ssrc.to_be_bytes());
    p
}

const LEARN: LatchMode = LatchMode::Learn {
    window: Duration::from_secs(2),
};

#[test]
fn strict_accepts_only_the_sdp_address_and_never_relatches() {
    let t0 = Instant::now();
    let ms = |n| t0 + Duration::from_millis(n);
    let sdp = addr("10.0.0.1:4000");
    let attacker = addr("198.51.100.9:5000");
    let mut leg = LegMedia::with_mode(LatchMode::Strict, t0, Some(sdp));
    assert_eq!(leg.rtp_target(), Some(sdp));
    assert_eq!(leg.rtcp_target(), Some(addr("10.0.0.1:4001")));
    // The attacker is first: dropped, counted, not the target.
    assert_eq!(leg.on_rtp(ms(0), attacker, &rtp(0, 7)), Latch::Foreign);
    assert_eq!(leg.rtp_target(), Some(sdp));
    assert_eq!(leg.on_rtp(ms(20), sdp, &rtp(0, 1)), Latch::Current);
    // Same host, another port: foreign too.
    assert_eq!(
        leg.on_rtp(ms(30), addr("10.0.0.1:4002"), &rtp(0, 1)),
        Latch::Foreign
    );
    // Long silence of the legitimate source: still nobody else.
    assert_eq!(leg.on_rtp(ms(60_000), attacker, &rtp(0, 7)), Latch::Foreign);
    assert_eq!(leg.rtp_target(), Some(sdp));
    assert_eq!(leg.last_rx(), Some(ms(20)));
    let c = leg.counters();
    assert_eq!((c.rtp_packets_in, c.rtp_bytes_in), (1, 172));
    assert_eq!(
        (c.foreign_rtp_in, c.foreign_packets_in, c.latch_events),
        (3, 3, 0)
    );
}

#[test]
fn strict_waits_for_a_usable_sdp_address() {
    let t0 = Instant::now();
    let src = addr("10.0.0.1:4000");
    let mut leg = LegMedia::with_mode(LatchMode::Strict, t0, None);
    assert_eq!(leg.on_rtp(t0, src, &rtp(0, 1)), Latch::Foreign);
    leg.set_sdp_remote(t0, Some(addr("0.0.0.0:4000"))); // old-style hold
    assert_eq!(
        leg.on_rtp(t0, addr("0.0.0.0:4000"), &rtp(0, 1)),
        Latch::Foreign
    );
    assert_eq!(leg.rtp_target(), None);
    leg.set_sdp_remote(t0, Some(addr("10.0.0.1:0"))); // rejected stream
    assert_eq!(leg.rtp_target(), None);
    assert_eq!(leg.rtcp_target(), None);
    leg.set_sdp_remote(t0, Some(src));
    assert_eq!(leg.on_rtp(t0, src, &rtp(0, 1)), Latch::Current);
    // A re-INVITE moves the party: the old address is foreign from then on.
    let moved = addr("10.0.0.2:4100");
    leg.set_sdp_remote(t0, Some(moved));
    assert_eq!(leg.on_rtp(t0, src, &rtp(0, 1)), Latch::Foreign);
    assert_eq!(leg.on_rtp(t0, moved, &rtp(0, 1)), Latch::Current);
    let mut edge = LegMedia::new(Some(addr("10.0.0.1:65535")));
    assert_eq!(edge.rtcp_target(), None); // no port + 1
    edge.set_rtcp_mux(true);
    assert_eq!(edge.rtcp_target(), Some(addr("10.0.0.1:65535")));
}

#[test]
fn strict_rtcp_follows_the_rtp_address() {
    let t0 = Instant::now();
    let sdp = addr("10.0.0.1:4000");
    let mut leg = LegMedia::with_mode(LatchMode::Strict, t0, Some(sdp));
    // Port + 1 of the SDP host, or the RTP address itself (mux).
    assert_eq!(
        leg.on_rtcp(addr("10.0.0.1:4001"), &rr(1), false),
        Latch::Current
    );
    assert_eq!(leg.on_rtcp(sdp, &rr(1), true), Latch::Current);
    assert_eq!(leg.on_rtcp(sdp, &rr(1), false), Latch::Current);
    // Anything else, whatever it carries.
    for (src, mux) in [
        (addr("10.0.0.1:4003"), false),
        (addr("10.0.0.1:4001"), true),
        (addr("198.51.100.9:4001"), false),
        (addr("198.51.100.9:4000"), true),
    ] {
        assert_eq!(leg.on_rtcp(src, &rr(1), mux), Latch::Foreign, "{src} {mux}");
        assert_eq!(
            leg.on_rtcp(src, b"garbage", mux),
            Latch::Foreign,
            "{src} {mux}"
        );
    }
    // a=rtcp names another port.
    leg.set_sdp_rtcp(Some(addr("10.0.0.1:5555")));
    assert_eq!(leg.rtcp_target(), Some(addr("10.0.0.1:5555")));
    assert_eq!(
        leg.on_rtcp(addr("10.0.0.1:5555"), &rr(1), false),
        Latch::Current
    );
    assert_eq!(
        leg.on_rtcp(addr("10.0.0.1:4001"), &rr(1), false),
        Latch::Foreign
    );
    let c = leg.counters();
    assert_eq!((c.rtcp_packets_in, c.foreign_rtcp_in), (4, 9));
    leg.note_sent(172);
    leg.note_sent_rtcp(52);
    let c = leg.counters();
    assert_eq!((c.rtp_packets_out, c.rtp_bytes_out), (1, 172));
    assert_eq!((c.rtcp_packets_out, c.rtcp_bytes_out), (1, 52));
}

#[test]
fn learn_latches_first_negotiated_source_in_the_window_only() {
    let t0 = Instant::now();
    let ms = |n| t0 + Duration::from_millis(n);
    let sdp = addr("192.168.1.10:4000"); // private: the phone is behind NAT
    let nat = addr("203.0.113.5:61000");
    let attacker = addr("198.51.100.9:5000");
    let mut leg = LegMedia::with_mode(LEARN, t0, Some(sdp));
    leg.set_payload_types(&[0, 101]);
    // Not RTP, or a payload type that was not negotiated: not learned.
    assert_eq!(
        leg.on_rtp(ms(10), attacker, b"garbage garbage"),
        Latch::Foreign
    );
    assert_eq!(leg.on_rtp(ms(10), attacker, &rtp(8, 9)), Latch::Foreign);
    assert_eq!(leg.on_rtp(ms(20), nat, &rtp(0, 1)), Latch::Latched);
    assert_eq!(leg.rtp_target(), Some(nat));
    assert_eq!(leg.latched_rtp(), Some(nat));
    assert_eq!(leg.on_rtp(ms(40), nat, &rtp(0, 1)), Latch::Current);
    assert_eq!(leg.on_rtp(ms(50), attacker, &rtp(0, 9)), Latch::Foreign);
    // Silence of any length does not let anyone else in.
    assert_eq!(leg.on_rtp(ms(1500), attacker, &rtp(0, 9)), Latch::Foreign);
    assert_eq!(leg.on_rtp(ms(90_000), attacker, &rtp(0, 9)), Latch::Foreign);
    assert_eq!(leg.rtp_target(), Some(nat));
    assert_eq!(leg.on_rtp(ms(90_020), nat, &rtp(0, 1)), Latch::Current);
    assert_eq!(leg.counters().latch_events, 1);
    assert_eq!(leg.counters().foreign_rtp_in, 5);

    // Nothing in the window: closed; only the SDP address is accepted afterwards.
    let mut late = LegMedia::with_mode(LEARN, t0, Some(sdp));
    late.set_payload_types(&[0]);
    assert_eq!(late.on_rtp(ms(2000), nat, &rtp(0, 1)), Latch::Foreign);
    let mut by_sdp = late.clone();
    assert_eq!(by_sdp.on_rtp(ms(2001), sdp, &rtp(0, 1)), Latch::Latched);
    assert_eq!(by_sdp.on_rtp(ms(2021), sdp, &rtp(0, 1)), Latch::Current);
    // The call's answer (another offer/answer) re-opens the window of an unlatched leg.
    late.offer_answer_done(ms(5000));
    assert_eq!(late.on_rtp(ms(6999), nat, &rtp(0, 1)), Latch::Latched);
    late.offer_answer_done(ms(8000)); // latched: no new window
    assert_eq!(late.on_rtp(ms(8001), attacker, &rtp(0, 9)), Latch::Foreign);

    // No SDP yet: nothing is learned.
    let mut none = LegMedia::with_mode(LEARN, t0, None);
    none.set_payload_types(&[0]);
    assert_eq!(none.on_rtp(ms(1), nat, &rtp(0, 1)), Latch::Foreign);
}

#[test]
fn learn_prefers_the_exact_sdp_address_within_the_window() {
    let t0 = Instant::now();
    let ms = |n| t0 + Duration::from_millis(n);
    let sdp = addr("10.0.0.1:4000");
    let stray = addr("198.51.100.9:5000");
    let mut leg = LegMedia::with_mode(LEARN, t0, Some(sdp));
    leg.set_payload_types(&[0]);
    // A stray beats the phone's first packet...
    assert_eq!(leg.on_rtp(ms(1), stray, &rtp(0, 9)), Latch::Latched);
    // ...the phone's own address (the SDP's) takes it back, once and for all.
    assert_eq!(leg.on_rtp(ms(20), sdp, &rtp(0, 1)), Latch::Latched);
    assert_eq!(leg.rtp_target(), Some(sdp));
    assert_eq!(leg.on_rtp(ms(40), stray, &rtp(0, 9)), Latch::Foreign);
    assert_eq!(leg.on_rtp(ms(60), sdp, &rtp(0, 1)), Latch::Current);

    // The phone (at its SDP address) first: a stray in the window learns nothing.
    let mut leg = LegMedia::with_mode(LEARN, t0, Some(sdp));
    leg.set_payload_types(&[0]);
    assert_eq!(leg.on_rtp(ms(1), sdp, &rtp(0, 1)), Latch::Latched);
    assert_eq!(leg.on_rtp(ms(5), stray, &rtp(0, 9)), Latch::Foreign);
    assert_eq!(leg.rtp_target(), Some(sdp));
}

#[test]
fn learn_locks_the_ssrc() {
    let t0 = Instant::now();
    let ms = |n| t0 + Duration::from_millis(n);
    let nat = addr("203.0.113.5:61000");
    let mut leg = LegMedia::with_mode(LEARN, t0, Some(addr("192.168.1.10:4000")));
    leg.set_payload_types(&[0]);
    assert_eq!(leg.on_rtp(ms(0), nat, &rtp(0, 1)), Latch::Latched);
    // A second SSRC interleaved from the latched address (a spoofed source): dropped.
    assert_eq!(leg.on_rtp(ms(10), nat, &rtp(0, 666)), Latch::Foreign);
    assert_eq!(leg.on_rtp(ms(20), nat, &rtp(0, 1)), Latch::Current);
    assert_eq!(leg.on_rtp(ms(219), nat, &rtp(0, 666)), Latch::Foreign);
    // The old SSRC silent for SSRC_CHANGE_AFTER: a restart (RFC 3550 §8.2), accepted.
    assert_eq!(
        leg.on_rtp(ms(20) + SSRC_CHANGE_AFTER, nat, &rtp(0, 2)),
        Latch::Current
    );
    assert_eq!(leg.on_rtp(ms(240), nat, &rtp(0, 1)), Latch::Foreign);
    assert_eq!(leg.on_rtp(ms(260), nat, &rtp(0, 2)), Latch::Current);
}

#[test]
fn learn_rtcp_follows_the_learned_host_and_ssrc() {
    let t0 = Instant::now();
    let nat = addr("203.0.113.5:61000");
    let mut leg = LegMedia::with_mode(LEARN, t0, Some(addr("192.168.1.10:4000")));
    leg.set_payload_types(&[0]);
    // Before RTP is learned: the SDP host only (private, unreachable here).
    assert_eq!(
        leg.on_rtcp(addr("203.0.113.5:61007"), &rr(1), false),
        Latch::Foreign
    );
    assert_eq!(leg.on_rtp(t0, nat, &rtp(0, 1)), Latch::Latched);
    // Another host, or the right host with a foreign SSRC: never.
    assert_eq!(
        leg.on_rtcp(addr("198.51.100.9:61007"), &rr(1), false),
        Latch::Foreign
    );
    assert_eq!(
        leg.on_rtcp(addr("203.0.113.5:61007"), &rr(9), false),
        Latch::Foreign
    );
    assert_eq!(
        leg.on_rtcp(addr("203.0.113.5:61007"), b"xx", false),
        Latch::Foreign
    );
    // The NAT's RTCP mapping is not port + 1: the first report with the SSRC fixes it.
    assert_eq!(
        leg.on_rtcp(addr("203.0.113.5:61007"), &rr(1), false),
        Latch::Latched
    );
    assert_eq!(leg.rtcp_target(), Some(addr("203.0.113.5:61007")));
    assert_eq!(
        leg.on_rtcp(addr("203.0.113.5:61009"), &rr(1), false),
        Latch::Foreign
    );
    assert_eq!(
        leg.on_rtcp(addr("203.0.113.5:61007"), &rr(1), false),
        Latch::Current
    );
    // rtcp-mux: on the RTP address.
    assert_eq!(leg.on_rtcp(nat, &rr(1), true), Latch::Current);
    leg.set_rtcp_mux(true);
    assert_eq!(leg.rtcp_target(), Some(nat));
}

#[test]
fn learn_window_rearmed_by_a_signalled_move_only() {
    let t0 = Instant::now();
    let s = |n| t0 + Duration::from_secs(n);
    let nat = addr("203.0.113.5:61000");
    let nat2 = addr("203.0.113.77:62000");
    let mut leg = LegMedia::with_mode(LEARN, t0, Some(addr("192.168.1.10:4000")));
    leg.set_payload_types(&[0]);
    assert_eq!(leg.on_rtp(s(0), nat, &rtp(0, 1)), Latch::Latched);
    // The same SDP again (a re-INVITE for hold/resume): latch kept, no window.
    leg.set_sdp_remote(s(10), Some(addr("192.168.1.10:4000")));
    assert_eq!(leg.on_rtp(s(10), nat2, &rtp(0, 1)), Latch::Foreign);
    assert_eq!(leg.rtp_target(), Some(nat));
    // A new address in SDP (the phone moved, signalled by SIP): learned anew.
    leg.set_sdp_remote(s(20), Some(addr("192.168.7.7:4000")));
    assert_eq!(leg.rtp_target(), Some(addr("192.168.7.7:4000")));
    assert_eq!(leg.on_rtp(s(21), nat2, &rtp(0, 5)), Latch::Latched);
    assert_eq!(leg.on_rtp(s(21), nat, &rtp(0, 1)), Latch::Foreign);
    assert_eq!(leg.counters().latch_events, 2);
}

#[test]
fn inactivity_timer() {
    let t0 = Instant::now();
    let s = |n| t0 + Duration::from_secs(n);
    let mut t = InactivityTimer::new(Duration::from_secs(30));
    assert_eq!(t.poll_timeout(), None); // not armed
    assert!(!t.is_expired(s(1000)));
    t.on_activity(s(0));
    assert_eq!(t.poll_timeout(), Some(s(30)));
    assert!(!t.is_expired(s(29)));
    assert!(t.is_expired(s(30)));
    t.on_activity(s(20));
    t.on_activity(s(10)); // out-of-order report does not move it back
    assert_eq!(t.poll_timeout(), Some(s(50)));
    t.set_paused(s(25), true);
    assert!(t.is_paused());
    assert_eq!(t.poll_timeout(), None);
    assert!(!t.is_expired(s(500)));
    t.set_paused(s(600), false);
    assert_eq!(t.poll_timeout(), Some(s(630)));
    assert!(!t.is_expired(s(629)));
    assert!(t.is_expired(s(630)));
    t.set_paused(s(601), false); // not paused: no change
    assert_eq!(t.poll_timeout(), Some(s(630)));

    let mut off = InactivityTimer::new(Duration::ZERO);
    off.on_activity(s(0));
    assert_eq!(off.poll_timeout(), None);
    assert!(!off.is_expired(s(10_000)));
}

/// Arrival instants `t0 + ms` of packets, fed with sequence numbers, timestamps and SSRC.
fn feed(st: &mut ReceiveStats, t0: Instant, pkts: &[(u64, u32, u16, u32)]) {
    for &(ms, ssrc, seq, ts) in pkts {
        st.on_packet(t0 + Duration::from_millis(ms), ssrc, seq, ts, 8000);
    }
}

#[test]
fn receive_stats_jitter_of_a_paced_stream_is_zero() {
    let t0 = Instant::now();
    let mut st = ReceiveStats::new();
    assert_eq!(st.jitter_ms(), 0.0);
    let pkts: Vec<_> = (0..100u16)
        .map(|k| (20 * u64::from(k), 7, 1000 + k, 5000 + 160 * u32::from(k)))
        .collect();
    feed(&mut st, t0, &pkts);
    assert!(st.jitter_ms().abs() < 1e-6, "jitter {}", st.jitter_ms());
    assert_eq!(st.jitter_ts(), 0);
    assert_eq!((st.expected(), st.received(), st.lost()), (100, 100, 0));
}

#[test]
fn receive_stats_jitter_of_alternating_offsets_follows_rfc3550() {
    // Sent every 20 ms, arriving alternately 10 ms late and 10 ms early: every transit
    // difference D is ±20 ms = 160 units, so after n differences (J starts at 0)
    // J_n = 160 * (1 - (15/16)^n) units, tending to 20 ms.
    let t0 = Instant::now();
    let arrivals = |count: u16| -> Vec<(u64, u32, u16, u32)> {
        (0..count)
            .map(|k| {
                let ms = 20 + 20 * u64::from(k);
                let ms = if k % 2 == 0 { ms + 10 } else { ms - 10 };
                (ms, 9, k, 160 * u32::from(k))
            })
            .collect()
    };
    let mut st = ReceiveStats::new();
    feed(&mut st, t0, &arrivals(50));
    let want = 20.0 * (1.0 - (15.0f64 / 16.0).powi(49));
    assert!(
        (st.jitter_ms() - want).abs() < 1e-6,
        "jitter {} ms, RFC 3550 A.8 gives {want} ms",
        st.jitter_ms()
    );
    let mut st = ReceiveStats::new();
    feed(&mut st, t0, &arrivals(300));
    assert!((st.jitter_ms() - 20.0).abs() < 0.01, "{}", st.jitter_ms());
    assert_eq!(st.jitter_ts(), 160);
}

#[test]
fn receive_stats_loss_across_sequence_wrap() {
    let t0 = Instant::now();
    let mut st = ReceiveStats::new();
    // 65530..=65535, 0..=9, without 65534 and 2: 16 expected, 14 received.
    let pkts: Vec<_> = (65530u32..65546)
        .map(|s| s as u16)
        .filter(|&s| s != 65534 && s != 2)
        .enumerate()
        .map(|(k, s)| (20 * k as u64, 1, s, 0))
        .collect();
    feed(&mut st, t0, &pkts);
    assert_eq!(st.expected(), 16);
    assert_eq!(st.received(), 14);
    assert_eq!(st.lost(), 2);
    // A second wrap is counted too: 0 -> 65535 -> 0 again.
    let mut st = ReceiveStats::new();
    let pkts: Vec<_> = (0u32..=131_072)
        .step_by(2)
        .map(|s| (0, 1, s as u16, 0))
        .collect();
    feed(&mut st, t0, &pkts);
    assert_eq!(st.expected(), 131_073);
    assert_eq!(st.received(), 65_537);
    assert_eq!(st.lost(), 65_536);
}

#[test]
fn receive_stats_reordering_and_duplicates() {
    let t0 = Instant::now();
    let mut st = ReceiveStats::new();
    // 4 before 3, 5 twice: nothing lost, one duplicate. RFC 3550 counts it as received, so
    // expected - received = -1, reported as 0.
    let pkts: Vec<_> = [1u16, 2, 4, 3, 5, 5, 6]
        .iter()
        .enumerate()
        .map(|(k, &s)| (20 * k as u64, 3, s, 160 * u32::from(s)))
        .collect();
    feed(&mut st, t0, &pkts);
    assert_eq!((st.expected(), st.received(), st.lost()), (6, 7, 0));
    // 7 and 8 missing: 9 expected, 8 received (the duplicate offsets one loss, as in the
    // RFC's cumulative count).
    feed(&mut st, t0, &[(200, 3, 9, 160 * 9)]);
    assert_eq!((st.expected(), st.received(), st.lost()), (9, 8, 1));
    // A late packet (less than MAX_MISORDER behind) counts as reordering.
    feed(&mut st, t0, &[(220, 3, 7, 160 * 7)]);
    assert_eq!((st.expected(), st.received(), st.lost()), (9, 9, 0));
}

#[test]
fn receive_stats_ssrc_change_and_restart_keep_totals() {
    let t0 = Instant::now();
    let mut st = ReceiveStats::new();
    // SSRC A: 100..=109 without 105.
    let a: Vec<_> = (100u16..110)
        .filter(|&s| s != 105)
        .map(|s| (20 * u64::from(s - 100), 0xA, s, 160 * u32::from(s)))
        .collect();
    feed(&mut st, t0, &a);
    assert_eq!((st.expected(), st.received(), st.lost()), (10, 9, 1));
    // SSRC B starts elsewhere, paced: counts add up, and no transit difference is taken
    // across the change (its timestamps are unrelated), so jitter stays 0.
    let b: Vec<_> = (0u16..5)
        .map(|k| {
            (
                200 + 20 * u64::from(k),
                0xB,
                40_000 + k,
                123_456 + 160 * u32::from(k),
            )
        })
        .collect();
    feed(&mut st, t0, &b);
    assert_eq!((st.expected(), st.received(), st.lost()), (15, 14, 1));
    assert!(st.jitter_ms().abs() < 1e-6, "jitter {}", st.jitter_ms());
    // One stray packet far ahead is ignored; the stream goes on.
    feed(&mut st, t0, &[(300, 0xB, 10, 0), (300, 0xB, 40_005, 0)]);
    assert_eq!((st.expected(), st.received()), (16, 15));
    // A jump followed by its successor is a sender restart within the SSRC: the first
    // packet of the new numbering is not counted (A.1), the rest continue the totals.
    feed(
        &mut st,
        t0,
        &[
            (320, 0xB, 1000, 0),
            (340, 0xB, 1001, 160),
            (360, 0xB, 1002, 320),
        ],
    );
    assert_eq!((st.expected(), st.received(), st.lost()), (18, 17, 1));
}

#[test]
fn rtp_seq_ts_ssrc_reads_rtp_only() {
    let p = pkt(0, false, 0x1234, 0xDEAD_BEEF, 0x0102_0304, &[0xFF; 160]);
    assert_eq!(
        rtp_seq_ts_ssrc(&p),
        Some((0x1234, 0xDEAD_BEEF, 0x0102_0304))
    );
    // An RTCP receiver report (PT 201) on the same port, and garbage.
    let rr = [0x81, 201, 0, 7, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0];
    assert_eq!(rtp_seq_ts_ssrc(&rr), None);
    assert_eq!(rtp_seq_ts_ssrc(&p[..11]), None);
    assert_eq!(rtp_seq_ts_ssrc(&[0x40; 20]), None);
}
