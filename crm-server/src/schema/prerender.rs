//! Writing a page's edges straight to JSON, without juniper's tree of values.
//!
//! Juniper resolves an object field by field: a sub-executor, a type looked up by name and a
//! `String` key in an `IndexMap` for every field of every object; the tree is then serialized
//! and dropped. For a page of 100 orders with their customers and products that was most of
//! the request's CPU. Once a page is loaded, its edges are plain data, so [`Prerender`] reads
//! the edges' selection set once into a [`Plan`] (GraphQL's field collection: aliases,
//! fragments, `@skip` and `@include`, `__typename`) and writes every edge by it, handing
//! juniper the text as one [`CrmScalar::Json`] value.
//!
//! Whatever the plan does not cover is left to juniper, which answers as before: a field this
//! module does not know, a directive other than `@skip`/`@include`, a fragment on another type,
//! a row that would answer an error (an order whose customer is gone), a batch, or a document
//! that selects one response key twice with different sub-selections anywhere (juniper merges
//! those after resolving each occurrence, and a value written whole could not be merged; see
//! [`document_can_prerender`]).

use std::collections::HashMap;

use juniper::parser::{Spanning, parse_document_source};
use juniper::{Definition, Executor, InputValue, ScalarValue, SchemaType, Selection};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};

use crate::context::Context;
use crate::scalar_value::{CrmScalar, PrerenderedJson};

/// A selection of the CRM's schema.
pub(crate) type Sel<'d> = Selection<'d, CrmScalar>;

/// A value that can write itself as JSON for a selection set, or declines (`None`): juniper
/// then resolves it field by field.
pub(crate) trait Prerender {
    fn prerender(
        &self,
        selection_set: &[Sel<'_>],
        executor: &Executor<'_, '_, Context, CrmScalar>,
    ) -> Option<PrerenderedJson>;
}

/// One object type's fields as a [`Plan`] names them.
pub(crate) trait ObjectPlan<'d>: Sized {
    /// The GraphQL type's name: what `__typename` answers, and the type a fragment spread
    /// inside it must be on.
    const TYPE_NAME: &'static str;

    /// The field `name` with what is selected under it, or `None` for a field this module
    /// does not write.
    fn field(name: &str, under: Option<&'d [Sel<'d>]>, reader: &PlanReader<'d>) -> Option<Self>;
}

/// A node type of a connection (its edge type's name).
pub(crate) trait NodePlan<'d>: ObjectPlan<'d> {
    const EDGE_TYPE_NAME: &'static str;
}

/// Writes one selected field of a row `R` into the row's JSON object.
pub(crate) trait WriteField<R: ?Sized> {
    fn write<M: SerializeMap>(&self, key: &str, row: &R, map: &mut M) -> Result<(), M::Error>;
}

/// An edge of a connection: its node and its cursor.
pub(crate) trait EdgeRow {
    type Node;
    /// The fields of the node type.
    type Fields<'d>: NodePlan<'d> + WriteField<Self::Node>;
    fn node(&self) -> &Self::Node;
    fn cursor(&self) -> String;
}

/// A selection set read for one object type: its response keys in order, each with what it
/// selects.
pub(crate) struct Plan<'d, F> {
    entries: Vec<(&'d str, Selected<F>)>,
}

/// What one response key selects.
enum Selected<F> {
    TypeName,
    Field(F),
}

/// The fields of an edge type.
pub(crate) enum EdgeSelection<'d, N> {
    Node(Plan<'d, N>),
    Cursor,
}

impl<'d, N: NodePlan<'d>> ObjectPlan<'d> for EdgeSelection<'d, N> {
    const TYPE_NAME: &'static str = N::EDGE_TYPE_NAME;

    fn field(name: &str, under: Option<&'d [Sel<'d>]>, reader: &PlanReader<'d>) -> Option<Self> {
        match name {
            "node" => Some(Self::Node(reader.plan(under?)?)),
            "cursor" => Some(Self::Cursor),
            _ => None,
        }
    }
}

impl<'d, E: EdgeRow, N: WriteField<E::Node>> WriteField<E> for EdgeSelection<'d, N>
where
    N: ObjectPlan<'d>,
{
    fn write<M: SerializeMap>(&self, key: &str, edge: &E, map: &mut M) -> Result<(), M::Error> {
        match self {
            Self::Node(plan) => map.serialize_entry(key, &plan.row(edge.node())),
            Self::Cursor => map.serialize_entry(key, &edge.cursor()),
        }
    }
}

