//! Bounded concurrency over boxed futures.

use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};

use crate::error::Result;

/// Runs `jobs`, at most `limit` at a time; their results in completion
/// order, or the first error. The futures are boxed: for unboxed stream
/// combinators over borrowing closures the compiler cannot prove the
/// future `Send` for every lifetime, which handlers spawned by the HTTP
/// server need.
pub(crate) async fn concurrently<'a, T: Send + 'a>(
    limit: usize,
    jobs: impl IntoIterator<Item = BoxFuture<'a, Result<T>>>,
) -> Result<Vec<T>> {
    let jobs: Vec<_> = jobs.into_iter().collect();
    futures::stream::iter(jobs)
        .buffer_unordered(limit)
        .try_collect()
        .await
}
