//! The write side. Every mutation first checks the request's write access, then validates with
//! crm-core's constructors, then makes one store call: no business rule lives here.

use crm_core::overrides::JobState;
use crm_core::{NewCustomer, NewOrder, NewProduct};
use juniper::{Executor, GraphQLInputObject, GraphQLObject, ID, graphql_object};

use crate::context::Context;
use crate::error::ApiError;
use crate::ids::{Kind, decode_id};
use crate::scalar_value::CrmScalar;
use crate::scalars::{Money, Timestamp};
use crate::schema::types::{CustomerNode, OrderNode, ProductNode, Related};

/// Stock below which `updateLowStockProducts` restocks a product.
const LOW_STOCK_THRESHOLD: i32 = 10;
/// Units `updateLowStockProducts` adds to each low-stock product.
const RESTOCK_AMOUNT: i32 = 10;

/// A new customer.
#[derive(Debug, Clone, GraphQLInputObject)]
pub(crate) struct CustomerInput {
    /// Display name, not empty.
    name: String,
    /// E-mail address, unique regardless of letter case.
    email: String,
    /// Phone as `+1234567890` or `123-456-7890`; optional.
    phone: Option<String>,
}

impl CustomerInput {
    fn validate(&self) -> Result<NewCustomer, ApiError> {
        Ok(NewCustomer::new(
            &self.name,
            &self.email,
            self.phone.as_deref(),
        )?)
    }
}

/// A new product.
#[derive(Debug, Clone, GraphQLInputObject)]
pub(crate) struct ProductInput {
    /// Display name, not empty.
    name: String,
    /// Unit price, > 0, at most two decimal places.
    price: Money,
    /// Units in stock, >= 0; 0 when absent.
    stock: Option<i32>,
}

/// A new order.
#[derive(Debug, Clone, GraphQLInputObject)]
pub(crate) struct OrderInput {
    /// The customer's ID (global or plain number).
    customer_id: ID,
    /// The products' IDs (global or plain numbers); at least one.
    product_ids: Vec<ID>,
    /// When the order was placed; now when absent.
    order_date: Option<Timestamp>,
}

/// The answer to `createCustomer`.
#[derive(GraphQLObject)]
#[graphql(name = "CreateCustomer", context = Context)]
pub(crate) struct CreateCustomerPayload {
    /// The customer as stored.
    customer: CustomerNode,
    /// A confirmation for people.
    message: String,
}

/// The answer to `bulkCreateCustomers`: the ones created, and why the others were not.
#[derive(GraphQLObject)]
#[graphql(name = "BulkCreateCustomers", context = Context)]
pub(crate) struct BulkCreateCustomersPayload {
    /// The customers created, in input order.
    customers: Vec<CustomerNode>,
    /// One message per refused input, in input order, naming its index and e-mail.
    errors: Vec<String>,
}

/// The answer to `createProduct`.
#[derive(GraphQLObject)]
#[graphql(name = "CreateProduct", context = Context)]
pub(crate) struct CreateProductPayload {
    /// The product as stored.
    product: ProductNode,
}

/// The answer to `createOrder`.
#[derive(GraphQLObject)]
#[graphql(name = "CreateOrder", context = Context)]
pub(crate) struct CreateOrderPayload {
    /// The order as stored, with its computed total.
    order: OrderNode,
}

/// The answer to `updateLowStockProducts`.
#[derive(GraphQLObject)]
#[graphql(name = "UpdateLowStockProducts", context = Context)]
pub(crate) struct UpdateLowStockProductsPayload {
    /// The products restocked, with their new stock, by id.
    products: Vec<ProductNode>,
    /// A summary for people.
    message: String,
    /// `true` when the `idempotencyKey` had been used already: nothing changed, and `products`
    /// are those the first call restocked (as they are now).
    replayed: bool,
}

/// What can be changed. When the server has an API token, every mutation needs
/// `Authorization: Bearer <token>`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Mutation;

#[graphql_object(context = Context)]
#[graphql(scalar = CrmScalar)]
impl Mutation {
    /// Creates a customer. An e-mail already used (in any letter case) is a `CONFLICT` error.
    async fn create_customer(
        context: &Context,
        input: CustomerInput,
    ) -> Result<CreateCustomerPayload, ApiError> {
        context.require_write_access()?;
        let new = input.validate()?;
        let customer = context.store().create_customer(&new).await?;
        Ok(CreateCustomerPayload {
            customer: CustomerNode(customer),
            message: "Customer created successfully".to_owned(),
        })
    }

    /// Creates the valid customers of the list, each on its own: one bad input does not stop
    /// the others. Each refused input gets one entry in `errors`.
    async fn bulk_create_customers(
        context: &Context,
        input: Vec<CustomerInput>,
    ) -> Result<BulkCreateCustomersPayload, ApiError> {
        context.require_write_access()?;
        let max = context.max_bulk_customers();
        if input.len() > max {
            return Err(ApiError::validation(
                "input",
                format!("at most {max} customers per call, got {}", input.len()),
            ));
        }
        let mut customers = Vec::new();
        let mut errors = Vec::new();
        for (index, item) in input.iter().enumerate() {
            let outcome = match item.validate() {
                Ok(new) => context
                    .store()
                    .create_customer(&new)
                    .await
                    .map_err(ApiError::from),
                Err(e) => Err(e),
            };
            match outcome {
                Ok(customer) => customers.push(CustomerNode(customer)),
                Err(e) => errors.push(crate::error::clip(format!(
                    "input[{index}] ({}): {e}",
                    item.email.trim()
                ))),
            }
        }
        Ok(BulkCreateCustomersPayload { customers, errors })
    }

