//! OAuth 2.0 access tokens from a refresh token (Google Ads): exchanged at the token
//! endpoint, cached until a minute before they expire, refreshed by one request at a time,
//! and dropped when the API answers 401 so that the retry gets a fresh one.

use std::time::{Duration, Instant};

use oauth2::basic::{BasicClient, BasicErrorResponseType};
use oauth2::{
    AuthType, ClientId, ClientSecret, EndpointNotSet, EndpointSet, RefreshToken, RequestTokenError,
    StandardErrorResponse, TokenResponse, TokenUrl,
};

type Client =
    BasicClient<EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

/// Why no access token could be had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// The endpoint refused the client or the refresh token (`invalid_grant`, ...): a retry
    /// cannot fix it, the operator must.
    Refused(String),
    /// The endpoint could not be reached or answered nothing usable: retried.
    Unavailable(String),
}

pub struct TokenSource {
    client: Client,
    refresh_token: RefreshToken,
    cached: tokio::sync::Mutex<Option<(String, Instant)>>,
}

/// Tokens are renewed this long before Google says they expire.
const EARLY: Duration = Duration::from_secs(60);

impl TokenSource {
    pub fn new(
        token_url: &str,
        client_id: &str,
        client_secret: String,
        refresh_token: String,
    ) -> Result<Self, String> {
        let token_url = TokenUrl::new(token_url.to_owned()).map_err(|e| e.to_string())?;
        // Google documents the client's ID and secret in the form body.
        let client = BasicClient::new(ClientId::new(client_id.to_owned()))
            .set_client_secret(ClientSecret::new(client_secret))
            .set_auth_type(AuthType::RequestBody)
            .set_token_uri(token_url);
        Ok(Self {
            client,
            refresh_token: RefreshToken::new(refresh_token),
            cached: tokio::sync::Mutex::new(None),
        })
    }

    /// A valid access token: the cached one, or a new one from the endpoint.
    pub async fn token(&self, http: &reqwest::Client) -> Result<String, TokenError> {
        let mut cached = self.cached.lock().await;
        if let Some((token, until)) = cached.as_ref() {
            if Instant::now() < *until {
                return Ok(token.clone());
            }
        }
        let answer = self
            .client
            .exchange_refresh_token(&self.refresh_token)
            .request_async(http)
            .await
            .map_err(|e| match e {
                RequestTokenError::ServerResponse(r) => Self::refused(&r),
                RequestTokenError::Request(e) => {
                    TokenError::Unavailable(format!("token endpoint unreachable: {}", e))
                }
                RequestTokenError::Parse(_, _) => TokenError::Unavailable(
                    "the token endpoint's answer is not a token (a server error?)".into(),
                ),
                RequestTokenError::Other(e) => TokenError::Unavailable(e),
            })?;
        let token = answer.access_token().secret().clone();
        let lifetime = answer
            .expires_in()
            .unwrap_or(Duration::from_secs(3600))
            .saturating_sub(EARLY);
        *cached = Some((token.clone(), Instant::now() + lifetime));
        Ok(token)
    }

    /// Forgets `stale` (the API refused it), unless a newer token replaced it meanwhile.
    pub async fn invalidate(&self, stale: &str) {
        let mut cached = self.cached.lock().await;
        if cached.as_ref().is_some_and(|(t, _)| t == stale) {
            *cached = None;
        }
    }

    fn refused(r: &StandardErrorResponse<BasicErrorResponseType>) -> TokenError {
        let description = r
            .error_description()
            .map(|d| format!(": {d}"))
            .unwrap_or_default();
        TokenError::Refused(format!("{}{description}", r.error().as_ref()))
    }
}
