//! Two (or three) test phones talking to each other over loopback.
#![allow(clippy::unwrap_used)]

use super::*;
use md5::{Digest as _, Md5};

const WAIT: Duration = Duration::from_secs(5);

async fn pair() -> (TestUa, TestUa) {
    let placeholder: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let mut a = TestUa::bind("1001", "lab1001", placeholder).await.unwrap();
    let b = TestUa::bind("1002", "lab1002", a.local_addr())
        .await
        .unwrap();
    // Each one's "server" is the other: A invites B directly.
    a.server = b.local_addr();
    (a, b)
}

fn rtp(port: u16) -> SocketAddr {
    SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port)
}

fn body(req: &rsip::Request) -> Option<String> {
    body_text(&req.headers, &req.body)
}

#[tokio::test]
async fn invite_answer_reinvite_info_bye() {
    let (mut a, mut b) = pair().await;
    let offer = sdp_offer(rtp(40000), &[0, 8, 101], "sendrecv");
    let answer_sdp = sdp_offer(rtp(40002), &[0, 101], "sendrecv");

    let mut call = a.invite("1002", &offer, false).await.unwrap();
    let inc = b.wait_invite(WAIT).await.unwrap();
    assert_eq!(inc.sdp.as_deref(), Some(offer.as_str()));
    assert_eq!(inc.source, a.local_addr());
    assert_eq!(
        inc.request.uri.to_string(),
        format!("sip:1002@{}", b.local_addr())
    );
    let h = &inc.request.headers;
    assert_eq!(header_value(h, "Max-Forwards").as_deref(), Some("70"));
    assert_eq!(header_value(h, "User-Agent").as_deref(), Some(USER_AGENT));
    let via = header_value(h, "Via").unwrap();
    assert!(
        via.contains(";rport") && via.contains("branch=z9hG4bK"),
        "{via}"
    );
    assert_eq!(
        header_value(h, "Contact").unwrap(),
        format!("<sip:1001@{}>", a.local_addr())
    );
    assert_eq!(
        header_value(h, "From").map(|f| uri_of(&f)).unwrap(),
        "sip:1001@127.0.0.1"
    );

    let (fin, bcall) = tokio::join!(a.wait_final(&mut call, WAIT), b.answer(&inc, &answer_sdp));
    let (fin, mut bcall) = (fin.unwrap(), bcall.unwrap());
    assert_eq!(fin.status_code.code(), 200);
    assert_eq!(call.provisionals, vec![180]);
    assert_eq!(call.remote_tag.as_deref(), Some(inc.to_tag.as_str()));
    assert_eq!(call.remote_sdp.as_deref(), Some(answer_sdp.as_str()));
    assert_eq!(call.remote_target, format!("sip:1002@{}", b.local_addr()));
    assert_eq!(bcall.remote_sdp.as_deref(), Some(offer.as_str()));
    assert_eq!(bcall.remote_tag.as_deref(), Some(call.local_tag.as_str()));
    assert_eq!(bcall.remote_target, format!("sip:1001@{}", a.local_addr()));

    // Caller re-INVITEs (hold); the callee answers with the SDP it was told to use.
    let hold = sdp_offer_v(rtp(40000), &[0, 8, 101], "sendonly", 2);
    let held = sdp_offer_v(rtp(40002), &[0, 101], "recvonly", 2);
    b.set_auto_answer_reinvite(Some(held.clone()));
    let (resp, req) = tokio::join!(
        a.reinvite(&mut call, Some(&hold)),
        b.wait_request("INVITE", WAIT)
    );
    let (resp, req) = (resp.unwrap(), req.unwrap());
    assert_eq!(resp.status_code.code(), 200);
    assert_eq!(body(&req).as_deref(), Some(hold.as_str()));
    assert_eq!(msg::cseq(&req.headers), Some((2, "INVITE".into())));
    assert_eq!(call.local_cseq, 2);
    assert_eq!(call.remote_sdp.as_deref(), Some(held.as_str()));
    assert_eq!(
        sdp_direction(call.remote_sdp.as_deref().unwrap()).as_deref(),
        Some("recvonly")
    );

    // Callee sends an offerless re-INVITE: the caller offers its last SDP in the 200, the
    // callee's ACK carries its answer.
    let (resp, req) = tokio::join!(b.reinvite(&mut bcall, None), a.wait_request("INVITE", WAIT));
    assert_eq!(resp.unwrap().status_code.code(), 200);
    let req = req.unwrap();
    assert_eq!(body(&req), None);
    assert_eq!(bcall.remote_sdp.as_deref(), Some(hold.as_str()));
    assert_eq!(msg::cseq(&req.headers), Some((1, "INVITE".into())));
    let from = header_value(&req.headers, "From").unwrap();
    assert_eq!(tag_of(&from).as_deref(), Some(inc.to_tag.as_str()));

    // INFO with a body and an extra header.
    let dtmf = "Signal=5\r\nDuration=160\r\n";
    let (resp, req) = tokio::join!(
        a.send_request_in_dialog(
            &call,
            "INFO",
            &[("X-Test", "1")],
            Some(("application/dtmf-relay", dtmf))
        ),
        b.wait_request("INFO", WAIT)
    );
    assert_eq!(resp.unwrap().status_code.code(), 200);
    let req = req.unwrap();
    assert_eq!(body(&req).as_deref(), Some(dtmf));
    assert_eq!(header_value(&req.headers, "X-Test").as_deref(), Some("1"));
    assert_eq!(msg::cseq(&req.headers), Some((3, "INFO".into())));

    // BYE ends the dialog on both sides: a second BYE gets 481.
    let (resp, req) = tokio::join!(a.bye(&call), b.wait_request("BYE", WAIT));
    assert_eq!(resp.unwrap().status_code.code(), 200);
    assert_eq!(msg::cseq(&req.unwrap().headers), Some((4, "BYE".into())));
    let (resp, req) = tokio::join!(b.bye(&bcall), a.wait_request("BYE", WAIT));
    assert_eq!(resp.unwrap().status_code.code(), 481);
    req.unwrap();
}

