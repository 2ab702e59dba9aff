//! SDP bodies and URI addresses: where a party wants its signalling and media, and our offer.

use std::net::SocketAddr;

/// The `host:port` of a SIP URI (`sip:user@127.0.0.1:5060;transport=udp`), port 5060 if none.
pub fn uri_addr(uri: &str) -> Option<SocketAddr> {
    let rest = uri.strip_prefix("sip:").unwrap_or(uri);
    let host = rest.rsplit('@').next()?;
    let host = host.split([';', '>', '?']).next()?.trim();
    host.parse()
        .ok()
        .or_else(|| format!("{host}:5060").parse().ok())
}

/// Where an SDP body wants audio: its `c=` address and first `m=audio` port.
pub fn sdp_media_addr(sdp: &str) -> Option<SocketAddr> {
    let mut ip = None;
    let mut port = None;
    for line in sdp.lines().map(str::trim) {
        if let Some(c) = line.strip_prefix("c=IN IP4 ") {
            ip = ip.or_else(|| c.split_whitespace().next().map(str::to_string));
        } else if let Some(m) = line.strip_prefix("m=audio ") {
            port = port.or_else(|| m.split_whitespace().next()?.parse::<u16>().ok());
        }
    }
    format!("{}:{}", ip?, port?).parse().ok()
}

/// A PCMU-only audio SDP for `addr`.
pub fn sdp(addr: SocketAddr, session: u64) -> String {
    let ip = addr.ip();
    format!(
        "v=0\r\no=- {session} 1 IN IP4 {ip}\r\ns=bibridge-load\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n",
        addr.port()
    )
}

pub(super) fn body_of(body: &[u8]) -> Option<String> {
    (!body.is_empty()).then(|| String::from_utf8_lossy(body).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_and_sdp_helpers() {
        assert_eq!(
            uri_addr("sip:1001@127.0.0.1:5071;transport=udp"),
            "127.0.0.1:5071".parse().ok()
        );
        assert_eq!(uri_addr("sip:127.0.0.1"), "127.0.0.1:5060".parse().ok());
        assert_eq!(uri_addr("sip:x@host.invalid:99"), None);
        let s = sdp("127.0.0.1:4000".parse().expect("addr"), 1);
        assert_eq!(sdp_media_addr(&s), "127.0.0.1:4000".parse().ok());
        assert_eq!(sdp_media_addr("v=0\r\nm=audio 5 RTP/AVP 0\r\n"), None);
    }
}