    /// Creates a product.
    async fn create_product(
        context: &Context,
        input: ProductInput,
    ) -> Result<CreateProductPayload, ApiError> {
        context.require_write_access()?;
        let new = NewProduct::new(&input.name, input.price.0, input.stock.unwrap_or(0))?;
        let product = context.store().create_product(&new).await?;
        Ok(CreateProductPayload {
            product: ProductNode(product),
        })
    }

    /// Places an order, all or nothing: an unknown customer or product writes nothing. The
    /// total is computed from the products' current prices.
    async fn create_order(
        context: &Context,
        executor: &Executor<'_, '_, Context, CrmScalar>,
        input: OrderInput,
    ) -> Result<CreateOrderPayload, ApiError> {
        context.require_write_access()?;
        let customer_id = decode_id(Kind::Customer, "customerId", &input.customer_id)?;
        let product_ids = input
            .product_ids
            .iter()
            .map(|id| decode_id(Kind::Product, "productIds", id))
            .collect::<Result<Vec<_>, _>>()?;
        let new = NewOrder::new(customer_id, &product_ids, input.order_date.map(|t| t.0))?;
        let order = context
            .store()
            .create_order(&new, context.clock().now())
            .await?;
        let related = Related::selected_under(&executor.look_ahead());
        let order = OrderNode::load(context, vec![order], related)
            .await?
            .pop()
            .ok_or(ApiError::Internal)?;
        Ok(CreateOrderPayload { order })
    }

    /// Pauses (`enabled: false`) or resumes a scheduled job. Every running scheduler and beat
    /// obeys within seconds; a paused job shows as paused, not missed. Recorded as by `api`.
    async fn set_job_enabled(
        code: String,
        enabled: bool,
        context: &Context,
    ) -> Result<JobStateNode, ApiError> {
        context.require_write_access()?;
        let state = context
            .job_control()?
            .set_enabled(&code, enabled, API_ACTOR)
            .await?;
        Ok(JobStateNode(state))
    }

    /// Replaces a scheduled job's schedule (`0 3 * * *`, `every 10 minutes`, `at 08:00`,
    /// optionally `in Europe/London`), or restores the job's own when `schedule` is null. A
    /// bad expression is refused with the reason and nothing changes.
    async fn set_job_schedule(
        code: String,
        schedule: Option<String>,
        context: &Context,
    ) -> Result<JobStateNode, ApiError> {
        context.require_write_access()?;
        let state = context
            .job_control()?
            .set_schedule(&code, schedule.as_deref(), API_ACTOR)
            .await?;
        Ok(JobStateNode(state))
    }

    /// Runs a scheduled job once at `at`, besides its schedule.
    async fn schedule_job_run(
        code: String,
        at: Timestamp,
        context: &Context,
    ) -> Result<JobStateNode, ApiError> {
        context.require_write_access()?;
        let state = context
            .job_control()?
            .schedule_run(&code, at.0, API_ACTOR)
            .await?;
        Ok(JobStateNode(state))
    }

    /// Adds 10 to the stock of every product with less than 10, atomically (concurrent calls
    /// never lose or double an update), and lists the products it changed. With an
    /// `idempotencyKey` (1 to 200 characters; the jobs send their tick) it does so once per
    /// key: asked again with the same key it changes nothing and answers `replayed: true` with
    /// the first call's products, so a request retried after its answer was lost does not
    /// restock twice.
    async fn update_low_stock_products(
        context: &Context,
        idempotency_key: Option<String>,
    ) -> Result<UpdateLowStockProductsPayload, ApiError> {
        context.require_write_access()?;
        let restock = crm_core::Restock::low_stock(
            context.store(),
            idempotency_key.as_deref(),
            LOW_STOCK_THRESHOLD,
            RESTOCK_AMOUNT,
        )
        .await?;
        Ok(UpdateLowStockProductsPayload {
            message: restock.message(LOW_STOCK_THRESHOLD, RESTOCK_AMOUNT),
            replayed: restock.replayed,
            products: restock.products.into_iter().map(ProductNode).collect(),
        })
    }
}

/// Who changes made through the API are recorded as.
const API_ACTOR: &str = "api";

/// A scheduled job as it stands after a change.
pub(crate) struct JobStateNode(JobState);

/// A scheduled job's schedule as it stands.
#[graphql_object(name = "JobState", context = Context)]
impl JobStateNode {
    /// The job's code.
    fn code(&self) -> &str {
        &self.0.code
    }

    /// Whether it runs (`false`: paused).
    fn enabled(&self) -> bool {
        self.0.enabled
    }

    /// The schedule in force, as text.
    fn schedule(&self) -> &str {
        &self.0.schedule
    }

    /// The job's own schedule, as text.
    fn default_schedule(&self) -> &str {
        &self.0.default_schedule
    }

    /// Whether `schedule` is an operator's replacement.
    fn overridden(&self) -> bool {
        self.0.overridden
    }

    /// Its next scheduled run; null while paused.
    fn next_run(&self) -> Option<Timestamp> {
        self.0.next_run.map(Timestamp)
    }

    /// One-off runs still to come, earliest first.
    fn pending_runs(&self) -> Vec<Timestamp> {
        self.0.pending_runs.iter().copied().map(Timestamp).collect()
    }
}
