//! GraphiQL served from the binary: the page, GraphiQL's UMD build and React, all embedded.
//!
//! The page used to be juniper's, which loads its scripts from a CDN: on a machine without
//! internet the browser showed "Loading…" for ever. The files under `assets/graphiql/` are the
//! npm registry's tarballs' files, byte for byte (versions and checksums in its `LICENSES.md`),
//! so a page served by `crm serve` needs nothing but this server; the Content-Security-Policy
//! it is sent with makes the browser refuse anything from another host.

use tide::http::mime::{self, Mime};
use tide::{Body, Response, StatusCode};

/// The page's policy: scripts, styles, fonts and requests from this server only. Styles may be
/// inline (GraphiQL and its editor set them at run time); fonts and images may be `data:` URLs
/// (GraphiQL's stylesheet embeds its fonts that way).
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; font-src 'self' data:; img-src 'self' data:; \
     connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'self'";

/// Where the assets are served; the page refers to them by these paths.
pub(crate) const ASSET_ROUTE: &str = "/graphiql/:file";

/// One embedded file: its name under `/graphiql/`, its type and its bytes.
struct Asset {
    name: &'static str,
    mime: fn() -> Mime,
    bytes: &'static [u8],
}

/// The assets, named with their versions so that a browser may cache each for good.
const ASSETS: &[Asset] = &[
    Asset {
        name: "graphiql-3.8.3.min.js",
        mime: || mime::JAVASCRIPT,
        bytes: include_bytes!("../assets/graphiql/graphiql-3.8.3.min.js"),
    },
    Asset {
        name: "graphiql-3.8.3.min.css",
        mime: || mime::CSS,
        bytes: include_bytes!("../assets/graphiql/graphiql-3.8.3.min.css"),
    },
    Asset {
        name: "react-18.3.1.production.min.js",
        mime: || mime::JAVASCRIPT,
        bytes: include_bytes!("../assets/graphiql/react-18.3.1.production.min.js"),
    },
    Asset {
        name: "react-dom-18.3.1.production.min.js",
        mime: || mime::JAVASCRIPT,
        bytes: include_bytes!("../assets/graphiql/react-dom-18.3.1.production.min.js"),
    },
];

/// The page's own script; not versioned, so it is revalidated rather than cached for good.
const INIT_JS: &[u8] = include_bytes!("../assets/graphiql/init.js");

const PAGE: &str = include_str!("../assets/graphiql/graphiql.html");

/// GraphiQL's page, with the policy that keeps it on this server.
pub(crate) fn page() -> Response {
    let mut response = Response::builder(StatusCode::Ok)
        .body(PAGE)
        .content_type(mime::HTML)
        .build();
    response.insert_header("Content-Security-Policy", CONTENT_SECURITY_POLICY);
    response.insert_header("Cache-Control", "no-cache");
    response
}

/// `GET /graphiql/<file>`: an embedded asset, or 404.
pub(crate) async fn asset<State>(request: tide::Request<State>) -> tide::Result {
    let name = request.param("file").unwrap_or_default();
    if name == "init.js" {
        let mut response = Response::builder(StatusCode::Ok)
            .body(static_body(INIT_JS))
            .content_type(mime::JAVASCRIPT)
            .build();
        response.insert_header("Cache-Control", "no-cache");
        return Ok(response);
    }
    let Some(asset) = ASSETS.iter().find(|asset| asset.name == name) else {
        return Ok(Response::builder(StatusCode::NotFound)
            .body("no such GraphiQL file")
            .content_type(mime::PLAIN)
            .build());
    };
    let mut response = Response::builder(StatusCode::Ok)
        .body(static_body(asset.bytes))
        .content_type((asset.mime)())
        .build();
    response.insert_header("Cache-Control", "public, max-age=31536000, immutable");
    Ok(response)
}

/// A body that streams the embedded bytes instead of copying megabytes per request.
fn static_body(bytes: &'static [u8]) -> Body {
    Body::from_reader(futures::io::Cursor::new(bytes), Some(bytes.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_refers_to_every_asset_and_to_no_other_host() {
        for asset in ASSETS {
            assert!(
                PAGE.contains(&format!("/graphiql/{}", asset.name)),
                "{}",
                asset.name
            );
        }
        assert!(PAGE.contains("/graphiql/init.js"));
        assert!(!PAGE.contains("//"), "no absolute URL in the page");
    }
}
