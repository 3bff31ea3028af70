//! The object types clients read: customers, products, orders, and relay connections of them.

use crm_core::{Customer, Order, Product};
use juniper::{GraphQLObject, ID, graphql_object};

use crate::context::Context;
use crate::error::ApiError;
use crate::ids::{Kind, encode_cursor, encode_id};
use crate::scalars::{Money, Timestamp};

/// A customer of the shop.
pub(crate) struct CustomerNode(pub(crate) Customer);

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

/// A product for sale.
pub(crate) struct ProductNode(pub(crate) Product);

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

/// An order: one customer, one or more products.
pub(crate) struct OrderNode(pub(crate) Order);

/// An order: one customer, one or more products.
#[graphql_object(name = "OrderType", context = Context)]
impl OrderNode {
    /// Global ID (base64 of `OrderType:<n>`); any ID argument also takes the plain number.
    fn id(&self) -> ID {
        ID::new(encode_id(Kind::Order, self.0.id))
    }
    /// Who ordered. Loaded for a whole page of orders in one query.
    async fn customer(&self, context: &Context) -> Result<CustomerNode, ApiError> {
        context.customer_of(&self.0).await.map(CustomerNode)
    }
    /// What was ordered, by id. Loaded for a whole page of orders in one query.
    async fn products(&self, context: &Context) -> Result<Vec<ProductNode>, ApiError> {
        let products = context.products_of(&self.0).await?;
        Ok(products.into_iter().map(ProductNode).collect())
    }
    /// Sum of the products' prices when the order was placed, computed by the server.
    fn total_amount(&self) -> Money {
        Money(self.0.total_amount)
    }
    /// When the order was placed.
    fn order_date(&self) -> Timestamp {
        Timestamp(self.0.order_date)
    }
}

/// Where a page sits in its list (relay's `PageInfo`).
#[derive(GraphQLObject)]
pub(crate) struct PageInfo {
    /// Whether rows follow this page.
    has_next_page: bool,
    /// Whether rows precede this page.
    has_previous_page: bool,
    /// Cursor of the first row of the page, if any.
    start_cursor: Option<String>,
    /// Cursor of the last row of the page; pass it as `after` for the next page.
    end_cursor: Option<String>,
}

impl PageInfo {
    /// The page of `len` rows starting at `offset`.
    fn new(offset: u64, len: usize, has_next_page: bool) -> Self {
        let len = len as u64;
        Self {
            has_next_page,
            has_previous_page: offset > 0,
            start_cursor: (len > 0).then(|| encode_cursor(offset)),
            end_cursor: (len > 0).then(|| encode_cursor(offset + len - 1)),
        }
    }
}

/// A relay connection and its edge type over one node type. `$count` counts the filter's
/// matches for `totalCount` (asked for only when a client selects it).
macro_rules! connection {
    (
        $connection:ident, $connection_name:literal, $edge:ident, $edge_name:literal,
        $node:ident, $filter:ty, $count:ident, $page_doc:literal, $edge_doc:literal
    ) => {
        #[doc = $page_doc]
        pub(crate) struct $connection {
            pub(crate) nodes: Vec<$node>,
            pub(crate) offset: u64,
            pub(crate) has_next_page: bool,
            pub(crate) filter: $filter,
        }

        #[doc = $page_doc]
        #[graphql_object(name = $connection_name, context = Context)]
        impl $connection {
            /// Position in the list.
            fn page_info(&self) -> PageInfo {
                PageInfo::new(self.offset, self.nodes.len(), self.has_next_page)
            }
            /// The rows of this page, each with its cursor.
            fn edges(&self) -> Vec<$edge<'_>> {
                self.nodes
                    .iter()
                    .enumerate()
                    .map(|(i, node)| $edge {
                        node,
                        offset: self.offset + i as u64,
                    })
                    .collect()
            }
            /// How many rows match the filter in all pages (counted by the database).
            async fn total_count(&self, context: &Context) -> Result<i32, ApiError> {
                let count = context.store().$count(&self.filter).await?;
                Ok(i32::try_from(count).unwrap_or(i32::MAX))
            }
        }

        #[doc = $edge_doc]
        pub(crate) struct $edge<'a> {
            node: &'a $node,
            offset: u64,
        }

        #[doc = $edge_doc]
        #[graphql_object(name = $edge_name, context = Context)]
        impl<'a> $edge<'a> {
            /// The row.
            fn node(&self) -> &$node {
                self.node
            }
            /// Opaque position of the row; pass it as `after` to read on from here.
            fn cursor(&self) -> String {
                encode_cursor(self.offset)
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
    crm_core::CustomerFilter,
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
    crm_core::ProductFilter,
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
    crm_core::OrderFilter,
    count_orders,
    "A page of orders.",
    "One of a page of orders, and its cursor."
);
