//! The OpenAPI description of `/dav/{user}/{path}`.
//!
//! One handler serves every method of the route (`any`), but an OpenAPI operation is
//! one method with its own id, and OpenAPI 3.1 has no WebDAV methods at all. So the
//! HTTP methods are described here, each on a function that only carries its
//! annotation; `PROPFIND`, `MKCOL`, `COPY`, `MOVE`, `LOCK` and `UNLOCK` are named in
//! the descriptions (RFC 4918, README section WebDAV).
#![allow(dead_code)]

const ROUTE: &str = "/dav/{user}/{path}";

#[utoipa::path(get, path = ROUTE, operation_id = "webdav_get", tag = "webdav", description = "A file, or an HTML index of a collection. The route also answers PROPFIND (Depth 0 and 1), MKCOL, COPY, MOVE, LOCK and UNLOCK. Credentials: Bearer, Basic with the session token as password, or the session cookie.", params(("user" = String, Path, description = "the user's public key (z-base-32)"), ("path" = String, Path, description = "the storage path below the user (pub/…, priv/…)")), responses((status = 200, description = "the file"), (status = 401, description = "no session; `WWW-Authenticate: Basic realm=\"pubky\"`"), (status = 403, description = "not the session's drive, outside /pub/ and /priv/, or no capability"), (status = 404, description = "no such file or collection")))]
async fn get() {}

#[utoipa::path(head, path = ROUTE, operation_id = "webdav_head", tag = "webdav", params(("user" = String, Path, description = "the user's public key (z-base-32)"), ("path" = String, Path, description = "the storage path below the user")), responses((status = 200, description = "the file's headers"), (status = 401, description = "no session"), (status = 404, description = "no such file or collection")))]
async fn head() {}

#[utoipa::path(put, path = ROUTE, operation_id = "webdav_put", tag = "webdav", params(("user" = String, Path, description = "the user's public key (z-base-32)"), ("path" = String, Path, description = "the storage path below the user")), request_body(content = Vec<u8>, content_type = "application/octet-stream"), responses((status = 201, description = "created"), (status = 204, description = "replaced"), (status = 401, description = "no session"), (status = 403, description = "no write access"), (status = 405, description = "a collection is there"), (status = 409, description = "the parent collection does not exist"), (status = 412, description = "`If` not met"), (status = 423, description = "locked"), (status = 507, description = "over the quota")))]
async fn put() {}

#[utoipa::path(delete, path = ROUTE, operation_id = "webdav_delete", tag = "webdav", description = "A file, or a collection with everything under it in one event (`tree_deleted`).", params(("user" = String, Path, description = "the user's public key (z-base-32)"), ("path" = String, Path, description = "the storage path below the user")), responses((status = 204, description = "deleted"), (status = 401, description = "no session"), (status = 403, description = "no write access, or the drive's top folders"), (status = 404, description = "no such file or collection"), (status = 423, description = "locked")))]
async fn delete() {}

#[utoipa::path(options, path = ROUTE, operation_id = "webdav_options", tag = "webdav", description = "The `DAV` compliance classes and `Allow`; a CORS preflight (with `Access-Control-Request-Method`) is answered without credentials.", params(("user" = String, Path, description = "the user's public key (z-base-32)"), ("path" = String, Path, description = "the storage path below the user")), responses((status = 200, description = "`DAV`, `Allow`, `MS-Author-Via`"), (status = 204, description = "a CORS preflight"), (status = 401, description = "no session")))]
async fn options() {}