impl<E: EdgeRow> Prerender for Vec<E> {
    fn prerender(
        &self,
        selection_set: &[Sel<'_>],
        executor: &Executor<'_, '_, Context, CrmScalar>,
    ) -> Option<PrerenderedJson> {
        if !executor.context().may_prerender(executor.schema()) {
            return None;
        }
        let reader = PlanReader { executor };
        let plan: Plan<'_, EdgeSelection<'_, E::Fields<'_>>> = reader.plan(selection_set)?;
        // An error (a row that answers one) leaves the page to juniper, which reports it.
        PrerenderedJson::new(&plan.rows(self)).ok()
    }
}

impl<'d, F: ObjectPlan<'d>> Plan<'d, F> {
    /// `row` written by this plan.
    pub(crate) fn row<'p, R: ?Sized>(&'p self, row: &'p R) -> Rendered<'p, 'd, F, R> {
        Rendered { plan: self, row }
    }

    /// `rows` written by this plan, as a list.
    pub(crate) fn rows<'p, R>(&'p self, rows: &'p [R]) -> RenderedList<'p, 'd, F, R> {
        RenderedList { plan: self, rows }
    }
}

/// A row written by a plan, as a JSON object.
pub(crate) struct Rendered<'p, 'd, F, R: ?Sized> {
    plan: &'p Plan<'d, F>,
    row: &'p R,
}

impl<'d, F: ObjectPlan<'d> + WriteField<R>, R: ?Sized> Serialize for Rendered<'_, 'd, F, R> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.plan.entries.len()))?;
        for (key, selected) in &self.plan.entries {
            match selected {
                Selected::TypeName => map.serialize_entry(key, F::TYPE_NAME)?,
                Selected::Field(field) => field.write(key, self.row, &mut map)?,
            }
        }
        map.end()
    }
}

/// Rows written by a plan, as a JSON list.
pub(crate) struct RenderedList<'p, 'd, F, R> {
    plan: &'p Plan<'d, F>,
    rows: &'p [R],
}

impl<'d, F: ObjectPlan<'d> + WriteField<R>, R> Serialize for RenderedList<'_, 'd, F, R> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut list = serializer.serialize_seq(Some(self.rows.len()))?;
        for row in self.rows {
            list.serialize_element(&self.plan.row(row))?;
        }
        list.end()
    }
}

/// A selection's directives as `(name, if argument)` (juniper does not export the directive
/// type by name).
macro_rules! conditions {
    ($selection:expr) => {
        $selection.directives.iter().flatten().map(|d| {
            let condition = d.item.arguments.as_ref().and_then(|a| a.item.get("if"));
            (d.item.name.item, condition)
        })
    };
}

/// Reads selection sets into plans, with the request's fragments and variables.
pub(crate) struct PlanReader<'d> {
    executor: &'d Executor<'d, 'd, Context, CrmScalar>,
}

/// A response key as field collection finds it: the field and what is selected under it.
struct Collected<'d> {
    key: &'d str,
    name: &'d str,
    under: Option<&'d [Sel<'d>]>,
}

impl<'d> PlanReader<'d> {
    /// `selection_set`, on the type `F` describes, as a plan; `None` when some of it is beyond
    /// this module.
    pub(crate) fn plan<F: ObjectPlan<'d>>(
        &self,
        selection_set: &'d [Sel<'d>],
    ) -> Option<Plan<'d, F>> {
        let mut collected = Vec::new();
        self.collect(selection_set, F::TYPE_NAME, &mut collected)?;
        let entries = collected
            .into_iter()
            .map(|c| {
                let selected = match c.name {
                    "__typename" => Selected::TypeName,
                    name => Selected::Field(F::field(name, c.under, self)?),
                };
                Some((c.key, selected))
            })
            .collect::<Option<_>>()?;
        Some(Plan { entries })
    }

    /// GraphQL's `CollectFields` for an object type: the fields of `set` and of the fragments
    /// it spreads, in order, skipping what `@skip`/`@include` exclude.
    fn collect(
        &self,
        set: &'d [Sel<'d>],
        type_name: &str,
        out: &mut Vec<Collected<'d>>,
    ) -> Option<()> {
        for selection in set {
            match selection {
                Selection::Field(field) => {
                    let field = &field.item;
                    if !self.included(conditions!(field))? {
                        continue;
                    }
                    let key = field.alias.as_ref().map_or(field.name.item, |a| a.item);
                    let under = field.selection_set.as_deref();
                    if let Some(seen) = out.iter().find(|c| c.key == key) {
                        // The same scalar field twice is written once; two selections under
                        // one key would need merging: juniper's job.
                        if seen.name != field.name.item || under.is_some() || seen.under.is_some() {
                            return None;
                        }
                        continue;
                    }
                    out.push(Collected {
                        key,
                        name: field.name.item,
                        under,
                    });
                }
                Selection::FragmentSpread(spread) => {
                    let spread = &spread.item;
                    if !self.included(conditions!(spread))? {
                        continue;
                    }
                    let fragment = self.executor.fragment_by_name(spread.name.item)?;
                    if fragment.type_condition.item != type_name {
                        return None;
                    }
                    self.collect(&fragment.selection_set, type_name, out)?;
                }
                Selection::InlineFragment(inline) => {
                    let inline = &inline.item;
                    if !self.included(conditions!(inline))? {
                        continue;
                    }
                    if inline
                        .type_condition
                        .as_ref()
                        .is_some_and(|t| t.item != type_name)
                    {
                        return None;
                    }
                    self.collect(&inline.selection_set, type_name, out)?;
                }
            }
        }
        Some(())
    }

    /// Whether directives `(name, if)` let a selection in; `None` for a directive other than
    /// `@skip` and `@include`, or a condition that is not a boolean.
    fn included<'v>(
        &self,
        directives: impl Iterator<Item = (&'v str, Option<&'v Spanning<InputValue<CrmScalar>>>)>,
    ) -> Option<bool> {
        for (name, condition) in directives {
            let condition = match &condition?.item {
                InputValue::Variable(variable) => self.executor.variables().get(variable)?,
                literal => literal,
            };
            let InputValue::Scalar(value) = condition else {
                return None;
            };
            let value = value.try_to_bool()?;
            match name {
                "skip" if value => return Some(false),
                "include" if !value => return Some(false),
                "skip" | "include" => {}
                _ => return None,
            }
        }
        Some(true)
    }
}

