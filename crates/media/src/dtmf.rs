//! DTMF digits: RFC 4733 telephone-event payloads and SIP INFO `application/dtmf-relay`
//! bodies.
//!
//! A telephone event is sent as a series of RTP packets that all carry the RTP timestamp of the
//! event's start; the duration field grows with each packet, and the final packet (E bit set)
//! is normally sent three times (RFC 4733 §2.5.1.4). [`DtmfDetector`] turns such a stream into
//! one digit per event.

/// One RFC 4733 §2.3 telephone-event payload block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TelephoneEvent {
    /// Event code (0–9, 10 `*`, 11 `#`, 12–15 `A`–`D` for DTMF; other codes are other tones).
    pub event: u8,
    /// E bit: this is the end of the event.
    pub end: bool,
    /// Power level of the tone in -dBm0 (0–63; 6 bits).
    pub volume: u8,
    /// Duration so far, in RTP timestamp units.
    pub duration: u16,
}

/// Parse the first event block of a telephone-event payload (4 octets: event, E|R|volume,
/// duration). `None` if the payload is shorter than that. The R bit is ignored as the RFC asks.
pub fn parse_event(payload: &[u8]) -> Option<TelephoneEvent> {
    let block = payload.get(..4)?;
    Some(TelephoneEvent {
        event: block[0],
        end: block[1] & 0x80 != 0,
        volume: block[1] & 0x3F,
        duration: u16::from_be_bytes([block[2], block[3]]),
    })
}

/// Encode an event block (R bit zero; volume truncated to its 6 bits).
pub fn encode_event(ev: &TelephoneEvent) -> [u8; 4] {
    let d = ev.duration.to_be_bytes();
    [
        ev.event,
        (if ev.end { 0x80 } else { 0 }) | (ev.volume & 0x3F),
        d[0],
        d[1],
    ]
}

/// The DTMF character of an event code (RFC 4733 §3.2): 0–9, `*`, `#`, `A`–`D`.
pub fn event_char(event: u8) -> Option<char> {
    match event {
        0..=9 => Some(char::from(b'0' + event)),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some(char::from(b'A' + event - 12)),
        _ => None,
    }
}

/// The event code of a DTMF character (letters in either case).
pub fn char_event(c: char) -> Option<u8> {
    match c {
        '0'..='9' => Some(c as u8 - b'0'),
        '*' => Some(10),
        '#' => Some(11),
        'A'..='D' => Some(c as u8 - b'A' + 12),
        'a'..='d' => Some(c as u8 - b'a' + 12),
        _ => None,
    }
}

/// The event being received (or last received).
#[derive(Clone, Copy, Debug)]
struct Current {
    timestamp: u32,
    event: u8,
    /// Largest duration seen for it.
    duration: u16,
    ended: bool,
}

/// Turns a stream of telephone-event packets into digits.
///
/// One digit per event, keyed by the RTP timestamp: reported on the *first* packet seen for the
/// event (so whoever acts on it, e.g. a supervisor's mode switch, does so at once), never again
/// for the event's later or retransmitted end packets, nor for late packets of an earlier event.
/// Two presses of the same key are two events (different timestamps), so two digits. A very
/// long event that the sender splits into segments (RFC 4733 §2.5.2.3: new timestamp at the
/// end of the previous segment, no E bit before) stays one digit.
#[derive(Clone, Debug, Default)]
pub struct DtmfDetector {
    current: Option<Current>,
}

