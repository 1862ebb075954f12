//! A real count of the SQL statements a call runs (for "a fixed number of queries per page").

/// Counts the SQL statements sqlx runs inside a span named `count_queries` (sqlx logs every
/// statement as a `sqlx::query` event; its SQLite worker thread re-enters the caller's span).
pub struct CountStatements(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl<S> tracing_subscriber::Layer<S> for CountStatements
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_event(&self, event: &tracing::Event<'_>, ctx: tracing_subscriber::layer::Context<'_, S>) {
        if event.metadata().target() != "sqlx::query" {
            return;
        }
        if ctx.event_scope(event).is_some_and(|mut scope| scope.any(|s| s.name() == "count_queries")) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

pub fn statement_counter() -> std::sync::Arc<std::sync::atomic::AtomicUsize> {
    use tracing_subscriber::layer::SubscriberExt;
    static COUNT: std::sync::OnceLock<std::sync::Arc<std::sync::atomic::AtomicUsize>> = std::sync::OnceLock::new();
    COUNT
        .get_or_init(|| {
            let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let subscriber = tracing_subscriber::registry().with(CountStatements(count.clone()));
            tracing::subscriber::set_global_default(subscriber).expect("no other global subscriber in this test");
            count
        })
        .clone()
}
