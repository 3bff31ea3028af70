//! The GraphQL schema: names and shapes as graphene-django gives the Django original, so its
//! clients' queries work unchanged.

mod filters;
mod jobs;
mod mutation;
mod prerender;
mod query;
mod sync_resolve;
mod types;

use juniper::{EmptySubscription, RootNode};

pub use mutation::Mutation;
pub(crate) use prerender::document_can_prerender;
pub use query::Query;

use crate::context::Context;
use crate::scalar_value::CrmScalar;

/// The juniper schema type of the CRM API.
pub type Schema = RootNode<Query, Mutation, EmptySubscription<Context>, CrmScalar>;

/// The CRM's GraphQL schema, with juniper's default document limits. [`crate::app`] applies the
/// configured depth limit on top. `schema().as_sdl()` is the SDL checked in as
/// `crm-jobs/schema.graphql`.
pub fn schema() -> Schema {
    Schema::new_with_scalar_value(Query, Mutation, EmptySubscription::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The jobs' cynic client compiles against `crm-jobs/schema.graphql`; it must be this
    /// schema's SDL exactly. Regenerate with `UPDATE_SDL=1 cargo test -p crm-server sdl`;
    /// under CI that variable fails the test instead, so CI never rewrites the reference and
    /// passes.
    #[test]
    fn the_checked_in_sdl_matches_the_schema() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../crm-jobs/schema.graphql");
        let sdl = schema().as_sdl();
        let update = std::env::var_os("UPDATE_SDL").is_some();
        assert!(
            !(update && std::env::var_os("CI").is_some()),
            "UPDATE_SDL is set under CI: CI checks crm-jobs/schema.graphql, it never rewrites it"
        );
        if update {
            std::fs::write(path, &sdl).expect("write crm-jobs/schema.graphql");
        }
        let checked_in = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            checked_in == sdl,
            "crm-jobs/schema.graphql differs from schema().as_sdl(); \
             run `UPDATE_SDL=1 cargo test -p crm-server sdl` and commit the file"
        );
    }
}
