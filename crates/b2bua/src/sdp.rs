//! SDP handling for media anchoring (RFC 4566) and offer/answer (RFC 3264).
//!
//! Parsing and printing is `rtc-sdp`'s (it round-trips unknown attributes, which matters: phones put
//! vendor attributes in SDP and a B2BUA must not silently drop them). What is ours is the policy:
//! - every leg sees bibridge's own address and port ([`anchor`]);
//! - offers are restricted to the codecs bibridge can handle, and answers to what was offered
//!   ([`restrict_offer`], [`restrict_answer`]), so both legs end up on a common codec;
//! - each leg keeps its own `o=` line whose version increases with each new SDP we send on it
//!   ([`Origin`]), as RFC 3264 §8 asks.

use std::io::Cursor;
use std::net::{IpAddr, SocketAddr};

use rtc_sdp::description::common::{Address, Attribute, ConnectionInformation};
use rtc_sdp::description::session::SessionDescription;

/// Errors from SDP handling.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SdpError {
    #[error("unparsable SDP: {0}")]
    /// The text is not SDP (the parser's message).
    Parse(String),
    #[error("SDP has no audio stream")]
    /// No `m=audio` line.
    NoAudio,
    #[error("no codec in common")]
    /// None of the offered codecs is one we handle.
    NoCommonCodec,
}

/// Media direction attribute (RFC 3264 §5.1, §8.4 for hold).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// `a=sendrecv` (the default).
    SendRecv,
    /// `a=sendonly` (the sender holds the other party).
    SendOnly,
    /// `a=recvonly`.
    RecvOnly,
    /// `a=inactive` (both directions held).
    Inactive,
}

impl Direction {
    fn from_attr(key: &str) -> Option<Direction> {
        match key {
            "sendrecv" => Some(Direction::SendRecv),
            "sendonly" => Some(Direction::SendOnly),
            "recvonly" => Some(Direction::RecvOnly),
            "inactive" => Some(Direction::Inactive),
            _ => None,
        }
    }

    /// The direction an answer takes to this offered direction (RFC 3264 §6.1).
    pub fn answer(self) -> Direction {
        match self {
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            d => d,
        }
    }

    /// True when media is not flowing both ways: a held call. The RTP inactivity timer does not
    /// run while a call is held (a held party legitimately sends nothing).
    pub fn is_hold(self) -> bool {
        self != Direction::SendRecv
    }
}

/// One codec line of an audio stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Codec {
    /// RTP payload type.
    pub payload_type: u8,
    /// Encoding name as written (`PCMU`, `opus`, `telephone-event`).
    pub name: String,
    /// RTP clock rate.
    pub clock_rate: u32,
}

/// What the media plane needs to know of a session description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioInfo {
    /// Where the peer wants to receive RTP; `None` if the port is 0 or the address is unspecified
    /// (`0.0.0.0`, the RFC 2543 hold style).
    pub rtp_addr: Option<SocketAddr>,
    /// The stream's direction attribute.
    pub direction: Direction,
    /// The stream's codecs, in preference order.
    pub codecs: Vec<Codec>,
}

// Codecs bibridge accepts on its legs: relaying needs no codec knowledge, but the mixer does, and
// a call must be mixable the moment a supervisor joins, so only codecs the media crate can decode
// pass (see `is_supported`).

/// Whether bibridge can take this codec on a leg: the mixer can decode it (Opus only when built
/// with the `opus` feature), or it is telephone-event.
fn is_supported(c: &Codec) -> bool {
    c.name.eq_ignore_ascii_case("telephone-event")
        || bibridge_media::codec::CodecKind::from_rtpmap(&c.name, c.clock_rate)
            .is_some_and(|k| k.is_available())
}

/// Parse an SDP body.
pub fn parse(body: &[u8]) -> Result<SessionDescription, SdpError> {
    let mut cursor = Cursor::new(body);
    SessionDescription::unmarshal(&mut cursor).map_err(|e| SdpError::Parse(e.to_string()))
}

/// Print an SDP body.
pub fn print(sdp: &SessionDescription) -> String {
    sdp.marshal()
}

fn static_codec(pt: u8) -> Option<(&'static str, u32)> {
    // RFC 3551 static payload types we care about.
    match pt {
        0 => Some(("PCMU", 8000)),
        8 => Some(("PCMA", 8000)),
        9 => Some(("G722", 8000)),
        _ => None,
    }
}

fn audio_index(sdp: &SessionDescription) -> Result<usize, SdpError> {
    sdp.media_descriptions
        .iter()
        .position(|m| m.media_name.media == "audio")
        .ok_or(SdpError::NoAudio)
}

