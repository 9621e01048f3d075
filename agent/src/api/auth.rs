//! Who is calling and what they may do: bearer tokens checked by TokenReview, permissions by
//! SubjectAccessReview (through [`ProbeService`]), both answers cached briefly and boundedly.
//!
//! ```text
//! Authorization: Bearer <token> ──sha256──> cache hit? ──no──> review slot ──TokenReview──> UserInfo
//! (UserInfo, Access) ──> cache hit? ──no──> review slot ──SubjectAccessReview──> allowed?
//! ```
//!
//! Reviews in flight are bounded ([`MAX_REVIEWS_IN_FLIGHT`]); a request waits for a slot at
//! most `auth_timeout`, then gets 503. Cached answers need no slot, so a flood of bogus tokens
//! costs other callers nothing once their own answers are cached. Tokens are never stored, only
//! their SHA-256.
//!
//! With auth disabled (`--api-auth=false`, for a trusted network only) every caller is
//! [`ANONYMOUS`] and every access is allowed.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, header};
use parking_lot::Mutex;
use tokio::sync::Semaphore;
use tracing::{info, warn};

use super::{ApiError, ProbeService, ServiceError, UserInfo};

/// TokenReview and SubjectAccessReview calls in flight at once.
pub const MAX_REVIEWS_IN_FLIGHT: usize = 16;
/// Answers kept per cache; when full, expired ones are dropped, and if none has expired a new
/// answer is simply not cached.
pub const MAX_CACHED_REVIEWS: usize = 1024;

/// The caller of every request when auth is disabled.
pub const ANONYMOUS: &str = "system:anonymous";

/// How long review answers are trusted. A revoked token or role keeps working this long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReviewTtl {
    pub authenticated: Duration,
    pub unauthenticated: Duration,
    pub allowed: Duration,
    pub denied: Duration,
}

impl Default for ReviewTtl {
    fn default() -> Self {
        Self {
            authenticated: Duration::from_secs(60),
            unauthenticated: Duration::from_secs(10),
            allowed: Duration::from_secs(60),
            denied: Duration::from_secs(10),
        }
    }
}

/// What a caller asks to do, as SubjectAccessReview attributes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// `create proberequests.netreach.dev` in a namespace: what an on-demand probe from a pod
    /// there needs.
    CreateProbeRequests { namespace: String },
    /// `get pods` in a namespace: what learning about a destination pod there needs.
    GetPods { namespace: String },
    /// `get` on a non-resource URL such as `/metrics` (the kube-rbac-proxy convention).
    GetUrl { path: &'static str },
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Access::CreateProbeRequests { namespace } => {
                write!(
                    f,
                    "create proberequests.netreach.dev in namespace {namespace}"
                )
            }
            Access::GetPods { namespace } => write!(f, "get pods in namespace {namespace}"),
            Access::GetUrl { path } => write!(f, "get {path}"),
        }
    }
}

/// What a bearer token is presented for; each use has its own audiences.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TokenUse {
    /// Reading `/metrics` or `/v1/pairs`. By default any token the API server accepts for
    /// itself, so Prometheus can scrape with its own service-account token (the
    /// kube-rbac-proxy convention); `--read-audiences` narrows it.
    Read,
    /// Running an on-demand probe: only tokens for `netreach` (`--api-audiences`), so a
    /// token a caller hands the agent is worthless against the API server.
    Probe,
}

/// Whether requests are checked at all.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AuthMode {
    /// TokenReview and SubjectAccessReview on every route but the health checks.
    #[default]
    Enabled,
    /// Everyone is [`ANONYMOUS`] and may do everything: for a trusted network only.
    Disabled,
}

/// Answers that expire, bounded in number. Pure: callers pass `now`.
#[derive(Debug)]
pub struct ReviewCache<K, V> {
    entries: HashMap<K, (V, Instant)>,
    capacity: usize,
}