impl DtmfDetector {
    /// A detector that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed the payload of one telephone-event packet with its RTP timestamp; returns the digit
    /// if this packet starts a new DTMF event. Malformed payloads and non-DTMF events (flash,
    /// tones) return `None`.
    pub fn on_packet(&mut self, rtp_timestamp: u32, payload: &[u8]) -> Option<char> {
        let ev = parse_event(payload)?;
        if let Some(cur) = self.current.as_mut() {
            if rtp_timestamp == cur.timestamp {
                cur.duration = cur.duration.max(ev.duration);
                cur.ended |= ev.end;
                return None;
            }
            // Serial-number comparison (RFC 1982 style): a timestamp behind the current event
            // is a late packet of an earlier event.
            if rtp_timestamp.wrapping_sub(cur.timestamp) > u32::MAX / 2 {
                return None;
            }
            let continuation = !cur.ended
                && ev.event == cur.event
                && rtp_timestamp == cur.timestamp.wrapping_add(u32::from(cur.duration));
            if continuation {
                *cur = Current {
                    timestamp: rtp_timestamp,
                    event: ev.event,
                    duration: ev.duration,
                    ended: ev.end,
                };
                return None;
            }
        }
        self.current = Some(Current {
            timestamp: rtp_timestamp,
            event: ev.event,
            duration: ev.duration,
            ended: ev.end,
        });
        event_char(ev.event)
    }
}