/// Whether a single request's document may have its pages written by [`Prerender`] (asked
/// once per request, when its first page is about to be written): it parses, and no selection set of it (fragments expanded) has one response key twice where
/// either occurrence has a sub-selection. Juniper resolves each occurrence of a key and merges
/// the results; a page written whole would keep the first occurrence's fields only. Clients
/// rarely send such documents; they are answered by juniper alone.
pub(crate) fn document_can_prerender(query: &str, schema: &SchemaType<CrmScalar>) -> bool {
    let Ok(document) = parse_document_source(query, schema) else {
        return false;
    };
    let fragments: HashMap<&str, &[Sel<'_>]> = document
        .iter()
        .filter_map(|definition| match definition {
            Definition::Fragment(f) => Some((f.item.name.item, f.item.selection_set.as_slice())),
            Definition::Operation(_) => None,
        })
        .collect();
    document.iter().all(|definition| {
        let set = match definition {
            Definition::Operation(op) => op.item.selection_set.as_slice(),
            Definition::Fragment(f) => f.item.selection_set.as_slice(),
        };
        no_merged_keys(set, &fragments)
    })
}

/// Fragment spreads nest no deeper than this here: juniper's validation has already refused
/// cycles when a page asks, but this walk does not rely on it.
const MAX_SPREAD_DEPTH: usize = 32;

/// Whether no response key of `set` (fragments expanded) repeats where either occurrence has a
/// sub-selection, here or below.
fn no_merged_keys(set: &[Sel<'_>], fragments: &HashMap<&str, &[Sel<'_>]>) -> bool {
    let mut fields = Vec::new();
    if !flatten(set, fragments, &mut fields, 0) {
        return false;
    }
    let mut seen: Vec<(&str, bool)> = Vec::new();
    for (key, under) in fields {
        if let Some((_, seen_under)) = seen.iter().find(|(k, _)| *k == key) {
            if *seen_under || under.is_some() {
                return false;
            }
            continue;
        }
        seen.push((key, under.is_some()));
        if under.is_some_and(|under| !no_merged_keys(under, fragments)) {
            return false;
        }
    }
    true
}

/// The fields of `set` with fragments expanded (directives and type conditions ignored, which
/// can only find more repeated keys, never fewer): `(response key, sub-selection)`.
fn flatten<'d>(
    set: &'d [Sel<'d>],
    fragments: &HashMap<&str, &'d [Sel<'d>]>,
    out: &mut Vec<(&'d str, Option<&'d [Sel<'d>]>)>,
    depth: usize,
) -> bool {
    if depth > MAX_SPREAD_DEPTH {
        return false;
    }
    for selection in set {
        let ok = match selection {
            Selection::Field(field) => {
                let field = &field.item;
                let key = field.alias.as_ref().map_or(field.name.item, |a| a.item);
                out.push((key, field.selection_set.as_deref()));
                true
            }
            Selection::FragmentSpread(spread) => match fragments.get(spread.item.name.item) {
                Some(inner) => flatten(inner, fragments, out, depth + 1),
                None => false,
            },
            Selection::InlineFragment(inline) => {
                flatten(&inline.item.selection_set, fragments, out, depth + 1)
            }
        };
        if !ok {
            return false;
        }
    }
    true
}