fn codecs_of(md: &rtc_sdp::description::media::MediaDescription) -> Vec<Codec> {
    let mut out = Vec::new();
    for fmt in &md.media_name.formats {
        let Ok(pt) = fmt.parse::<u8>() else { continue };
        let rtpmap = md.attributes.iter().find_map(|a| {
            if a.key != "rtpmap" {
                return None;
            }
            let v = a.value.as_deref()?;
            let (num, rest) = v.split_once(' ')?;
            if num.trim().parse::<u8>().ok()? != pt {
                return None;
            }
            let mut parts = rest.trim().split('/');
            let name = parts.next()?.to_string();
            let rate = parts.next()?.parse::<u32>().ok()?;
            Some((name, rate))
        });
        match rtpmap.or_else(|| static_codec(pt).map(|(n, r)| (n.to_string(), r))) {
            Some((name, clock_rate)) => out.push(Codec {
                payload_type: pt,
                name,
                clock_rate,
            }),
            None => continue,
        }
    }
    out
}

/// Extract the audio stream facts from an SDP.
pub fn audio_info(sdp: &SessionDescription) -> Result<AudioInfo, SdpError> {
    let idx = audio_index(sdp)?;
    let md = &sdp.media_descriptions[idx];
    let conn = md
        .connection_information
        .as_ref()
        .or(sdp.connection_information.as_ref());
    let ip: Option<IpAddr> = conn
        .and_then(|c| c.address.as_ref())
        .and_then(|a| a.address.parse().ok());
    let port = md.media_name.port.value;
    let rtp_addr = match ip {
        Some(ip) if !ip.is_unspecified() && port > 0 && port <= u16::MAX as isize => {
            Some(SocketAddr::new(ip, port as u16))
        }
        _ => None,
    };
    let direction = md
        .attributes
        .iter()
        .find_map(|a| Direction::from_attr(&a.key))
        .or_else(|| {
            sdp.attributes
                .iter()
                .find_map(|a| Direction::from_attr(&a.key))
        })
        .unwrap_or(Direction::SendRecv);
    // RFC 3264 §8.4 (old style): c=0.0.0.0 means hold.
    let direction = if ip.is_some_and(|ip| ip.is_unspecified()) && direction == Direction::SendRecv
    {
        Direction::Inactive
    } else {
        direction
    };
    Ok(AudioInfo {
        rtp_addr,
        direction,
        codecs: codecs_of(md),
    })
}

fn keep_formats(md: &mut rtc_sdp::description::media::MediaDescription, keep: &[u8]) {
    md.media_name
        .formats
        .retain(|f| f.parse::<u8>().is_ok_and(|pt| keep.contains(&pt)));
    // Drop per-payload attributes of removed formats (rtpmap, fmtp, rtcp-fb).
    md.attributes.retain(|a| {
        if !matches!(a.key.as_str(), "rtpmap" | "fmtp" | "rtcp-fb") {
            return true;
        }
        let Some(v) = a.value.as_deref() else {
            return false;
        };
        let first = v.split_whitespace().next().unwrap_or("");
        first == "*" || first.parse::<u8>().is_ok_and(|pt| keep.contains(&pt))
    });
}

/// Keep only these payload types in the audio stream (an answer choosing one codec).
pub fn keep_payload_types(sdp: &mut SessionDescription, keep: &[Option<u8>]) {
    let keep: Vec<u8> = keep.iter().flatten().copied().collect();
    if let Ok(idx) = audio_index(sdp) {
        keep_formats(&mut sdp.media_descriptions[idx], &keep);
    }
}

/// Add the static-payload-type codecs bibridge can transcode (PCMU, PCMA, G.722) that an offer
/// lacks, after the offerer's own (its preference stays first).
pub fn add_transcodable(sdp: &mut SessionDescription) {
    let Ok(idx) = audio_index(sdp) else { return };
    let md = &mut sdp.media_descriptions[idx];
    let have = codecs_of(md);
    for (pt, name) in [(0u8, "PCMU"), (8, "PCMA"), (9, "G722")] {
        let taken = have
            .iter()
            .any(|c| c.payload_type == pt || c.name.eq_ignore_ascii_case(name));
        if taken {
            continue;
        }
        // Insert before telephone-event so voice codecs stay together.
        let te = md.media_name.formats.iter().position(|f| {
            f.parse::<u8>()
                .ok()
                .and_then(|p| have.iter().find(|c| c.payload_type == p))
                .is_some_and(|c| c.name.eq_ignore_ascii_case("telephone-event"))
        });
        match te {
            Some(i) => md.media_name.formats.insert(i, pt.to_string()),
            None => md.media_name.formats.push(pt.to_string()),
        }
        md.attributes.push(Attribute::new(
            "rtpmap".into(),
            Some(format!("{pt} {name}/8000")),
        ));
    }
}

