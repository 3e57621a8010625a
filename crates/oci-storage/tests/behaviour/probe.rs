//! The readiness probe: one small read that succeeds on a reachable store,
//! empty or not.

use crate::common::*;

pub async fn probe_answers_on_empty_and_used_stores(f: Fixture) {
    let s = &f.storage;
    s.probe()
        .await
        .unwrap_or_else(|e| panic!("{}: {e:?}", f.backend));
    push_image(s, &repo("r"), "v1", "x").await;
    s.probe()
        .await
        .unwrap_or_else(|e| panic!("{}: {e:?}", f.backend));
}
