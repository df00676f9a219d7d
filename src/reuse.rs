//! The GPU objects the ops reuse from call to call, so that a steady-state call records
//! its commands without creating any: params uniforms keyed by their bytes, bind groups
//! keyed by their layout and bindings, and a pool of scratch buffers.
//!
//! Each cache is bounded and least-recently-used entries go first. What a cached bind
//! group binds stays alive while it is cached (the caller's buffers included):
//! [`crate::Context::clear_caches`] lets them go.

use std::collections::HashMap;
use std::hash::Hash;
use std::num::NonZeroU64;
use std::sync::{Arc, Mutex, PoisonError};

/// The size of a scratch buffer for `bytes`: whole words, at least 16 bytes (what the
/// pool matches sizes by, and the context's zeroed buffers are made with).
pub(crate) fn scratch_size(bytes: u64) -> u64 {
    bytes.next_multiple_of(4).max(16)
}

/// Bind groups kept: a few per op and shape, for a few dozen (op, shape, buffers).
const BIND_GROUPS: usize = 512;
/// Params uniforms kept: one per chunk of each (op, shape, options) seen lately.
const UNIFORMS: usize = 512;
/// Idle scratch buffers kept.
const IDLE_SCRATCH: usize = 64;

/// A map that keeps at most `capacity` entries, dropping the least recently used.
#[derive(Debug)]
struct Lru<K, V> {
    entries: HashMap<K, (V, u64)>,
    tick: u64,
    capacity: usize,
}

impl<K: Hash + Eq + Clone, V: Clone> Lru<K, V> {
    fn new(capacity: usize) -> Self {
        Self { entries: HashMap::new(), tick: 0, capacity }
    }

    fn get(&mut self, key: &K) -> Option<V> {
        self.tick += 1;
        let tick = self.tick;
        self.entries.get_mut(key).map(|(value, used)| {
            *used = tick;
            value.clone()
        })
    }

    fn insert(&mut self, key: K, value: V) {
        if self.entries.len() >= self.capacity {
            // A linear scan, on a miss only: misses create a GPU object, which costs more.
            let oldest = self.entries.iter().min_by_key(|(_, (_, used))| *used).map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                self.entries.remove(&oldest);
            }
        }
        self.tick += 1;
        self.entries.insert(key, (value, self.tick));
    }

    fn clear(&mut self) {
        self.entries.clear();
    }
}

/// One binding of a bind group, as its cache key: the buffer (by identity), offset, size.
type BindingKey = (wgpu::Buffer, u64, Option<NonZeroU64>);

/// The objects of one device that the ops reuse.
#[derive(Debug)]
pub(crate) struct Reuse {
    bind_groups: Mutex<Lru<(wgpu::BindGroupLayout, Vec<BindingKey>), wgpu::BindGroup>>,
    uniforms: Mutex<Lru<Vec<u8>, wgpu::Buffer>>,
    scratch: Arc<Mutex<Vec<Idle>>>,
    serial: std::sync::atomic::AtomicU64,
}

