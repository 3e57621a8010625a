//! The stylesheet and script, compiled into the binary: nothing is
//! fetched from anywhere else.

/// The stylesheet: light and dark themes follow `prefers-color-scheme`.
pub const CSS: &str = include_str!("../assets/app.css");

/// The script: progressive only (every page works without it): filters
/// the shown rows as one types in a search box, and copies pull commands.
pub const JS: &str = include_str!("../assets/app.js");
