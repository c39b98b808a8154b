//! The simulator as an HTTP(S) client: POSTs JSON to admission webhooks and the audit sink,
//! over plain HTTP or TLS verified against a given CA, optionally with a client certificate.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Uri, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;

/// The largest answer read from a webhook.
const MAX_ANSWER: usize = 3 * 1024 * 1024;

/// Calling a webhook failed before it answered.
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    #[error("invalid URL {0:?}")]
    Url(String),
    #[error("invalid TLS material: {0}")]
    Tls(String),
    #[error("Post {url:?}: {message}")]
    Post { url: String, message: String },
    #[error("Post {url:?}: context deadline exceeded")]
    Timeout { url: String },
}

/// Where and how to POST.
#[derive(Clone)]
pub struct Endpoint {
    url: String,
    uri: Uri,
    host: String,
    port: u16,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// An `http://` or `https://` URL; HTTPS trusts only `ca_pem` (PEM certificates) and
    /// presents `client` (certificate chain PEM, private key PEM) when given.
    pub fn new(
        url: &str,
        ca_pem: Option<&[u8]>,
        client: Option<(&[u8], &[u8])>,
    ) -> Result<Self, OutboundError> {
        let uri: Uri = url.parse().map_err(|_| OutboundError::Url(url.into()))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(OutboundError::Url(url.into())),
        };
        let host = uri
            .host()
            .ok_or_else(|| OutboundError::Url(url.into()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tls = if https {
            Some(Arc::new(client_config(ca_pem, client)?))
        } else {
            None
        };
        Ok(Endpoint {
            url: url.into(),
            uri,
            host,
            port,
            tls,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// This endpoint with `key=value` added to its query (the `?timeout=10s` the real server adds).
    pub fn with_query(&self, key: &str, value: &str) -> Self {
        let mut e = self.clone();
        let path = self
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .filter(|p| !p.is_empty())
            .unwrap_or("/");
        let sep = if path.contains('?') { '&' } else { '?' };
        e.url = format!(
            "{}://{}{path}{sep}{key}={value}",
            self.uri.scheme_str().unwrap_or("http"),
            self.uri.authority().map(|a| a.as_str()).unwrap_or_default()
        );
        if let Ok(u) = e.url.parse() {
            e.uri = u;
        }
        e
    }

    /// POST a JSON body; the status code and body of the answer.
    pub async fn post_json(
        &self,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<(u16, Bytes), OutboundError> {
        match tokio::time::timeout(timeout, self.post_inner(body)).await {
            Ok(r) => r,
            Err(_) => Err(OutboundError::Timeout {
                url: self.url.clone(),
            }),
        }
    }

    async fn post_inner(&self, body: Vec<u8>) -> Result<(u16, Bytes), OutboundError> {
        let fail = |message: String| OutboundError::Post {
            url: self.url.clone(),
            message,
        };
        let path = self.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let authority = self
            .uri
            .authority()
            .map(|a| a.as_str().to_string())
            .unwrap_or_default();
        let req = Request::post(path)
            .header(header::HOST, authority)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json, */*")
            .header(header::USER_AGENT, "kube-apiserver-admission")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| fail(e.to_string()))?;
        let stream = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| fail(format!("dial tcp {}:{}: {e}", self.host, self.port)))?;
        let _ = stream.set_nodelay(true);
        match &self.tls {
            Some(cfg) => {
                let name = ServerName::try_from(self.host.clone())
                    .map_err(|e| fail(format!("invalid server name: {e}")))?;
                let tls = tokio_rustls::TlsConnector::from(cfg.clone())
                    .connect(name, stream)
                    .await
                    .map_err(|e| fail(format!("tls: {e}")))?;
                send(TokioIo::new(tls), req).await.map_err(fail)
            }
            None => send(TokioIo::new(stream), req).await.map_err(fail),
        }
    }
}

async fn send<I>(io: I, req: Request<Full<Bytes>>) -> Result<(u16, Bytes), String>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    let driver = tokio::spawn(conn);
    let resp = sender.send_request(req).await.map_err(|e| e.to_string());
    let out = match resp {
        Ok(resp) => {
            let code = resp.status().as_u16();
            Limited::new(resp.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map(|c| (code, c.to_bytes()))
                .map_err(|e| format!("reading the answer: {e}"))
        }
        Err(e) => Err(e),
    };
    driver.abort();
    out
}

fn client_config(
    ca_pem: Option<&[u8]>,
    client: Option<(&[u8], &[u8])>,
) -> Result<rustls::ClientConfig, OutboundError> {
    let tls_err = |e: String| OutboundError::Tls(e);
    let mut roots = rustls::RootCertStore::empty();
    if let Some(pem) = ca_pem {
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| tls_err(format!("CA bundle: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| tls_err(format!("CA bundle: {e}")))?;
        }
        if roots.is_empty() {
            return Err(tls_err("CA bundle holds no certificate".into()));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err(e.to_string()))?
        .with_root_certificates(roots);
    let mut config = match client {
        Some((cert_pem, key_pem)) => {
            let chain = CertificateDer::pem_slice_iter(cert_pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| tls_err(format!("client certificate: {e}")))?;
            let key = PrivateKeyDer::from_pem_slice(key_pem)
                .map_err(|e| tls_err(format!("client key: {e}")))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| tls_err(e.to_string()))?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        assert!(Endpoint::new("ftp://x", None, None).is_err());
        assert!(Endpoint::new("not a url", None, None).is_err());
        let e = Endpoint::new("http://127.0.0.1:9/hook", None, None).unwrap();
        assert_eq!(e.port, 9);
        assert_eq!(
            e.with_query("timeout", "10s").url(),
            "http://127.0.0.1:9/hook?timeout=10s"
        );
        assert!(Endpoint::new("https://localhost/x", Some(b"garbage"), None).is_err());
        let bare = Endpoint::new("https://127.0.0.1:8443", None, None).unwrap();
        assert_eq!(
            bare.with_query("timeout", "2s").url(),
            "https://127.0.0.1:8443/?timeout=2s"
        );
    }
}
