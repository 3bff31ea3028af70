//! Resolving a finished subtree with juniper's synchronous executor from inside the
//! asynchronous one.
//!
//! Juniper's asynchronous executor boxes a future for every field of every object, and for
//! every item of every list, even when the field is a plain `fn`: a page of 100 orders with
//! their customers and products is about 1,500 boxed futures, polled through `FuturesOrdered`
//! queues, most of the page's CPU. Once a page's rows are loaded nothing under it waits for
//! anything, so [`Resolved`] hands its subtree to the synchronous executor, which calls the
//! same resolvers directly.
//!
//! Before that, [`Resolved`] offers the value its selection set to write straight to JSON
//! ([`Prerender`]); juniper's synchronous executor resolves what the value declines.
//!
//! Only wrap a value whose subtree has no `async fn` field: juniper's synchronous executor
//! panics on one (the request then answers 500, the server goes on). The types wrapped today
//! are the edges of the three connections, whose fields are all synchronous because
//! `allOrders` loads an order's customer and products before it returns the page
//! ([`crate::schema::types::OrderNode`]).

use juniper::macros::reflect::{BaseSubTypes, BaseType, Type, Types, WrappedType};
use juniper::marker::IsOutputType;
use juniper::meta::MetaType;
use juniper::{
    Arguments, BoxFuture, ExecutionResult, Executor, GraphQLType, GraphQLValue, GraphQLValueAsync,
    Registry, Selection, Value, arcstr::ArcStr,
};

use crate::context::Context;
use crate::scalar_value::CrmScalar;
use crate::schema::prerender::Prerender;

/// `T`, resolved by juniper's synchronous executor; the same GraphQL type as `T` (the schema
/// does not change).
pub(crate) struct Resolved<T>(pub(crate) T);

impl<T: GraphQLType<CrmScalar, Context = Context> + Prerender> GraphQLType<CrmScalar>
    for Resolved<T>
{
    fn name(info: &Self::TypeInfo) -> Option<ArcStr> {
        T::name(info)
    }

    fn meta(info: &Self::TypeInfo, registry: &mut Registry<CrmScalar>) -> MetaType<CrmScalar> {
        T::meta(info, registry)
    }
}

impl<T: GraphQLValue<CrmScalar, Context = Context> + Prerender> GraphQLValue<CrmScalar>
    for Resolved<T>
{
    type Context = Context;
    type TypeInfo = T::TypeInfo;

    fn type_name(&self, info: &Self::TypeInfo) -> Option<ArcStr> {
        self.0.type_name(info)
    }

    fn resolve_field(
        &self,
        info: &Self::TypeInfo,
        field: &str,
        args: &Arguments<CrmScalar>,
        executor: &Executor<Self::Context, CrmScalar>,
    ) -> ExecutionResult<CrmScalar> {
        self.0.resolve_field(info, field, args, executor)
    }

    fn resolve_into_type(
        &self,
        info: &Self::TypeInfo,
        name: &str,
        selection_set: Option<&[Selection<CrmScalar>]>,
        executor: &Executor<Self::Context, CrmScalar>,
    ) -> ExecutionResult<CrmScalar> {
        self.0
            .resolve_into_type(info, name, selection_set, executor)
    }

    fn concrete_type_name(&self, context: &Self::Context, info: &Self::TypeInfo) -> String {
        self.0.concrete_type_name(context, info)
    }

    fn resolve(
        &self,
        info: &Self::TypeInfo,
        selection_set: Option<&[Selection<CrmScalar>]>,
        executor: &Executor<Self::Context, CrmScalar>,
    ) -> ExecutionResult<CrmScalar> {
        let prerendered = selection_set.and_then(|set| self.0.prerender(set, executor));
        executor.context().record_page(prerendered.is_some());
        match prerendered {
            Some(json) => Ok(Value::Scalar(CrmScalar::Json(json))),
            None => self.0.resolve(info, selection_set, executor),
        }
    }
}

impl<T> GraphQLValueAsync<CrmScalar> for Resolved<T>
where
    T: GraphQLValue<CrmScalar, Context = Context> + Prerender + Sync,
    T::TypeInfo: Sync,
{
    fn resolve_async<'a>(
        &'a self,
        info: &'a Self::TypeInfo,
        selection_set: Option<&'a [Selection<CrmScalar>]>,
        executor: &'a Executor<Self::Context, CrmScalar>,
    ) -> BoxFuture<'a, ExecutionResult<CrmScalar>> {
        Box::pin(std::future::ready(self.resolve(
            info,
            selection_set,
            executor,
        )))
    }
}

impl<T> IsOutputType<CrmScalar> for Resolved<T>
where
    T: IsOutputType<CrmScalar> + GraphQLType<CrmScalar, Context = Context> + Prerender,
{
    fn mark() {
        T::mark()
    }
}

impl<S, T: BaseType<S>> BaseType<S> for Resolved<T> {
    const NAME: Type = T::NAME;
}

impl<S, T: BaseSubTypes<S>> BaseSubTypes<S> for Resolved<T> {
    const NAMES: Types = T::NAMES;
}

impl<S, T: WrappedType<S>> WrappedType<S> for Resolved<T> {
    const VALUE: u128 = T::VALUE;
}
