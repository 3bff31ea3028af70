//! Registers the server's GraphQL schema (its SDL, exported from the juniper schema and checked
//! in as `schema.graphql`) so cynic checks the jobs' queries against it at compile time
//! (features `graphql-surf`, `graphql-tokio`; nothing to do without it).

fn main() {
    println!("cargo::rerun-if-changed=schema.graphql");
    #[cfg(feature = "graphql")]
    cynic_codegen::register_schema("crm")
        .from_sdl_file("schema.graphql")
        .expect("crm-jobs/schema.graphql is readable")
        .as_default()
        .expect("crm-jobs/schema.graphql is valid GraphQL SDL");
}
