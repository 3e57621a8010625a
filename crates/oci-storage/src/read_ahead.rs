//! Read-ahead for streams from the object store: a task of its own keeps
//! reading the store's response while the client is sent what was read
//! before, up to a bounded number of bytes ahead of the client.
//!
//! Without it, one task alternates between the two sockets: it reads from
//! the store only when the client's socket takes more, so the store's
//! connection idles while the client's is written and the other way round.
//! With it, both proceed at once (on two cores), and a slow client holds
//! at most `budget` bytes in memory before the store's connection is left
//! unread (TCP then pushes back on the store, as before).

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::error::Result;

/// Frames a read-ahead holds at most, whatever their size (the byte budget
/// is the real bound; this one keeps the queue short for tiny frames).
const MAX_FRAMES: usize = 1024;

/// `stream`, read up to `budget` bytes ahead of its consumer by a task of
/// its own; `budget` 0 returns `stream` as it is. Dropping the result stops
/// the task. Must be called in a tokio runtime.
pub(crate) fn read_ahead(
    mut stream: BoxStream<'static, Result<Bytes>>,
    budget: usize,
) -> BoxStream<'static, Result<Bytes>> {
    if budget == 0 {
        return stream;
    }
    let permits = budget.min(Semaphore::MAX_PERMITS);
    let budget = Arc::new(Semaphore::new(permits));
    let (tx, rx) = mpsc::channel::<(Result<Bytes>, OwnedSemaphorePermit)>(MAX_FRAMES);
    let reader = tokio::spawn(async move {
        while let Some(item) = stream.next().await {
            // A frame larger than the whole budget waits for all of it.
            let want = item.as_ref().map_or(0, Bytes::len).clamp(1, permits);
            let Ok(permit) = Arc::clone(&budget)
                .acquire_many_owned(u32::try_from(want).unwrap_or(u32::MAX))
                .await
            else {
                return;
            };
            let failed = item.is_err();
            if tx.send((item, permit)).await.is_err() || failed {
                return;
            }
        }
    });
    let stop = StopOnDrop(reader.abort_handle());
    futures::stream::unfold((rx, stop), |(mut rx, stop)| async move {
        // The permit is released as the frame is handed on.
        let (item, _permit) = rx.recv().await?;
        Some((item, (rx, stop)))
    })
    .boxed()
}

/// Aborts the reading task when the consumer goes away.
struct StopOnDrop(tokio::task::AbortHandle);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    fn frames(
        n: usize,
        size: usize,
        pulled: Arc<AtomicUsize>,
    ) -> BoxStream<'static, Result<Bytes>> {
        futures::stream::iter((0..n).map(move |i| {
            pulled.fetch_add(1, Ordering::SeqCst);
            Ok(Bytes::from(vec![i as u8; size]))
        }))
        .boxed()
    }

    /// Frames arrive whole and in order; the reader runs ahead of a
    /// consumer that does not read, but never past the budget.
    #[tokio::test]
    async fn bounded_and_in_order() {
        let pulled = Arc::new(AtomicUsize::new(0));
        let mut s = read_ahead(frames(100, 1000, Arc::clone(&pulled)), 10_000);
        tokio::time::sleep(Duration::from_millis(50)).await;
        // 10 frames fit the budget; the 11th is pulled and waits for room.
        assert_eq!(pulled.load(Ordering::SeqCst), 11);
        for i in 0..100u8 {
            let frame = s.next().await.unwrap().unwrap();
            assert_eq!(frame.len(), 1000);
            assert!(frame.iter().all(|b| *b == i));
        }
        assert!(s.next().await.is_none());
    }

    /// A frame larger than the budget still passes, alone.
    #[tokio::test]
    async fn frame_larger_than_budget() {
        let pulled = Arc::new(AtomicUsize::new(0));
        let s = read_ahead(frames(3, 5000, pulled), 100);
        let got: Vec<_> = s.collect().await;
        assert_eq!(got.len(), 3);
        assert!(got.iter().all(|f| f.as_ref().unwrap().len() == 5000));
    }

    /// An error ends the stream after it is passed on.
    #[tokio::test]
    async fn error_ends_the_stream() {
        let items: Vec<Result<Bytes>> = vec![
            Ok(Bytes::from_static(b"a")),
            Err(crate::StorageError::Io(std::io::Error::other("gone"))),
            Ok(Bytes::from_static(b"b")),
        ];
        let got: Vec<_> = read_ahead(futures::stream::iter(items).boxed(), 10)
            .collect()
            .await;
        assert_eq!(got.len(), 2);
        assert!(got[1].is_err());
    }

    /// Dropping the consumer stops the reader.
    #[tokio::test]
    async fn drop_stops_the_reader() {
        let pulled = Arc::new(AtomicUsize::new(0));
        let endless = futures::stream::repeat_with({
            let pulled = Arc::clone(&pulled);
            move || {
                pulled.fetch_add(1, Ordering::SeqCst);
                Ok(Bytes::from_static(b"x"))
            }
        })
        .boxed();
        let s = read_ahead(endless, 4);
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(s);
        tokio::time::sleep(Duration::from_millis(20)).await;
        let after = pulled.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(pulled.load(Ordering::SeqCst), after);
    }
}
