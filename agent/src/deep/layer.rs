//! Deep mode as a `tracing_subscriber` layer, for apps that build their own
//! subscriber. It reads the same spans and events as the lean subscriber,
//! but the `Registry` names the spans, so each event finds its task through
//! the table's key map: a little slower than the lean subscriber.

use tracing_core::span::{Attributes, Id};
use tracing_core::subscriber::Interest;
use tracing_core::{Event, Metadata, Subscriber};
use tracing_subscriber::filter::Filtered;
use tracing_subscriber::layer::{Context, Filter, Layer};
use tracing_subscriber::registry::LookupSpan;

use super::events::{self, is_spawn, is_waker, with_cache, Fields, SpawnFields};
use super::resource_events;
use super::table::DeepTable;

/// Reads tokio's spawn spans and waker events into the deep table.
pub(crate) struct DeepLayer {
    table: &'static DeepTable,
}

impl std::fmt::Debug for DeepLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeepLayer")
    }
}

/// The per-layer filter: tokio's spawn spans and waker events always, the
/// resource callsites as the lean subscriber enables them (async ops and
/// events only inside a resource span entered on the thread, which the
/// per-call answer needs; a `FilterFn` would cache its first one).
#[derive(Debug, Clone, Copy)]
pub(crate) struct DeepFilter;

impl<S> Filter<S> for DeepFilter {
    fn enabled(&self, meta: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        is_spawn(meta) || is_waker(meta) || resource_events::enabled(meta)
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        if is_spawn(meta) || is_waker(meta) {
            Interest::always()
        } else {
            resource_events::interest(meta).unwrap_or_else(Interest::never)
        }
    }
}

/// The layer behind a per-layer filter, so that it enables only tokio's
/// spawn spans, waker events and resource callsites, and leaves every other
/// callsite to the app's own layers and filters.
pub(crate) type FilteredDeepLayer<S> = Filtered<DeepLayer, DeepFilter, S>;

/// A filtered [`DeepLayer`] over `table`.
pub(crate) fn filtered<S>(table: &'static DeepTable) -> FilteredDeepLayer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    DeepLayer { table }.with_filter(DeepFilter)
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for DeepLayer {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if !is_spawn(attrs.metadata()) {
            return resource_events::layer::on_new_span(attrs, id, &ctx);
        }
        let mut fields = SpawnFields::default();
        attrs.record(&mut fields);
        events::note_spawn();
        if with_cache(self.table, |cache| self.table.open_keyed(cache, fields.task_id, id.into_u64())) {
            events::name(|| self.table.get_keyed(id.into_u64()), &fields);
        }
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        if !is_waker(event.metadata()) {
            return resource_events::layer::on_event(event);
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let span = fields.task_id;
        if let Some(slot) = self.table.get_keyed(span) {
            events::waker(self.table, slot, span, fields.op);
        }
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        let key = id.into_u64();
        // Only task spans: an app's span entered inside a poll is not a poll.
        match self.table.get_keyed(key) {
            Some(slot) => events::enter(Some(slot), key),
            // The filter enables only spawn spans and resource spans.
            None => resource_events::layer::on_enter(id, &ctx),
        }
    }

    fn on_exit(&self, id: &Id, ctx: Context<'_, S>) {
        let key = id.into_u64();
        events::exit(key);
        if self.table.get_keyed(key).is_none() {
            resource_events::layer::on_exit(id, &ctx);
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        resource_events::layer::on_close(&id, &ctx);
        with_cache(self.table, |cache| self.table.close_keyed(cache, id.into_u64()));
    }
}
