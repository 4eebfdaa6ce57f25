//! CORS as the reference answers it (spec §1): any origin echoed back with
//! credentials, preflights mirrored, and `Retry-After` (and the lock headers `Lock-Token`, `Timeout`) readable by browsers. It is the
//! outermost layer, so even early 400s carry the headers.

use axum::http::HeaderName;
use tower_http::cors::{AllowHeaders, AllowMethods, AllowOrigin, CorsLayer};

pub fn layer() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::mirror_request())
        .allow_methods(AllowMethods::mirror_request())
        .allow_headers(AllowHeaders::mirror_request())
        .allow_credentials(true)
        .expose_headers([
            HeaderName::from_static("retry-after"),
            HeaderName::from_static("etag"),
            HeaderName::from_static("lock-token"),
            HeaderName::from_static("timeout"),
        ])
}
