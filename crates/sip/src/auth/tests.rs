//! Unit tests of digest authentication: RFC examples, round trips, nonce handling, parsing.

#![allow(clippy::unwrap_used)]
use super::digest::{compute_response, ResponseInput};
use super::*;
use sha2::{Digest as _, Sha256};
use std::time::{Duration, Instant};

const SECRET: [u8; 32] = [7u8; 32];

fn pw(user: &str) -> Option<String> {
    (user == "1001").then(|| "lab1001".to_owned())
}

fn server() -> DigestServer {
    DigestServer::new("bibridge", SECRET, Duration::from_secs(300))
}

#[test]
fn rfc2617_worked_example() {
    let r = compute_response(&ResponseInput {
        algorithm: Algorithm::Md5,
        username: "Mufasa",
        realm: "testrealm@host.com",
        password: "Circle Of Life",
        method: "GET",
        uri: "/dir/index.html",
        nonce: "dcd98b7102dd2f0e8b11d0f600bfb0c093",
        qop_auth: Some(("00000001", "0a4f113b")),
        qop: "auth",
    });
    assert_eq!(r, "6629fae49393a05397450978507c4ef1");

    // And the same through the client path, with the RFC's challenge header.
    let ch = vec![r#"Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41""#.to_owned()];
    let auth = client_authorization(
        &ch,
        "Mufasa",
        "Circle Of Life",
        "GET",
        "/dir/index.html",
        "0a4f113b",
        1,
    )
    .unwrap();
    let c = parse_credentials(&auth).unwrap();
    assert_eq!(c.response, "6629fae49393a05397450978507c4ef1");
    assert_eq!(c.nc.as_deref(), Some("00000001"));
    assert_eq!(c.qop.as_deref(), Some("auth"));
    assert_eq!(c.algorithm, Algorithm::Md5);
    assert_eq!(
        c.opaque.as_deref(),
        Some("5ccc069c403ebaf9f0171e9517f40e41")
    );
}

#[test]
fn rfc7616_examples() {
    // RFC 7616 §3.9.1 (password "Circle of Life", method GET).
    let input = |algorithm| ResponseInput {
        algorithm,
        username: "Mufasa",
        realm: "http-auth@example.org",
        password: "Circle of Life",
        method: "GET",
        uri: "/dir/index.html",
        nonce: "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
        qop_auth: Some(("00000001", "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ")),
        qop: "auth",
    };
    assert_eq!(
        compute_response(&input(Algorithm::Md5)),
        "8ca523f5e9506fed4657c9700eebdbec"
    );
    assert_eq!(
        compute_response(&input(Algorithm::Sha256)),
        "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
    );
}

#[test]
fn sha256_matches_hand_composition() {
    // Compose HA1/HA2/KD by hand with the sha2 crate, independent of compute_response.
    let h = |s: &str| hex::encode(Sha256::digest(s.as_bytes()));
    let ha1 = h("1001:bibridge:lab1001");
    let ha2 = h("REGISTER:sip:127.0.0.1");
    let expected = h(&format!("{ha1}:abc:0000000a:xyz:auth:{ha2}"));
    let got = compute_response(&ResponseInput {
        algorithm: Algorithm::Sha256,
        username: "1001",
        realm: "bibridge",
        password: "lab1001",
        method: "REGISTER",
        uri: "sip:127.0.0.1",
        nonce: "abc",
        qop_auth: Some(("0000000a", "xyz")),
        qop: "auth",
    });
    assert_eq!(got, expected);
    assert_eq!(got.len(), 64);
}

#[test]
fn challenge_order_and_format() {
    let t0 = Instant::now();
    let mut s = server();
    let v = s.challenge(t0, false);
    assert_eq!(v.len(), 2);
    let a = parse_challenge(&v[0]).unwrap();
    let b = parse_challenge(&v[1]).unwrap();
    assert_eq!(a.algorithm, Algorithm::Sha256);
    assert_eq!(b.algorithm, Algorithm::Md5);
    assert_eq!(a.realm, "bibridge");
    assert_eq!(a.qop.as_deref(), Some("auth"));
    assert!(a.opaque.is_some());
    assert!(!a.stale);
    assert_eq!(a.nonce, b.nonce);
    let v2 = s.challenge(t0, true);
    let c = parse_challenge(&v2[0]).unwrap();
    assert!(c.stale);
    assert_ne!(c.nonce, a.nonce, "every challenge gets a fresh nonce");

    let sha_only = server()
        .with_algorithms(&[Algorithm::Sha256])
        .challenge(t0, false);
    assert_eq!(sha_only.len(), 1);
    assert!(sha_only[0].contains("algorithm=SHA-256"));
}

fn round_trip(alg: Algorithm) {
    let t0 = Instant::now();
    let mut s = server();
    let ch = s.challenge(t0, false);
    let uri = "sip:127.0.0.1:5060";
    let auth = client_authorization_with(&ch, alg, "1001", "lab1001", "REGISTER", uri, "c0ffee", 1)
        .unwrap();
    assert!(auth.contains(&format!("algorithm={}", alg.token())));
    let out = s.verify(t0 + Duration::from_secs(1), "REGISTER", &auth, pw);
    assert_eq!(
        out,
        AuthOutcome::Ok {
            username: "1001".into()
        }
    );
    // Next request on the same nonce with a higher nc is fine.
    let auth2 =
        client_authorization_with(&ch, alg, "1001", "lab1001", "INVITE", uri, "c0ffee", 2).unwrap();
    assert_eq!(
        s.verify(t0 + Duration::from_secs(2), "INVITE", &auth2, pw),
        AuthOutcome::Ok {
            username: "1001".into()
        }
    );
}

#[test]
fn round_trip_md5() {
    round_trip(Algorithm::Md5);
}

#[test]
fn round_trip_sha256() {
    round_trip(Algorithm::Sha256);
}

#[test]
fn client_prefers_sha256_whatever_the_order() {
    let t0 = Instant::now();
    let mut ch = server().challenge(t0, false);
    ch.reverse();
    let auth = client_authorization(&ch, "1001", "lab1001", "REGISTER", "sip:x", "c", 1).unwrap();
    assert!(auth.contains("algorithm=SHA-256"));
    // Only MD5 offered: MD5 is used.
    let md5_only = vec![ch[0].clone()];
    assert!(md5_only[0].contains("MD5"));
    let auth =
        client_authorization(&md5_only, "1001", "lab1001", "REGISTER", "sip:x", "c", 1).unwrap();
    assert!(auth.contains("algorithm=MD5"));
    // Nothing usable.
    let bad = vec![
        "Basic realm=\"x\"".to_owned(),
        "Digest realm=\"x\", nonce=\"n\", algorithm=MD5-sess, qop=\"auth\"".to_owned(),
        "Digest realm=\"x\", nonce=\"n\", qop=\"auth-int\"".to_owned(),
    ];
    assert_eq!(
        client_authorization(&bad, "u", "p", "REGISTER", "sip:x", "c", 1),
        Err(AuthError::NoUsableChallenge)
    );
}

#[test]
fn wrong_password_unknown_user_wrong_method() {
    let t0 = Instant::now();
    let mut s = server();
    let ch = s.challenge(t0, false);
    let bad = client_authorization(&ch, "1001", "nope", "REGISTER", "sip:x", "c", 1).unwrap();
    assert_eq!(
        s.verify(t0, "REGISTER", &bad, pw),
        AuthOutcome::Failed {
            reason: "bad response"
        }
    );
    let unknown =
        client_authorization(&ch, "9999", "lab9999", "REGISTER", "sip:x", "c", 1).unwrap();
    assert_eq!(
        s.verify(t0, "REGISTER", &unknown, pw),
        AuthOutcome::Failed {
            reason: "unknown user"
        }
    );
    let good = client_authorization(&ch, "1001", "lab1001", "REGISTER", "sip:x", "c", 1).unwrap();
    // Digest for REGISTER does not authorise an INVITE (method is in HA2).
    assert_eq!(
        s.verify(t0, "INVITE", &good, pw),
        AuthOutcome::Failed {
            reason: "bad response"
        }
    );
    // Failed attempts did not burn nc=1.
    assert!(matches!(
        s.verify(t0, "REGISTER", &good, pw),
        AuthOutcome::Ok { .. }
    ));
}

#[test]
fn replayed_nc_fails() {
    let t0 = Instant::now();
    let mut s = server();
    let ch = s.challenge(t0, false);
    let a5 = client_authorization(&ch, "1001", "lab1001", "REGISTER", "sip:x", "c", 5).unwrap();
    let a3 = client_authorization(&ch, "1001", "lab1001", "REGISTER", "sip:x", "c", 3).unwrap();
    assert!(matches!(
        s.verify(t0, "REGISTER", &a5, pw),
        AuthOutcome::Ok { .. }
    ));
    assert_eq!(
        s.verify(t0, "REGISTER", &a5, pw),
        AuthOutcome::Failed {
            reason: "replayed nonce count"
        }
    );
    assert_eq!(
        s.verify(t0, "REGISTER", &a3, pw),
        AuthOutcome::Failed {
            reason: "replayed nonce count"
        }
    );
}

#[test]
fn expired_nonce_is_stale_exactly_at_lifetime() {
    let t0 = Instant::now();
    let mut s = server();
    let ch = s.challenge(t0, false);
    let a1 = client_authorization(&ch, "1001", "lab1001", "REGISTER", "sip:x", "c", 1).unwrap();
    let a2 = client_authorization(&ch, "1001", "lab1001", "REGISTER", "sip:x", "c", 2).unwrap();
    let just_before = t0 + Duration::from_secs(300) - Duration::from_millis(1);
    assert!(matches!(
        s.verify(just_before, "REGISTER", &a1, pw),
        AuthOutcome::Ok { .. }
    ));
    assert_eq!(
        s.verify(t0 + Duration::from_secs(300), "REGISTER", &a2, pw),
        AuthOutcome::Stale
    );
    assert_eq!(s.outstanding_nonces(), 0);
    // A stale nonce with a wrong password is a failure, not stale (RFC 2617 §3.2.1).
    let bad = client_authorization(&ch, "1001", "x", "REGISTER", "sip:x", "c", 3).unwrap();
    assert_eq!(
        s.verify(t0 + Duration::from_secs(301), "REGISTER", &bad, pw),
        AuthOutcome::Failed {
            reason: "bad response"
        }
    );
}

#[test]
fn evicted_nonce_is_stale_and_memory_is_bounded() {
    let t0 = Instant::now();
    let mut s = server();
    let first = s.challenge(t0, false);
    for _ in 0..MAX_OUTSTANDING_NONCES {
        s.challenge(t0, false);
    }
    assert_eq!(s.outstanding_nonces(), MAX_OUTSTANDING_NONCES);
    let a = client_authorization(&first, "1001", "lab1001", "REGISTER", "sip:x", "c", 1).unwrap();
    assert_eq!(s.verify(t0, "REGISTER", &a, pw), AuthOutcome::Stale);
}

#[test]
fn foreign_nonce_realm_opaque_and_algorithm_checks() {
    let t0 = Instant::now();
    let mut s = server();
    let ch = s.challenge(t0, false);
    // A nonce from another server (different secret) is unknown, not stale.
    let mut other = DigestServer::new("bibridge", [1u8; 32], Duration::from_secs(300));
    let och = other.challenge(t0, false);
    let a = client_authorization(&och, "1001", "lab1001", "REGISTER", "sip:x", "c", 1).unwrap();
    let a = a.replace(
        &parse_challenge(&och[0]).unwrap().opaque.unwrap(),
        &parse_challenge(&ch[0]).unwrap().opaque.unwrap(),
    );
    assert_eq!(
        s.verify(t0, "REGISTER", &a, pw),
        AuthOutcome::Failed {
            reason: "unknown nonce"
        }
    );
    // Wrong realm.
    let mut r = parse_challenge(&ch[0]).unwrap();
    r.realm = "elsewhere".into();
    let forged = vec![format!(
        "Digest realm=\"elsewhere\", nonce=\"{}\", qop=\"auth\", algorithm=SHA-256",
        r.nonce
    )];
    let a = client_authorization(&forged, "1001", "lab1001", "REGISTER", "sip:x", "c", 1).unwrap();
    assert_eq!(
        s.verify(t0, "REGISTER", &a, pw),
        AuthOutcome::Failed {
            reason: "unknown realm"
        }
    );
    // Tampered opaque.
    let a = client_authorization(&ch, "1001", "lab1001", "REGISTER", "sip:x", "c", 1).unwrap();
    let opaque = parse_challenge(&ch[0]).unwrap().opaque.unwrap();
    let tampered = a.replace(&opaque, "00");
    assert_eq!(
        s.verify(t0, "REGISTER", &tampered, pw),
        AuthOutcome::Failed {
            reason: "opaque mismatch"
        }
    );
    // MD5 answer to a nonce that was only offered with SHA-256.
    let mut sha = server().with_algorithms(&[Algorithm::Sha256]);
    let ch = sha.challenge(t0, false);
    let md5_ch = vec![ch[0].replace("SHA-256", "MD5")];
    let a = client_authorization(&md5_ch, "1001", "lab1001", "REGISTER", "sip:x", "c", 1).unwrap();
    assert_eq!(
        sha.verify(t0, "REGISTER", &a, pw),
        AuthOutcome::Failed {
            reason: "algorithm not offered with this nonce"
        }
    );
    // -sess is refused clearly.
    let sess = a.replace("algorithm=MD5", "algorithm=MD5-sess");
    assert_eq!(
        sha.verify(t0, "REGISTER", &sess, pw),
        AuthOutcome::Failed {
            reason: "unsupported algorithm"
        }
    );
}

#[test]
fn uri_is_used_as_sent() {
    let t0 = Instant::now();
    let mut s = server();
    let ch = s.challenge(t0, false);
    let a = client_authorization(&ch, "1001", "lab1001", "REGISTER", "sip:a", "c", 1).unwrap();
    // Changing the uri parameter after the fact invalidates the digest.
    let forged = a.replace("uri=\"sip:a\"", "uri=\"sip:b\"");
    assert_eq!(
        s.verify(t0, "REGISTER", &forged, pw),
        AuthOutcome::Failed {
            reason: "bad response"
        }
    );
    assert!(matches!(
        s.verify(t0, "REGISTER", &a, pw),
        AuthOutcome::Ok { .. }
    ));
}

#[test]
fn legacy_rfc2069_form() {
    let t0 = Instant::now();
    let mut s = server();
    let nonce = parse_challenge(&s.challenge(t0, false)[1]).unwrap().nonce;
    // A challenge as an RFC 2069 client sees it: no qop.
    let ch = vec![format!("Digest realm=\"bibridge\", nonce=\"{nonce}\"")];
    let a = client_authorization(&ch, "1001", "lab1001", "REGISTER", "sip:x", "c", 1).unwrap();
    assert!(!a.contains("qop"));
    assert!(!a.contains("nc="));
    assert_eq!(
        s.verify(t0, "REGISTER", &a, pw),
        AuthOutcome::Ok {
            username: "1001".into()
        }
    );
    // No nonce count to protect against replay: the nonce is single-use.
    assert_eq!(s.verify(t0, "REGISTER", &a, pw), AuthOutcome::Stale);
}

#[test]
fn parse_credentials_edge_cases() {
    let c = parse_credentials(
            "digest  username = \"a\\\"b\\\\c\" ,realm=\"r, with comma\",nonce=\"n\",\turi=\"sip:x;a=b\", response=\"AB\", algorithm=sha-256, qop=auth, nc=00000001, cnonce=\"c\", extra=\"ignored\"",
        )
        .unwrap();
    assert_eq!(c.username, "a\"b\\c");
    assert_eq!(c.realm, "r, with comma");
    assert_eq!(c.uri, "sip:x;a=b");
    assert_eq!(c.algorithm, Algorithm::Sha256);
    assert_eq!(c.nonce_count(), Some(1));
    let c = parse_credentials(
            "Digest username*=UTF-8''J%C3%A4s%C3%B8n, realm=\"r\", nonce=\"n\", uri=\"u\", response=\"x\"",
        )
        .unwrap();
    assert_eq!(c.username, "Jäsøn");
    assert_eq!(c.algorithm, Algorithm::Md5);
    assert!(c.qop.is_none());

    let err = |s: &str| parse_credentials(s).unwrap_err();
    assert_eq!(err("Basic dXNlcjpwYXNz"), AuthError::UnsupportedScheme);
    assert_eq!(
        err("Digest realm=\"r\", nonce=\"n\", uri=\"u\", response=\"x\""),
        AuthError::MissingParam(DigestParam::Username)
    );
    assert_eq!(
            err("Digest username=\"u\", realm=\"r\", nonce=\"n\", uri=\"u\", response=\"x\", qop=auth, cnonce=\"c\""),
            AuthError::MissingParam(DigestParam::Nc)
        );
    assert_eq!(
            err("Digest username=\"u\", realm=\"r\", nonce=\"n\", uri=\"u\", response=\"x\", qop=auth, cnonce=\"c\", nc=zz"),
            AuthError::MissingParam(DigestParam::Nc)
        );
    assert_eq!(
            err("Digest username=\"u\", realm=\"r\", nonce=\"n\", uri=\"u\", response=\"x\", qop=auth-int, cnonce=\"c\", nc=1"),
            AuthError::UnsupportedQop("auth-int".into())
        );
    assert_eq!(
            err("Digest username=\"u\", username=\"v\", realm=\"r\", nonce=\"n\", uri=\"u\", response=\"x\""),
            AuthError::Malformed(Malformation::DuplicateParam)
        );
    assert_eq!(
            err("Digest username=\"u\", realm=\"r\", nonce=\"n\", uri=\"u\", response=\"x\", userhash=true"),
            AuthError::UserhashUnsupported
        );
}

#[test]
fn garbage_never_panics() {
    let t0 = Instant::now();
    let mut s = server();
    let cases = [
            "",
            " ",
            "Digest",
            "Digest ",
            "Digest ,,,",
            "Digest =",
            "Digest a",
            "Digest a=",
            "Digest a=\"",
            "Digest a=\"\\",
            "Digest a=b c=d",
            "Digest username=\"u\" realm=\"r\"",
            "Digest username*=UTF-8''%",
            "Digest username*=UTF-8''%C3",
            "Digest username*=x",
            "\u{0}\u{ffff}é=\"",
            "Digest nc=ffffffffffffffff",
            "Digest username=\"u\", realm=\"bibridge\", nonce=\"\u{e9}\u{e9}\u{e9}\", uri=\"u\", response=\"x\"",
            "Digest username=\"u\", realm=\"bibridge\", nonce=\"ffffffffffffffffffffffffffffffffffffffffffffffff\", uri=\"u\", response=\"x\"",
            "Digest username=\"1001\", realm=\"bibridge\", nonce=\"zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz\", uri=\"u\", response=\"x\", qop=auth, nc=1, cnonce=\"\"",
        ];
    for c in cases {
        let _ = parse_challenge(c);
        let _ = client_authorization(&[c.to_owned()], "u", "p", "REGISTER", "sip:x", "c", 1);
        assert!(
            matches!(s.verify(t0, "REGISTER", c, pw), AuthOutcome::Failed { .. }),
            "{c:?}"
        );
    }
    // Every prefix of a valid header, and every single-byte corruption, is handled.
    let good = client_authorization(
        &s.challenge(t0, false),
        "1001",
        "lab1001",
        "REGISTER",
        "sip:x",
        "c",
        1,
    )
    .unwrap();
    for (i, _) in good.char_indices() {
        let _ = s.verify(t0, "REGISTER", &good[..i], pw);
        let mut bytes = good.clone().into_bytes();
        bytes[i] = b'"';
        let _ = s.verify(t0, "REGISTER", &String::from_utf8_lossy(&bytes), pw);
    }
}
