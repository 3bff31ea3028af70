//! The runtime under the broker way: async-std (feature `broker`, the `crm` binary's) or tokio
//! (feature `broker-tokio`), chosen at compile time; with both on, async-std. The beat and the
//! workers spawn their slots and sleep through these three functions only, and Redis connects
//! with the matching flavour of the `redis` crate.

use std::future::Future;
use std::time::Duration;

use redis::aio::MultiplexedConnection;

/// Sleeps `duration` on the broker's runtime.
pub(crate) async fn sleep(duration: Duration) {
    #[cfg(feature = "broker")]
    async_std::task::sleep(duration).await;
    #[cfg(not(feature = "broker"))]
    tokio::time::sleep(duration).await;
}

/// Runs `future` as a task of the broker's runtime; the returned future is its output (a
/// panic in the task is raised again where it is awaited, as async-std's handle does).
pub(crate) fn spawn<F>(future: F) -> impl Future<Output = F::Output> + Send
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    #[cfg(feature = "broker")]
    return async_std::task::spawn(future);
    #[cfg(not(feature = "broker"))]
    {
        let handle = tokio::spawn(future);
        async move {
            match handle.await {
                Ok(output) => output,
                Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
                Err(error) => panic!("a broker task was cancelled: {error}"),
            }
        }
    }
}

/// A multiplexed Redis connection on the broker's runtime.
pub(crate) async fn connect(client: &redis::Client) -> redis::RedisResult<MultiplexedConnection> {
    #[cfg(feature = "broker")]
    return client.get_multiplexed_async_std_connection().await;
    #[cfg(not(feature = "broker"))]
    return client.get_multiplexed_tokio_connection().await;
}
