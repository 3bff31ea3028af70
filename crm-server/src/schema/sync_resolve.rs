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
    Registry, ScalarValue, Selection, arcstr::ArcStr,
};

/// `T`, resolved by juniper's synchronous executor; the same GraphQL type as `T` (the schema
/// does not change).
pub(crate) struct Resolved<T>(pub(crate) T);

impl<S: ScalarValue, T: GraphQLType<S>> GraphQLType<S> for Resolved<T> {
    fn name(info: &Self::TypeInfo) -> Option<ArcStr> {
        T::name(info)
    }

    fn meta(info: &Self::TypeInfo, registry: &mut Registry<S>) -> MetaType<S> {
        T::meta(info, registry)
    }
}

impl<S: ScalarValue, T: GraphQLValue<S>> GraphQLValue<S> for Resolved<T> {
    type Context = T::Context;
    type TypeInfo = T::TypeInfo;

    fn type_name(&self, info: &Self::TypeInfo) -> Option<ArcStr> {
        self.0.type_name(info)
    }

    fn resolve_field(
        &self,
        info: &Self::TypeInfo,
        field: &str,
        args: &Arguments<S>,
        executor: &Executor<Self::Context, S>,
    ) -> ExecutionResult<S> {
        self.0.resolve_field(info, field, args, executor)
    }

    fn resolve_into_type(
        &self,
        info: &Self::TypeInfo,
        name: &str,
        selection_set: Option<&[Selection<S>]>,
        executor: &Executor<Self::Context, S>,
    ) -> ExecutionResult<S> {
        self.0
            .resolve_into_type(info, name, selection_set, executor)
    }

    fn concrete_type_name(&self, context: &Self::Context, info: &Self::TypeInfo) -> String {
        self.0.concrete_type_name(context, info)
    }

    fn resolve(
        &self,
        info: &Self::TypeInfo,
        selection_set: Option<&[Selection<S>]>,
        executor: &Executor<Self::Context, S>,
    ) -> ExecutionResult<S> {
        self.0.resolve(info, selection_set, executor)
    }
}

impl<S, T> GraphQLValueAsync<S> for Resolved<T>
where
    S: ScalarValue + Send + Sync,
    T: GraphQLValue<S> + Sync,
    T::TypeInfo: Sync,
    T::Context: Sync,
{
    fn resolve_async<'a>(
        &'a self,
        info: &'a Self::TypeInfo,
        selection_set: Option<&'a [Selection<S>]>,
        executor: &'a Executor<Self::Context, S>,
    ) -> BoxFuture<'a, ExecutionResult<S>> {
        Box::pin(std::future::ready(self.0.resolve(
            info,
            selection_set,
            executor,
        )))
    }
}

impl<S: ScalarValue, T: IsOutputType<S>> IsOutputType<S> for Resolved<T> {
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
