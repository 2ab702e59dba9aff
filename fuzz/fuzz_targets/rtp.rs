//! RTP/RTCP packet handling of `bibridge_media::rtp` on a sequence of arbitrary packets from a
//! few source addresses with virtual time: header parsing (`RtpHeader::parse`, `is_rtcp`,
//! `rtp_seq_ts_ssrc`), the relay's `StreamRewriter` (interleaved with generated packets and
//! source switches), `ReceiveStats`, the symmetric-RTP latch of `LegMedia` and the
//! `InactivityTimer`.
//!
//! Input: byte 0 picks the clock rate; then records `ctrl:u8 len:u16be packet[len]` (a short
//! last record takes what is left). `ctrl`: bits 0-1 source address, bit 2 arrived on the RTCP
//! port, bits 3-5 time step, bit 6 a generated packet precedes it, bit 7 a source switch.
//!
//! Invariants besides "no panic": a packet the rewriter forwards still parses, with the
//! sequence number, timestamp and SSRC the rewriter reported and its payload untouched.
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bibridge_media::rtp::{
    is_rtcp, rtp_seq_ts_ssrc, InactivityTimer, LegMedia, ReceiveStats, Rewrite, RtpHeader,
    StreamRewriter,
};
use libfuzzer_sys::fuzz_target;

const CLOCKS: [u32; 8] = [8000, 8000, 16000, 48000, 8000, 0, 1, 90000];
const STEPS_MS: [u64; 8] = [0, 1, 20, 20, 60, 500, 1000, 30_000];

fn sources() -> [SocketAddr; 4] {
    [
        ([127, 0, 0, 1], 40000).into(),
        ([127, 0, 0, 1], 40001).into(),
        ([192, 0, 2, 66], 40000).into(),
        "[::1]:40000".parse().expect("literal"),
    ]
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, mut rest)) = data.split_first() else {
        return;
    };
    let clock = CLOCKS[usize::from(first & 7)];
    let src = sources();
    let start = Instant::now();
    let mut now = start;
    let mut rw = StreamRewriter::new(0x1234_5678, 1000, 160_000);
    let mut stats = ReceiveStats::new();
    let mut leg = LegMedia::new(if first & 0x08 != 0 {
        Some(src[0])
    } else {
        None
    });
    leg.set_rtcp_mux(first & 0x10 != 0);
    if first & 0x20 != 0 {
        leg.set_sdp_rtcp(Some(src[1]));
    }
    let mut timer = InactivityTimer::new(Duration::from_secs(60));

    while rest.len() >= 3 {
        let ctrl = rest[0];
        let len = usize::from(u16::from_be_bytes([rest[1], rest[2]]));
        let body = &rest[3..];
        let take = len.min(body.len());
        let pkt = &body[..take];
        rest = &body[take..];

        now += Duration::from_millis(STEPS_MS[usize::from((ctrl >> 3) & 7)]);
        let from = src[usize::from(ctrl & 3)];
        if ctrl & 0x40 != 0 {
            let _ = rw.next_generated(160);
        }
        if ctrl & 0x80 != 0 {
            rw.note_source_switch();
            leg.set_sdp_remote(Some(from));
        }

        let rtcp = is_rtcp(pkt);
        let _ = if ctrl & 0x04 != 0 || rtcp {
            leg.on_rtcp(now, from, pkt.len())
        } else {
            leg.on_rtp(now, from, pkt.len())
        };
        let _ = leg.rtp_target();
        let _ = leg.rtcp_target();
        let _ = leg.latched_rtp();
        let _ = leg.last_rx();
        leg.note_sent(pkt.len());
        leg.note_sent_rtcp(pkt.len());
        timer.on_activity(now);
        timer.set_paused(now, ctrl & 0x20 != 0);
        let _ = timer.poll_timeout();
        let _ = timer.is_expired(now + Duration::from_secs(61));

        let _ = rtp_seq_ts_ssrc(pkt);
        if let Ok(h) = RtpHeader::parse(pkt) {
            let _ = h.header_len();
            let payload = h.payload(pkt).to_vec();
            if !rtcp {
                stats.on_packet(now, h.ssrc, h.seq, h.timestamp, clock);
            }
            let mut buf = pkt.to_vec();
            match rw.rewrite_in_place(&mut buf, clock) {
                Ok(Rewrite::Forward { seq, timestamp, .. }) => {
                    let out = RtpHeader::parse(&buf).expect("a rewritten packet parses");
                    assert_eq!(out.seq, seq);
                    assert_eq!(out.timestamp, timestamp);
                    assert_eq!(out.ssrc, rw.ssrc());
                    assert_eq!(out.payload(&buf), &payload[..], "payload changed");
                    assert_eq!(rw.last_output().map(|(s, _)| s).is_some(), true);
                }
                Ok(Rewrite::Drop) => {}
                Err(e) => panic!("rewriter rejected a packet RtpHeader::parse accepted: {e}"),
            }
        } else {
            let mut buf = pkt.to_vec();
            assert!(rw.rewrite_in_place(&mut buf, clock).is_err());
            assert_eq!(buf, pkt, "a rejected packet was modified");
        }
        let _ = (stats.expected(), stats.received(), stats.lost());
        let _ = (stats.jitter_ts(), stats.jitter_ms());
        assert!(stats.jitter_ms().is_finite());
    }
    let _ = leg.counters();
});