#[tokio::test]
async fn cancel_gets_200_and_invite_487_with_ack_on_same_branch() {
    let (mut a, mut b) = pair().await;
    let offer = sdp_offer(rtp(40010), &[0], "sendrecv");
    let mut call = a.invite("1002", &offer, false).await.unwrap();
    let inc = b.wait_invite(WAIT).await.unwrap();
    b.respond(&inc, 180, "Ringing", None).await.unwrap();
    let ringing = a.wait_provisional(&mut call, WAIT).await.unwrap();
    assert_eq!(ringing.status_code.code(), 180);

    let (resp, req) = tokio::join!(a.cancel(&call), b.wait_request("CANCEL", WAIT));
    assert_eq!(resp.unwrap().status_code.code(), 200);
    let cancel = req.unwrap();
    let invite_branch = msg::top_via_branch(&inc.request.headers).unwrap();
    assert_eq!(
        msg::top_via_branch(&cancel.headers),
        Some(invite_branch.clone())
    );
    assert_eq!(msg::cseq(&cancel.headers), Some((1, "CANCEL".into())));
    assert_eq!(cancel.uri, inc.request.uri);

    let fin = a.wait_final(&mut call, WAIT).await.unwrap();
    assert_eq!(fin.status_code.code(), 487);
    assert_eq!(call.provisionals, vec![180]);
    let to = header_value(&fin.headers, "To").unwrap();
    assert_eq!(tag_of(&to).as_deref(), Some(inc.to_tag.as_str()));
    let ack = b.wait_ack(&inc, WAIT).await.unwrap();
    assert_eq!(msg::top_via_branch(&ack.headers), Some(invite_branch));
    assert_eq!(msg::cseq(&ack.headers), Some((1, "ACK".into())));

    // A CANCEL for a transaction that does not exist is refused with 481.
    let stray = raw_invite(a.local_addr(), b.local_addr(), "z9hG4bKnosuchinvite")
        .replacen("INVITE sip:", "CANCEL sip:", 1)
        .replace("CSeq: 7 INVITE", "CSeq: 7 CANCEL");
    a.send_raw(stray.as_bytes(), b.local_addr()).await.unwrap();
    b.wait_request("CANCEL", WAIT).await.unwrap();
    let (resp, _) = a.recv_message(WAIT).await.unwrap();
    let rsip::SipMessage::Response(resp) = resp else {
        panic!("expected a response")
    };
    assert_eq!(resp.status_code.code(), 481);
}

