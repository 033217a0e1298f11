//! [`JsExecutorCache`]: executors kept by their limits, so that the calls of a process share
//! pools of workers instead of each starting its own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use super::{JsError, JsExecutor, JsLimits, JsRunner};

/// Builds an executor for some limits.
type Build = dyn Fn(&JsLimits) -> Result<Arc<dyn JsRunner>, JsError> + Send + Sync;

/// Executors kept by their limits. An executor's limits are fixed when it is built (building
/// starts its worker threads or processes), so the first call with some limits builds one and
/// later calls with the same limits share it: the server keeps one of these, and so does each
/// binding's `run_js`, one per process.
///
/// The executor for the default limits is kept for good; of the others at most
/// [`JsExecutorCache::MAX_CUSTOM`] are kept, then the set starts over (an executor still in
/// use lives on through its `Arc` until its last caller is done).
///
/// ```
/// use sqrx_core::js::{JsExecutorCache, JsLimits, JsRequest};
///
/// let cache = JsExecutorCache::in_process(JsLimits::default());
/// let js = cache.get(&JsLimits::default())?;
/// assert_eq!(js.run_blocking(JsRequest::new("6 * 7")).result, 42);
/// // The same executor (and its workers) for the next call with these limits.
/// assert!(std::sync::Arc::ptr_eq(&js, &cache.get(&JsLimits::default())?));
/// # Ok::<(), sqrx_core::JsError>(())
/// ```
pub struct JsExecutorCache {
    default_limits: JsLimits,
    build: Box<Build>,
    default: Mutex<Option<Arc<dyn JsRunner>>>,
    custom: Mutex<HashMap<JsLimits, Arc<dyn JsRunner>>>,
}

impl std::fmt::Debug for JsExecutorCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsExecutorCache")
            .field("default_limits", &self.default_limits)
            .field("custom", &lock(&self.custom).len())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl JsExecutorCache {
    /// Executors for limits other than the default kept at once; past this the set starts
    /// over.
    pub const MAX_CUSTOM: usize = 8;

    /// A cache whose executors `build` makes, `default_limits` being the ones kept for good.
    /// Nothing is built until asked for.
    pub fn new(
        default_limits: JsLimits,
        build: impl Fn(&JsLimits) -> Result<Arc<dyn JsRunner>, JsError> + Send + Sync + 'static,
    ) -> Self {
        JsExecutorCache {
            default_limits,
            build: Box::new(build),
            default: Mutex::new(None),
            custom: Mutex::new(HashMap::new()),
        }
    }

    /// A cache of in-process executors ([`JsExecutor::new`]: one worker thread per CPU).
    pub fn in_process(default_limits: JsLimits) -> Self {
        JsExecutorCache::new(default_limits, |limits| {
            Ok(Arc::new(JsExecutor::new(limits.clone())?) as Arc<dyn JsRunner>)
        })
    }

    /// The limits whose executor is kept for good.
    pub fn default_limits(&self) -> &JsLimits {
        &self.default_limits
    }

    /// The executor for `limits`, built on first use (building starts threads or processes:
    /// call this from a blocking context). A build that fails is tried again on the next call.
    pub fn get(&self, limits: &JsLimits) -> Result<Arc<dyn JsRunner>, JsError> {
        if *limits == self.default_limits {
            let mut default = lock(&self.default);
            if let Some(e) = default.as_ref() {
                return Ok(Arc::clone(e));
            }
            let e = (self.build)(limits)?;
            *default = Some(Arc::clone(&e));
            return Ok(e);
        }
        let mut custom = lock(&self.custom);
        if let Some(e) = custom.get(limits) {
            return Ok(Arc::clone(e));
        }
        let executor = (self.build)(limits)?;
        if custom.len() >= Self::MAX_CUSTOM {
            // Executors in use stay alive through their Arcs; the rest stop here.
            custom.clear();
        }
        custom.insert(limits.clone(), Arc::clone(&executor));
        Ok(executor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    fn counting() -> (Arc<AtomicUsize>, JsExecutorCache) {
        let built = Arc::new(AtomicUsize::new(0));
        let b = Arc::clone(&built);
        let cache = JsExecutorCache::new(JsLimits::default(), move |limits| {
            b.fetch_add(1, Ordering::Relaxed);
            let js = JsExecutor::builder()
                .limits(limits.clone())
                .workers(1)
                .build()?;
            Ok(Arc::new(js) as Arc<dyn JsRunner>)
        });
        (built, cache)
    }

    fn with_timeout(ms: u64) -> JsLimits {
        JsLimits {
            timeout: Duration::from_millis(ms),
            ..JsLimits::default()
        }
    }

    #[test]
    fn calls_with_the_same_limits_share_one_executor() {
        let (built, cache) = counting();
        let a = cache.get(&JsLimits::default()).expect("default");
        let b = cache.get(&JsLimits::default()).expect("default again");
        assert!(Arc::ptr_eq(&a, &b));
        let c = cache.get(&with_timeout(100)).expect("custom");
        let d = cache.get(&with_timeout(100)).expect("custom again");
        assert!(Arc::ptr_eq(&c, &d));
        assert_eq!(c.limits().timeout, Duration::from_millis(100));
        assert_eq!(built.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn past_the_maximum_the_custom_set_starts_over_but_the_default_stays() {
        let (built, cache) = counting();
        let default = cache.get(&JsLimits::default()).expect("default");
        let first = cache.get(&with_timeout(1)).expect("first");
        for ms in 2..=JsExecutorCache::MAX_CUSTOM as u64 + 1 {
            cache.get(&with_timeout(ms)).expect("custom");
        }
        // The set started over at the ninth: the first is built again.
        let again = cache.get(&with_timeout(1)).expect("first again");
        assert!(!Arc::ptr_eq(&first, &again));
        assert!(Arc::ptr_eq(
            &default,
            &cache.get(&JsLimits::default()).expect("default")
        ));
        assert_eq!(
            built.load(Ordering::Relaxed),
            1 + JsExecutorCache::MAX_CUSTOM + 2
        );
    }

    #[test]
    fn a_failed_build_is_tried_again() {
        let fail = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let f = Arc::clone(&fail);
        let cache = JsExecutorCache::new(JsLimits::default(), move |limits| {
            if f.load(Ordering::Relaxed) {
                return Err(JsError::InvalidWorkers { workers: 0 });
            }
            Ok(Arc::new(
                JsExecutor::builder()
                    .limits(limits.clone())
                    .workers(1)
                    .build()?,
            ) as Arc<dyn JsRunner>)
        });
        cache.get(&JsLimits::default()).expect_err("fails");
        fail.store(false, Ordering::Relaxed);
        cache.get(&JsLimits::default()).expect("built now");
    }
}
