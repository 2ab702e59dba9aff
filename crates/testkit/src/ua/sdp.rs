//! Just enough SDP (RFC 4566 / RFC 3264) for a test phone: build an audio offer or answer and read
//! back where the peer wants media, in which direction, with which payload types.

use std::net::{IpAddr, SocketAddr};

/// An SDP offer/answer for one audio stream at `rtp_addr`, `o=` version 1.
///
/// Payload types: 0 PCMU, 8 PCMA, 9 G722, 18 G729, 101 telephone-event, 111 opus get their `a=rtpmap`
/// (101 also `a=fmtp:101 0-16`); other numbers are listed on the `m=` line only.
/// `direction` is one of `sendrecv`, `sendonly`, `recvonly`, `inactive`.
pub fn sdp_offer(rtp_addr: SocketAddr, payload_types: &[u8], direction: &str) -> String {
    sdp_offer_v(rtp_addr, payload_types, direction, 1)
}

/// Like [`sdp_offer`] with an explicit `o=` session version.
///
/// RFC 3264 §8 wants the version incremented whenever a later offer/answer in the same session
/// changes; the session id is derived from the RTP port so it stays the same across versions.
pub fn sdp_offer_v(
    rtp_addr: SocketAddr,
    payload_types: &[u8],
    direction: &str,
    version: u64,
) -> String {
    let (net, ip) = match rtp_addr.ip() {
        IpAddr::V4(ip) => ("IP4", ip.to_string()),
        IpAddr::V6(ip) => ("IP6", ip.to_string()),
    };
    let session_id = 100_000 + u64::from(rtp_addr.port());
    let fmts: Vec<String> = payload_types.iter().map(u8::to_string).collect();
    let mut s = String::new();
    s.push_str("v=0\r\n");
    s.push_str(&format!("o=- {session_id} {version} IN {net} {ip}\r\n"));
    s.push_str("s=bibridge-testkit\r\n");
    s.push_str(&format!("c=IN {net} {ip}\r\n"));
    s.push_str("t=0 0\r\n");
    s.push_str(&format!(
        "m=audio {} RTP/AVP {}\r\n",
        rtp_addr.port(),
        fmts.join(" ")
    ));
    for pt in payload_types {
        let map = match pt {
            0 => Some("PCMU/8000"),
            8 => Some("PCMA/8000"),
            9 => Some("G722/8000"),
            18 => Some("G729/8000"),
            101 => Some("telephone-event/8000"),
            111 => Some("opus/48000/2"),
            _ => None,
        };
        if let Some(map) = map {
            s.push_str(&format!("a=rtpmap:{pt} {map}\r\n"));
        }
        if *pt == 101 {
            s.push_str("a=fmtp:101 0-16\r\n");
        }
    }
    s.push_str("a=ptime:20\r\n");
    s.push_str(&format!("a={direction}\r\n"));
    s
}

/// The session-level lines and the lines of the first `m=audio` section.
struct AudioView<'a> {
    session: Vec<&'a str>,
    audio: Option<Vec<&'a str>>,
}

fn audio_view(sdp: &str) -> AudioView<'_> {
    let mut session = Vec::new();
    let mut audio: Option<Vec<&str>> = None;
    let mut in_media = false;
    let mut in_audio = false;
    for line in sdp.lines().map(str::trim) {
        if line.starts_with("m=") {
            in_media = true;
            // Only the first audio section counts; later ones are ignored.
            in_audio = audio.is_none() && line.starts_with("m=audio ");
            if in_audio {
                audio = Some(vec![line]);
            }
            continue;
        }
        if !in_media {
            session.push(line);
        } else if in_audio {
            if let Some(a) = audio.as_mut() {
                a.push(line);
            }
        }
    }
    AudioView { session, audio }
}

fn connection_ip(lines: &[&str]) -> Option<IpAddr> {
    let c = lines.iter().find_map(|l| l.strip_prefix("c="))?;
    let mut parts = c.split_whitespace();
    let _net = parts.next()?;
    let _family = parts.next()?;
    // Multicast addresses may carry "/ttl"; unicast ones do not, but tolerate it.
    let addr = parts.next()?.split('/').next()?;
    addr.parse().ok()
}