impl<K: Eq + Hash, V: Clone> ReviewCache<K, V> {
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            capacity,
        }
    }

    pub fn get(&self, key: &K, now: Instant) -> Option<V> {
        let (value, expires) = self.entries.get(key)?;
        (now < *expires).then(|| value.clone())
    }

    pub fn insert(&mut self, key: K, value: V, ttl: Duration, now: Instant) {
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&key) {
            self.entries.retain(|_, (_, expires)| now < *expires);
            if self.entries.len() >= self.capacity {
                return;
            }
        }
        self.entries.insert(key, (value, now + ttl));
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

type TokenKey = ([u8; 32], TokenUse);

/// Authentication and authorization for the API's handlers, shared by every request.
pub struct Gate {
    mode: AuthMode,
    service: Arc<dyn ProbeService>,
    timeout: Duration,
    ttl: ReviewTtl,
    slots: Semaphore,
    users: Mutex<ReviewCache<TokenKey, Option<UserInfo>>>,
    decisions: Mutex<ReviewCache<(UserInfo, Access), bool>>,
}

impl fmt::Debug for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gate")
            .field("mode", &self.mode)
            .field("timeout", &self.timeout)
            .field("cached_users", &self.users.lock().len())
            .field("cached_decisions", &self.decisions.lock().len())
            .finish_non_exhaustive()
    }
}

impl Gate {
    pub fn new(
        mode: AuthMode,
        service: Arc<dyn ProbeService>,
        timeout: Duration,
        ttl: ReviewTtl,
    ) -> Self {
        Self {
            mode,
            service,
            timeout,
            ttl,
            slots: Semaphore::new(MAX_REVIEWS_IN_FLIGHT),
            users: Mutex::new(ReviewCache::new(MAX_CACHED_REVIEWS)),
            decisions: Mutex::new(ReviewCache::new(MAX_CACHED_REVIEWS)),
        }
    }

    pub fn mode(&self) -> AuthMode {
        self.mode
    }

    /// The caller of a request with these headers: 401 without a bearer token valid for
    /// `token_use`, 503 when Kubernetes cannot say.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        token_use: TokenUse,
    ) -> Result<UserInfo, ApiError> {
        if self.mode == AuthMode::Disabled {
            return Ok(UserInfo {
                username: ANONYMOUS.into(),
                groups: vec!["system:unauthenticated".into()],
                ..UserInfo::default()
            });
        }
        let token = bearer_token(headers)?;
        let key = (digest(token), token_use);
        let cached = self.users.lock().get(&key, Instant::now());
        let user = match cached {
            Some(user) => user,
            None => {
                let user = self
                    .reviewed("TokenReview", self.service.authenticate(token, token_use))
                    .await?;
                let ttl = if user.is_some() {
                    self.ttl.authenticated
                } else {
                    self.ttl.unauthenticated
                };
                self.users
                    .lock()
                    .insert(key, user.clone(), ttl, Instant::now());
                user
            }
        };
        user.ok_or(ApiError::InvalidToken)
    }

    /// Ok when `user` may do `access`: 403 naming the missing permission when not, 503 when
    /// Kubernetes cannot say.
    pub async fn authorize(&self, user: &UserInfo, access: Access) -> Result<(), ApiError> {
        if self.mode == AuthMode::Disabled {
            return Ok(());
        }
        let key = (user.clone(), access);
        let cached = self.decisions.lock().get(&key, Instant::now());
        let allowed = match cached {
            Some(allowed) => allowed,
            None => {
                let allowed = self
                    .reviewed("SubjectAccessReview", self.service.authorize(user, &key.1))
                    .await?;
                let ttl = if allowed {
                    self.ttl.allowed
                } else {
                    self.ttl.denied
                };
                self.decisions
                    .lock()
                    .insert(key.clone(), allowed, ttl, Instant::now());
                allowed
            }
        };
        if allowed {
            return Ok(());
        }
        let (_, access) = key;
        info!(user = %user.username, %access, "request forbidden");
        Err(ApiError::Forbidden {
            user: user.username.clone(),
            access,
        })
    }

    /// One review call, in a slot and within the timeout.
    async fn reviewed<T>(
        &self,
        what: &str,
        review: impl Future<Output = Result<T, ServiceError>>,
    ) -> Result<T, ApiError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let _slot = tokio::time::timeout_at(deadline, self.slots.acquire())
            .await
            .map_err(|_| ApiError::AuthUnavailable(format!("too many {what}s in flight")))?
            .map_err(|_| ApiError::AuthUnavailable("the API server is shutting down".into()))?;
        tokio::time::timeout_at(deadline, review)
            .await
            .map_err(|_| ApiError::AuthUnavailable(format!("{what} timed out")))?
            .map_err(|error| {
                warn!(%error, "cannot check an API caller");
                ApiError::AuthUnavailable(error.to_string())
            })
    }
}

