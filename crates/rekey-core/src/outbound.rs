//! The limits of the server's own connections to targets: a cap on connections to one host at
//! once, across everything this server does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Permits per target host.
#[derive(Default)]
pub(crate) struct HostLimiter {
    hosts: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl HostLimiter {
    pub(crate) async fn acquire(&self, host: Option<String>, per_host: usize) -> Option<OwnedSemaphorePermit> {
        let host = host?;
        let semaphore = {
            let mut hosts = self.hosts.lock().expect("host limiter lock");
            if hosts.len() > 10_000 {
                hosts.retain(|_, s| s.available_permits() < per_host);
            }
            hosts.entry(host).or_insert_with(|| Arc::new(Semaphore::new(per_host.max(1)))).clone()
        };
        semaphore.acquire_owned().await.ok()
    }
}
