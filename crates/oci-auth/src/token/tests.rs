use std::time::{Duration, UNIX_EPOCH};

use aws_lc_rs::hmac;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::RSA_PKCS1_SHA256;

use super::*;
use crate::jws::b64_decode;

/// A fixed "now" for the tests.
pub(crate) const NOW: u64 = 1_700_000_000;

pub(crate) fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

pub(crate) fn ed25519_pem() -> Vec<u8> {
    let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
    pem_encode("PRIVATE KEY", doc.as_ref())
}

fn claims() -> TokenClaims {
    TokenClaims {
        iss: "registry-token-issuer".into(),
        sub: "alice".into(),
        aud: "registry.example".into(),
        exp: NOW + 300,
        nbf: NOW - 10,
        iat: NOW - 10,
        jti: "j1".into(),
        access: vec![AccessEntry {
            kind: "repository".into(),
            name: "team/app".into(),
            actions: vec!["pull".into()],
        }],
    }
}

fn verifier(keys: Vec<VerifyingKey>) -> TokenVerifier {
    TokenVerifier::new(TokenVerifierOptions {
        issuer: "registry-token-issuer".into(),
        audience: "registry.example".into(),
        keys,
        ..Default::default()
    })
    .unwrap()
}

fn es256() -> SigningKey {
    SigningKey::from_pem(&SigningKey::generate_pem().unwrap()).unwrap()
}

fn refused(result: Result<TokenClaims>) -> String {
    match result {
        Err(AuthError::Refused(why)) => why,
        other => panic!("want Refused, got {other:?}"),
    }
}

/// Re-signs nothing: swaps the part at `index` of `token` for `part`.
fn with_part(token: &str, index: usize, part: &str) -> String {
    let mut parts: Vec<&str> = token.split('.').collect();
    parts[index] = part;
    parts.join(".")
}

#[test]
fn es256_and_eddsa_round_trip() {
    for key in [es256(), SigningKey::from_pem(&ed25519_pem()).unwrap()] {
        let token = key.sign(&claims()).unwrap();
        let header: Value =
            serde_json::from_slice(&b64_decode(token.split('.').next().unwrap(), "h").unwrap())
                .unwrap();
        assert_eq!(header["alg"], key.algorithm().as_str());
        assert_eq!(header["kid"], key.kid());
        assert_eq!(header["typ"], "JWT");
        let v = verifier(vec![key.verifying_key()]);
        assert_eq!(v.verify(&token, at(NOW)).unwrap(), claims());
        // The JWK round-trips to the same key id, and verifies.
        let from_jwk = VerifyingKey::from_jwk(&key.public_jwk()).unwrap();
        assert_eq!(from_jwk.kid(), key.kid());
        assert_eq!(from_jwk.algorithm(), key.algorithm());
        verifier(vec![from_jwk]).verify(&token, at(NOW)).unwrap();
    }
}

#[test]
fn kid_is_the_thumbprint_and_stable() {
    let pem = SigningKey::generate_pem().unwrap();
    let (a, b) = (
        SigningKey::from_pem(&pem).unwrap(),
        SigningKey::from_pem(&pem).unwrap(),
    );
    assert_eq!(a.kid(), b.kid());
    assert_eq!(a.kid().len(), 43);
    let mut jwk = a.public_jwk();
    jwk.as_object_mut().unwrap().remove("kid");
    assert_eq!(VerifyingKey::from_jwk(&jwk).unwrap().kid(), a.kid());
    assert_ne!(a.kid(), es256().kid());
}

#[test]
fn sec1_p256_pems_load() {
    use aws_lc_rs::encoding::{AsDer, EcPrivateKeyRfc5915Der};
    let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let der: EcPrivateKeyRfc5915Der<'_> = pair.private_key().as_der().unwrap();
    let key = SigningKey::from_pem(&pem_encode("EC PRIVATE KEY", der.as_ref())).unwrap();
    assert_eq!(key.algorithm(), Algorithm::Es256);
    let v = verifier(vec![key.verifying_key()]);
    v.verify(&key.sign(&claims()).unwrap(), at(NOW)).unwrap();
}

