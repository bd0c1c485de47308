//! Certificates made in the test: a private CA and what it signs, or a
//! self-signed certificate; and the TLS side of a loopback receiver.

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{self, ServerConfig};

/// The names a loopback receiver answers to.
const LOOPBACK: [&str; 4] = ["127.0.0.1", "127.0.0.2", "127.0.0.3", "localhost"];

/// A certificate chain and its private key, for a TLS server.
pub struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: Vec<u8>,
}

impl Identity {
    /// A certificate for the loopback addresses that signs itself: no
    /// trust store knows it.
    pub fn self_signed_loopback() -> Self {
        let key = KeyPair::generate().expect("key");
        let cert = CertificateParams::new(LOOPBACK.map(str::to_owned))
            .expect("params")
            .self_signed(&key)
            .expect("self-signed");
        Self {
            chain: vec![cert.der().clone()],
            key: key.serialize_der(),
        }
    }

    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.clone()));
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), key)
            .expect("server certificate");
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    }
}

/// A private certificate authority, as a company runs for its internal services.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl TestCa {
    pub fn new() -> Self {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "Herald test CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).expect("CA certificate");
        Self {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// The CA's certificate, as an operator puts it in `HERALD_CA_FILE`.
    pub fn pem(&self) -> String {
        self.pem.clone()
    }

    /// A server certificate for the loopback addresses, signed by this CA.
    pub fn issue_for_loopback(&self) -> Identity {
        let key = KeyPair::generate().expect("key");
        let cert = CertificateParams::new(LOOPBACK.map(str::to_owned))
            .expect("params")
            .signed_by(&key, &self.issuer)
            .expect("signed");
        Identity {
            chain: vec![cert.der().clone()],
            key: key.serialize_der(),
        }
    }
}

/// Serves `app` over TLS on `listener`. A handshake the client refuses (an
/// unknown issuer) only ends that connection.
pub async fn serve(listener: tokio::net::TcpListener, acceptor: tokio_rustls::TlsAcceptor, app: axum::Router) {
    while let Ok((tcp, _)) = listener.accept().await {
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(tcp).await else {
                return;
            };
            let service = hyper_util::service::TowerToHyperService::new(app);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}
