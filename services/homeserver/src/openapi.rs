//! The OpenAPI 3.1 documents of the client-facing API and the admin API.
//!
//! Both are generated from the `#[utoipa::path]` annotations on the handlers, each
//! service contributing its own (`read_api::ApiDoc`, `write_api::ApiDoc`, …), so they
//! cannot drift from the code the way a hand-kept file does. Each listener serves its
//! document at `GET /openapi.json`; `homeserver openapi [--admin]` prints it, and the
//! committed copies under `schemas/` are checked against the code and the routers by
//! `it::openapi`.

use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Pubky homeserver",
        description = "The client-facing API of this homeserver, on the Pubky TLS listener and the plain-HTTP listener alike. Wire-compatible with pubky-homeserver 0.17.1 (docs in the README). `/storage/{user}/{path}` also answers the WebDAV-style `LOCK` and `UNLOCK` methods (lock tokens, `Timeout`, the `If` header on PUT and DELETE), which OpenAPI 3.1 cannot describe as operations."
    ),
    paths(openapi_json)
)]
struct ApiDoc;

/// The client-facing API's document.
pub fn public() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.merge(read_api::ApiDoc::openapi());
    doc.merge(write_api::ApiDoc::openapi());
    doc.merge(events::ApiDoc::openapi());
    doc.merge(api::ApiDoc::openapi());
    doc.merge(drive::ApiDoc::openapi());
    doc.merge(webdav::ApiDoc::openapi());
    doc.merge(mirror::ApiDoc::openapi());
    doc
}

/// The admin API's document.
pub fn admin() -> utoipa::openapi::OpenApi {
    admin::openapi()
}

/// `GET /openapi.json`: this document.
#[utoipa::path(get, path = "/openapi.json", tag = "server", responses((status = 200, description = "the client-facing API's OpenAPI 3.1 document", content_type = "application/json")))]
pub async fn openapi_json() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(public())
}
