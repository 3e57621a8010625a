//! Event notifications (webhooks) of the registry.
//!
//! When a manifest is pushed, pulled or deleted, or a blob mounted, the
//! HTTP layer builds an [`Event`] and, before it answers the client, the
//! [`Notifier`] appends it to the outbox in storage of every endpoint that
//! wants it (`oci_storage::outbox`, under `_events/`): an acknowledged
//! request never loses its event, whatever happens to the process after.
//! [`Delivery`] tasks, started on every replica, send each outbox to its
//! endpoint in order, one replica at a time per endpoint, retrying with
//! exponential backoff and moving an event to the dead letters after its
//! last attempt.
//!
//! - [`event`]: the event model (distribution's field names).
//! - [`envelope`]: the wire formats, distribution's and CloudEvents 1.0.
//! - [`endpoint`]: one webhook's options and filters.
//! - [`notifier`]: recording events.
//! - [`delivery`]: sending them.
//! - [`telemetry`]: the metrics.

pub mod delivery;
pub mod endpoint;
pub mod envelope;
mod error;
pub mod event;
pub mod notifier;
pub mod telemetry;

pub use delivery::Delivery;
pub use endpoint::EndpointOptions;
pub use envelope::Format;
pub use error::{NotifyError, Result};
pub use event::{Action, Actor, Event, RequestInfo, Source, Target};
pub use notifier::{Notifier, NotifierOptions};
