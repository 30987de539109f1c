//! OAuth2 client credentials: one token, cached and refreshed a margin
//! before `expires_in`; concurrent callers wait for the one refresh in
//! flight instead of each fetching their own.

use crate::config::Secret;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// Refresh this long before the token expires (or a tenth of its life,
/// whichever is shorter), so a request never leaves with a dying token.
const MARGIN: Duration = Duration::from_secs(60);
/// When the server gives no `expires_in`: assume this.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);
/// A token is refreshed at least daily, whatever `expires_in` says: any
/// `u64` of seconds may arrive, and past ~292 billion years it no longer
/// fits an `Instant` (adding it panicked).
const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

#[derive(Clone)]
pub struct Token {
    pub value: Secret,
    pub generation: u64,
    refresh_at: Instant,
}

impl Token {
    /// When it is refreshed: no request leaves with it from then on.
    pub fn refresh_at(&self) -> Instant {
        self.refresh_at
    }
}

#[derive(Default)]
pub struct TokenCache {
    slot: Mutex<(Option<Token>, u64)>,
}

impl TokenCache {
    /// The cached token, or the one `fetch` gets while every other caller
    /// waits. `fetch` returns the token and its `expires_in`.
    pub async fn get<F, Fut, E>(&self, fetch: F) -> Result<Token, E>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<(Secret, Option<u64>), E>>,
    {
        let mut slot = self.slot.lock().await;
        if let Some(t) = &slot.0
            && Instant::now() < t.refresh_at
        {
            return Ok(t.clone());
        }
        let (value, expires_in) = fetch().await?;
        let life = expires_in
            .map_or(DEFAULT_LIFETIME, Duration::from_secs)
            .min(MAX_LIFETIME);
        let margin = MARGIN.min(life / 10);
        slot.1 += 1;
        let t = Token {
            value,
            generation: slot.1,
            refresh_at: Instant::now() + life.saturating_sub(margin),
        };
        slot.0 = Some(t.clone());
        Ok(t)
    }

    /// Forgets the token of `generation` (refused with 401). A newer token
    /// fetched meanwhile by another caller is kept.
    pub async fn invalidate(&self, generation: u64) {
        let mut slot = self.slot.lock().await;
        if slot.0.as_ref().is_some_and(|t| t.generation == generation) {
            slot.0 = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_one_refresh_and_refresh_before_expiry() {
        let cache = Arc::new(TokenCache::default());
        let fetches = Arc::new(AtomicUsize::new(0));
        let get = |cache: Arc<TokenCache>, fetches: Arc<AtomicUsize>| async move {
            cache
                .get(|| async {
                    fetches.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Ok::<_, ()>((Secret::new("t"), Some(600)))
                })
                .await
                .unwrap()
        };
        let tasks: Vec<_> = (0..50)
            .map(|_| tokio::spawn(get(cache.clone(), fetches.clone())))
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap().generation, 1);
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        // 600 s life, 60 s margin: still cached at 530 s, refreshed at 545 s.
        tokio::time::advance(Duration::from_secs(530)).await;
        assert_eq!(get(cache.clone(), fetches.clone()).await.generation, 1);
        tokio::time::advance(Duration::from_secs(15)).await;
        assert_eq!(get(cache.clone(), fetches.clone()).await.generation, 2);
        // A stale invalidation does not drop the newer token.
        cache.invalidate(1).await;
        assert_eq!(get(cache.clone(), fetches.clone()).await.generation, 2);
        cache.invalidate(2).await;
        assert_eq!(get(cache.clone(), fetches.clone()).await.generation, 3);
    }

    /// Found by `pazarsync_token_answers` (tests/props.rs): the largest
    /// `expires_in` panicked with "overflow when adding duration to instant".
    #[tokio::test]
    async fn the_largest_expires_in_is_kept_a_day() {
        let cache = TokenCache::default();
        let t = cache
            .get(|| async { Ok::<_, ()>((Secret::new("t"), Some(u64::MAX))) })
            .await
            .unwrap();
        assert!(t.refresh_at <= Instant::now() + MAX_LIFETIME);
    }
}
