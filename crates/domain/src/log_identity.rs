//! Which log the projections were built from, and whether the log at hand is it.
//!
//! A sequence number means nothing outside its stream. Projections built from one
//! JetStream stream and then served with another (the NATS data directory lost with a
//! container, a stream deleted and made again, a mistyped `nats_stream`, a move to a new
//! cluster) would skip every new event up to their old checkpoint while the writers,
//! comparing sequences only, answered 2xx: acknowledged writes silently lost. So the
//! projections record the identity of their log, and every process compares it with the
//! log it is given before it reads or writes ([`judge`]), refusing loudly on a mismatch.
//!
//! The identity is the stream's name, its creation time (a re-created stream gets a new
//! one) and its first event (a re-created stream that has grown has another first event;
//! a snapshot restored from a backup keeps it). On top of the identity, the event at the
//! projections' checkpoint must still be the one they applied: a log restored from an
//! older backup, or forked from one, is caught there.

/// The identity of one JetStream stream as seen at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogIdentity {
    pub stream: String,
    /// When NATS created the stream, as NATS reports it (RFC 3339).
    pub created: String,
    /// The stream's first event: its sequence and message id. `None` while it is empty.
    pub first: Option<FirstEvent>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirstEvent {
    pub seq: u64,
    /// The `Nats-Msg-Id` of the event: unique per request, so it fingerprints the event.
    pub id: String,
}

impl std::fmt::Display for LogIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stream {} created {}", self.stream, self.created)?;
        match &self.first {
            Some(first) => write!(f, ", first event {} ({})", first.seq, first.id),
            None => write!(f, ", empty"),
        }
    }
}

/// What the projections recorded about their log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedLog {
    pub identity: LogIdentity,
}

/// What a process sees of the log it was given, next to the projections' position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedLog {
    pub identity: LogIdentity,
    /// The sequence of the log's last event (0 when empty).
    pub head: u64,
    /// The message id of the log's event at the projections' checkpoint, when the
    /// checkpoint is above 0 and the log has that event.
    pub id_at_checkpoint: Option<String>,
}

/// The projections' position: the sequence of the last event they applied and its
/// message id (unknown for checkpoints written before ids were recorded).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Checkpoint {
    pub seq: u64,
    pub id: Option<String>,
}

/// The outcome of comparing the recorded identity with the log at hand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing recorded yet (new projections, or projections from before identities
    /// were recorded that the log can carry): record the observed identity.
    Adopt,
    /// The same log. `record` is set when the recorded identity should be brought up
    /// to date (the log's first event appeared, or a restore gave the stream a new
    /// creation time while keeping its events).
    Paired { record: bool },
    /// Not the log the projections follow. The text says why, naming both sides.
    Mismatch(String),
}

/// Compares what the projections recorded with the log at hand.
pub fn judge(
    recorded: Option<&RecordedLog>,
    checkpoint: &Checkpoint,
    seen: &ObservedLog,
) -> Verdict {
    let ours = &seen.identity;
    let Some(recorded) = recorded else {
        return if checkpoint.seq <= seen.head {
            Verdict::Adopt
        } else {
            mismatch(
                format!(
                    "the projections have applied events up to {} but the log ({ours}) ends at {}",
                    checkpoint.seq, seen.head
                ),
                None,
            )
        };
    };
    let theirs = &recorded.identity;
    let both = Some((theirs, ours));
    if theirs.stream != ours.stream {
        return mismatch(
            "the projections were built from another stream".into(),
            both,
        );
    }
    let mut record = false;
    match (&theirs.first, &ours.first) {
        (Some(a), Some(b)) if a == b => record = theirs.created != ours.created,
        (Some(_), Some(_)) => {
            return mismatch(
                "the log's first event is not the one the projections began with: the \
                 stream was re-created"
                    .into(),
                both,
            );
        }
        (Some(_), None) => {
            return mismatch("the log is empty: its events were lost".into(), both);
        }
        (None, _) if theirs.created != ours.created => {
            return mismatch(
                "the stream was created at another time: it was deleted and made again".into(),
                both,
            );
        }
        (None, Some(_)) => record = true,
        (None, None) => {}
    }
    if checkpoint.seq > seen.head {
        return mismatch(
            format!(
                "the projections have applied events up to {} but the log ends at {}: the \
                 log is older than its projections (restored from an earlier backup?)",
                checkpoint.seq, seen.head
            ),
            both,
        );
    }
    if let (Some(applied), Some(found)) = (&checkpoint.id, &seen.id_at_checkpoint)
        && applied != found
    {
        return mismatch(
            format!(
                "event {} of the log is {found}, but the projections applied {applied} there: \
                 the log has forked from the one they follow",
                checkpoint.seq
            ),
            both,
        );
    }
    Verdict::Paired { record }
}

