//! The demo's test PKI: a CA, the webhook's serving certificate and the API server's client
//! certificate, written where the agent and the simulator read them.

use super::*;

/// The demo's certificates, as a cluster would have them: a CA, the agent's serving certificate
/// for 127.0.0.1, and the client certificate the API server presents to the audit webhook.
pub(super) struct Pki {
    pub(super) ca_pem: String,
    pub(super) client_cert_pem: String,
    pub(super) client_key_pem: String,
    pub(super) ca_file: PathBuf,
    pub(super) server_cert_file: PathBuf,
    pub(super) server_key_file: PathBuf,
}

impl Pki {
    /// Makes the certificates and writes them (PEM) into `dir`.
    pub(super) fn generate(dir: &Path) -> Result<Self, DemoError> {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
            KeyPair, KeyUsagePurpose,
        };
        std::fs::create_dir_all(dir).map_err(|source| DemoError::Dir {
            path: dir.display().to_string(),
            source,
        })?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "gitops-reverser-demo-ca");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate()?;
        let ca = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);

        let server_key = KeyPair::generate()?;
        let mut server_params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])?;
        server_params
            .distinguished_name
            .push(DnType::CommonName, "gitops-reverser-webhook");
        server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server = server_params.signed_by(&server_key, &issuer)?;

        let client_key = KeyPair::generate()?;
        let mut client_params = CertificateParams::new(Vec::<String>::new())?;
        client_params
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver-audit");
        client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client = client_params.signed_by(&client_key, &issuer)?;

        let pki = Pki {
            ca_pem: ca.pem(),
            client_cert_pem: client.pem(),
            client_key_pem: client_key.serialize_pem(),
            ca_file: dir.join("ca.crt"),
            server_cert_file: dir.join("webhook.crt"),
            server_key_file: dir.join("webhook.key"),
        };
        write_file(&pki.ca_file, pki.ca_pem.as_bytes(), false)?;
        write_file(&pki.server_cert_file, server.pem().as_bytes(), false)?;
        write_file(
            &pki.server_key_file,
            server_key.serialize_pem().as_bytes(),
            true,
        )?;
        write_file(
            &dir.join("apiserver-client.crt"),
            pki.client_cert_pem.as_bytes(),
            false,
        )?;
        write_file(
            &dir.join("apiserver-client.key"),
            pki.client_key_pem.as_bytes(),
            true,
        )?;
        Ok(pki)
    }
}
