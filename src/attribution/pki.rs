//! The webhook's own PKI, for installs without cert-manager: a CA and a serving certificate for
//! the webhook Service's DNS names, and the decision whether a stored pair is still usable or
//! must be (re)issued. Pure: no I/O; the caller supplies the time.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

const DAY: Duration = Duration::from_secs(24 * 60 * 60);
/// How long the CA is valid (ten years).
pub const CA_VALIDITY: Duration = Duration::from_secs(3650 * 24 * 60 * 60);
/// How long a serving certificate is valid (one year).
pub const SERVING_VALIDITY: Duration = Duration::from_secs(365 * 24 * 60 * 60);
/// A serving certificate is replaced when it expires within this time (30 days).
pub const RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 60 * 60);

const CA_NAME: &str = "gitops-reverser-webhook-ca";
const SERVING_NAME: &str = "gitops-reverser-webhook";

/// Issuing a certificate failed; names which one.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("cannot issue the webhook's {what}: {message}")]
    Issue { what: &'static str, message: String },
    #[error("webhook DNS name {name:?} is not a DNS name or IP address")]
    Name { name: String },
}

fn issue(what: &'static str) -> impl Fn(rcgen::Error) -> PkiError {
    move |e| PkiError::Issue {
        what,
        message: e.to_string(),
    }
}

/// The CA and the serving certificate with their keys, PEM, as stored in the Secret.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookPki {
    pub ca_cert: String,
    pub ca_key: String,
    pub cert: String,
    pub key: String,
}

impl std::fmt::Debug for WebhookPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the keys.
        f.debug_struct("WebhookPki").finish_non_exhaustive()
    }
}

/// What to do with what is stored.
#[derive(Debug)]
pub enum Next {
    /// Usable as it is.
    Keep(WebhookPki),
    /// Store and use this newly issued one; `reason` says why the stored one was not kept.
    Issue { pki: WebhookPki, reason: String },
}

/// The UTC calendar date of `at` (rcgen takes dates; a day's precision is enough here).
fn date(at: SystemTime) -> (i32, u8, u8) {
    let d = jiff::Timestamp::try_from(at)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    (i32::from(d.year()), d.month() as u8, d.day() as u8)
}

fn validity(params: &mut CertificateParams, now: SystemTime, valid_for: Duration) {
    // A day of slack before now for clocks that are behind.
    let (year, month, day) = date(now.checked_sub(DAY).unwrap_or(now));
    params.not_before = rcgen::date_time_ymd(year, month, day);
    let (year, month, day) = date(now + valid_for);
    params.not_after = rcgen::date_time_ymd(year, month, day);
}

/// The CA's parameters; the same every time, so that an issuer can be rebuilt from the stored
/// CA key alone (the issuer needs only the name, key usages and key identifier method).
fn ca_params(now: SystemTime) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(issue("CA"))?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.distinguished_name.push(DnType::CommonName, CA_NAME);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut params, now, CA_VALIDITY);
    Ok(params)
}

fn serving(
    names: &[String],
    issuer: &Issuer<'_, KeyPair>,
    now: SystemTime,
) -> Result<(String, String), PkiError> {
    for name in names {
        if ServerName::try_from(name.as_str()).is_err() {
            return Err(PkiError::Name { name: name.clone() });
        }
    }
    let key = KeyPair::generate().map_err(issue("serving key"))?;
    let mut params =
        CertificateParams::new(names.to_vec()).map_err(issue("serving certificate"))?;
    params
        .distinguished_name
        .push(DnType::CommonName, SERVING_NAME);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    validity(&mut params, now, SERVING_VALIDITY);
    let cert = params
        .signed_by(&key, issuer)
        .map_err(issue("serving certificate"))?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// A new CA and a serving certificate for `names` (DNS names or IP addresses).
pub fn generate(names: &[String], now: SystemTime) -> Result<WebhookPki, PkiError> {
    let ca_key = KeyPair::generate().map_err(issue("CA key"))?;
    let params = ca_params(now)?;
    let ca = params.self_signed(&ca_key).map_err(issue("CA"))?;
    let ca_key_pem = ca_key.serialize_pem();
    let issuer = Issuer::new(params, ca_key);
    let (cert, key) = serving(names, &issuer, now)?;
    Ok(WebhookPki {
        ca_cert: ca.pem(),
        ca_key: ca_key_pem,
        cert,
        key,
    })
}

/// A new serving certificate from the stored CA (kept, so the `caBundle` stays valid), or a
/// whole new PKI when the CA's key does not read.
fn renew(stored: &WebhookPki, names: &[String], now: SystemTime) -> Result<WebhookPki, PkiError> {
    if ca_usable(stored)
        && let Ok(ca_key) = KeyPair::from_pem(&stored.ca_key)
    {
        let issuer = Issuer::new(ca_params(now)?, ca_key);
        let (cert, key) = serving(names, &issuer, now)?;
        return Ok(WebhookPki {
            ca_cert: stored.ca_cert.clone(),
            ca_key: stored.ca_key.clone(),
            cert,
            key,
        });
    }
    generate(names, now)
}

fn one_cert(pem: &str) -> Option<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem.as_bytes()).next()?.ok()
}

fn key_fits(cert: &str, key: &str) -> bool {
    let (Some(cert), Ok(key)) = (
        one_cert(cert),
        PrivateKeyDer::from_pem_slice(key.as_bytes()),
    ) else {
        return false;
    };
    let provider = rustls::crypto::ring::default_provider();
    rustls::sign::CertifiedKey::from_der(vec![cert], key, &provider).is_ok()
}