fn mismatch(why: String, both: Option<(&LogIdentity, &LogIdentity)>) -> Verdict {
    let sides = match both {
        Some((theirs, ours)) => {
            format!(" The projections follow {theirs}; this server was given {ours}.")
        }
        None => String::new(),
    };
    Verdict::Mismatch(format!(
        "the event log does not match its projections: {why}.{sides}"
    ))
}

/// What the operator can do about a mismatch, appended to every message about one.
pub const RECOVERY: &str = "Writes are refused until this is resolved. If the log was lost \
and the projections are intact, run `homeserver reseed` to re-create the log from them; if \
the server was pointed at the wrong stream or NATS server, fix `nats_stream` / `nats_url` and \
restart; if the projections are the stale side, start with an empty database (the projector \
rebuilds them from the log).";

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(created: &str, first: Option<(u64, &str)>) -> LogIdentity {
        LogIdentity {
            stream: "HS_EVENTS".into(),
            created: created.into(),
            first: first.map(|(seq, id)| FirstEvent { seq, id: id.into() }),
        }
    }

    fn seen(identity: LogIdentity, head: u64, at: Option<&str>) -> ObservedLog {
        ObservedLog {
            identity,
            head,
            id_at_checkpoint: at.map(String::from),
        }
    }

    fn at(seq: u64, id: &str) -> Checkpoint {
        Checkpoint {
            seq,
            id: Some(id.into()),
        }
    }

    fn recorded(identity: LogIdentity) -> RecordedLog {
        RecordedLog { identity }
    }

    fn is_mismatch(verdict: &Verdict, fragment: &str) -> bool {
        matches!(verdict, Verdict::Mismatch(text) if text.contains(fragment))
    }

    #[test]
    fn new_projections_adopt_the_log() {
        let log = seen(identity("t1", Some((1, "a"))), 5, None);
        assert_eq!(judge(None, &Checkpoint::default(), &log), Verdict::Adopt);
    }

    #[test]
    fn unrecorded_projections_ahead_of_the_log_are_refused() {
        let log = seen(identity("t1", None), 0, None);
        assert!(is_mismatch(&judge(None, &at(10, "x"), &log), "ends at 0"));
    }

    #[test]
    fn the_same_log_is_paired() {
        let id = identity("t1", Some((1, "a")));
        let log = seen(id.clone(), 20, Some("j"));
        assert_eq!(
            judge(Some(&recorded(id)), &at(10, "j"), &log),
            Verdict::Paired { record: false }
        );
    }

    #[test]
    fn a_recreated_stream_is_refused_whether_empty_or_grown() {
        let mine = recorded(identity("t1", Some((1, "a"))));
        let empty = seen(identity("t2", None), 0, None);
        let verdict = judge(Some(&mine), &at(10, "j"), &empty);
        assert!(is_mismatch(&verdict, "empty"), "{verdict:?}");
        // Both identities are named.
        assert!(is_mismatch(&verdict, "created t1") && is_mismatch(&verdict, "created t2"));
        let grown = seen(identity("t2", Some((1, "other"))), 30, Some("x"));
        assert!(is_mismatch(
            &judge(Some(&mine), &at(10, "j"), &grown),
            "re-created"
        ));
    }

    #[test]
    fn an_empty_log_recorded_early_must_keep_its_creation_time() {
        let mine = recorded(identity("t1", None));
        let recreated = seen(identity("t2", None), 0, None);
        assert!(is_mismatch(
            &judge(Some(&mine), &Checkpoint::default(), &recreated),
            "deleted"
        ));
        let grown = seen(identity("t1", Some((1, "a"))), 1, None);
        assert_eq!(
            judge(Some(&mine), &Checkpoint::default(), &grown),
            Verdict::Paired { record: true }
        );
    }

    #[test]
    fn a_restore_keeps_the_first_event_and_may_change_the_creation_time() {
        let mine = recorded(identity("t1", Some((1, "a"))));
        let restored = seen(identity("t9", Some((1, "a"))), 10, Some("j"));
        assert_eq!(
            judge(Some(&mine), &at(10, "j"), &restored),
            Verdict::Paired { record: true }
        );
    }

    #[test]
    fn a_log_behind_or_forked_from_its_projections_is_refused() {
        let id = identity("t1", Some((1, "a")));
        let mine = recorded(id.clone());
        let behind = seen(id.clone(), 8, None);
        assert!(is_mismatch(
            &judge(Some(&mine), &at(10, "j"), &behind),
            "older"
        ));
        let forked = seen(id, 12, Some("k"));
        assert!(is_mismatch(
            &judge(Some(&mine), &at(10, "j"), &forked),
            "forked"
        ));
    }

    #[test]
    fn another_stream_name_is_refused() {
        let mine = recorded(identity("t1", Some((1, "a"))));
        let mut other = identity("t1", Some((1, "a")));
        other.stream = "HS_EVENTS2".into();
        assert!(is_mismatch(
            &judge(Some(&mine), &at(1, "a"), &seen(other, 1, Some("a"))),
            "another stream"
        ));
    }
}
