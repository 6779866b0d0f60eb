//! RSA keys of the identity provider, parsed once.
//!
//! `jsonwebtoken`'s aws-lc provider rebuilds an RSA public key from its `n` and `e` on every
//! token it checks. This module is that provider with one change: a token signed by an RSA
//! key the signer has registered (every RSA key of the provider's JWKS, when the keys are
//! fetched) is checked with aws-lc-rs's `ParsedPublicKey`, made once per key and algorithm.
//! Everything else (EC, EdDSA, an unregistered key, the claims) goes through the crate as
//! before; the signature check itself is aws-lc-rs's in both cases.
//!
//! In: the provider's RSA keys as they are fetched. Out: the process's jsonwebtoken
//! `CryptoProvider`, installed once.

use std::sync::{Arc, LazyLock, RwLock};

use aws_lc_rs::signature::{self as lc, ParsedPublicKey, RsaParameters, RsaPublicKeyComponents};
use jsonwebtoken::crypto::{CryptoProvider, JwtVerifier, aws_lc};
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind};

/// Most parsed keys kept: providers publish a handful; a signer talks to one provider.
const MAX_KEYS: usize = 64;

struct Entry {
    alg: Algorithm,
    n: Vec<u8>,
    e: Vec<u8>,
    key: Arc<ParsedPublicKey>,
}

static PARSED: RwLock<Vec<Entry>> = RwLock::new(Vec::new());

static PROVIDER: LazyLock<CryptoProvider> = LazyLock::new(|| CryptoProvider {
    verifier_factory: verifier,
    ..aws_lc::DEFAULT_PROVIDER.clone()
});

/// Installs the provider for the process (a no-op when one is installed already, in which
/// case tokens are checked by that one, correctly if more slowly).
pub fn install() {
    let _ = PROVIDER.install_default();
}

fn params(alg: Algorithm) -> Option<&'static RsaParameters> {
    Some(match alg {
        Algorithm::RS256 => &lc::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &lc::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &lc::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &lc::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &lc::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &lc::RSA_PSS_2048_8192_SHA512,
        _ => return None,
    })
}

/// Parses `key` (if it is RSA) for each of `algorithms`, for the tokens to come. A key the
/// library refuses (too short, malformed) is not registered: the crate then refuses its
/// tokens as it always has.
pub fn register(key: &DecodingKey, algorithms: &[Algorithm]) {
    let DecodingKeyKind::RsaModulusExponent { n, e } = key.kind() else {
        return;
    };
    let mut parsed = PARSED.write().unwrap_or_else(|p| p.into_inner());
    for &alg in algorithms {
        let Some(p) = params(alg) else { continue };
        if parsed
            .iter()
            .any(|x| x.alg == alg && x.n == *n && x.e == *e)
        {
            continue;
        }
        let Ok(k) = (RsaPublicKeyComponents { n, e }).to_parsed_public_key(p) else {
            continue;
        };
        if parsed.len() >= MAX_KEYS {
            parsed.remove(0);
        }
        parsed.push(Entry {
            alg,
            n: n.clone(),
            e: e.clone(),
            key: Arc::new(k),
        });
    }
}

fn lookup(alg: Algorithm, key: &DecodingKey) -> Option<Arc<ParsedPublicKey>> {
    let DecodingKeyKind::RsaModulusExponent { n, e } = key.kind() else {
        return None;
    };
    let parsed = PARSED.read().unwrap_or_else(|p| p.into_inner());
    parsed
        .iter()
        .find(|x| x.alg == alg && x.n == *n && x.e == *e)
        .map(|x| x.key.clone())
}

fn verifier(
    alg: &Algorithm,
    key: &DecodingKey,
) -> jsonwebtoken::errors::Result<Box<dyn JwtVerifier>> {
    match lookup(*alg, key) {
        Some(parsed) => Ok(Box::new(Parsed { alg: *alg, parsed })),
        None => (aws_lc::DEFAULT_PROVIDER.verifier_factory)(alg, key),
    }
}

struct Parsed {
    alg: Algorithm,
    parsed: Arc<ParsedPublicKey>,
}

