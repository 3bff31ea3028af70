//! The object types clients read: customers, products, orders, and relay connections of them.

use std::collections::HashMap;
use std::sync::Arc;

use crm_core::{Customer, CustomerId, Order, OrderId, Product};
use juniper::{GraphQLObject, ID, LookAheadSelection, ScalarValue, graphql_object};
use serde::ser::{Error as _, SerializeMap};

use crate::context::Context;
use crate::cursor::CursorScope;
use crate::error::ApiError;
use crate::ids::{Kind, encode_id};
use crate::scalar_value::CrmScalar;
use crate::scalars::{Money, Timestamp, format_money, format_timestamp};
use crate::schema::prerender::{EdgeRow, NodePlan, ObjectPlan, Plan, PlanReader, Sel, WriteField};
use crate::schema::sync_resolve::Resolved;

/// A customer of the shop.
pub(crate) struct CustomerNode(pub(crate) Customer);

impl CustomerNode {
    /// The customer, for its cursor.
    fn row(&self) -> &Customer {
        &self.0
    }
}

/// A customer of the shop.
#[graphql_object(name = "CustomerType", context = Context)]
impl CustomerNode {
    /// Global ID (base64 of `CustomerType:<n>`); any ID argument also takes the plain number.
    fn id(&self) -> ID {
        ID::new(encode_id(Kind::Customer, self.0.id))
    }
    /// Display name.
    fn name(&self) -> &str {
        &self.0.name
    }
    /// E-mail address as entered; unique regardless of letter case.
    fn email(&self) -> &str {
        &self.0.email
    }
    /// Phone number (`+1234567890` or `123-456-7890`), if given.
    fn phone(&self) -> Option<&str> {
        self.0.phone.as_deref()
    }
    /// When the customer was created.
    fn created_at(&self) -> Timestamp {
        Timestamp(self.0.created_at)
    }
}

/// The fields of [`CustomerNode`] a page writes straight to JSON (see
/// [`crate::schema::prerender`]); each writes what the resolver of the same name answers.
pub(crate) enum CustomerSelection {
    Id,
    Name,
    Email,
    Phone,
    CreatedAt,
}

impl<'d> ObjectPlan<'d> for CustomerSelection {
    const TYPE_NAME: &'static str = "CustomerType";

    fn field(name: &str, _: Option<&'d [Sel<'d>]>, _: &PlanReader<'d>) -> Option<Self> {
        Some(match name {
            "id" => Self::Id,
            "name" => Self::Name,
            "email" => Self::Email,
            "phone" => Self::Phone,
            "createdAt" => Self::CreatedAt,
            _ => return None,
        })
    }
}

impl NodePlan<'_> for CustomerSelection {
    const EDGE_TYPE_NAME: &'static str = "CustomerTypeEdge";
}

impl WriteField<CustomerNode> for CustomerSelection {
    fn write<M: SerializeMap>(
        &self,
        key: &str,
        row: &CustomerNode,
        map: &mut M,
    ) -> Result<(), M::Error> {
        let c = &row.0;
        match self {
            Self::Id => map.serialize_entry(key, &encode_id(Kind::Customer, c.id)),
            Self::Name => map.serialize_entry(key, &c.name),
            Self::Email => map.serialize_entry(key, &c.email),
            Self::Phone => map.serialize_entry(key, &c.phone),
            Self::CreatedAt => map.serialize_entry(key, &format_timestamp(c.created_at)),
        }
    }
}

/// A product for sale.
pub(crate) struct ProductNode(pub(crate) Product);

impl ProductNode {
    /// The product, for its cursor.
    fn row(&self) -> &Product {
        &self.0
    }
}

/// A product for sale.
#[graphql_object(name = "ProductType", context = Context)]
impl ProductNode {
    /// Global ID (base64 of `ProductType:<n>`); any ID argument also takes the plain number.
    fn id(&self) -> ID {
        ID::new(encode_id(Kind::Product, self.0.id))
    }
    /// Display name.
    fn name(&self) -> &str {
        &self.0.name
    }
    /// Unit price, exact.
    fn price(&self) -> Money {
        Money(self.0.price)
    }
    /// Units in stock.
    fn stock(&self) -> i32 {
        self.0.stock
    }
}

/// The fields of [`ProductNode`] a page writes straight to JSON.
pub(crate) enum ProductSelection {
    Id,
    Name,
    Price,
    Stock,
}

