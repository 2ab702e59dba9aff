//! Client side of SIP digest authentication (RFC 2617, RFC 7616 SHA-256, RFC 8760 multiple
//! challenges), kept private to the test UA so that it does not depend on the product's own
//! implementation: a test phone that shares the server's digest code could not catch its bugs.

use md5::Md5;
use sha2::{Digest as _, Sha256};

use super::msg::split_list;

/// Which digest algorithm the test phone should answer with when the server offers several.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlgorithmPref {
    /// `algorithm=MD5` (or no algorithm parameter, which means MD5).
    Md5,
    /// `algorithm=SHA-256` (RFC 8760).
    Sha256,
}

/// Why no Authorization header could be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// No challenge uses the Digest scheme with an algorithm and qop we can answer.
    #[error("no usable digest challenge in {0:?}")]
    NoUsableChallenge(Vec<String>),
    /// The preferred algorithm was not offered.
    #[error("server did not offer {0:?}")]
    AlgorithmNotOffered(AlgorithmPref),
    /// A challenge lacks a mandatory parameter.
    #[error("challenge lacks {0}")]
    Missing(&'static str),
}

/// One parsed `WWW-Authenticate` / `Proxy-Authenticate` Digest challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Challenge {
    realm: String,
    nonce: String,
    opaque: Option<String>,
    /// Upper-cased token as sent; `MD5` when absent.
    algorithm: String,
    qops: Vec<String>,
}

impl Challenge {
    fn parse(value: &str) -> Result<Option<Self>, DigestError> {
        let value = value.trim();
        let Some((scheme, rest)) = value.split_once(char::is_whitespace) else {
            return Ok(None);
        };
        if !scheme.eq_ignore_ascii_case("Digest") {
            return Ok(None);
        }
        let mut realm = None;
        let mut nonce = None;
        let mut opaque = None;
        let mut algorithm = "MD5".to_string();
        let mut qops = Vec::new();
        for item in split_list(rest) {
            let Some((k, v)) = item.split_once('=') else {
                continue;
            };
            let k = k.trim().to_ascii_lowercase();
            let v = v.trim().trim_matches('"').to_string();
            match k.as_str() {
                "realm" => realm = Some(v),
                "nonce" => nonce = Some(v),
                "opaque" => opaque = Some(v),
                "algorithm" => algorithm = v.to_ascii_uppercase(),
                "qop" => {
                    qops = v
                        .split(',')
                        .map(|q| q.trim().to_ascii_lowercase())
                        .collect()
                }
                _ => {}
            }
        }
        Ok(Some(Challenge {
            realm: realm.ok_or(DigestError::Missing("realm"))?,
            nonce: nonce.ok_or(DigestError::Missing("nonce"))?,
            opaque,
            algorithm,
            qops,
        }))
    }

    fn hash_kind(&self) -> Option<(AlgorithmPref, bool)> {
        match self.algorithm.as_str() {
            "MD5" => Some((AlgorithmPref::Md5, false)),
            "MD5-SESS" => Some((AlgorithmPref::Md5, true)),
            "SHA-256" => Some((AlgorithmPref::Sha256, false)),
            "SHA-256-SESS" => Some((AlgorithmPref::Sha256, true)),
            _ => None,
        }
    }

    /// qop=auth if offered, no qop if none offered (RFC 2069), unusable if only auth-int.
    fn usable_qop(&self) -> Option<Option<&'static str>> {
        if self.qops.is_empty() {
            Some(None)
        } else if self.qops.iter().any(|q| q == "auth") {
            Some(Some("auth"))
        } else {
            None
        }
    }
}

fn hash(alg: AlgorithmPref, data: &str) -> String {
    match alg {
        AlgorithmPref::Md5 => hex::encode(Md5::digest(data.as_bytes())),
        AlgorithmPref::Sha256 => hex::encode(Sha256::digest(data.as_bytes())),
    }
}

