//! [`Lazy`]: a gRPC service built on its first request.
//!
//! gRPC reflection decodes the whole Envoy API's descriptors into its own pool (for each of
//! v1 and v1alpha: memory held for good, and CPU at start) that most deployments never ask
//! for: it is built when grpcurl first asks.

use std::convert::Infallible;
use std::sync::{Arc, OnceLock};

use tonic::codegen::{http, BoxFuture, Context, Poll, Service};
use tonic::server::NamedService;
use tonic::Status;

/// `S`, made by `build` on the first request. A build error is answered as `INTERNAL` (and
/// kept: the inputs are compiled in, so it would fail again).
pub struct Lazy<S, F>(Arc<Inner<S, F>>);

struct Inner<S, F> {
    built: OnceLock<Result<S, String>>,
    build: F,
}

impl<S, F> Lazy<S, F>
where
    F: Fn() -> Result<S, String>,
{
    pub fn new(build: F) -> Lazy<S, F> {
        Lazy(Arc::new(Inner {
            built: OnceLock::new(),
            build,
        }))
    }

    /// The service, built if this is the first call.
    pub fn get(&self) -> &Result<S, String> {
        self.0.built.get_or_init(&self.0.build)
    }
}

impl<S, F> Clone for Lazy<S, F> {
    fn clone(&self) -> Self {
        Lazy(self.0.clone())
    }
}

impl<S: NamedService, F> NamedService for Lazy<S, F> {
    const NAME: &'static str = S::NAME;
}

impl<S, F, R> Service<http::Request<R>> for Lazy<S, F>
where
    F: Fn() -> Result<S, String>,
    S: Service<http::Request<R>, Response = http::Response<tonic::body::Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    R: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<R>) -> Self::Future {
        match self.get() {
            Ok(service) => {
                let mut service = service.clone();
                Box::pin(async move {
                    std::future::poll_fn(|cx| service.poll_ready(cx)).await?;
                    service.call(req).await
                })
            }
            Err(e) => {
                let status = Status::internal(e.clone());
                Box::pin(async move { Ok(status.into_http()) })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Answers every request with `OK` and the header `n`.
    #[derive(Clone)]
    struct Counted(usize);

    impl Service<http::Request<()>> for Counted {
        type Response = http::Response<tonic::body::Body>;
        type Error = Infallible;
        type Future = BoxFuture<Self::Response, Infallible>;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _req: http::Request<()>) -> Self::Future {
            let n = self.0;
            Box::pin(async move {
                let mut resp = http::Response::new(tonic::body::Body::empty());
                resp.headers_mut().insert("n", n.into());
                Ok(resp)
            })
        }
    }

    #[tokio::test]
    async fn builds_once_on_the_first_request_and_shares_it_with_clones() {
        let builds = Arc::new(AtomicUsize::new(0));
        let counter = builds.clone();
        let mut lazy = Lazy::new(move || Ok(Counted(counter.fetch_add(1, Ordering::SeqCst))));
        assert_eq!(
            builds.load(Ordering::SeqCst),
            0,
            "nothing built before a request"
        );
        let mut clone = lazy.clone();
        for svc in [&mut lazy, &mut clone] {
            for _ in 0..2 {
                let resp = svc.call(http::Request::new(())).await.unwrap();
                assert_eq!(resp.headers()["n"], "0");
            }
        }
        assert_eq!(builds.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_failed_build_answers_internal_with_the_reason() {
        let mut lazy: Lazy<Counted, _> = Lazy::new(|| Err("descriptors do not decode".into()));
        let resp = lazy.call(http::Request::new(())).await.unwrap();
        let status = Status::from_header_map(resp.headers()).expect("grpc-status");
        assert_eq!(status.code(), tonic::Code::Internal);
        assert_eq!(status.message(), "descriptors do not decode");
    }
}
