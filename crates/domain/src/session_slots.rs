//! Grant session slots (`grant-session-slots`, the reference's open change #635): a
//! grant may hold several bearer sessions at once, one per slot its client names
//! (`session_id`; no id = the one legacy slot), so that several tabs or devices of one
//! app do not sign each other out.
//!
//! Two limits bound what one grant can mint: at most `max_sessions_per_grant` live
//! sessions (a new slot at the cap is refused with 409; rotating a slot that has a live
//! session is always allowed, and nothing is ever evicted), and at most
//! `session_issuance_per_minute` issuances, rotations included, per fixed 60-second
//! window that opens with the first issuance after the previous one closed (429).
//!
//! The rule is pure; the write-api reads the grant's usage from the projections at the
//! user's account sequence, so racing exchanges on several instances are decided
//! against the same state (the log refuses the second append and it re-reads).

use std::num::NonZeroU64;

/// Length of an issuance window, in microseconds.
pub const WINDOW_US: u64 = 60_000_000;

/// The operator's limits; the defaults are the reference's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotLimits {
    pub max_sessions_per_grant: NonZeroU64,
    pub session_issuance_per_minute: NonZeroU64,
}

impl SlotLimits {
    pub const DEFAULT_MAX_SESSIONS_PER_GRANT: NonZeroU64 = NonZeroU64::new(20).unwrap();
    pub const DEFAULT_SESSION_ISSUANCE_PER_MINUTE: NonZeroU64 = NonZeroU64::new(60).unwrap();
}

impl Default for SlotLimits {
    fn default() -> Self {
        SlotLimits {
            max_sessions_per_grant: Self::DEFAULT_MAX_SESSIONS_PER_GRANT,
            session_issuance_per_minute: Self::DEFAULT_SESSION_ISSUANCE_PER_MINUTE,
        }
    }
}

/// A grant's current issuance window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IssuanceWindow {
    /// When its first issuance happened (µs since the Unix epoch).
    pub start_us: u64,
    /// Issuances in it so far.
    pub count: u64,
}

impl IssuanceWindow {
    fn is_open_at(&self, now_us: u64) -> bool {
        now_us < self.start_us.saturating_add(WINDOW_US)
    }
}

/// What a grant holds when a client asks for a session in one of its slots.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SlotUsage {
    /// The grant's live sessions, the asked-for slot's own included.
    pub live_sessions: u64,
    /// The asked-for slot has a live session: the exchange rotates it.
    pub slot_live: bool,
    /// `None` when the grant has issued nothing since slots exist.
    pub window: Option<IssuanceWindow>,
}

/// Why an exchange is refused. `Display` is the exact HTTP body (the reference's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SlotRefusal {
    #[error("grant_session_limit_reached")]
    LimitReached,
    /// `retry_after_secs`: until the window closes (at least 1).
    #[error("grant_session_rate_limited")]
    RateLimited { retry_after_secs: u64 },
}

impl SlotRefusal {
    pub fn status(&self) -> u16 {
        match self {
            SlotRefusal::LimitReached => 409,
            SlotRefusal::RateLimited { .. } => 429,
        }
    }
}

/// May the grant issue one more session at `now_us`? The cap first, then the window,
/// as the reference checks them.
pub fn check(limits: &SlotLimits, usage: &SlotUsage, now_us: u64) -> Result<(), SlotRefusal> {
    if !usage.slot_live && usage.live_sessions >= limits.max_sessions_per_grant.get() {
        return Err(SlotRefusal::LimitReached);
    }
    if let Some(window) = usage.window
        && window.is_open_at(now_us)
        && window.count >= limits.session_issuance_per_minute.get()
    {
        let left_us = (window.start_us + WINDOW_US).saturating_sub(now_us);
        return Err(SlotRefusal::RateLimited {
            retry_after_secs: left_us.div_ceil(1_000_000).max(1),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: u64, per_minute: u64) -> SlotLimits {
        SlotLimits {
            max_sessions_per_grant: NonZeroU64::new(max).unwrap(),
            session_issuance_per_minute: NonZeroU64::new(per_minute).unwrap(),
        }
    }

    const T: u64 = 1_700_000_000_000_000;

    #[test]
    fn defaults_are_the_references() {
        assert_eq!(SlotLimits::default(), limits(20, 60));
    }

    #[test]
    fn a_new_slot_at_the_cap_is_refused_and_a_rotation_is_not() {
        let l = limits(2, 100);
        let usage = |live, slot_live| SlotUsage {
            live_sessions: live,
            slot_live,
            window: None,
        };
        assert_eq!(check(&l, &usage(1, false), T), Ok(()));
        assert_eq!(
            check(&l, &usage(2, false), T),
            Err(SlotRefusal::LimitReached)
        );
        assert_eq!(check(&l, &usage(2, true), T), Ok(()));
        assert_eq!(
            check(&l, &usage(5, true), T),
            Ok(()),
            "rotation even above a lowered cap"
        );
        assert_eq!(
            SlotRefusal::LimitReached.to_string(),
            "grant_session_limit_reached"
        );
        assert_eq!(SlotRefusal::LimitReached.status(), 409);
    }

    #[test]
    fn the_window_counts_issuances_until_it_closes() {
        let l = limits(20, 3);
        let at = |count, start_us| SlotUsage {
            live_sessions: 0,
            slot_live: true,
            window: Some(IssuanceWindow { start_us, count }),
        };
        assert_eq!(check(&l, &at(2, T), T + 1), Ok(()));
        let refused = check(&l, &at(3, T), T + 59_000_001);
        assert_eq!(
            refused,
            Err(SlotRefusal::RateLimited {
                retry_after_secs: 1
            })
        );
        let refused = check(&l, &at(3, T), T + 10_000_000);
        assert_eq!(
            refused,
            Err(SlotRefusal::RateLimited {
                retry_after_secs: 50
            })
        );
        // The window is fixed: at its end a new one opens, whatever the count was.
        assert_eq!(check(&l, &at(3, T), T + WINDOW_US), Ok(()));
        assert_eq!(check(&l, &at(99, T), T + WINDOW_US + 5), Ok(()));
        let rate_limited = SlotRefusal::RateLimited {
            retry_after_secs: 1,
        };
        assert_eq!(rate_limited.to_string(), "grant_session_rate_limited");
        assert_eq!(rate_limited.status(), 429);
    }

    #[test]
    fn the_cap_is_checked_before_the_window() {
        let usage = SlotUsage {
            live_sessions: 1,
            slot_live: false,
            window: Some(IssuanceWindow {
                start_us: T,
                count: 1,
            }),
        };
        assert_eq!(
            check(&limits(1, 1), &usage, T),
            Err(SlotRefusal::LimitReached)
        );
    }
}
