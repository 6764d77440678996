//! The client side of an authenticated IPAM: [`BearerToken`], a tonic interceptor that puts
//! `authorization: Bearer <token>` on every call, and can be given a fresh token while clients
//! that share it keep running (a rotated projected token, a renewed TokenRequest).

use std::path::Path;
use std::sync::{Arc, RwLock};

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use super::pb::ipam_client::IpamClient;

/// An IPAM client that sends a bearer token.
pub type AuthedIpamClient = IpamClient<InterceptedService<Channel, BearerToken>>;

/// Why a token cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the token is empty")]
    Empty,
    #[error("the token is not printable ASCII")]
    NotAscii,
    #[error("cannot read token file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// The `authorization` value sent with every call (none: calls go without one).
#[derive(Debug, Clone, Default)]
pub struct BearerToken {
    value: Arc<RwLock<Option<MetadataValue<Ascii>>>>,
}

impl BearerToken {
    /// A token to send (surrounding whitespace, as a token file's newline, is dropped).
    pub fn new(token: &str) -> Result<Self, TokenError> {
        let bearer = BearerToken::default();
        bearer.set(token)?;
        Ok(bearer)
    }

    /// No token: calls go unauthenticated (a standalone IPAM on loopback).
    pub fn none() -> Self {
        BearerToken::default()
    }

    /// The token in `path` (a projected ServiceAccount token, a file `kubectl create token`
    /// wrote).
    pub fn from_file(path: &Path) -> Result<Self, TokenError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokenError::Read {
            path: path.display().to_string(),
            source,
        })?;
        BearerToken::new(&text)
    }

    /// Sends `token` from now on, on every client sharing this value.
    pub fn set(&self, token: &str) -> Result<(), TokenError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(TokenError::Empty);
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(TokenError::NotAscii);
        }
        let value: MetadataValue<Ascii> = format!("Bearer {token}")
            .parse()
            .map_err(|_| TokenError::NotAscii)?;
        *self.value.write().unwrap_or_else(|p| p.into_inner()) = Some(value);
        Ok(())
    }

    /// An IPAM client on `channel` that sends this token.
    pub fn client(&self, channel: Channel) -> AuthedIpamClient {
        IpamClient::with_interceptor(channel, self.clone())
    }
}

impl Interceptor for BearerToken {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        let value = self.value.read().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(value) = value {
            request.metadata_mut().insert("authorization", value);
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(token: &mut BearerToken) -> Option<String> {
        let request = token.call(tonic::Request::new(())).unwrap();
        request
            .metadata()
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_owned())
    }

    #[test]
    fn the_token_is_sent_as_bearer_and_can_be_replaced() {
        let mut token = BearerToken::new("abc\n").unwrap();
        assert_eq!(sent(&mut token).as_deref(), Some("Bearer abc"));
        let mut shared = token.clone();
        token.set("def").unwrap();
        assert_eq!(sent(&mut shared).as_deref(), Some("Bearer def"));
        assert_eq!(sent(&mut BearerToken::none()), None);
        assert!(matches!(BearerToken::new(" \n"), Err(TokenError::Empty)));
        assert!(matches!(BearerToken::new("é"), Err(TokenError::NotAscii)));
    }
}