/// Parse a SIP INFO `application/dtmf-relay` body (`Signal=5\r\nDuration=160\r\n`) to its digit.
///
/// Keys are case-insensitive, blanks around `=` are allowed, lines may end in CRLF or LF.
/// `Signal` may be a DTMF character or its event code (some phones send `Signal=10` for `*`
/// and `Signal=11` for `#`). `None` without a valid `Signal` line.
pub fn parse_dtmf_relay(body: &str) -> Option<char> {
    body.lines().find_map(|line| {
        let (key, value) = line.split_once('=')?;
        if !key.trim().eq_ignore_ascii_case("signal") {
            return None;
        }
        let value = value.trim();
        let mut chars = value.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) => char_event(c).and_then(event_char),
            _ => value.parse::<u8>().ok().and_then(event_char),
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn pkt(event: u8, end: bool, duration: u16) -> [u8; 4] {
        encode_event(&TelephoneEvent {
            event,
            end,
            volume: 10,
            duration,
        })
    }

    #[test]
    fn parse_and_encode_round_trip() {
        // Event 5, E bit, R bit set (must be ignored), volume 10, duration 800.
        let wire = [5u8, 0xC0 | 10, 0x03, 0x20];
        let ev = parse_event(&wire).unwrap();
        assert_eq!(
            ev,
            TelephoneEvent {
                event: 5,
                end: true,
                volume: 10,
                duration: 800
            }
        );
        assert_eq!(encode_event(&ev), [5, 0x80 | 10, 0x03, 0x20]);
        assert_eq!(parse_event(&encode_event(&ev)), Some(ev));
        // Trailing redundant blocks are fine; short payloads are not.
        assert_eq!(parse_event(&[1, 0, 0, 160, 9, 9, 9, 9]).unwrap().event, 1);
        assert_eq!(parse_event(&[1, 0, 0]), None);
        assert_eq!(parse_event(&[]), None);
        // Volume is 6 bits: encoding masks it.
        let loud = TelephoneEvent {
            event: 1,
            end: false,
            volume: 0xFF,
            duration: 0,
        };
        assert_eq!(encode_event(&loud)[1], 0x3F);
    }

    #[test]
    fn event_characters() {
        let all = "0123456789*#ABCD";
        for (code, c) in all.chars().enumerate() {
            assert_eq!(event_char(code as u8), Some(c));
            assert_eq!(char_event(c), Some(code as u8));
        }
        assert_eq!(char_event('b'), Some(13));
        assert_eq!(event_char(16), None); // flash
        assert_eq!(char_event('E'), None);
        assert_eq!(char_event('x'), None);
    }

    #[test]
    fn one_digit_per_event_reported_on_first_packet() {
        let mut d = DtmfDetector::new();
        assert_eq!(d.on_packet(1000, &pkt(5, false, 160)), Some('5'));
        assert_eq!(d.on_packet(1000, &pkt(5, false, 320)), None);
        assert_eq!(d.on_packet(1000, &pkt(5, false, 480)), None);
        // The end packet, sent three times.
        for _ in 0..3 {
            assert_eq!(d.on_packet(1000, &pkt(5, true, 640)), None);
        }
    }

    #[test]
    fn same_digit_twice_is_two_digits() {
        let mut d = DtmfDetector::new();
        assert_eq!(d.on_packet(1000, &pkt(1, false, 160)), Some('1'));
        assert_eq!(d.on_packet(1000, &pkt(1, true, 800)), None);
        assert_eq!(d.on_packet(1000, &pkt(1, true, 800)), None);
        assert_eq!(d.on_packet(3000, &pkt(1, false, 160)), Some('1'));
        assert_eq!(d.on_packet(3000, &pkt(1, true, 800)), None);
    }

    #[test]
    fn lost_start_is_reported_on_the_end_packet() {
        let mut d = DtmfDetector::new();
        assert_eq!(d.on_packet(500, &pkt(11, true, 800)), Some('#'));
        assert_eq!(d.on_packet(500, &pkt(11, true, 800)), None);
    }

    #[test]
    fn late_packets_of_an_earlier_event_are_ignored() {
        let mut d = DtmfDetector::new();
        assert_eq!(d.on_packet(1000, &pkt(2, false, 160)), Some('2'));
        assert_eq!(d.on_packet(2000, &pkt(3, false, 160)), Some('3'));
        // A delayed retransmitted end of '2'.
        assert_eq!(d.on_packet(1000, &pkt(2, true, 800)), None);
        // Works across timestamp wrap-around.
        let mut d = DtmfDetector::new();
        assert_eq!(d.on_packet(u32::MAX - 100, &pkt(4, true, 400)), Some('4'));
        assert_eq!(d.on_packet(200, &pkt(6, false, 160)), Some('6'));
        assert_eq!(d.on_packet(u32::MAX - 100, &pkt(4, true, 400)), None);
    }

    #[test]
    fn long_event_segments_stay_one_digit() {
        let mut d = DtmfDetector::new();
        assert_eq!(d.on_packet(0, &pkt(0, false, 0xFFFF)), Some('0'));
        // Next segment starts where the previous one's duration ends, without an E bit before.
        assert_eq!(d.on_packet(0xFFFF, &pkt(0, false, 160)), None);
        assert_eq!(d.on_packet(0xFFFF, &pkt(0, true, 1600)), None);
        // But the same key pressed again right after an ended event is a new digit.
        assert_eq!(d.on_packet(0xFFFF + 1600, &pkt(0, false, 160)), Some('0'));
    }

    #[test]
    fn non_dtmf_and_malformed_packets() {
        let mut d = DtmfDetector::new();
        assert_eq!(d.on_packet(100, &pkt(16, false, 160)), None); // flash
        assert_eq!(d.on_packet(200, &[7, 0]), None);
        assert_eq!(d.on_packet(300, &pkt(7, false, 160)), Some('7'));
    }

    #[test]
    fn dtmf_relay_bodies() {
        assert_eq!(parse_dtmf_relay("Signal=5\r\nDuration=160\r\n"), Some('5'));
        assert_eq!(parse_dtmf_relay("Duration=160\nsignal = #\n"), Some('#'));
        assert_eq!(parse_dtmf_relay("Signal=*\r\n"), Some('*'));
        assert_eq!(parse_dtmf_relay("Signal=d"), Some('D'));
        assert_eq!(parse_dtmf_relay("Signal=10\r\nDuration=100"), Some('*'));
        assert_eq!(parse_dtmf_relay("Signal=11"), Some('#'));
        assert_eq!(parse_dtmf_relay("Signal=16"), None);
        assert_eq!(parse_dtmf_relay("Signal=\r\n"), None);
        assert_eq!(parse_dtmf_relay("Signal=55"), None);
        assert_eq!(parse_dtmf_relay("Duration=160"), None);
        assert_eq!(parse_dtmf_relay(""), None);
    }
}
