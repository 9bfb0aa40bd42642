//! TLS for the Spice port (reference sheet §1.5): the certificates, laid out as QEMU's
//! `x509-dir`, and the per-channel policy QEMU's `tls-channel` / `plaintext-channel` express.
//!
//! Spice TLS is a second listening port that speaks TLS from the first byte; inside it the link
//! stage runs as on the plain port. A channel that must be secure and arrives on the plain port
//! is answered with the link reply `NEED_SECURED`, and spice-gtk reconnects that channel to the
//! TLS port; `NEED_UNSECURED` is the reverse. The TLS library is `rustls` (with the `ring`
//! provider, which builds with only a C compiler).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::wire::types::ChannelType;

/// File names QEMU reads from its `x509-dir`.
pub const CA_CERT_FILE: &str = "ca-cert.pem";
/// The server's certificate chain (server certificate first).
pub const SERVER_CERT_FILE: &str = "server-cert.pem";
/// The server's private key (PKCS#8, PKCS#1 or SEC1 PEM).
pub const SERVER_KEY_FILE: &str = "server-key.pem";

/// Why the TLS configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file is missing or unreadable.
    #[error("{path}: {source}")]
    Read {
        /// the file
        path: PathBuf,
        /// what went wrong
        source: std::io::Error,
    },
    /// A PEM file holds nothing usable.
    #[error("{path}: {what}")]
    Pem {
        /// the file
        path: PathBuf,
        /// what is wrong with it
        what: String,
    },
    /// rustls refused the certificate/key pair.
    #[error("certificate and key: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A loaded TLS server configuration (cheap to clone).
#[derive(Clone)]
pub struct TlsConfig {
    acceptor: TlsAcceptor,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsConfig")
    }
}

impl TlsConfig {
    /// Loads `ca-cert.pem`, `server-cert.pem` and `server-key.pem` from `dir`, as QEMU does
    /// with `-spice x509-dir=DIR`. The CA certificate must be present and parse (QEMU requires
    /// it too) but client certificates are not asked for: clients authenticate with the
    /// ticket, as with spice-server.
    pub fn from_x509_dir(dir: &Path) -> Result<Self, TlsError> {
        let ca_path = dir.join(CA_CERT_FILE);
        let ca = read_certs(&ca_path)?;
        if ca.is_empty() {
            return Err(pem_err(&ca_path, "no CERTIFICATE block"));
        }
        let cert_path = dir.join(SERVER_CERT_FILE);
        let chain = read_certs(&cert_path)?;
        if chain.is_empty() {
            return Err(pem_err(&cert_path, "no CERTIFICATE block"));
        }
        let key_path = dir.join(SERVER_KEY_FILE);
        let key_pem = read(&key_path)?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem)
            .map_err(|e| pem_err(&key_path, &format!("no usable private key ({e})")))?;
        Self::from_der(chain, key)
    }

    /// Builds a configuration from a DER certificate chain and key.
    pub fn from_der(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, TlsError> {
        // ring is deprecated in rustls 0.23.3x only for lacking post-quantum key exchange;
        // aws-lc-rs (which has it) needs cmake and NASM to build.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        Ok(TlsConfig {
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }

    pub(crate) fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }
}

fn pem_err(path: &Path, what: &str) -> TlsError {
    TlsError::Pem {
        path: path.to_path_buf(),
        what: what.to_string(),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err(path, &format!("bad PEM ({e})")))
}

/// Which transport a channel must arrive on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Security {
    /// Either port (the default, as in spice-server).
    #[default]
    Any,
    /// TLS only (`tls-channel`): on the plain port the link reply is `NEED_SECURED`.
    Secure,
    /// Plain only (`plaintext-channel`): on the TLS port the link reply is `NEED_UNSECURED`.
    Plain,
}

/// The per-channel transport policy (QEMU's `tls-channel=NAME|default` and
/// `plaintext-channel=NAME|default`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelSecurity {
    /// Policy of every channel not named.
    pub default: Security,
    /// Policy by channel type number.
    pub channels: Vec<(u8, Security)>,
}

/// The channel names QEMU accepts for `tls-channel` / `plaintext-channel`, with their Spice
/// channel type numbers.
pub const CHANNEL_NAMES: [(&str, u8); 11] = [
    ("main", 1),
    ("display", 2),
    ("inputs", 3),
    ("cursor", 4),
    ("playback", 5),
    ("record", 6),
    ("tunnel", 7),
    ("smartcard", 8),
    ("usbredir", 9),
    ("port", 10),
    ("webdav", 11),
];

impl ChannelSecurity {
    /// Sets `name` (a name of [`CHANNEL_NAMES`] or `default`) to `security`.
    pub fn set(&mut self, name: &str, security: Security) -> Result<(), String> {
        if name == "default" {
            self.default = security;
            return Ok(());
        }
        let ty = CHANNEL_NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| *t)
            .ok_or_else(|| {
                let names: Vec<_> = CHANNEL_NAMES.iter().map(|(n, _)| *n).collect();
                format!(
                    "unknown channel '{name}' (one of {}, or default)",
                    names.join(", ")
                )
            })?;
        self.channels.retain(|(t, _)| *t != ty);
        self.channels.push((ty, security));
        Ok(())
    }

    /// The policy of channel type `ty`.
    pub fn of(&self, ty: ChannelType) -> Security {
        let ty: u8 = ty.into();
        self.channels
            .iter()
            .find(|(t, _)| *t == ty)
            .map_or(self.default, |(_, s)| *s)
    }

    /// True if any channel may only be reached over TLS.
    pub fn needs_tls(&self) -> bool {
        self.default == Security::Secure
            || self.channels.iter().any(|(_, s)| *s == Security::Secure)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_channels_override_the_default() {
        let mut p = ChannelSecurity::default();
        assert_eq!(p.of(ChannelType::Main), Security::Any);
        p.set("default", Security::Secure).unwrap();
        p.set("cursor", Security::Plain).unwrap();
        p.set("cursor", Security::Secure).unwrap();
        p.set("inputs", Security::Plain).unwrap();
        assert_eq!(p.of(ChannelType::Main), Security::Secure);
        assert_eq!(p.of(ChannelType::Cursor), Security::Secure);
        assert_eq!(p.of(ChannelType::Inputs), Security::Plain);
        assert!(p.needs_tls());
        let e = p.set("disply", Security::Secure).unwrap_err();
        assert!(e.contains("unknown channel 'disply'"), "{e}");
    }

    #[test]
    fn a_missing_or_empty_x509_dir_says_which_file() {
        let dir = std::env::temp_dir().join(format!("sb-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let e = TlsConfig::from_x509_dir(&dir).unwrap_err().to_string();
        assert!(e.contains("ca-cert.pem"), "{e}");
        std::fs::write(dir.join(CA_CERT_FILE), "not pem\n").unwrap();
        let e = TlsConfig::from_x509_dir(&dir).unwrap_err().to_string();
        assert!(e.contains("ca-cert.pem: no CERTIFICATE block"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
