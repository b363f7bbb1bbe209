//! Registries shared by every connection task: the live sync connections per
//! device (to supersede and revoke them) and the uploads in progress (one
//! writer per partial file).
//!
//! Their mutexes are locked by many tasks; a panic in one of them while
//! holding a guard must not fail every later connection, so a poisoned lock
//! is taken over as is (each critical section leaves the map consistent:
//! one insert, remove or replace). Nothing here does I/O.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};

use fieldseal_proto::identity::DeviceId;

/// Live sync connections per device.
pub(crate) type Live<C> = Mutex<HashMap<DeviceId, Vec<C>>>;

/// Uploads in progress, by (device, seq).
pub(crate) type Uploading = Mutex<HashSet<(DeviceId, u64)>>;

/// Lock `m`, taking it over if a panic poisoned it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Make `conn` the device's only live connection; returns the older ones,
/// to be closed.
pub(crate) fn supersede<C>(live: &Live<C>, device: DeviceId, conn: C) -> Vec<C> {
    std::mem::replace(lock(live).entry(device).or_default(), vec![conn])
}

/// Forget the device's connections for which `is_it` holds (it ended).
pub(crate) fn forget<C>(live: &Live<C>, device: DeviceId, is_it: impl Fn(&C) -> bool) {
    if let Some(v) = lock(live).get_mut(&device) {
        v.retain(|c| !is_it(c));
    }
}

/// Live connections, all devices.
pub(crate) fn count<C>(live: &Live<C>) -> usize {
    lock(live).values().map(Vec::len).sum()
}

/// Whether the device has a live connection.
pub(crate) fn has<C>(live: &Live<C>, device: DeviceId) -> bool {
    lock(live).get(&device).is_some_and(|v| !v.is_empty())
}

/// Take all of the device's connections (it was revoked).
pub(crate) fn take<C>(live: &Live<C>, device: DeviceId) -> Vec<C> {
    lock(live).remove(&device).unwrap_or_default()
}

/// The right to write the partial file of (device, seq), released on drop.
#[derive(Debug)]
pub(crate) struct UploadSlot<'a> {
    set: &'a Uploading,
    key: (DeviceId, u64),
}

impl<'a> UploadSlot<'a> {
    /// Claim (device, seq); `None` while another upload of it runs.
    pub(crate) fn claim(set: &'a Uploading, key: (DeviceId, u64)) -> Option<Self> {
        // Not `then_some`: it would build a slot even when refused, whose
        // drop would release the other upload's key (and lock `set` again
        // while this statement still holds it).
        let claimed = lock(set).insert(key);
        if claimed {
            Some(UploadSlot { set, key })
        } else {
            None
        }
    }
}

impl Drop for UploadSlot<'_> {
    fn drop(&mut self) {
        lock(self.set).remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEV: DeviceId = DeviceId([3; 8]);

    /// Panic in another thread while holding `m`'s lock.
    fn poison<T: Send>(m: &Mutex<T>) {
        std::thread::scope(|s| {
            let r = s
                .spawn(|| {
                    let _g = m.lock();
                    panic!("a connection task panics while holding the lock");
                })
                .join();
            assert!(r.is_err());
        });
        assert!(m.is_poisoned());
    }

    #[test]
    fn a_panic_holding_live_does_not_stop_later_connections() {
        let live: Live<u32> = Mutex::default();
        assert!(supersede(&live, DEV, 1).is_empty());
        poison(&live);
        assert_eq!(supersede(&live, DEV, 2), [1]);
        forget(&live, DEV, |c| *c == 2);
        assert!(supersede(&live, DEV, 3).is_empty());
        assert_eq!(take(&live, DEV), [3]);
        assert!(take(&live, DEV).is_empty());
    }

    #[test]
    fn a_panic_holding_uploading_does_not_stop_later_uploads() {
        let set: Uploading = Mutex::default();
        let held = UploadSlot::claim(&set, (DEV, 1)).expect("free");
        poison(&set);
        assert!(UploadSlot::claim(&set, (DEV, 1)).is_none(), "one writer");
        drop(held);
        let again = UploadSlot::claim(&set, (DEV, 1)).expect("released on drop");
        assert!(UploadSlot::claim(&set, (DEV, 2)).is_some());
        drop(again);
        assert!(lock(&set).is_empty());
    }
}