#[test]
fn other_pems_are_key_errors() {
    let p384 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &SystemRandom::new())
        .unwrap();
    let rsa = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
    let rsa_pkcs8 =
        aws_lc_rs::encoding::AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&rsa).unwrap();
    for (pem, want) in [
        (pem_encode("PRIVATE KEY", p384.as_ref()), "P-384"),
        (pem_encode("PRIVATE KEY", rsa_pkcs8.as_ref()), "RSA"),
        (pem_encode("RSA PRIVATE KEY", b"x"), "RSA"),
        (pem_encode("EC PRIVATE KEY", b"x"), "P-256"),
        (pem_encode("PRIVATE KEY", b"junk"), "not a usable"),
        (b"no pem here".to_vec(), "no -----BEGIN"),
        (
            b"-----BEGIN PRIVATE KEY-----\n!!\n-----END PRIVATE KEY-----\n".to_vec(),
            "base64",
        ),
    ] {
        match SigningKey::from_pem(&pem) {
            Err(AuthError::Key(msg)) => assert!(msg.contains(want), "{msg} lacks {want}"),
            other => panic!("want a key error, got {other:?}"),
        }
    }
}

#[test]
fn times_are_checked_with_leeway() {
    let key = es256();
    let v = verifier(vec![key.verifying_key()]);
    let token = key.sign(&claims()).unwrap();
    // exp = NOW + 300; leeway 30 s.
    v.verify(&token, at(NOW + 320)).unwrap();
    assert!(refused(v.verify(&token, at(NOW + 330))).contains("expired"));
    let late = TokenClaims {
        nbf: NOW + 60,
        iat: NOW,
        ..claims()
    };
    let token = key.sign(&late).unwrap();
    assert!(refused(v.verify(&token, at(NOW))).contains("not valid before"));
    v.verify(&token, at(NOW + 31)).unwrap();
    let future = TokenClaims {
        iat: NOW + 120,
        ..claims()
    };
    let token = key.sign(&future).unwrap();
    assert!(refused(v.verify(&token, at(NOW))).contains("future"));
}

#[test]
fn required_claims_must_be_present() {
    let key = es256();
    let v = verifier(vec![key.verifying_key()]);
    for missing in ["exp", "nbf", "iat", "iss", "aud"] {
        let mut payload = serde_json::to_value(claims()).unwrap();
        payload.as_object_mut().unwrap().remove(missing);
        let token = sign_raw(&key, &json!({"alg": "ES256", "kid": key.kid()}), &payload);
        refused(v.verify(&token, at(NOW)));
    }
}

fn sign_raw(key: &SigningKey, header: &Value, payload: &Value) -> String {
    let input = format!(
        "{}.{}",
        b64_encode(header.to_string().as_bytes()),
        b64_encode(payload.to_string().as_bytes())
    );
    let sig = key.sign_bytes(input.as_bytes()).unwrap();
    format!("{input}.{}", b64_encode(&sig))
}

#[test]
fn audience_and_issuer_must_match() {
    let key = es256();
    let v = verifier(vec![key.verifying_key()]);
    let token = key
        .sign(&TokenClaims {
            aud: "other".into(),
            ..claims()
        })
        .unwrap();
    assert!(refused(v.verify(&token, at(NOW))).contains("aud"));
    let token = key
        .sign(&TokenClaims {
            iss: "someone-else".into(),
            ..claims()
        })
        .unwrap();
    assert!(refused(v.verify(&token, at(NOW))).contains("iss"));
    // An array audience that contains ours is fine.
    let mut payload = serde_json::to_value(claims()).unwrap();
    payload["aud"] = json!(["x", "registry.example"]);
    let token = sign_raw(&key, &json!({"alg": "ES256", "kid": key.kid()}), &payload);
    assert_eq!(v.verify(&token, at(NOW)).unwrap().aud, "registry.example");
    payload["aud"] = json!(["x", "y"]);
    let token = sign_raw(&key, &json!({"alg": "ES256", "kid": key.kid()}), &payload);
    refused(v.verify(&token, at(NOW)));
}