impl jsonwebtoken::signature::Verifier<Vec<u8>> for Parsed {
    fn verify(
        &self,
        msg: &[u8],
        signature: &Vec<u8>,
    ) -> Result<(), jsonwebtoken::signature::Error> {
        self.parsed
            .verify_sig(msg, signature)
            .map_err(jsonwebtoken::signature::Error::from_source)
    }
}

impl JwtVerifier for Parsed {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use jsonwebtoken::Validation;

    /// A test key pair: it signs tokens, and its public half as the JWKS would give it.
    struct Pair(aws_lc_rs::rsa::KeyPair);

    impl Pair {
        fn new() -> Self {
            Pair(aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap())
        }

        fn public(&self) -> DecodingKey {
            let public = aws_lc_rs::signature::KeyPair::public_key(&self.0);
            let c = RsaPublicKeyComponents::<Vec<u8>>::from(public);
            DecodingKey::from_rsa_raw_components(&c.n, &c.e)
        }

        fn token(&self, alg: Algorithm, claims: &serde_json::Value) -> String {
            let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
            let header = serde_json::json!({"alg": alg, "typ": "JWT"});
            let message = format!(
                "{}.{}",
                b64(header.to_string().as_bytes()),
                b64(claims.to_string().as_bytes())
            );
            let padding: &'static dyn aws_lc_rs::signature::RsaEncoding = match alg {
                Algorithm::RS256 => &lc::RSA_PKCS1_SHA256,
                Algorithm::PS256 => &lc::RSA_PSS_SHA256,
                _ => unreachable!(),
            };
            let mut sig = vec![0; self.0.public_modulus_len()];
            self.0
                .sign(
                    padding,
                    &aws_lc_rs::rand::SystemRandom::new(),
                    message.as_bytes(),
                    &mut sig,
                )
                .unwrap();
            format!("{message}.{}", b64(&sig))
        }
    }

    /// A token signed by a registered key verifies through the parsed key; one signed by
    /// another key, or with another payload, does not.
    #[test]
    fn registered_keys_verify_what_they_signed_and_nothing_else() {
        install();
        let (a, b) = (Pair::new(), Pair::new());
        let verify_a = a.public();
        register(&verify_a, &[Algorithm::RS256, Algorithm::PS256]);
        assert!(lookup(Algorithm::RS256, &verify_a).is_some());
        assert!(lookup(Algorithm::RS384, &verify_a).is_none());
        assert!(lookup(Algorithm::RS256, &b.public()).is_none());
        let claims = serde_json::json!({"sub": "a", "exp": 4_000_000_000u64});
        for alg in [Algorithm::RS256, Algorithm::PS256] {
            let mut v = Validation::new(alg);
            v.required_spec_claims.clear();
            v.validate_aud = false;
            let decode = |t: &str| jsonwebtoken::decode::<serde_json::Value>(t, &verify_a, &v);
            let good = a.token(alg, &claims);
            assert_eq!(decode(&good).unwrap().claims["sub"], "a", "{alg:?}");
            // The factory itself, whichever provider the test process ended up with.
            let (message, signature) = good.rsplit_once('.').unwrap();
            let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(signature)
                .unwrap();
            let parsed = verifier(&alg, &verify_a).unwrap();
            assert_eq!(parsed.algorithm(), alg);
            assert!(parsed.verify(message.as_bytes(), &signature).is_ok());
            assert!(parsed.verify(b"another message", &signature).is_err());
            let bad_signature = jsonwebtoken::errors::ErrorKind::InvalidSignature;
            let other = b.token(alg, &claims);
            assert_eq!(*decode(&other).unwrap_err().kind(), bad_signature);
            let forged = b.token(
                alg,
                &serde_json::json!({"sub": "b", "exp": 4_000_000_000u64}),
            );
            let mut parts: Vec<&str> = good.split('.').collect();
            parts[1] = forged.split('.').nth(1).unwrap();
            assert_eq!(*decode(&parts.join(".")).unwrap_err().kind(), bad_signature);
        }
    }
}