impl<'d> ObjectPlan<'d> for ProductSelection {
    const TYPE_NAME: &'static str = "ProductType";

    fn field(name: &str, _: Option<&'d [Sel<'d>]>, _: &PlanReader<'d>) -> Option<Self> {
        Some(match name {
            "id" => Self::Id,
            "name" => Self::Name,
            "price" => Self::Price,
            "stock" => Self::Stock,
            _ => return None,
        })
    }
}

impl NodePlan<'_> for ProductSelection {
    const EDGE_TYPE_NAME: &'static str = "ProductTypeEdge";
}

impl WriteField<ProductNode> for ProductSelection {
    fn write<M: SerializeMap>(
        &self,
        key: &str,
        row: &ProductNode,
        map: &mut M,
    ) -> Result<(), M::Error> {
        let p = &row.0;
        match self {
            Self::Id => map.serialize_entry(key, &encode_id(Kind::Product, p.id)),
            Self::Name => map.serialize_entry(key, &p.name),
            Self::Price => map.serialize_entry(key, &format_money(p.price)),
            Self::Stock => map.serialize_entry(key, &p.stock),
        }
    }
}

/// An order: one customer, one or more products, with the ones the query asks for loaded
/// beside it (see [`OrderNode::load`]), so that its fields resolve without waiting and a page
/// of orders resolves on juniper's synchronous path ([`Resolved`]).
pub(crate) struct OrderNode {
    order: Order,
    /// Its customer, shared by the orders of the page that have the same one; `None` when the
    /// query did not ask for it, `Some(None)` when the store has no such customer.
    customer: Option<Option<Arc<CustomerNode>>>,
    /// Its products by id; `None` when the query did not ask for them.
    products: Option<Vec<ProductNode>>,
}

impl OrderNode {
    /// The order, for its cursor.
    fn row(&self) -> &Order {
        &self.order
    }
}

/// Which of an order's related records a query selects, anywhere under a field that returns
/// orders.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Related {
    customer: bool,
    products: bool,
}

impl Related {
    /// What the subtree of `selection` asks of its orders, through any alias, fragment or
    /// directive (juniper's look-ahead applies `@include` and `@skip` as the executor does).
    /// Only orders have fields named `customer` and `products`, so the subtree is searched at
    /// every depth: a match elsewhere would cost one query more, never a wrong answer.
    pub(crate) fn selected_under<S: ScalarValue>(selection: &LookAheadSelection<'_, S>) -> Self {
        let mut related = Self::default();
        related.visit(selection);
        related
    }

    fn visit<S: ScalarValue>(&mut self, selection: &LookAheadSelection<'_, S>) {
        for child in selection.children().iter() {
            match child.field_original_name() {
                "customer" => self.customer = true,
                "products" => self.products = true,
                _ => {}
            }
            self.visit(child);
        }
    }
}

impl OrderNode {
    /// `orders` with the customers and products `related` asks for: one store call for all of
    /// them, however many orders (no query per order).
    pub(crate) async fn load(
        context: &Context,
        orders: Vec<Order>,
        related: Related,
    ) -> Result<Vec<Self>, ApiError> {
        let ids_of = |wanted: bool, id: fn(&Order) -> i64| {
            let mut ids: Vec<i64> = if wanted {
                orders.iter().map(id).collect()
            } else {
                Vec::new()
            };
            ids.sort_unstable();
            ids.dedup();
            ids
        };
        let customer_ids: Vec<CustomerId> = ids_of(related.customer, |o| o.customer_id);
        let order_ids: Vec<OrderId> = ids_of(related.products, |o| o.id);
        let found = context
            .store()
            .order_relations(&customer_ids, &order_ids)
            .await?;
        let customers: Option<HashMap<CustomerId, Arc<CustomerNode>>> =
            related.customer.then(|| {
                found
                    .customers
                    .into_iter()
                    .map(|c| (c.id, Arc::new(CustomerNode(c))))
                    .collect()
            });
        let mut products: Option<HashMap<OrderId, Vec<ProductNode>>> =
            related.products.then(|| {
                // The pairs come by order, then product id: each order's list is in id order.
                let mut by_order: HashMap<OrderId, Vec<ProductNode>> = HashMap::new();
                for (order_id, product) in found.products {
                    by_order
                        .entry(order_id)
                        .or_default()
                        .push(ProductNode(product));
                }
                by_order
            });
        Ok(orders
            .into_iter()
            .map(|order| Self {
                customer: customers
                    .as_ref()
                    .map(|found| found.get(&order.customer_id).cloned()),
                products: products.as_mut().map(|by_order| {
                    // An order's products are taken once: orders of a page are distinct.
                    by_order.remove(&order.id).unwrap_or_default()
                }),
                order,
            })
            .collect())
    }