#[test]
fn forged_and_tampered_tokens_are_refused() {
    let key = es256();
    let v = verifier(vec![key.verifying_key()]);
    let good = key.sign(&claims()).unwrap();

    // Another key claiming our kid.
    let forger = es256();
    let header = json!({"alg": "ES256", "typ": "JWT", "kid": key.kid()});
    let forged = sign_raw(&forger, &header, &serde_json::to_value(claims()).unwrap());
    assert!(refused(v.verify(&forged, at(NOW))).contains("signature"));

    // alg: none with an empty signature.
    let none = format!(
        "{}.{}.",
        b64_encode(br#"{"alg":"none"}"#),
        good.split('.').nth(1).unwrap()
    );
    refused(v.verify(&none, at(NOW)));
    let none_kid = with_part(
        &good,
        0,
        &b64_encode(
            json!({"alg": "none", "kid": key.kid()})
                .to_string()
                .as_bytes(),
        ),
    );
    assert!(refused(v.verify(&with_part(&none_kid, 2, ""), at(NOW))).contains("alg"));

    // HS256 with the public key as the HMAC secret.
    let jwk = key.public_jwk();
    let public_bytes = [
        &[4u8][..],
        &b64_decode(jwk["x"].as_str().unwrap(), "x").unwrap(),
        &b64_decode(jwk["y"].as_str().unwrap(), "y").unwrap(),
    ]
    .concat();
    let header = json!({"alg": "HS256", "kid": key.kid()});
    let input = format!(
        "{}.{}",
        b64_encode(header.to_string().as_bytes()),
        good.split('.').nth(1).unwrap()
    );
    let mac = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, &public_bytes),
        input.as_bytes(),
    );
    let switched = format!("{input}.{}", b64_encode(mac.as_ref()));
    assert!(refused(v.verify(&switched, at(NOW))).contains("alg"));

    // The payload changed under the old signature.
    let mut payload = serde_json::to_value(claims()).unwrap();
    payload["access"][0]["actions"] = json!(["pull", "push", "delete"]);
    let tampered = with_part(&good, 1, &b64_encode(payload.to_string().as_bytes()));
    assert!(refused(v.verify(&tampered, at(NOW))).contains("signature"));

    // Unknown kid, and no kid at all with one key (fine) or two (refused).
    let header = json!({"alg": "ES256", "kid": "nope"});
    let unknown = sign_raw(&key, &header, &serde_json::to_value(claims()).unwrap());
    assert!(refused(v.verify(&unknown, at(NOW))).contains("unknown kid"));
    let no_kid = sign_raw(
        &key,
        &json!({"alg": "ES256"}),
        &serde_json::to_value(claims()).unwrap(),
    );
    v.verify(&no_kid, at(NOW)).unwrap();
    let two = verifier(vec![key.verifying_key(), forger.verifying_key()]);
    refused(two.verify(&no_kid, at(NOW)));
    two.verify(&good, at(NOW)).unwrap();

    // crit extensions are not understood.
    let crit = sign_raw(
        &key,
        &json!({"alg": "ES256", "kid": key.kid(), "crit": ["exp"], "exp": 1}),
        &serde_json::to_value(claims()).unwrap(),
    );
    assert!(refused(v.verify(&crit, at(NOW))).contains("crit"));
}

#[test]
fn garbage_is_refused_without_panic() {
    let key = es256();
    let v = verifier(vec![key.verifying_key()]);
    let good = key.sign(&claims()).unwrap();
    let huge = "A".repeat(10 << 20);
    let huge_token = format!("{huge}.{huge}.{huge}");
    let garbage: Vec<String> = vec![
        "".into(),
        "a.b".into(),
        "a.b.c".into(),
        "..".into(),
        "a.b.c.d".into(),
        "....".into(),
        "eyJ.eyJ.eyJ".into(),
        format!("{good}.x"),
        format!("{good}="),
        good.replace('.', ".."),
        with_part(&good, 0, &b64_encode(b"[]")),
        with_part(&good, 0, &b64_encode(b"{\"alg\":5}")),
        with_part(&good, 0, &b64_encode(&[0xff, 0xfe])),
        with_part(&good, 1, &b64_encode(b"not json")),
        with_part(&good, 2, "!!!!"),
        with_part(&good, 2, &b64_encode(&[0; 1000])),
        "\u{0}.\u{ffff}.\u{10ffff}".into(),
        huge,
        huge_token,
    ];
    for token in &garbage {
        refused(v.verify(token, at(NOW)));
    }
}