/// Restrict an offer to the codecs bibridge supports. Fails if no audio codec (other than
/// telephone-event) is left; the caller then answers 488.
pub fn restrict_offer(sdp: &mut SessionDescription) -> Result<(), SdpError> {
    let idx = audio_index(sdp)?;
    let codecs = codecs_of(&sdp.media_descriptions[idx]);
    let keep: Vec<u8> = codecs
        .iter()
        .filter(|c| is_supported(c))
        .map(|c| c.payload_type)
        .collect();
    let has_voice = codecs
        .iter()
        .any(|c| keep.contains(&c.payload_type) && !c.name.eq_ignore_ascii_case("telephone-event"));
    if !has_voice {
        return Err(SdpError::NoCommonCodec);
    }
    keep_formats(&mut sdp.media_descriptions[idx], &keep);
    Ok(())
}

/// Restrict an answer to what the offer held (RFC 3264 §6.1: an answer may only list formats of
/// the offer). Matching is by encoding name and clock rate, since the answerer may use other
/// dynamic payload type numbers.
pub fn restrict_answer(answer: &mut SessionDescription, offer: &AudioInfo) -> Result<(), SdpError> {
    let idx = audio_index(answer)?;
    let codecs = codecs_of(&answer.media_descriptions[idx]);
    let keep: Vec<u8> = codecs
        .iter()
        .filter(|c| {
            offer
                .codecs
                .iter()
                .any(|o| o.name.eq_ignore_ascii_case(&c.name) && o.clock_rate == c.clock_rate)
        })
        .map(|c| c.payload_type)
        .collect();
    let has_voice = codecs
        .iter()
        .any(|c| keep.contains(&c.payload_type) && !c.name.eq_ignore_ascii_case("telephone-event"));
    // A disabled stream (port 0) legitimately has no usable codec.
    if !has_voice && answer.media_descriptions[idx].media_name.port.value != 0 {
        return Err(SdpError::NoCommonCodec);
    }
    keep_formats(&mut answer.media_descriptions[idx], &keep);
    Ok(())
}

/// Our `o=` line for one leg: a stable session id and a version that increases each time we send
/// a changed SDP on that leg (RFC 3264 §8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The `o=` session id.
    pub session_id: u64,
    /// The `o=` session version.
    pub version: u64,
}

/// Rewrite `sdp` so that the peer sends its media to bibridge: connection address, audio port, RTCP
/// port, origin. ICE candidates and other transport addresses of the far side are removed: they
/// would let the peer bypass the anchor.
pub fn anchor(sdp: &mut SessionDescription, ip: IpAddr, rtp_port: u16, origin: &Origin) {
    let (addr_type, addr) = match ip {
        IpAddr::V4(v4) => ("IP4", v4.to_string()),
        IpAddr::V6(v6) => ("IP6", v6.to_string()),
    };
    sdp.origin.username = "bibridge".into();
    // The far side's session name (often its product name) is none of this side's business.
    sdp.session_name = "bibridge".to_string();
    sdp.origin.session_id = origin.session_id;
    sdp.origin.session_version = origin.version;
    sdp.origin.network_type = "IN".into();
    sdp.origin.address_type = addr_type.into();
    sdp.origin.unicast_address = addr.clone();
    let conn = ConnectionInformation {
        network_type: "IN".into(),
        address_type: addr_type.into(),
        address: Some(Address {
            address: addr,
            ttl: None,
            range: None,
        }),
    };
    sdp.connection_information = Some(conn);
    let strip = |attrs: &mut Vec<Attribute>| {
        attrs.retain(|a| {
            !matches!(
                a.key.as_str(),
                "candidate"
                    | "ice-ufrag"
                    | "ice-pwd"
                    | "ice-options"
                    | "rtcp"
                    | "remote-candidates"
            )
        })
    };
    strip(&mut sdp.attributes);
    for md in &mut sdp.media_descriptions {
        md.connection_information = None;
        strip(&mut md.attributes);
        if md.media_name.media == "audio" {
            if md.media_name.port.value != 0 {
                md.media_name.port.value = rtp_port as isize;
            }
        } else {
            // Only audio is anchored; other streams are declined (port 0) rather than leaked.
            md.media_name.port.value = 0;
        }
    }
}