/// Where the peer wants audio: the `c=` address (media-level overrides session-level) and the port
/// of the first `m=audio` line. A port of 0 (stream rejected) is returned as is.
pub fn sdp_connection(sdp: &str) -> Option<SocketAddr> {
    let view = audio_view(sdp);
    let audio = view.audio?;
    let port: u16 = audio.first()?.split_whitespace().nth(1)?.parse().ok()?;
    let ip = connection_ip(&audio).or_else(|| connection_ip(&view.session))?;
    Some(SocketAddr::new(ip, port))
}

fn direction_in(lines: &[&str]) -> Option<String> {
    lines.iter().find_map(|l| {
        let a = l.strip_prefix("a=")?;
        matches!(a, "sendrecv" | "sendonly" | "recvonly" | "inactive").then(|| a.to_string())
    })
}

/// The direction of the first audio stream: its own attribute, else the session-level one, else
/// `sendrecv` (the RFC 3264 default). `None` when there is no `m=audio` section.
pub fn sdp_direction(sdp: &str) -> Option<String> {
    let view = audio_view(sdp);
    let audio = view.audio?;
    Some(
        direction_in(&audio)
            .or_else(|| direction_in(&view.session))
            .unwrap_or_else(|| "sendrecv".to_string()),
    )
}

/// The payload types listed on the first `m=audio` line, in order.
pub fn sdp_payload_types(sdp: &str) -> Vec<u8> {
    audio_view(sdp)
        .audio
        .and_then(|a| {
            a.first().map(|m| {
                m.split_whitespace()
                    .skip(3)
                    .filter_map(|p| p.parse().ok())
                    .collect()
            })
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn offer_round_trips() {
        let addr: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let sdp = sdp_offer(addr, &[0, 8, 101], "sendrecv");
        assert!(sdp.contains("m=audio 40000 RTP/AVP 0 8 101\r\n"));
        assert!(sdp.contains("a=rtpmap:8 PCMA/8000\r\n"));
        assert!(sdp.contains("a=fmtp:101 0-16\r\n"));
        assert_eq!(sdp_connection(&sdp), Some(addr));
        assert_eq!(sdp_direction(&sdp).as_deref(), Some("sendrecv"));
        assert_eq!(sdp_payload_types(&sdp), vec![0, 8, 101]);
        let v2 = sdp_offer_v(addr, &[0], "sendonly", 2);
        let o = |s: &str| s.lines().find(|l| l.starts_with("o=")).unwrap().to_string();
        assert_eq!(o(&v2), "o=- 140000 2 IN IP4 127.0.0.1");
        assert_eq!(o(&sdp), "o=- 140000 1 IN IP4 127.0.0.1");
        assert_eq!(sdp_direction(&v2).as_deref(), Some("sendonly"));
    }

    #[test]
    fn media_level_overrides_session_level() {
        let sdp =
            "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\na=recvonly\r\n\
                   m=video 5000 RTP/AVP 96\r\nc=IN IP4 10.0.0.3\r\na=sendonly\r\n\
                   m=audio 6000 RTP/AVP 8\r\nc=IN IP4 10.0.0.2\r\n";
        assert_eq!(sdp_connection(sdp), Some("10.0.0.2:6000".parse().unwrap()));
        // Session-level direction applies when the audio section has none.
        assert_eq!(sdp_direction(sdp).as_deref(), Some("recvonly"));
        assert_eq!(sdp_payload_types(sdp), vec![8]);
        let no_dir = "v=0\r\nc=IN IP6 ::1\r\nm=audio 7000 RTP/AVP 0\r\n";
        assert_eq!(sdp_direction(no_dir).as_deref(), Some("sendrecv"));
        assert_eq!(sdp_connection(no_dir), Some("[::1]:7000".parse().unwrap()));
        assert_eq!(sdp_connection("v=0\r\n"), None);
        assert_eq!(sdp_direction("garbage"), None);
        assert!(sdp_payload_types("m=audio x").is_empty());
    }
}
