//! Metrics of notifications (Prometheus names below), labelled by
//! `endpoint`: the configured endpoint name, so bounded by configuration.

/// Counter: events recorded in an endpoint's outbox.
pub const QUEUED: &str = "oci_registry_notifications_queued_total";
/// Counter: events an endpoint acknowledged (a 2xx answer).
pub const DELIVERED: &str = "oci_registry_notifications_delivered_total";
/// Counter: delivery attempts that failed (an error, a timeout, or an
/// answer other than 2xx).
pub const FAILED: &str = "oci_registry_notifications_failed_total";
/// Counter: events moved to the dead letters after their last attempt.
pub const DEAD_LETTERED: &str = "oci_registry_notifications_dead_lettered_total";
/// Gauge: 1 while this replica holds the endpoint's delivery lock.
pub const DELIVERING: &str = "oci_registry_notifications_delivering";

/// Describes every metric (once, by the recorder's installer).
pub fn describe() {
    metrics::describe_counter!(QUEUED, "Events recorded in an endpoint's outbox");
    metrics::describe_counter!(DELIVERED, "Events an endpoint acknowledged");
    metrics::describe_counter!(FAILED, "Event delivery attempts that failed");
    metrics::describe_counter!(
        DEAD_LETTERED,
        "Events moved to the dead letters after their last attempt"
    );
    metrics::describe_gauge!(
        DELIVERING,
        "1 while this replica delivers the endpoint's events"
    );
}

pub(crate) fn count(metric: &'static str, endpoint: &str) {
    metrics::counter!(metric, "endpoint" => endpoint.to_owned()).increment(1);
}

pub(crate) fn delivering(endpoint: &str, on: bool) {
    metrics::gauge!(DELIVERING, "endpoint" => endpoint.to_owned()).set(if on { 1.0 } else { 0.0 });
}