/// Set the direction attribute of the audio stream (used when bibridge itself must change it).
pub fn set_direction(sdp: &mut SessionDescription, dir: Direction) {
    let key = match dir {
        Direction::SendRecv => "sendrecv",
        Direction::SendOnly => "sendonly",
        Direction::RecvOnly => "recvonly",
        Direction::Inactive => "inactive",
    };
    for md in &mut sdp.media_descriptions {
        md.attributes
            .retain(|a| Direction::from_attr(&a.key).is_none());
        md.attributes.push(Attribute::new(key.into(), None));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const OFFER: &str = "v=0\r\n\
o=alice 2890844526 2890844526 IN IP4 10.0.0.5\r\n\
s=-\r\n\
c=IN IP4 10.0.0.5\r\n\
t=0 0\r\n\
m=audio 49170 RTP/AVP 0 8 18 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:18 G729/8000\r\n\
a=fmtp:18 annexb=no\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=x-vendor:keep-me\r\n\
a=rtcp:49171\r\n\
a=sendrecv\r\n";

    #[test]
    fn audio_info_reads_address_codecs_direction() {
        let sdp = parse(OFFER.as_bytes()).unwrap();
        let info = audio_info(&sdp).unwrap();
        assert_eq!(info.rtp_addr, Some("10.0.0.5:49170".parse().unwrap()));
        assert_eq!(info.direction, Direction::SendRecv);
        let names: Vec<_> = info.codecs.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["PCMU", "PCMA", "G729", "telephone-event"]);
    }

    #[test]
    fn restrict_offer_drops_unsupported_and_their_attributes() {
        let mut sdp = parse(OFFER.as_bytes()).unwrap();
        restrict_offer(&mut sdp).unwrap();
        let text = print(&sdp);
        assert!(text.contains("m=audio 49170 RTP/AVP 0 8 101"), "{text}");
        assert!(!text.contains("G729"));
        assert!(!text.contains("annexb"));
        assert!(text.contains("a=fmtp:101 0-16"));
        assert!(
            text.contains("a=x-vendor:keep-me"),
            "unknown attributes survive"
        );
    }

    #[test]
    fn restrict_offer_fails_without_common_voice_codec() {
        let only_g729 = OFFER.replace(
            "m=audio 49170 RTP/AVP 0 8 18 101",
            "m=audio 49170 RTP/AVP 18 101",
        );
        let mut sdp = parse(only_g729.as_bytes()).unwrap();
        assert_eq!(restrict_offer(&mut sdp), Err(SdpError::NoCommonCodec));
    }

    #[test]
    fn anchor_rewrites_addresses_and_bumps_origin() {
        let mut sdp = parse(OFFER.as_bytes()).unwrap();
        let origin = Origin {
            session_id: 77,
            version: 3,
        };
        anchor(&mut sdp, "127.0.0.1".parse().unwrap(), 20002, &origin);
        let text = print(&sdp);
        assert!(text.contains("o=bibridge 77 3 IN IP4 127.0.0.1"), "{text}");
        assert!(text.contains("c=IN IP4 127.0.0.1"));
        assert!(text.contains("m=audio 20002 RTP/AVP"));
        assert!(
            !text.contains("10.0.0.5"),
            "no trace of the far side: {text}"
        );
        assert!(!text.contains("a=rtcp:"));
        let info = audio_info(&parse(text.as_bytes()).unwrap()).unwrap();
        assert_eq!(info.rtp_addr, Some("127.0.0.1:20002".parse().unwrap()));
    }

    #[test]
    fn hold_forms_are_recognised() {
        let send_only = OFFER.replace("a=sendrecv", "a=sendonly");
        let info = audio_info(&parse(send_only.as_bytes()).unwrap()).unwrap();
        assert!(info.direction.is_hold());
        let old_style = OFFER.replace("c=IN IP4 10.0.0.5", "c=IN IP4 0.0.0.0");
        let info = audio_info(&parse(old_style.as_bytes()).unwrap()).unwrap();
        assert_eq!(info.direction, Direction::Inactive);
        assert_eq!(info.rtp_addr, None);
    }

    #[test]
    fn restrict_answer_keeps_only_offered_codecs() {
        let offer = audio_info(&parse(OFFER.as_bytes()).unwrap()).unwrap();
        let answer = OFFER
            .replace(
                "m=audio 49170 RTP/AVP 0 8 18 101",
                "m=audio 5000 RTP/AVP 9 8 101",
            )
            .replace("a=rtpmap:0 PCMU/8000\r\n", "a=rtpmap:9 G722/8000\r\n");
        let mut sdp = parse(answer.as_bytes()).unwrap();
        restrict_answer(&mut sdp, &offer).unwrap();
        let info = audio_info(&sdp).unwrap();
        let pts: Vec<_> = info.codecs.iter().map(|c| c.payload_type).collect();
        assert_eq!(pts, [8, 101]);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(parse(b"hello").is_err());
        assert!(parse(b"").is_err());
        assert!(parse(b"v=0\r\nm=audio x RTP/AVP\r\n").is_err());
    }
}
