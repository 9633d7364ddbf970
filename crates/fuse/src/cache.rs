//! Verified chunks kept in memory for reads, shared by every file of the
//! mount. Chunks are named by the hash of their bytes, so an entry is
//! never stale: a file that changes gets new chunk ids. Least recently
//! used entries leave first once the cache holds more than its budget;
//! concurrent readers of one chunk share one fetch.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use cairn_proto::ChunkId;
use tokio::sync::OnceCell;

pub struct ChunkCache {
    capacity_bytes: u64,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    entries: HashMap<ChunkId, Entry>,
    /// Entries by last use: the first is evicted first.
    by_use: BTreeMap<u64, ChunkId>,
    tick: u64,
    /// Bytes of the filled entries.
    held_bytes: u64,
}

struct Entry {
    slot: Arc<OnceCell<Bytes>>,
    used: u64,
    /// 0 until filled.
    size_bytes: u64,
}

impl ChunkCache {
    pub fn new(capacity_bytes: u64) -> ChunkCache {
        ChunkCache {
            capacity_bytes,
            state: Mutex::new(State::default()),
        }
    }

    /// The chunk `id`, from memory or from `fetch` (one fetch at a time
    /// per chunk: others wait for it). A failed fetch is not remembered.
    pub async fn get_or_fetch<E, F>(&self, id: ChunkId, fetch: F) -> Result<Bytes, E>
    where
        F: Future<Output = Result<Bytes, E>>,
    {
        let slot = self.slot(id);
        let mut fetched = false;
        let data = match slot
            .get_or_try_init(|| {
                fetched = true;
                fetch
            })
            .await
        {
            Ok(data) => data.clone(),
            Err(e) => {
                self.forget_empty(id, &slot);
                return Err(e);
            }
        };
        if fetched {
            self.filled(id, &slot, data.len() as u64);
        }
        Ok(data)
    }

    /// The chunk `id` if it is in memory.
    pub fn get(&self, id: &ChunkId) -> Option<Bytes> {
        let mut state = self.state.lock().expect("chunk cache lock");
        let data = state.entries.get(id)?.slot.get()?.clone();
        state.touch(id);
        Some(data)
    }

    /// Keeps `data`, the bytes of chunk `id` (one this mount just wrote).
    pub fn insert(&self, id: ChunkId, data: Bytes) {
        let slot = self.slot(id);
        let size_bytes = data.len() as u64;
        if slot.set(data).is_ok() {
            self.filled(id, &slot, size_bytes);
        }
    }

    #[cfg(test)]
    fn held_bytes(&self) -> u64 {
        self.state.lock().expect("chunk cache lock").held_bytes
    }

    fn slot(&self, id: ChunkId) -> Arc<OnceCell<Bytes>> {
        let mut state = self.state.lock().expect("chunk cache lock");
        if state.entries.contains_key(&id) {
            state.touch(&id);
        } else {
            state.tick += 1;
            let used = state.tick;
            state.by_use.insert(used, id);
            state.entries.insert(
                id,
                Entry {
                    slot: Arc::default(),
                    used,
                    size_bytes: 0,
                },
            );
        }
        state.entries[&id].slot.clone()
    }

    /// Drops the entry of a fetch that failed, unless another filled it.
    fn forget_empty(&self, id: ChunkId, slot: &Arc<OnceCell<Bytes>>) {
        let mut state = self.state.lock().expect("chunk cache lock");
        let unfilled = state
            .entries
            .get(&id)
            .is_some_and(|entry| Arc::ptr_eq(&entry.slot, slot) && !entry.slot.initialized());
        if unfilled {
            let entry = state.entries.remove(&id).expect("checked above");
            state.by_use.remove(&entry.used);
        }
    }

    /// Counts a filled slot and evicts the least recently used entries
    /// beyond the budget (never the one just filled).
    fn filled(&self, id: ChunkId, slot: &Arc<OnceCell<Bytes>>, size_bytes: u64) {
        let mut state = self.state.lock().expect("chunk cache lock");
        match state.entries.get_mut(&id) {
            // Evicted while it was fetched, or replaced: not counted.
            Some(entry) if Arc::ptr_eq(&entry.slot, slot) && entry.size_bytes == 0 => {
                entry.size_bytes = size_bytes;
                state.held_bytes += size_bytes;
            }
            _ => return,
        }
        while state.held_bytes > self.capacity_bytes {
            let Some((&used, &oldest)) = state.by_use.iter().next() else {
                break;
            };
            if oldest == id {
                break;
            }
            state.by_use.remove(&used);
            let entry = state.entries.remove(&oldest).expect("indexed entry");
            state.held_bytes -= entry.size_bytes;
        }
    }
}

impl State {
    fn touch(&mut self, id: &ChunkId) {
        self.tick += 1;
        let tick = self.tick;
        let entry = self.entries.get_mut(id).expect("touched entry exists");
        self.by_use.remove(&entry.used);
        entry.used = tick;
        self.by_use.insert(tick, *id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(byte: u8, len: usize) -> (ChunkId, Bytes) {
        let data = Bytes::from(vec![byte; len]);
        (ChunkId::of(&data), data)
    }

    #[tokio::test]
    async fn keeps_the_recently_used_within_its_budget() {
        let cache = ChunkCache::new(300);
        let (a, da) = chunk(1, 100);
        let (b, db) = chunk(2, 100);
        let (c, dc) = chunk(3, 100);
        let (d, dd) = chunk(4, 100);
        cache.insert(a, da.clone());
        cache.insert(b, db);
        cache.insert(c, dc);
        assert_eq!(cache.held_bytes(), 300);
        // Using a makes b the oldest.
        assert_eq!(cache.get(&a), Some(da));
        cache.insert(d, dd);
        assert_eq!(cache.held_bytes(), 300);
        assert!(cache.get(&b).is_none(), "the least recently used left");
        assert!(cache.get(&a).is_some() && cache.get(&c).is_some() && cache.get(&d).is_some());
    }

    #[tokio::test]
    async fn one_fetch_serves_concurrent_readers_and_failures_are_not_kept() {
        let cache = Arc::new(ChunkCache::new(1 << 20));
        let (id, data) = chunk(7, 10);
        let fetches = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let failed: Result<Bytes, &str> = cache.get_or_fetch(id, async { Err("down") }).await;
        assert!(failed.is_err());
        let mut readers = Vec::new();
        for _ in 0..8 {
            let (cache, fetches, data) = (cache.clone(), fetches.clone(), data.clone());
            readers.push(tokio::spawn(async move {
                cache
                    .get_or_fetch(id, async {
                        fetches.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                        Ok::<_, &str>(data)
                    })
                    .await
                    .unwrap()
            }));
        }
        for reader in readers {
            assert_eq!(reader.await.unwrap(), data);
        }
        assert_eq!(fetches.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(cache.held_bytes(), 10);
    }

    #[tokio::test]
    async fn a_chunk_larger_than_the_budget_stays_alone() {
        let cache = ChunkCache::new(50);
        let (a, da) = chunk(1, 40);
        let (b, db) = chunk(2, 100);
        cache.insert(a, da);
        cache.insert(b, db.clone());
        assert_eq!(cache.get(&b), Some(db));
        assert!(cache.get(&a).is_none());
    }
}