fn ca_usable(stored: &WebhookPki) -> bool {
    key_fits(&stored.ca_cert, &stored.ca_key)
}

/// Why the stored serving certificate cannot be kept at `now`, if it cannot: it must chain to
/// the stored CA, hold every name in `names`, fit its key, and stay valid for [`RENEW_BEFORE`].
pub fn problem(stored: &WebhookPki, names: &[String], now: SystemTime) -> Option<String> {
    if !ca_usable(stored) {
        return Some("the CA certificate or key does not read".into());
    }
    if !key_fits(&stored.cert, &stored.key) {
        return Some("the serving certificate or key does not read".into());
    }
    let (Some(ca), Some(cert)) = (one_cert(&stored.ca_cert), one_cert(&stored.cert)) else {
        return Some("the certificates do not read".into());
    };
    let mut roots = rustls::RootCertStore::empty();
    if roots.add(ca).is_err() {
        return Some("the CA certificate is not a usable trust anchor".into());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        match WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider).build() {
            Ok(v) => v,
            Err(e) => return Some(format!("the CA cannot verify: {e}")),
        };
    let at = now + RENEW_BEFORE;
    let at = UnixTime::since_unix_epoch(
        at.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default(),
    );
    for name in names {
        let Ok(server) = ServerName::try_from(name.clone()) else {
            return Some(format!("{name:?} is not a DNS name or IP address"));
        };
        if let Err(e) = verifier.verify_server_cert(&cert, &[], &server, &[], at) {
            return Some(format!(
                "the serving certificate is not valid for {name} for {} more days: {e}",
                RENEW_BEFORE.as_secs() / 86_400
            ));
        }
    }
    None
}

/// Keeps what is stored when it is usable, else issues what is needed: a serving certificate
/// from the stored CA when the CA is intact, a whole new PKI otherwise (or when nothing is stored).
pub fn next(
    stored: Option<WebhookPki>,
    names: &[String],
    now: SystemTime,
) -> Result<Next, PkiError> {
    match stored {
        None => Ok(Next::Issue {
            pki: generate(names, now)?,
            reason: "no certificate stored yet".into(),
        }),
        Some(stored) => match problem(&stored, names, now) {
            None => Ok(Next::Keep(stored)),
            Some(reason) => Ok(Next::Issue {
                pki: renew(&stored, names, now)?,
                reason,
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        vec![
            "gitops-reverser-webhook.gitops-reverser-system.svc".into(),
            "127.0.0.1".into(),
        ]
    }

    #[test]
    fn a_fresh_pki_is_kept() {
        let now = SystemTime::now();
        let pki = generate(&names(), now).expect("generated");
        assert_eq!(problem(&pki, &names(), now), None);
        let Next::Keep(kept) = next(Some(pki.clone()), &names(), now).expect("next") else {
            panic!("a fresh certificate is replaced");
        };
        assert_eq!(kept, pki);
    }

    #[test]
    fn nothing_stored_issues_a_new_ca() {
        let Next::Issue { pki, reason } = next(None, &names(), SystemTime::now()).expect("next")
        else {
            panic!("kept nothing");
        };
        assert!(reason.contains("no certificate"), "{reason}");
        assert!(pki.ca_cert.contains("BEGIN CERTIFICATE") && pki.key.contains("PRIVATE KEY"));
    }

    #[test]
    fn near_expiry_renews_the_serving_certificate_and_keeps_the_ca() {
        let issued = SystemTime::now();
        let pki = generate(&names(), issued).expect("generated");
        // 340 days later, 25 days are left: renew.
        let later = issued + Duration::from_secs(340 * 86_400);
        let Next::Issue {
            pki: renewed,
            reason,
        } = next(Some(pki.clone()), &names(), later).expect("next")
        else {
            panic!("an expiring certificate is kept");
        };
        assert!(reason.contains("not valid"), "{reason}");
        assert_eq!(renewed.ca_cert, pki.ca_cert, "the caBundle stays valid");
        assert_ne!(renewed.cert, pki.cert);
        assert_eq!(problem(&renewed, &names(), later), None);
    }

    #[test]
    fn a_new_name_renews_and_a_broken_ca_is_replaced() {
        let now = SystemTime::now();
        let pki = generate(&names(), now).expect("generated");
        let mut more = names();
        more.push("webhook.example.org".into());
        let Next::Issue { pki: renewed, .. } = next(Some(pki.clone()), &more, now).expect("next")
        else {
            panic!("a certificate without the new name is kept");
        };
        assert_eq!(renewed.ca_cert, pki.ca_cert);
        assert_eq!(problem(&renewed, &more, now), None);

        let broken = WebhookPki {
            ca_key: "garbage".into(),
            ..pki.clone()
        };
        let Next::Issue { pki: fresh, reason } = next(Some(broken), &names(), now).expect("next")
        else {
            panic!("a broken CA is kept");
        };
        assert!(reason.contains("CA"), "{reason}");
        assert_ne!(fresh.ca_cert, pki.ca_cert);
        assert_eq!(problem(&fresh, &names(), now), None);
    }

    #[test]
    fn a_certificate_of_another_ca_is_not_kept() {
        let now = SystemTime::now();
        let a = generate(&names(), now).expect("a");
        let b = generate(&names(), now).expect("b");
        let mixed = WebhookPki {
            cert: b.cert.clone(),
            key: b.key.clone(),
            ..a
        };
        assert!(problem(&mixed, &names(), now).is_some());
    }

    #[test]
    fn an_invalid_name_is_an_error() {
        let err = generate(&["not a name!".into()], SystemTime::now()).expect_err("invalid");
        assert!(err.to_string().contains("not a name!"), "{err}");
    }
}