    /// A field the query asked for whose data was not loaded: a look-ahead bug, not the
    /// client's; answered as an internal error rather than a wrong `null`.
    fn not_loaded(&self, field: &str) -> ApiError {
        tracing::error!(
            order = self.order.id,
            field,
            "an order's {field} was not loaded"
        );
        ApiError::Internal
    }
}

/// An order: one customer, one or more products.
#[graphql_object(name = "OrderType", context = Context)]
impl OrderNode {
    /// Global ID (base64 of `OrderType:<n>`); any ID argument also takes the plain number.
    fn id(&self) -> ID {
        ID::new(encode_id(Kind::Order, self.order.id))
    }
    /// Who ordered. Loaded for a whole page of orders in one query.
    fn customer(&self) -> Result<&CustomerNode, ApiError> {
        match &self.customer {
            Some(Some(customer)) => Ok(customer),
            Some(None) => Err(ApiError::NotFound(format!(
                "customer {} of order {} not found",
                self.order.customer_id, self.order.id
            ))),
            None => Err(self.not_loaded("customer")),
        }
    }
    /// What was ordered, by id. Loaded for a whole page of orders in one query.
    fn products(&self) -> Result<&[ProductNode], ApiError> {
        self.products
            .as_deref()
            .ok_or_else(|| self.not_loaded("products"))
    }
    /// Sum of the products' prices when the order was placed, computed by the server.
    fn total_amount(&self) -> Money {
        Money(self.order.total_amount)
    }
    /// When the order was placed.
    fn order_date(&self) -> Timestamp {
        Timestamp(self.order.order_date)
    }
}

/// The fields of [`OrderNode`] a page writes straight to JSON.
pub(crate) enum OrderSelection<'d> {
    Id,
    Customer(Plan<'d, CustomerSelection>),
    Products(Plan<'d, ProductSelection>),
    TotalAmount,
    OrderDate,
}

impl<'d> ObjectPlan<'d> for OrderSelection<'d> {
    const TYPE_NAME: &'static str = "OrderType";

    fn field(name: &str, under: Option<&'d [Sel<'d>]>, reader: &PlanReader<'d>) -> Option<Self> {
        Some(match name {
            "id" => Self::Id,
            "customer" => Self::Customer(reader.plan(under?)?),
            "products" => Self::Products(reader.plan(under?)?),
            "totalAmount" => Self::TotalAmount,
            "orderDate" => Self::OrderDate,
            _ => return None,
        })
    }
}

impl<'d> NodePlan<'d> for OrderSelection<'d> {
    const EDGE_TYPE_NAME: &'static str = "OrderTypeEdge";
}

impl WriteField<OrderNode> for OrderSelection<'_> {
    /// A customer or products not loaded, or a customer gone, is an error: juniper then
    /// answers the page, with the error where the resolver puts it.
    fn write<M: SerializeMap>(
        &self,
        key: &str,
        row: &OrderNode,
        map: &mut M,
    ) -> Result<(), M::Error> {
        let order = &row.order;
        match self {
            Self::Id => map.serialize_entry(key, &encode_id(Kind::Order, order.id)),
            Self::Customer(plan) => match &row.customer {
                Some(Some(customer)) => map.serialize_entry(key, &plan.row(&**customer)),
                _ => Err(M::Error::custom("an order's customer is not at hand")),
            },
            Self::Products(plan) => match &row.products {
                Some(products) => map.serialize_entry(key, &plan.rows(products)),
                None => Err(M::Error::custom("an order's products are not at hand")),
            },
            Self::TotalAmount => map.serialize_entry(key, &format_money(order.total_amount)),
            Self::OrderDate => map.serialize_entry(key, &format_timestamp(order.order_date)),
        }
    }
}