fn digest(token: &str) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let mut bytes = [0; 32];
    bytes.copy_from_slice(digest.as_ref());
    bytes
}

/// The header `netreach ui` sends the token in: the API server's pod proxy removes
/// `Authorization` from what it forwards, and passes this one. Read only when `Authorization`
/// is absent, and checked exactly like it.
pub const PROXIED_AUTHORIZATION: &str = "x-netreach-authorization";

/// The token of an `Authorization: Bearer <token>` header, or of
/// [`PROXIED_AUTHORIZATION`] when `Authorization` is absent.
pub(super) fn bearer_token(headers: &HeaderMap) -> Result<&str, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .or_else(|| headers.get(PROXIED_AUTHORIZATION))
        .ok_or(ApiError::MissingToken)?;
    let value = value.to_str().map_err(|_| ApiError::InvalidToken)?;
    let (scheme, token) = value.split_once(' ').ok_or(ApiError::MissingToken)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(ApiError::MissingToken);
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_entries_expire_and_the_cache_stays_bounded() {
        let start = Instant::now();
        let mut cache = ReviewCache::new(2);
        cache.insert("a", 1, Duration::from_secs(10), start);
        cache.insert("b", 2, Duration::from_secs(1), start);
        assert_eq!(cache.get(&"a", start), Some(1));
        assert_eq!(cache.get(&"b", start + Duration::from_secs(1)), None);

        // Full, nothing expired: not cached.
        cache.insert("c", 3, Duration::from_secs(10), start);
        assert_eq!(cache.get(&"c", start), None);
        assert_eq!(cache.len(), 2);

        // Full, one expired: it makes room.
        let later = start + Duration::from_secs(2);
        cache.insert("c", 3, Duration::from_secs(10), later);
        assert_eq!(cache.get(&"c", later), Some(3));
        assert_eq!(cache.get(&"a", later), Some(1));
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn accesses_read_as_permissions() {
        let cases = [
            (
                Access::CreateProbeRequests {
                    namespace: "shop".into(),
                },
                "create proberequests.netreach.dev in namespace shop",
            ),
            (
                Access::GetPods {
                    namespace: "payments".into(),
                },
                "get pods in namespace payments",
            ),
            (Access::GetUrl { path: "/metrics" }, "get /metrics"),
        ];
        for (access, text) in cases {
            assert_eq!(access.to_string(), text);
        }
    }

    #[test]
    fn bearer_tokens_are_parsed_strictly() {
        let cases = [
            (Some("Bearer abc"), Ok("abc")),
            (Some("bearer  abc "), Ok("abc")),
            (Some("Basic abc"), Err("missing_token")),
            (Some("Bearer "), Err("missing_token")),
            (Some("abc"), Err("missing_token")),
            (None, Err("missing_token")),
        ];
        for (value, expected) in cases {
            let mut headers = HeaderMap::new();
            if let Some(value) = value {
                headers.insert(header::AUTHORIZATION, value.parse().expect("header"));
            }
            let parsed = bearer_token(&headers).map_err(|e| e.code());
            assert_eq!(parsed, expected, "{value:?}");
            // The same through the proxied header, and Authorization wins when both are sent.
            let mut proxied = HeaderMap::new();
            if let Some(value) = value {
                proxied.insert(PROXIED_AUTHORIZATION, value.parse().expect("header"));
            }
            assert_eq!(bearer_token(&proxied).map_err(|e| e.code()), expected);
            proxied.insert(
                header::AUTHORIZATION,
                "Bearer first".parse().expect("header"),
            );
            assert_eq!(bearer_token(&proxied).map_err(|e| e.code()), Ok("first"));
        }
    }
}
