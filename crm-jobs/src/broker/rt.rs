//! The runtime under the broker way: async-std (feature `broker`, the `crm` binary's) or tokio
//! (feature `broker-tokio`). With both compiled in (features unify across a workspace), each
//! call asks whether it runs inside a tokio runtime and uses tokio if so, else async-std, so
//! neither kind of app is switched to the other's runtime by a build it shares. The beat and
//! the workers spawn their slots and sleep through these functions only, and Redis connects
//! with the matching flavour of the `redis` crate.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use redis::aio::MultiplexedConnection;

/// Both runtimes compiled in: whether this call runs inside a tokio runtime.
#[cfg(all(feature = "broker", feature = "broker-tokio"))]
fn tokio_here() -> bool {
    tokio::runtime::Handle::try_current().is_ok()
}

/// Sleeps `duration` on the broker's runtime.
pub(crate) async fn sleep(duration: Duration) {
    #[cfg(all(feature = "broker", feature = "broker-tokio"))]
    if tokio_here() {
        tokio::time::sleep(duration).await
    } else {
        async_std::task::sleep(duration).await
    }
    #[cfg(all(feature = "broker", not(feature = "broker-tokio")))]
    async_std::task::sleep(duration).await;
    #[cfg(not(feature = "broker"))]
    tokio::time::sleep(duration).await;
}

/// Runs `future` as a task of the broker's runtime; the returned future is its output (a
/// panic in the task is raised again where it is awaited, as async-std's handle does).
pub(crate) fn spawn<F>(future: F) -> Pin<Box<dyn Future<Output = F::Output> + Send>>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    #[cfg(all(feature = "broker", feature = "broker-tokio"))]
    if tokio_here() {
        spawn_on_tokio(future)
    } else {
        Box::pin(async_std::task::spawn(future))
    }
    #[cfg(all(feature = "broker", not(feature = "broker-tokio")))]
    return Box::pin(async_std::task::spawn(future));
    #[cfg(not(feature = "broker"))]
    spawn_on_tokio(future)
}

#[cfg(feature = "broker-tokio")]
fn spawn_on_tokio<F>(future: F) -> Pin<Box<dyn Future<Output = F::Output> + Send>>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handle = tokio::spawn(future);
    Box::pin(async move {
        match handle.await {
            Ok(output) => output,
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(error) => panic!("a broker task was cancelled: {error}"),
        }
    })
}

/// A multiplexed Redis connection on the broker's runtime.
pub(crate) async fn connect(client: &redis::Client) -> redis::RedisResult<MultiplexedConnection> {
    #[cfg(all(feature = "broker", feature = "broker-tokio"))]
    if tokio_here() {
        client.get_multiplexed_tokio_connection().await
    } else {
        client.get_multiplexed_async_std_connection().await
    }
    #[cfg(all(feature = "broker", not(feature = "broker-tokio")))]
    return client.get_multiplexed_async_std_connection().await;
    #[cfg(not(feature = "broker"))]
    client.get_multiplexed_tokio_connection().await
}