impl Default for Reuse {
    fn default() -> Self {
        Self {
            bind_groups: Mutex::new(Lru::new(BIND_GROUPS)),
            uniforms: Mutex::new(Lru::new(UNIFORMS)),
            scratch: Arc::default(),
            serial: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

/// An idle scratch buffer, and the order it was made in.
#[derive(Debug)]
struct Idle {
    serial: u64,
    buffer: wgpu::Buffer,
}

impl Reuse {
    /// The cached bind group of `layout` over `buffers`, or the one `create` makes (kept
    /// only when it is `Ok`: a bind group wgpu rejected is not reused).
    pub(crate) fn bind_group<E>(
        &self,
        layout: &wgpu::BindGroupLayout,
        buffers: &[wgpu::BufferBinding<'_>],
        create: impl FnOnce() -> Result<wgpu::BindGroup, E>,
    ) -> Result<wgpu::BindGroup, E> {
        let key = (layout.clone(), buffers.iter().map(|b| (b.buffer.clone(), b.offset, b.size)).collect());
        if let Some(found) = lock(&self.bind_groups).get(&key) {
            return Ok(found);
        }
        let created = create()?;
        lock(&self.bind_groups).insert(key, created.clone());
        Ok(created)
    }

    /// The cached uniform buffer holding `bytes`, or the one `create` makes. Never written
    /// after creation, so any number of recorded commands may share it whenever they run.
    pub(crate) fn uniform<E>(
        &self,
        bytes: &[u8],
        create: impl FnOnce() -> Result<wgpu::Buffer, E>,
    ) -> Result<wgpu::Buffer, E> {
        if let Some(found) = lock(&self.uniforms).get(&bytes.to_vec()) {
            return Ok(found);
        }
        let created = create()?;
        lock(&self.uniforms).insert(bytes.to_vec(), created.clone());
        Ok(created)
    }

    /// An idle scratch buffer of exactly `size` bytes (the oldest, so that a repeated call
    /// gets the buffers it had last time, and its cached bind groups), or the one `create`
    /// makes; it returns to the pool when the [`Scratch`] is dropped.
    pub(crate) fn scratch<E>(
        &self,
        size: u64,
        create: impl FnOnce() -> Result<wgpu::Buffer, E>,
    ) -> Result<Scratch, E> {
        let taken = {
            let mut idle = lock(&self.scratch);
            let oldest = idle
                .iter()
                .enumerate()
                .filter(|(_, idle)| idle.buffer.size() == size)
                .min_by_key(|(_, idle)| idle.serial)
                .map(|(index, _)| index);
            oldest.map(|index| idle.swap_remove(index))
        };
        let idle = match taken {
            Some(idle) => idle,
            None => Idle {
                serial: self.serial.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                buffer: create()?,
            },
        };
        Ok(Scratch { idle: Some(idle), pool: Arc::clone(&self.scratch) })
    }

    /// Drops every cached bind group and uniform and every idle scratch buffer.
    pub(crate) fn clear(&self) {
        lock(&self.bind_groups).clear();
        lock(&self.uniforms).clear();
        lock(&self.scratch).clear();
    }
}

/// A scratch buffer an op holds while it records; back to its pool when dropped. Every op
/// initialises what it reads of it inside the commands it records (the pool clears it
/// when handing it out), so ops may share one in turn, in any order of submission: the
/// queue runs their commands one op after another.
#[derive(Debug)]
pub(crate) struct Scratch {
    idle: Option<Idle>,
    pool: Arc<Mutex<Vec<Idle>>>,
}

impl std::ops::Deref for Scratch {
    type Target = wgpu::Buffer;

    fn deref(&self) -> &wgpu::Buffer {
        // Always `Some` until dropped.
        &self.idle.as_ref().unwrap_or_else(|| unreachable!("a scratch buffer taken twice")).buffer
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(idle) = self.idle.take() {
            let mut pool = lock(&self.pool);
            pool.push(idle);
            if pool.len() > IDLE_SCRATCH {
                // The newest go first: the oldest are the ones repeated calls take.
                if let Some(newest) = (0..pool.len()).max_by_key(|&i| pool[i].serial) {
                    pool.swap_remove(newest);
                }
            }
        }
    }
}

// A poisoned lock only means another thread panicked mid-update of a cache of handles;
// every entry is still a valid object, so keep using it.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(feature = "testing")]
thread_local! {
    /// GPU objects this thread has created through this crate: what
    /// `testing::objects_created` reads.
    static CREATED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Counts one GPU object (buffer, bind group, layout, module, pipeline, query set) that
/// this crate created on the calling thread; nothing without the `testing` feature.
#[inline]
pub(crate) fn count_created() {
    #[cfg(feature = "testing")]
    CREATED.with(|count| count.set(count.get() + 1));
}

/// GPU objects the calling thread has created through this crate so far.
#[cfg(feature = "testing")]
pub(crate) fn objects_created() -> u64 {
    CREATED.with(std::cell::Cell::get)
}

#[cfg(test)]
mod tests {
    use super::Lru;

    #[test]
    fn the_least_recently_used_entry_goes_first() {
        let mut lru = Lru::new(2);
        lru.insert(1, "one");
        lru.insert(2, "two");
        assert_eq!(lru.get(&1), Some("one"));
        lru.insert(3, "three");
        assert_eq!(lru.get(&2), None, "2 was used least recently");
        assert_eq!(lru.get(&1), Some("one"));
        assert_eq!(lru.get(&3), Some("three"));
        lru.clear();
        assert_eq!(lru.get(&1), None);
    }
}