/// Where a page sits in its list (relay's `PageInfo`).
#[derive(GraphQLObject)]
pub(crate) struct PageInfo {
    /// Whether rows follow this page.
    has_next_page: bool,
    /// Whether rows precede this page (whether it was asked for with `after`).
    has_previous_page: bool,
    /// Cursor of the first row of the page, if any.
    start_cursor: Option<String>,
    /// Cursor of the last row of the page; pass it as `after` for the next page.
    end_cursor: Option<String>,
}

/// What a connection knows of its page besides the rows: whether it follows a cursor, whether
/// more rows follow, and the filter and cursor scope it was read with (for `totalCount` and
/// the cursors).
pub(crate) struct ListPage<F, Filter> {
    pub(crate) after: bool,
    pub(crate) has_next_page: bool,
    pub(crate) filter: Filter,
    pub(crate) scope: CursorScope<F>,
}

/// A relay connection and its edge type over one node type. `$count` counts the filter's
/// matches for `totalCount` (asked for only when a client selects it); cursors are keyset
/// cursors of `$field`'s sort (see [`crate::cursor`]).
macro_rules! connection {
    (
        $connection:ident, $connection_name:literal, $edge:ident, $edge_name:literal,
        $node:ident, $selection:ty, $filter:ty, $field:ty, $count:ident, $page_doc:literal,
        $edge_doc:literal
    ) => {
        #[doc = $page_doc]
        pub(crate) struct $connection {
            pub(crate) nodes: Vec<$node>,
            pub(crate) page: ListPage<$field, $filter>,
        }

        #[doc = $page_doc]
        #[graphql_object(name = $connection_name, context = Context, scalar = CrmScalar)]
        impl $connection {
            /// Position in the list.
            fn page_info(&self) -> PageInfo {
                let scope = &self.page.scope;
                PageInfo {
                    has_next_page: self.page.has_next_page,
                    has_previous_page: self.page.after,
                    start_cursor: self.nodes.first().map(|n| scope.encode(n.row())),
                    end_cursor: self.nodes.last().map(|n| scope.encode(n.row())),
                }
            }
            /// The rows of this page, each with its cursor.
            fn edges(&self) -> Resolved<Vec<$edge<'_>>> {
                Resolved(
                    self.nodes
                        .iter()
                        .map(|node| $edge {
                            node,
                            scope: &self.page.scope,
                        })
                        .collect(),
                )
            }
            /// How many rows match the filter in all pages (counted by the database; `after`
            /// and `first` do not change it).
            async fn total_count(&self, context: &Context) -> Result<i32, ApiError> {
                let count = context.store().$count(&self.page.filter).await?;
                Ok(i32::try_from(count).unwrap_or(i32::MAX))
            }
        }

        #[doc = $edge_doc]
        pub(crate) struct $edge<'a> {
            node: &'a $node,
            scope: &'a CursorScope<$field>,
        }

        #[doc = $edge_doc]
        #[graphql_object(name = $edge_name, context = Context)]
        impl<'a> $edge<'a> {
            /// The row.
            fn node(&self) -> &$node {
                EdgeRow::node(self)
            }
            /// Opaque position of the row (its sort values and id); pass it as `after` with
            /// the same `orderBy` and `filter` to read on from here.
            fn cursor(&self) -> String {
                EdgeRow::cursor(self)
            }
        }

        impl EdgeRow for $edge<'_> {
            type Node = $node;
            type Fields<'d> = $selection;

            fn node(&self) -> &$node {
                self.node
            }

            fn cursor(&self) -> String {
                self.scope.encode(self.node.row())
            }
        }
    };
}

connection!(
    CustomerConnection,
    "CustomerTypeConnection",
    CustomerEdge,
    "CustomerTypeEdge",
    CustomerNode,
    CustomerSelection,
    crm_core::CustomerFilter,
    crm_core::CustomerField,
    count_customers,
    "A page of customers.",
    "One of a page of customers, and its cursor."
);
connection!(
    ProductConnection,
    "ProductTypeConnection",
    ProductEdge,
    "ProductTypeEdge",
    ProductNode,
    ProductSelection,
    crm_core::ProductFilter,
    crm_core::ProductField,
    count_products,
    "A page of products.",
    "One of a page of products, and its cursor."
);
connection!(
    OrderConnection,
    "OrderTypeConnection",
    OrderEdge,
    "OrderTypeEdge",
    OrderNode,
    OrderSelection<'d>,
    crm_core::OrderFilter,
    crm_core::OrderField,
    count_orders,
    "A page of orders.",
    "One of a page of orders, and its cursor."
);