fn raw_invite(from: SocketAddr, to: SocketAddr, branch: &str) -> String {
    format!(
        "INVITE sip:1002@{to} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {from};branch={branch};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:raw@127.0.0.1>;tag=rawtag\r\n\
         To: <sip:1002@127.0.0.1>\r\n\
         Call-ID: raw-call-1@127.0.0.1\r\n\
         CSeq: 7 INVITE\r\n\
         Contact: <sip:raw@{from}>\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

#[tokio::test]
async fn retransmitted_invite_gets_the_same_response() {
    let (mut raw, mut b) = pair().await;
    let invite = raw_invite(raw.local_addr(), b.local_addr(), "z9hG4bKretrans1");
    // Sent twice before anyone looks: only one incoming call.
    raw.send_raw(invite.as_bytes(), b.local_addr())
        .await
        .unwrap();
    raw.send_raw(invite.as_bytes(), b.local_addr())
        .await
        .unwrap();
    let inc = b.wait_invite(WAIT).await.unwrap();
    assert!(b.wait_invite(Duration::from_millis(200)).await.is_err());

    b.respond(&inc, 486, "Busy Here", None).await.unwrap();
    let (first, from) = raw.recv_raw(WAIT).await.unwrap();
    assert_eq!(from, b.local_addr());
    let text = String::from_utf8(first.clone()).unwrap();
    assert!(text.starts_with("SIP/2.0 486 Busy Here\r\n"), "{text}");
    assert!(text.contains(&format!("To: <sip:1002@127.0.0.1>;tag={}", inc.to_tag)));
    assert!(text.contains("CSeq: 7 INVITE"));

    // The retransmission is answered with the very same bytes, without the test's help,
    // and does not show up as a new call.
    let absorbed = b.absorbed_retransmissions();
    raw.send_raw(invite.as_bytes(), b.local_addr())
        .await
        .unwrap();
    let (second, _) = raw.recv_raw(WAIT).await.unwrap();
    assert_eq!(second, first);
    assert_eq!(b.absorbed_retransmissions(), absorbed + 1);
    assert!(b.wait_invite(Duration::from_millis(200)).await.is_err());

    // Without an ACK the UAS retransmits its final response (Timer G).
    let retransmitted = tokio::join!(
        b.wait_ack(&inc, Duration::from_millis(800)),
        raw.recv_raw(Duration::from_millis(800))
    );
    assert!(retransmitted.0.is_err());
    assert_eq!(retransmitted.1.unwrap().0, first);
}

#[tokio::test]
async fn register_answers_digest_challenge() {
    let (mut phone, mut registrar) = pair().await;
    let nonce = "abc123nonce";
    let challenge = format!("Digest realm=\"lab\", nonce=\"{nonce}\", algorithm=MD5, qop=\"auth\"");
    let script = async {
        let first = registrar.wait_request("REGISTER", WAIT).await.unwrap();
        assert!(header_value(&first.headers, "Authorization").is_none());
        assert_eq!(
            header_value(&first.headers, "Expires").as_deref(),
            Some("300")
        );
        registrar
            .reply(
                &first,
                401,
                "Unauthorized",
                &[("WWW-Authenticate", &challenge)],
                None,
            )
            .await
            .unwrap();
        let second = registrar.wait_request("REGISTER", WAIT).await.unwrap();
        registrar
            .reply(&second, 200, "OK", &[], None)
            .await
            .unwrap();
        (first, second)
    };
    let (resp, (first, second)) = tokio::join!(phone.register(300, None), script);
    assert_eq!(resp.unwrap().status_code.code(), 200);

    let h1 = &first.headers;
    let h2 = &second.headers;
    assert_eq!(msg::call_id(h1), msg::call_id(h2));
    assert_eq!(msg::cseq(h1), Some((1, "REGISTER".into())));
    assert_eq!(msg::cseq(h2), Some((2, "REGISTER".into())));
    assert_ne!(msg::top_via_branch(h1), msg::top_via_branch(h2));
    assert_eq!(
        second.uri.to_string(),
        format!("sip:{}", registrar.local_addr())
    );

    // Check the digest independently of the UA's own code.
    let auth = header_value(h2, "Authorization").unwrap();
    let field = |name: &str| {
        split_list(auth.trim_start_matches("Digest "))
            .into_iter()
            .find_map(|p| {
                let (k, v) = p.split_once('=')?;
                (k.trim() == name).then(|| v.trim().trim_matches('"').to_string())
            })
            .unwrap()
    };
    assert_eq!(field("username"), "1001");
    assert_eq!(field("uri"), second.uri.to_string());
    let md5 = |s: String| hex::encode(Md5::digest(s.as_bytes()));
    let ha1 = md5("1001:lab:lab1001".into());
    let ha2 = md5(format!("REGISTER:{}", field("uri")));
    let want = md5(format!(
        "{ha1}:{nonce}:{}:{}:auth:{ha2}",
        field("nc"),
        field("cnonce")
    ));
    assert_eq!(field("response"), want);

    // The next registration keeps the Call-ID and counts on from the last CSeq.
    let script = async {
        let r = registrar.wait_request("REGISTER", WAIT).await.unwrap();
        registrar.reply(&r, 200, "OK", &[], None).await.unwrap();
        r
    };
    let (resp, third) = tokio::join!(phone.register(0, None), script);
    assert_eq!(resp.unwrap().status_code.code(), 200);
    assert_eq!(msg::cseq(&third.headers), Some((3, "REGISTER".into())));
    assert_eq!(msg::call_id(&third.headers), msg::call_id(h1));
}

#[tokio::test]
async fn invite_answers_proxy_challenge() {
    let (mut a, mut proxy) = pair().await;
    let offer = sdp_offer(rtp(40020), &[8], "sendrecv");
    let script = async {
        let inc = proxy.wait_invite(WAIT).await.unwrap();
        proxy
            .reply(
                &inc.request,
                407,
                "Proxy Authentication Required",
                &[(
                    "Proxy-Authenticate",
                    "Digest realm=\"lab\", nonce=\"n1\", algorithm=SHA-256, qop=\"auth\"",
                )],
                None,
            )
            .await
            .unwrap();
        let ack = proxy.wait_ack(&inc, WAIT).await.unwrap();
        let inc2 = proxy.wait_invite(WAIT).await.unwrap();
        (inc, ack, inc2)
    };
    let (call, (inc, ack, inc2)) = tokio::join!(a.invite("2001", &offer, true), script);
    let mut call = call.unwrap();
    assert_eq!(
        msg::top_via_branch(&ack.headers),
        msg::top_via_branch(&inc.request.headers)
    );
    let auth = header_value(&inc2.request.headers, "Proxy-Authorization").unwrap();
    assert!(auth.contains("algorithm=SHA-256"), "{auth}");
    assert!(auth.contains(&format!("uri=\"sip:2001@{}\"", proxy.local_addr())));
    assert_eq!(inc2.call_id, inc.call_id);
    assert_eq!(inc2.from_tag, inc.from_tag);
    assert_eq!(msg::cseq(&inc2.request.headers), Some((2, "INVITE".into())));
    assert_eq!(inc2.sdp.as_deref(), Some(offer.as_str()));

    proxy.respond(&inc2, 100, "Trying", None).await.unwrap();
    proxy.respond(&inc2, 486, "Busy Here", None).await.unwrap();
    let fin = a.wait_final(&mut call, WAIT).await.unwrap();
    assert_eq!(fin.status_code.code(), 486);
    assert_eq!(call.provisionals, vec![100]);
    assert_eq!(call.final_status, Some(486));
    proxy.wait_ack(&inc2, WAIT).await.unwrap();
}

#[tokio::test]
async fn requests_that_arrive_while_waiting_for_something_else_are_kept() {
    let (mut a, mut b) = pair().await;
    let offer = sdp_offer(rtp(40030), &[0], "sendrecv");
    let mut call = a.invite("1002", &offer, false).await.unwrap();
    let inc = b.wait_invite(WAIT).await.unwrap();
    let (_, bcall) = tokio::join!(a.wait_final(&mut call, WAIT), b.answer(&inc, &offer));
    let bcall = bcall.unwrap();
    // B sends INFO then BYE while A is not listening; A then asks for BYE first, INFO second.
    b.set_request_timeout(Duration::from_secs(3));
    let sender = async {
        let info = b.send_request_in_dialog(&bcall, "INFO", &[], None).await;
        let bye = b.bye(&bcall).await;
        (
            info.unwrap().status_code.code(),
            bye.unwrap().status_code.code(),
        )
    };
    let receiver = async {
        // The INFO arrives while A waits for a BYE: it must stay queued, and B's retransmissions
        // of it (Timer E, unanswered for over a second) must not queue a second copy.
        assert!(a
            .wait_request("BYE", Duration::from_millis(1200))
            .await
            .is_err());
        let info = a.wait_request("INFO", WAIT).await.unwrap();
        assert_eq!(info.method, rsip::Method::Info);
        let bye = a.wait_request("BYE", WAIT).await.unwrap();
        assert!(a
            .wait_request("INFO", Duration::from_millis(300))
            .await
            .is_err());
        bye
    };
    let ((info, bye), bye_req) = tokio::join!(sender, receiver);
    assert_eq!((info, bye), (200, 200));
    assert_eq!(bye_req.method, rsip::Method::Bye);
}

#[tokio::test]
async fn options_and_unparsable_datagrams() {
    let (mut a, mut b) = pair().await;
    let uri = format!("sip:1002@{}", b.local_addr());
    let (resp, req) = tokio::join!(a.options(&uri), b.wait_request("OPTIONS", WAIT));
    let resp = resp.unwrap();
    assert_eq!(resp.status_code.code(), 200);
    assert!(header_value(&resp.headers, "Allow")
        .unwrap()
        .contains("INVITE"));
    assert_eq!(req.unwrap().uri.to_string(), uri);

    // Garbage is queued as is for recv_raw and does not disturb SIP waits.
    a.send_raw(b"not sip at all", b.local_addr()).await.unwrap();
    assert!(b
        .wait_request("BYE", Duration::from_millis(200))
        .await
        .is_err());
    let (raw, from) = b.recv_raw(WAIT).await.unwrap();
    assert_eq!(raw, b"not sip at all");
    assert_eq!(from, a.local_addr());
}

#[tokio::test]
async fn route_sets_are_followed_on_both_sides() {
    let (mut a, mut b) = pair().await;
    let mut proxy = TestUa::bind("proxy", "", a.local_addr()).await.unwrap();
    let rr = format!("<sip:{};lr>", proxy.local_addr());
    let offer = sdp_offer(rtp(40040), &[0], "sendrecv");

    // Caller side: the 2xx carries a Record-Route, so the ACK goes to the proxy with a Route.
    let mut call = a.invite("1002", &offer, false).await.unwrap();
    let inc = b.wait_invite(WAIT).await.unwrap();
    b.reply(
        &inc.request,
        200,
        "OK",
        &[("Record-Route", &rr)],
        Some(("application/sdp", &offer)),
    )
    .await
    .unwrap();
    assert_eq!(
        a.wait_final(&mut call, WAIT)
            .await
            .unwrap()
            .status_code
            .code(),
        200
    );
    assert_eq!(call.route_set, vec![rr.clone()]);
    let (ack, from) = proxy.recv_message(WAIT).await.unwrap();
    let rsip::SipMessage::Request(ack) = ack else {
        panic!("expected the ACK")
    };
    assert_eq!(from, a.local_addr());
    assert_eq!(ack.method, rsip::Method::Ack);
    assert_eq!(header_value(&ack.headers, "Route"), Some(rr.clone()));
    assert_eq!(ack.uri.to_string(), format!("sip:1002@{}", b.local_addr()));

    // Callee side: Record-Route from the INVITE is kept in order and used for our BYE.
    let raw = raw_invite(a.local_addr(), b.local_addr(), "z9hG4bKrr1").replace(
        "Max-Forwards: 70\r\n",
        &format!("Max-Forwards: 70\r\nRecord-Route: {rr}\r\n"),
    );
    a.send_raw(raw.as_bytes(), b.local_addr()).await.unwrap();
    let inc = b.wait_invite(WAIT).await.unwrap();
    let ack_raw = raw
        .replacen("INVITE sip:", "ACK sip:", 1)
        .replace("z9hG4bKrr1", "z9hG4bKrr1ack")
        .replace("CSeq: 7 INVITE", "CSeq: 7 ACK");
    let b_addr = b.local_addr();
    let caller = async {
        // Skip the 180 and 200, then ACK.
        let mut seen = Vec::new();
        while seen.len() < 2 {
            let (m, _) = a.recv_message(WAIT).await.unwrap();
            if let rsip::SipMessage::Response(r) = m {
                assert_eq!(header_value(&r.headers, "Record-Route"), Some(rr.clone()));
                seen.push(r.status_code.code());
            }
        }
        a.send_raw(ack_raw.as_bytes(), b_addr).await.unwrap();
        seen
    };
    let (bcall, seen) = tokio::join!(b.answer(&inc, &offer), caller);
    assert_eq!(seen, vec![180, 200]);
    let bcall = bcall.unwrap();
    assert_eq!(bcall.route_set, vec![rr.clone()]);
    b.set_request_timeout(Duration::from_millis(600));
    let bye = tokio::join!(b.bye(&bcall), proxy.recv_message(WAIT)).1;
    let rsip::SipMessage::Request(bye) = bye.unwrap().0 else {
        panic!("expected the BYE")
    };
    assert_eq!(bye.method, rsip::Method::Bye);
    assert_eq!(bye.uri.to_string(), format!("sip:raw@{}", a.local_addr()));
    assert_eq!(header_value(&bye.headers, "Route"), Some(rr));
    let to = header_value(&bye.headers, "To").unwrap();
    assert_eq!(tag_of(&to).as_deref(), Some("rawtag"));
}
