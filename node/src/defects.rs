//! Defects on purpose, to prove that the chaos checker (`hodei-chaos nemesis`) catches
//! what it claims to: each breaks one rule. They exist in debug builds only (a release
//! build has none) and are switched on by `HODEI_TEST_DEFECT`, read once:
//!
//! - `drop-acknowledged-tenant`: a tenant whose id ends in 3 or 7 is acknowledged as
//!   created and never stored (a lost acknowledged write);
//! - `apply-refused-tenant`: a tenant whose id ends in 5 is stored and refused as already
//!   existing (a refused write that took effect);
//! - `skip-fencing`: a worker's lease never ends and no fence is started (a paused
//!   worker's jobs run on beside their re-runs).

/// One deliberate defect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Defect {
    DropAcknowledgedTenant,
    ApplyRefusedTenant,
    SkipFencing,
}

/// Whether `defect` is switched on (never in a release build).
pub fn active(defect: Defect) -> bool {
    #[cfg(debug_assertions)]
    {
        static CHOSEN: std::sync::OnceLock<Option<Defect>> = std::sync::OnceLock::new();
        let chosen = CHOSEN.get_or_init(|| {
            let chosen = match std::env::var("HODEI_TEST_DEFECT").ok()?.as_str() {
                "drop-acknowledged-tenant" => Defect::DropAcknowledgedTenant,
                "apply-refused-tenant" => Defect::ApplyRefusedTenant,
                "skip-fencing" => Defect::SkipFencing,
                _ => return None,
            };
            tracing::warn!(
                ?chosen,
                "a deliberate defect is switched on (HODEI_TEST_DEFECT)"
            );
            Some(chosen)
        });
        *chosen == Some(defect)
    }
    #[cfg(not(debug_assertions))]
    {
        let _ = defect;
        false
    }
}
