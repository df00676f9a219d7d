//! The outcome of wgpu's error scopes. A popped scope is a future: on native (wgpu-core)
//! it is ready at once, and the host API waits for it where it pops it; on the web it is
//! a JavaScript promise that settles later, and nothing may block on it. There the
//! context keeps it as a pending check, and the async host API
//! ([`crate::Context::download_async`], [`crate::Context::check_errors_async`]) awaits
//! every pending check before it returns, so that a caught error still reaches the
//! caller as this crate's [`Error`], at the next await.

use std::future::Future;

use crate::error::{Error, Result};

/// The error checks of one device that have not settled yet (on the web; nothing is ever
/// pending on native).
#[derive(Default)]
pub(crate) struct Pending {
    #[cfg(target_arch = "wasm32")]
    inner: std::sync::Arc<web::Checks>,
}

impl Pending {
    /// The error that a popped error scope caught: on native, waited for here (the future
    /// is ready at once); on the web, kept as a pending check, and `None` now.
    pub(crate) fn scope<F>(&self, popped: F) -> Option<wgpu::Error>
    where
        F: Future<Output = Option<wgpu::Error>> + 'static,
    {
        #[cfg(not(target_arch = "wasm32"))]
        {
            pollster::block_on(popped)
        }
        #[cfg(target_arch = "wasm32")]
        {
            self.defer(async move { popped.await.map(|error| Error::from_wgpu(&error)) });
            None
        }
    }

    /// As [`Pending::scope`] for a validation scope pushed inside an out-of-memory scope:
    /// the error either caught, out of memory first.
    pub(crate) fn scopes<V, M>(&self, validation: V, out_of_memory: M) -> Option<Error>
    where
        V: Future<Output = Option<wgpu::Error>> + 'static,
        M: Future<Output = Option<wgpu::Error>> + 'static,
    {
        let first = |validation: Option<wgpu::Error>, out_of_memory: Option<wgpu::Error>| {
            out_of_memory.or(validation).map(|error| Error::from_wgpu(&error))
        };
        #[cfg(not(target_arch = "wasm32"))]
        {
            let validation = pollster::block_on(validation);
            first(validation, pollster::block_on(out_of_memory))
        }
        #[cfg(target_arch = "wasm32")]
        {
            self.defer(async move {
                let validation = validation.await;
                first(validation, out_of_memory.await)
            });
            None
        }
    }

    /// Waits until every pending check has settled, and returns the first error they
    /// caught since the last call (the others are dropped with it: after one validation
    /// error, later ones are mostly its consequences).
    ///
    /// # Errors
    ///
    /// The first caught error, as [`Error::from_wgpu`] turns it.
    #[allow(clippy::unused_async)] // native has nothing to wait for
    pub(crate) async fn settle(&self) -> Result<()> {
        #[cfg(target_arch = "wasm32")]
        {
            self.inner.settle().await
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            Ok(())
        }
    }

    #[cfg(target_arch = "wasm32")]
    fn defer(&self, check: impl Future<Output = Option<Error>> + 'static) {
        web::Checks::defer(&self.inner, check);
    }
}

#[cfg(target_arch = "wasm32")]
mod web {
    use std::future::Future;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex, PoisonError};

    use futures_intrusive::sync::ManualResetEvent;

    use crate::error::{Error, Result};

    /// Checks running on the browser's event loop, and what they found.
    pub(super) struct Checks {
        outstanding: AtomicUsize,
        found: Mutex<Vec<Error>>,
        /// Set while nothing is outstanding.
        settled: ManualResetEvent,
    }

    impl Default for Checks {
        fn default() -> Self {
            Self {
                outstanding: AtomicUsize::new(0),
                found: Mutex::new(Vec::new()),
                settled: ManualResetEvent::new(true),
            }
        }
    }

    impl Checks {
        pub(super) fn defer(this: &Arc<Self>, check: impl Future<Output = Option<Error>> + 'static) {
            this.outstanding.fetch_add(1, Ordering::SeqCst);
            this.settled.reset();
            let checks = Arc::clone(this);
            wasm_bindgen_futures::spawn_local(async move {
                if let Some(error) = check.await {
                    checks.found.lock().unwrap_or_else(PoisonError::into_inner).push(error);
                }
                if checks.outstanding.fetch_sub(1, Ordering::SeqCst) == 1 {
                    checks.settled.set();
                }
            });
        }

        pub(super) async fn settle(&self) -> Result<()> {
            self.settled.wait().await;
            let mut found = self.found.lock().unwrap_or_else(PoisonError::into_inner);
            let first = found.drain(..).next();
            first.map_or(Ok(()), Err)
        }
    }
}