#[test]
fn rs256_jwks_keys_verify() {
    let pair = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
    let public = pair.public_key();
    let n = public.modulus().big_endian_without_leading_zero();
    let e = public.exponent().big_endian_without_leading_zero();
    let jwks = json!({"keys": [
        {"kty": "RSA", "kid": "rsa-1", "alg": "RS256", "use": "sig",
         "n": b64_encode(n), "e": b64_encode(e)},
        {"kty": "EC", "crv": "P-521", "kid": "skipped", "x": "AA", "y": "AA"},
    ]});
    let keys = parse_jwks(jwks.to_string().as_bytes()).unwrap();
    assert_eq!(keys.len(), 1);
    let v = verifier(keys);
    let input = format!(
        "{}.{}",
        b64_encode(br#"{"alg":"RS256","kid":"rsa-1"}"#),
        b64_encode(serde_json::to_string(&claims()).unwrap().as_bytes())
    );
    let mut sig = vec![0; pair.public_modulus_len()];
    pair.sign(
        &RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        input.as_bytes(),
        &mut sig,
    )
    .unwrap();
    let token = format!("{input}.{}", b64_encode(&sig));
    assert_eq!(v.verify(&token, at(NOW)).unwrap(), claims());
    // RS256 pinned: the same signature under another alg name fails.
    let header = b64_encode(br#"{"alg":"RS512","kid":"rsa-1"}"#);
    assert!(refused(v.verify(&with_part(&token, 0, &header), at(NOW))).contains("alg"));
    let header = b64_encode(br#"{"alg":"HS256","kid":"rsa-1"}"#);
    refused(v.verify(&with_part(&token, 0, &header), at(NOW)));
}

#[test]
fn keys_can_be_replaced() {
    let (old, new) = (es256(), es256());
    let v = verifier(vec![old.verifying_key()]);
    let token = new.sign(&claims()).unwrap();
    refused(v.verify(&token, at(NOW)));
    assert!(v.replace_keys(Vec::new()).is_err());
    v.replace_keys(vec![new.verifying_key()]).unwrap();
    v.verify(&token, at(NOW)).unwrap();
    assert_eq!(v.keys().len(), 1);
}

#[test]
fn verifier_options_are_checked() {
    let key = es256();
    for options in [
        TokenVerifierOptions {
            issuer: "i".into(),
            audience: "a".into(),
            ..Default::default()
        },
        TokenVerifierOptions {
            audience: "a".into(),
            keys: vec![key.verifying_key()],
            ..Default::default()
        },
    ] {
        assert!(TokenVerifier::new(options).is_err());
    }
}

#[test]
fn pkcs8_v1_ed25519_pems_sign() {
    // As `openssl genpkey -algorithm ed25519` writes: PKCS#8 v1, without
    // the public key.
    let v2 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(v2.as_ref()).unwrap();
    let pem = pem_encode("PRIVATE KEY", pair.to_pkcs8v1().unwrap().as_ref());
    let key = SigningKey::from_pem(&pem).unwrap();
    assert_eq!(key.algorithm(), Algorithm::EdDsa);
    let v = verifier(vec![key.verifying_key()]);
    assert_eq!(
        v.verify(&key.sign(&claims()).unwrap(), at(NOW)).unwrap(),
        claims()
    );
}

#[test]
fn times_come_from_now_not_the_clock() {
    let key = es256();
    let v = verifier(vec![key.verifying_key()]);
    // 2100-01-01: not yet valid by the system clock, valid at `now`.
    let later = 4_102_444_800;
    let future = TokenClaims {
        exp: later + 300,
        nbf: later,
        iat: later,
        ..claims()
    };
    let token = key.sign(&future).unwrap();
    v.verify(&token, at(later)).unwrap();
    assert!(refused(v.verify(&token, at(NOW))).contains("not valid before"));
    // Long expired by the system clock, valid at `now`.
    let past = TokenClaims {
        exp: 1_000,
        nbf: 0,
        iat: 0,
        ..claims()
    };
    v.verify(&key.sign(&past).unwrap(), at(500)).unwrap();
}

#[test]
fn other_headers_are_refused() {
    let key = es256();
    let v = verifier(vec![key.verifying_key()]);
    let payload = serde_json::to_value(claims()).unwrap();
    v.verify(
        &sign_raw(&key, &json!({"alg": "ES256", "kid": key.kid()}), &payload),
        at(NOW),
    )
    .unwrap();
    for header in [
        json!({"alg": "ES256", "kid": key.kid(), "b64": false}),
        json!({"alg": "ES256", "kid": key.kid(), "b64": true, "crit": ["b64"]}),
        json!({"alg": "ES384", "kid": key.kid()}),
        json!({"alg": "PS256", "kid": key.kid()}),
        json!({"alg": "ES512", "kid": key.kid()}),
        json!({"alg": "es256", "kid": key.kid()}),
        json!({"alg": "ES256", "kid": 5}),
        json!({"kid": key.kid()}),
    ] {
        refused(v.verify(&sign_raw(&key, &header, &payload), at(NOW)));
    }
}

#[test]
fn long_tokens_are_refused_before_decoding() {
    let key = es256();
    let v = verifier(vec![key.verifying_key()]);
    let sized = |len: usize| {
        key.sign(&TokenClaims {
            jti: "j".repeat(len),
            ..claims()
        })
        .unwrap()
    };
    let token = sized(40_000);
    assert!(token.len() <= jws::MAX_TOKEN_LEN);
    v.verify(&token, at(NOW)).unwrap();
    let token = sized(50_000);
    assert!(token.len() > jws::MAX_TOKEN_LEN);
    assert!(refused(v.verify(&token, at(NOW))).contains("too long"));
}