/// Builds the value of an `Authorization` (for a 401) or `Proxy-Authorization` (for a 407) header.
///
/// `challenges` are the values of every `WWW-Authenticate`/`Proxy-Authenticate` header of the
/// response. With `pref = None` the first usable challenge wins (servers list their preferred
/// algorithm first, RFC 8760 §2.4); with a preference only a challenge of that algorithm is used.
/// `uri` must be the Request-URI of the request being authorized.
#[allow(clippy::too_many_arguments)]
pub fn authorize(
    challenges: &[String],
    pref: Option<AlgorithmPref>,
    username: &str,
    password: &str,
    method: &str,
    uri: &str,
    cnonce: &str,
    nc: u32,
) -> Result<String, DigestError> {
    let mut usable = Vec::new();
    for c in challenges {
        if let Some(ch) = Challenge::parse(c)? {
            if ch.hash_kind().is_some() && ch.usable_qop().is_some() {
                usable.push(ch);
            }
        }
    }
    if usable.is_empty() {
        return Err(DigestError::NoUsableChallenge(challenges.to_vec()));
    }
    let chosen = match pref {
        None => usable.first(),
        Some(p) => usable
            .iter()
            .find(|c| c.hash_kind().map(|(a, _)| a) == Some(p)),
    }
    .ok_or(DigestError::AlgorithmNotOffered(
        pref.unwrap_or(AlgorithmPref::Md5),
    ))?;
    let (alg, sess) = chosen
        .hash_kind()
        .ok_or(DigestError::Missing("algorithm"))?;
    let qop = chosen.usable_qop().ok_or(DigestError::Missing("qop"))?;

    let mut ha1 = hash(alg, &format!("{username}:{}:{password}", chosen.realm));
    if sess {
        ha1 = hash(alg, &format!("{ha1}:{}:{cnonce}", chosen.nonce));
    }
    let ha2 = hash(alg, &format!("{method}:{uri}"));
    let nc_hex = format!("{nc:08x}");
    let response = match qop {
        Some(q) => hash(
            alg,
            &format!("{ha1}:{}:{nc_hex}:{cnonce}:{q}:{ha2}", chosen.nonce),
        ),
        None => hash(alg, &format!("{ha1}:{}:{ha2}", chosen.nonce)),
    };

    let mut out = format!(
        "Digest username=\"{username}\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\", response=\"{response}\", algorithm={}",
        chosen.realm, chosen.nonce, chosen.algorithm
    );
    if let Some(q) = qop {
        out.push_str(&format!(", qop={q}, nc={nc_hex}, cnonce=\"{cnonce}\""));
    }
    if let Some(o) = &chosen.opaque {
        out.push_str(&format!(", opaque=\"{o}\""));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn response_of(header: &str) -> String {
        let start = header.find("response=\"").unwrap() + "response=\"".len();
        header[start..start + header[start..].find('"').unwrap()].to_string()
    }

    /// RFC 2617 §3.5 example.
    #[test]
    fn rfc2617_md5_vector() {
        let ch = vec![
            "Digest realm=\"testrealm@host.com\", qop=\"auth,auth-int\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"".to_string(),
        ];
        let h = authorize(
            &ch,
            None,
            "Mufasa",
            "Circle Of Life",
            "GET",
            "/dir/index.html",
            "0a4f113b",
            1,
        )
        .unwrap();
        assert_eq!(response_of(&h), "6629fae49393a05397450978507c4ef1");
        assert!(h.contains("nc=00000001"));
        assert!(h.contains("opaque=\"5ccc069c403ebaf9f0171e9517f40e41\""));
    }

    /// RFC 7616 §3.9.1 example: the server offers SHA-256 first, then MD5.
    #[test]
    fn rfc7616_sha256_and_md5_vectors() {
        let ch = vec![
            "Digest realm=\"http-auth@example.org\", qop=\"auth, auth-int\", algorithm=SHA-256, nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"".to_string(),
            "Digest realm=\"http-auth@example.org\", qop=\"auth, auth-int\", algorithm=MD5, nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"".to_string(),
        ];
        let cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
        let args = ("Mufasa", "Circle of Life", "GET", "/dir/index.html");
        let sha = authorize(&ch, None, args.0, args.1, args.2, args.3, cnonce, 1).unwrap();
        assert_eq!(
            response_of(&sha),
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
        assert!(sha.contains("algorithm=SHA-256"));
        let md5 = authorize(
            &ch,
            Some(AlgorithmPref::Md5),
            args.0,
            args.1,
            args.2,
            args.3,
            cnonce,
            1,
        )
        .unwrap();
        assert_eq!(response_of(&md5), "8ca523f5e9506fed4657c9700eebdbec");
    }

    #[test]
    fn missing_preference_and_garbage_are_errors() {
        let md5_only = vec!["Digest realm=\"r\", nonce=\"n\"".to_string()];
        assert_eq!(
            authorize(
                &md5_only,
                Some(AlgorithmPref::Sha256),
                "u",
                "p",
                "REGISTER",
                "sip:h",
                "c",
                1
            ),
            Err(DigestError::AlgorithmNotOffered(AlgorithmPref::Sha256))
        );
        let basic = vec!["Basic realm=\"r\"".to_string()];
        assert!(authorize(&basic, None, "u", "p", "REGISTER", "sip:h", "c", 1).is_err());
        let no_nonce = vec!["Digest realm=\"r\"".to_string()];
        assert_eq!(
            authorize(&no_nonce, None, "u", "p", "REGISTER", "sip:h", "c", 1),
            Err(DigestError::Missing("nonce"))
        );
    }

    /// Without qop the RFC 2069 form is used: response = H(HA1:nonce:HA2), no nc/cnonce.
    #[test]
    fn rfc2069_form_without_qop() {
        let ch = vec!["Digest realm=\"r\", nonce=\"n\"".to_string()];
        let h = authorize(&ch, None, "u", "p", "REGISTER", "sip:h", "c", 1).unwrap();
        let ha1 = hex::encode(Md5::digest(b"u:r:p"));
        let ha2 = hex::encode(Md5::digest(b"REGISTER:sip:h"));
        let want = hex::encode(Md5::digest(format!("{ha1}:n:{ha2}").as_bytes()));
        assert_eq!(response_of(&h), want);
        assert!(!h.contains("nc="));
    }
}
