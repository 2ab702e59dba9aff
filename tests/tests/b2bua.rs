//! End-to-end B2BUA behaviour over real sockets on 127.0.0.1: bibridge runs in-process on
//! ephemeral ports; test phones are `bibridge_testkit::ua::TestUa`, their media `RtpPeer`s.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use bibridge_testkit::ua::{sdp_direction, sdp_offer, AlgorithmPref, TestUa};
use common::*;

const T: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_with_md5_and_sha256_digest() {
    let lab = start(|_| {}).await;
    for (ext, alg) in [
        ("1001", AlgorithmPref::Md5),
        ("1002", AlgorithmPref::Sha256),
    ] {
        let mut ua = TestUa::bind(ext, &format!("lab{ext}"), lab.sip)
            .await
            .unwrap();
        let r = ua.register(600, Some(alg)).await.unwrap();
        assert_eq!(r.status_code.code(), 200, "{ext} with {alg:?}");
        let contact = bibridge_sip::message::header(&r.headers, "Contact").unwrap();
        assert!(
            contact.contains(&ua.local_addr().to_string()),
            "binding echoed: {contact}"
        );
        assert!(contact.contains("expires=600"), "{contact}");
        // Unregister.
        let r = ua.register(0, Some(alg)).await.unwrap();
        assert_eq!(r.status_code.code(), 200);
        assert!(
            bibridge_sip::message::header(&r.headers, "Contact").is_none(),
            "no bindings left"
        );
    }
    let mut wrong = TestUa::bind("1003", "not-the-password", lab.sip)
        .await
        .unwrap();
    let r = wrong.register(600, None).await.unwrap();
    assert_eq!(r.status_code.code(), 401, "wrong password is refused");
    lab.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trunk_call_relays_audio_both_ways() {
    let lab = start(|_| {}).await;
    let call = connect_call(&lab, "1001").await;
    call.talk();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_hears(
        "customer",
        &call.customer_rtp.received_audio(),
        &[AGENT_HZ],
        &[CUSTOMER_HZ],
        1.0,
    );
    assert_hears(
        "agent",
        &call.agent_rtp.received_audio(),
        &[CUSTOMER_HZ],
        &[AGENT_HZ],
        1.0,
    );
    // Symmetric RTP: each party receives from the very address it sends to (bibridge's port).
    assert_eq!(call.customer_rtp.packets_from(), Some(call.anchor_customer));
    assert_eq!(call.agent_rtp.packets_from(), Some(call.anchor_agent));
    // Relayed untouched: the agent's payloads arrive byte-identical at the customer.
    let sent = call.agent_rtp.sent_packets();
    let got = call.customer_rtp.received_packets();
    let last = got.last().unwrap();
    assert!(
        sent.iter()
            .any(|p| p.payload == last.payload && p.seq == last.seq),
        "payload relayed unchanged"
    );
    lab.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bye_from_customer_ends_both_legs() {
    let lab = start(|_| {}).await;
    let mut call = connect_call(&lab, "1001").await;
    let r = call.trunk.bye(&call.trunk_call).await.unwrap();
    assert_eq!(r.status_code.code(), 200);
    call.agent.wait_request("BYE", T).await.unwrap();
    lab.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bye_from_agent_ends_both_legs() {
    let lab = start(|_| {}).await;
    let mut call = connect_call(&lab, "1002").await;
    let r = call.agent.bye(&call.agent_call).await.unwrap();
    assert_eq!(r.status_code.code(), 200);
    call.trunk.wait_request("BYE", T).await.unwrap();
    // The dialog is gone: a second BYE on it is answered (crossing BYEs), a re-INVITE gets 481.
    let r = call
        .trunk
        .reinvite(&mut call.trunk_call, None)
        .await
        .unwrap();
    assert_eq!(r.status_code.code(), 481);
    lab.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_and_resume_are_relayed_with_anchored_sdp() {
    let lab = start(|_| {}).await;
    let mut call = connect_call(&lab, "1001").await;
    call.talk();
    // The agent's phone answers re-INVITEs with its own (fixed) SDP; direction is mirrored by us
    // only if the phone does it, so give it the held answer explicitly.
    let held_answer = sdp_offer(call.agent_rtp.local_addr(), &[0, 101], "recvonly");
    call.agent.set_auto_answer_reinvite(Some(held_answer));
    let hold = sdp_offer(call.customer_rtp.local_addr(), &[0, 8, 101], "sendonly");
    let waiter = tokio::spawn(async move {
        let req = call.agent.wait_request("INVITE", T).await.unwrap();
        (call.agent, req)
    });
    let r = call
        .trunk
        .reinvite(&mut call.trunk_call, Some(&hold))
        .await
        .unwrap();
    assert_eq!(r.status_code.code(), 200);
    let (mut agent, req) = waiter.await.unwrap();
    let body = String::from_utf8(req.body.clone()).unwrap();
    assert_eq!(
        sdp_direction(&body).as_deref(),
        Some("sendonly"),
        "hold relayed to the agent"
    );
    assert_eq!(
        bibridge_testkit::ua::sdp_connection(&body),
        Some(call.anchor_agent),
        "still anchored on the same port"
    );
    let answer = call.trunk_call.remote_sdp.clone().unwrap();
    assert_eq!(sdp_direction(&answer).as_deref(), Some("recvonly"));
    assert_eq!(
        bibridge_testkit::ua::sdp_connection(&answer),
        Some(call.anchor_customer)
    );
    // Resume.
    agent.set_auto_answer_reinvite(Some(sdp_offer(
        call.agent_rtp.local_addr(),
        &[0, 101],
        "sendrecv",
    )));
    let resume = sdp_offer(call.customer_rtp.local_addr(), &[0, 8, 101], "sendrecv");
    let waiter = tokio::spawn(async move {
        let req = agent.wait_request("INVITE", T).await.unwrap();
        (agent, req)
    });
    let r = call
        .trunk
        .reinvite(&mut call.trunk_call, Some(&resume))
        .await
        .unwrap();
    assert_eq!(r.status_code.code(), 200);
    let (_agent, req) = waiter.await.unwrap();
    assert_eq!(
        sdp_direction(&String::from_utf8(req.body).unwrap()).as_deref(),
        Some("sendrecv")
    );
    call.customer_rtp.clear_received();
    call.agent_rtp.clear_received();
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_hears(
        "customer after resume",
        &call.customer_rtp.received_audio(),
        &[AGENT_HZ],
        &[CUSTOMER_HZ],
        1.0,
    );
    assert_hears(
        "agent after resume",
        &call.agent_rtp.received_audio(),
        &[CUSTOMER_HZ],
        &[AGENT_HZ],
        1.0,
    );
    lab.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_before_answer() {
    let lab = start(|_| {}).await;
    let mut agent = lab.registered("1001").await;
    let mut trunk = lab.trunk_ua().await;
    let rtp = bibridge_testkit::rtp_peer::RtpPeer::bind().await.unwrap();
    let mut c = trunk
        .invite(
            "1001",
            &sdp_offer(rtp.local_addr(), &[0], "sendrecv"),
            false,
        )
        .await
        .unwrap();
    let inc = agent.wait_invite(T).await.unwrap();
    agent.respond(&inc, 180, "Ringing", None).await.unwrap();
    // Let the 180 reach the caller before cancelling (RFC 3261 §9.1 for the downstream CANCEL).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = trunk.cancel(&c).await.unwrap();
    assert_eq!(r.status_code.code(), 200);
    let fin = trunk.wait_final(&mut c, T).await.unwrap();
    assert_eq!(fin.status_code.code(), 487);
    assert!(
        c.provisionals.contains(&180),
        "180 relayed: {:?}",
        c.provisionals
    );
    agent.wait_request("CANCEL", T).await.unwrap();
    lab.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_user_is_404_and_unregistered_user_480() {
    let lab = start(|_| {}).await;
    let mut trunk = lab.trunk_ua().await;
    let rtp = bibridge_testkit::rtp_peer::RtpPeer::bind().await.unwrap();
    let offer = sdp_offer(rtp.local_addr(), &[0], "sendrecv");
    let mut c = trunk.invite("1999", &offer, false).await.unwrap();
    assert_eq!(
        trunk
            .wait_final(&mut c, T)
            .await
            .unwrap()
            .status_code
            .code(),
        404
    );
    let mut c = trunk.invite("1004", &offer, false).await.unwrap();
    assert_eq!(
        trunk
            .wait_final(&mut c, T)
            .await
            .unwrap()
            .status_code
            .code(),
        480
    );
    lab.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invite_from_an_untrusted_source_is_challenged() {
    let lab = start(|_| {}).await;
    let mut ua = TestUa::bind("1002", "lab1002", lab.sip).await.unwrap();
    let rtp = bibridge_testkit::rtp_peer::RtpPeer::bind().await.unwrap();
    let mut c = ua
        .invite(
            "1001",
            &sdp_offer(rtp.local_addr(), &[0], "sendrecv"),
            false,
        )
        .await
        .unwrap();
    let r = ua.wait_final(&mut c, T).await.unwrap();
    assert_eq!(r.status_code.code(), 401);
    let challenges = bibridge_sip::message::headers_all(&r.headers, "WWW-Authenticate");
    assert!(
        challenges[0].contains("SHA-256") && challenges[1].contains("MD5"),
        "RFC 8760 order: {challenges:?}"
    );
    lab.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authenticated_user_calls_another_user() {
    let lab = start(|_| {}).await;
    let mut callee = lab.registered("1001").await;
    let mut caller = lab.registered("1002").await;
    let rtp = bibridge_testkit::rtp_peer::RtpPeer::bind().await.unwrap();
    let mut c = caller
        .invite(
            "1001",
            &sdp_offer(rtp.local_addr(), &[8, 0], "sendrecv"),
            true,
        )
        .await
        .unwrap();
    let inc = callee.wait_invite(T).await.unwrap();
    let from = bibridge_sip::message::header(&inc.request.headers, "From").unwrap();
    assert!(
        from.contains("sip:1002@"),
        "caller identity carried: {from}"
    );
    let callee_rtp = bibridge_testkit::rtp_peer::RtpPeer::bind().await.unwrap();
    callee
        .answer(&inc, &sdp_offer(callee_rtp.local_addr(), &[8], "sendrecv"))
        .await
        .unwrap();
    let r = caller.wait_final(&mut c, T).await.unwrap();
    assert_eq!(r.status_code.code(), 200);
    let pts = bibridge_testkit::ua::sdp_payload_types(c.remote_sdp.as_deref().unwrap());
    assert_eq!(pts, vec![8], "answer holds only the common codec");
    lab.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtp_inactivity_ends_the_call_with_bye_both_ways() {
    let lab = start(|c| c.rtp.inactivity_timeout_s = 1).await;
    let mut call = connect_call(&lab, "1001").await;
    // Nobody sends RTP.
    call.trunk
        .wait_request("BYE", Duration::from_secs(4))
        .await
        .unwrap();
    call.agent
        .wait_request("BYE", Duration::from_secs(4))
        .await
        .unwrap();
    lab.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_malformed_and_unknown_dialogs() {
    let lab = start(|_| {}).await;
    let mut ua = TestUa::bind("1001", "lab1001", lab.sip).await.unwrap();
    let r = ua.options(&format!("sip:{}", lab.sip)).await.unwrap();
    assert_eq!(r.status_code.code(), 200);
    let allow = bibridge_sip::message::header(&r.headers, "Allow").unwrap();
    for m in ["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER"] {
        assert!(allow.contains(m), "Allow lists {m}: {allow}");
    }
    assert!(bibridge_sip::message::header(&r.headers, "Accept")
        .unwrap()
        .contains("application/sdp"));
    // Malformed: CSeq missing → 400 with a reason phrase.
    let bad = format!(
        "INVITE sip:1001@{0} SIP/2.0\r\nVia: SIP/2.0/UDP {1};branch=z9hG4bKbad1;rport\r\nFrom: <sip:x@{1}>;tag=a\r\nTo: <sip:1001@{0}>\r\nCall-ID: bad-1\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        lab.sip,
        ua.local_addr()
    );
    ua.send_raw(bad.as_bytes(), lab.sip).await.unwrap();
    let (resp, _) = ua.recv_raw(T).await.unwrap();
    let text = String::from_utf8_lossy(&resp);
    assert!(text.starts_with("SIP/2.0 400 "), "{text}");
    assert!(
        text.lines().next().unwrap().len() > "SIP/2.0 400 ".len(),
        "has a reason phrase: {text}"
    );
    // Garbage gets no answer and does not hurt the server.
    ua.send_raw(b"\x00\x01garbage", lab.sip).await.unwrap();
    // BYE for a dialog that does not exist → 481.
    let bye = format!(
        "BYE sip:1001@{0} SIP/2.0\r\nVia: SIP/2.0/UDP {1};branch=z9hG4bKbye1;rport\r\nFrom: <sip:x@{1}>;tag=a\r\nTo: <sip:1001@{0}>;tag=nope\r\nCall-ID: none-1\r\nCSeq: 1 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        lab.sip,
        ua.local_addr()
    );
    ua.send_raw(bye.as_bytes(), lab.sip).await.unwrap();
    let (resp, _) = ua.recv_raw(T).await.unwrap();
    assert!(String::from_utf8_lossy(&resp).starts_with("SIP/2.0 481 "));
    // Max-Forwards 0 → 483.
    let mf = bad
        .replace("Max-Forwards: 70", "Max-Forwards: 0")
        .replace("Call-ID: bad-1", "CSeq: 1 INVITE\r\nCall-ID: mf-1")
        .replace("bad1", "mf1");
    ua.send_raw(mf.as_bytes(), lab.sip).await.unwrap();
    let (resp, _) = ua.recv_raw(T).await.unwrap();
    assert!(
        String::from_utf8_lossy(&resp).starts_with("SIP/2.0 483 "),
        "{}",
        String::from_utf8_lossy(&resp)
    );
    // An extension we do not support is required → 420 with Unsupported (RFC 3261 §8.2.2.3).
    let req100rel = bad
        .replace(
            "Call-ID: bad-1",
            "CSeq: 1 INVITE\r\nRequire: 100rel\r\nCall-ID: rq-1",
        )
        .replace("bad1", "rq1");
    ua.send_raw(req100rel.as_bytes(), lab.sip).await.unwrap();
    let (resp, _) = ua.recv_raw(T).await.unwrap();
    let text = String::from_utf8_lossy(&resp);
    assert!(text.starts_with("SIP/2.0 420 "), "{text}");
    assert!(text.contains("Unsupported: 100rel"), "{text}");
    // Still alive.
    assert_eq!(
        ua.options(&format!("sip:{}", lab.sip))
            .await
            .unwrap()
            .status_code
            .code(),
        200
    );
    lab.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_over_tcp() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let lab = start(|_| {}).await;
    let tcp = lab.server.tcp_addr().unwrap();
    let mut s = tokio::net::TcpStream::connect(tcp).await.unwrap();
    let local = s.local_addr().unwrap();
    let req = format!(
        "OPTIONS sip:{tcp} SIP/2.0\r\nVia: SIP/2.0/TCP {local};branch=z9hG4bKtcp1\r\nFrom: <sip:t@{local}>;tag=1\r\nTo: <sip:{tcp}>\r\nCall-ID: tcp-1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(T, s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("SIP/2.0 200 OK\r\n"), "{text}");
    assert!(text.contains("Allow: "));
    lab.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reinvite_glare_gets_491() {
    let lab = start(|_| {}).await;
    let mut call = connect_call(&lab, "1001").await;
    call.agent.set_auto_reply(false);
    let hold = sdp_offer(call.customer_rtp.local_addr(), &[0, 8, 101], "sendonly");
    let mut trunk = call.trunk;
    let mut trunk_call = call.trunk_call;
    let customer = tokio::spawn(async move {
        let r = trunk.reinvite(&mut trunk_call, Some(&hold)).await.unwrap();
        r.status_code.code()
    });
    // bibridge forwarded the customer's re-INVITE; the agent has not answered it yet and now
    // sends its own: the offers cross (RFC 3261 §14.1).
    let pending = call.agent.wait_request("INVITE", T).await.unwrap();
    let own = sdp_offer(call.agent_rtp.local_addr(), &[0, 101], "sendonly");
    let r = call
        .agent
        .reinvite(&mut call.agent_call, Some(&own))
        .await
        .unwrap();
    assert_eq!(r.status_code.code(), 491);
    let answer = sdp_offer(call.agent_rtp.local_addr(), &[0, 101], "recvonly");
    call.agent
        .reply(&pending, 200, "OK", &[], Some(("application/sdp", &answer)))
        .await
        .unwrap();
    assert_eq!(
        customer.await.unwrap(),
        200,
        "the first re-INVITE completes"
    );
    lab.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reinvite_and_update_without_sdp_are_answered() {
    let lab = start(|_| {}).await;
    let mut call = connect_call(&lab, "1001").await;
    let before = call.trunk_call.remote_sdp.clone().unwrap();
    // A session refresh without an offer: answered with the leg's current SDP.
    let r = call
        .trunk
        .reinvite(&mut call.trunk_call, None)
        .await
        .unwrap();
    assert_eq!(r.status_code.code(), 200);
    let sdp = String::from_utf8(r.body.clone()).unwrap();
    assert_eq!(
        bibridge_testkit::ua::sdp_connection(&sdp),
        bibridge_testkit::ua::sdp_connection(&before)
    );
    let r = call
        .agent
        .send_request_in_dialog(&call.agent_call, "UPDATE", &[], None)
        .await
        .unwrap();
    assert_eq!(r.status_code.code(), 200);
    // The call still carries audio.
    call.talk();
    listen_fresh(&[&call.customer_rtp, &call.agent_rtp], 1200).await;
    assert_hears(
        "customer",
        &call.customer_rtp.received_audio(),
        &[AGENT_HZ],
        &[CUSTOMER_HZ],
        1.0,
    );
    lab.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_ports_return_to_the_pool() {
    // Room for exactly one call: two legs, one RTP/RTCP pair each.
    let lab = start(|c| {
        c.rtp.port_max = c.rtp.port_min + 3;
    })
    .await;
    for round in 0..3 {
        let mut call = connect_call(&lab, "1001").await;
        let r = call.trunk.bye(&call.trunk_call).await.unwrap();
        assert_eq!(r.status_code.code(), 200, "round {round}");
        call.agent.wait_request("BYE", T).await.unwrap();
        drop(call);
        // Sockets close asynchronously in the media task.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    lab.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_pauses_the_rtp_inactivity_timer() {
    let lab = start(|c| c.rtp.inactivity_timeout_s = 1).await;
    let mut call = connect_call(&lab, "1001").await;
    call.agent.set_auto_answer_reinvite(Some(sdp_offer(
        call.agent_rtp.local_addr(),
        &[0, 101],
        "recvonly",
    )));
    let hold = sdp_offer(call.customer_rtp.local_addr(), &[0, 8, 101], "sendonly");
    let mut agent = call.agent;
    let waiter = tokio::spawn(async move {
        agent.wait_request("INVITE", T).await.unwrap();
        agent
    });
    let r = call
        .trunk
        .reinvite(&mut call.trunk_call, Some(&hold))
        .await
        .unwrap();
    assert_eq!(r.status_code.code(), 200);
    let _agent = waiter.await.unwrap();
    // On hold nobody sends RTP, for longer than the timeout: the call must survive.
    assert!(
        call.trunk
            .wait_request("BYE", Duration::from_millis(2500))
            .await
            .is_err(),
        "held call was hung up"
    );
    lab.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_is_relayed_to_the_other_party() {
    let lab = start(|_| {}).await;
    let mut call = connect_call(&lab, "1001").await;
    let mut trunk = call.trunk;
    let waiter = tokio::spawn(async move {
        let req = trunk.wait_request("INFO", T).await.unwrap();
        String::from_utf8(req.body).unwrap()
    });
    let r = call
        .agent
        .send_request_in_dialog(
            &call.agent_call,
            "INFO",
            &[],
            Some(("application/dtmf-relay", "Signal=5\r\nDuration=160\r\n")),
        )
        .await
        .unwrap();
    assert_eq!(
        r.status_code.code(),
        200,
        "the customer's answer comes back"
    );
    assert_eq!(waiter.await.unwrap(), "Signal=5\r\nDuration=160\r\n");
    lab.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtcp_is_relayed_on_port_plus_one() {
    let lab = start(|_| {}).await;
    let call = connect_call(&lab, "1001").await;
    // The agent's RTCP socket: its RTP port + 1 (RFC 3550 §11; no a=rtcp in the test SDP).
    let agent_rtcp =
        tokio::net::UdpSocket::bind(("127.0.0.1", call.agent_rtp.local_addr().port() + 1))
            .await
            .unwrap();
    // A minimal RTCP receiver report (PT 201), sent to bibridge's RTCP port on the customer leg
    // from the customer's own RTP address (strict latching accepts RTCP only from the host and
    // ports the customer's SDP names: see tests/tests/hijack.rs for foreign RTCP).
    let rr = [0x80u8, 201, 0, 1, 0x11, 0x22, 0x33, 0x44];
    let to = std::net::SocketAddr::new(call.anchor_customer.ip(), call.anchor_customer.port() + 1);
    call.customer_rtp.send_raw(to, &rr).await.unwrap();
    let mut buf = [0u8; 64];
    let (n, from) = tokio::time::timeout(T, agent_rtcp.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..n], &rr, "RTCP relayed untouched");
    assert_eq!(
        from.port(),
        call.anchor_agent.port() + 1,
        "from bibridge's RTCP port on the agent leg"
    );
    lab.server.shutdown().await;
}
